/**
 * Where a patch of the input shows up in a map: the occlusion response (Zeiler & Fergus, "Visualizing and
 * Understanding Convolutional Networks", ECCV 2014, §4.2, turned around: instead of the class score, the
 * change of a whole stage map is recorded, position by position).
 *
 *   A      = the map `name` for x                                  [b, h, w, C]   (./gradcam.ts `stageMap`)
 *   A'     = the same map with the box of x set to `value`         [b, h, w, C]
 *   resp   = sqrt(mean_C (A' − A)²)                                 [b, h, w]
 *
 * A map that lines up with the input responds under the box (and, through a scan or attention, elsewhere
 * too, but without a preferred mirror place). It is the check behind the H/W transpose warning: with the
 * official PSFFN transpose (docs/architecture.md §Quirks Q1) every SS2D adds its output with rows and columns
 * swapped, so a box at rows r, columns c also lights up rows c, columns r (`mirrorBox`).
 */
import * as tf from '@tensorflow/tfjs';
import type { ClassifierModel } from '../models/contract';
import { stageMap } from './gradcam';

/** A box of the input, in pixels: rows top … top+height−1, columns left … left+width−1. */
export interface Box {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface OcclusionOptions {
  /** The map to watch (one of `explainableMaps(model)`). */
  map: string;
  /** The input region to replace. */
  box: Box;
  /** What the box is set to (default 0: the mean pixel after the kit's normalisation). */
  value?: number;
}

export interface OcclusionResult {
  map: string;
  /** RMS over channels of the map's change [b, h, w]. The caller disposes it. */
  response: tf.Tensor3D;
  /** The box in the map's grid (the cells it covers, at least one). */
  boxOnMap: Box;
  /** The box with rows and columns swapped, in the map's grid: where the transpose quirk puts its echo. */
  mirrorOnMap: Box;
}

/** `box` with rows and columns swapped. */
export function mirrorBox(box: Box): Box {
  return { top: box.left, left: box.top, height: box.width, width: box.height };
}

/** The cells of an h×w grid that cover `box` of an H×W input (each grid cell is H/h × W/w pixels). */
export function boxOnGrid(box: Box, H: number, W: number, h: number, w: number): Box {
  const r0 = Math.floor((box.top * h) / H);
  const c0 = Math.floor((box.left * w) / W);
  const r1 = Math.max(r0 + 1, Math.ceil(((box.top + box.height) * h) / H));
  const c1 = Math.max(c0 + 1, Math.ceil(((box.left + box.width) * w) / W));
  return { top: r0, left: c0, height: Math.min(r1, h) - r0, width: Math.min(c1, w) - c0 };
}

/** Mean of `t` [b, h, w] over `box` (grid cells), per image. */
export function boxMean(t: tf.Tensor3D, box: Box): number[] {
  return tf.tidy(() =>
    Array.from(tf.mean(t.slice([0, box.top, box.left], [-1, box.height, box.width]), [1, 2]).dataSync()),
  );
}

/** How the map `opts.map` of `model` changes when `opts.box` of x [b, H, W, 3] is replaced (inference mode). */
export function occlusionResponse(model: ClassifierModel, x: tf.Tensor4D, opts: OcclusionOptions): OcclusionResult {
  const [b, H, W, ch] = x.shape;
  const { top, left, height, width } = opts.box;
  if (!(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= H && left + width <= W)) {
    throw new Error(`occlusionResponse: box ${JSON.stringify(opts.box)} is not inside the ${H}×${W} input`);
  }
  const occluded = tf.tidy(() => {
    const rows = tf.range(0, H).reshape([1, H, 1, 1]);
    const cols = tf.range(0, W).reshape([1, 1, W, 1]);
    const inRows = tf.logicalAnd(tf.greaterEqual(rows, top), tf.less(rows, top + height));
    const inCols = tf.logicalAnd(tf.greaterEqual(cols, left), tf.less(cols, left + width));
    const inBox = tf.logicalAnd(inRows, inCols).tile([b, 1, 1, ch]); // [b, H, W, 3]
    return tf.where(inBox, tf.fill(x.shape, opts.value ?? 0), x) as tf.Tensor4D;
  });
  const a = stageMap(model, x, opts.map);
  const a2 = stageMap(model, occluded, opts.map);
  occluded.dispose();
  if (a.rank !== 4) {
    tf.dispose([a, a2]);
    throw new Error(`occlusionResponse: '${opts.map}' is [${a.shape}]; expected an NHWC map [b, h, w, C]`);
  }
  const response = tf.tidy(() => tf.sqrt(tf.mean(tf.square(tf.sub(a2, a)), 3))) as tf.Tensor3D; // [b, h, w]
  const [, h, w] = a.shape;
  tf.dispose([a, a2]);
  return {
    map: opts.map,
    response,
    boxOnMap: boxOnGrid(opts.box, H, W, h!, w!),
    mirrorOnMap: boxOnGrid(mirrorBox(opts.box), H, W, h!, w!),
  };
}
