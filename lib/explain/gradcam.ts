/**
 * Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
 * Localization", ICCV 2017, arXiv 1610.02391, Eq. 1–2) on any model of the zoo, at any of its stages.
 *
 *   A      = the stage's map through the contract's stage tap (lib/models/contract.ts `tapStage`)   [b, h, w, C]
 *   g      = ∂ y_c / ∂ A    (y_c: the logit of class c, before softmax, as in the paper)             [b, h, w, C]
 *   α_c    = mean_hw(g)     one weight per channel                                                   [b, C]
 *   map    = ReLU(Σ_C α_C · A_C)                                                                       [b, h, w]
 *   cam    = map upsampled (bilinear) to the input size, each image scaled to [0, 1]                  [b, H, W]
 *
 * How the gradient is taken: the tap replaces A with A + probe, where probe is a zero `tf.Variable` of A's
 * shape; `tf.variableGrads` of the class score with respect to the probe is ∂y_c/∂A (the forward pass is
 * unchanged since the probe is zero). A first pass stops at the stage (the tap throws) to learn A's shape.
 *
 * Which maps: every model's `stageNames` (each stage's output), and for Microscopic-Mamba also each stage's
 * map before its PatchMerging, `layers.<i>.blocks` (its inner tap, lib/models/microscopic-mamba/taps.ts):
 * `explainableMaps(model)` lists them in forward order. That matters at small inputs: at 32 px the stage
 * outputs are 8×8 (stem), 4×4, 2×2, 1×1, 1×1, and a 1×1 map says nothing about where; `layers.0.blocks` is
 * the last map at 8×8, the resolution of the first stage's scans.
 *
 * ViT stages are tokens [b, T, D]: the prefix tokens (class / distillation) are dropped and the rest reshaped to
 * the patch grid, whose aspect follows the input's.
 *
 * Microscopic-Mamba with the official PSFFN transpose (docs/architecture.md §Quirks Q1, `fixPsffnTranspose:
 * false`) adds an H/W-transposed term in every SS2D, so its stage maps after the stem mix the image's rows and
 * columns: the result carries a warning saying so (build with `fixPsffnTranspose: true` for aligned maps).
 */
import * as tf from '@tensorflow/tfjs';
import type { ClassifierModel } from '../models/contract';
import { MicroscopicMamba } from '../models/microscopic-mamba/model';
import type { InnerTapContext } from '../models/microscopic-mamba/taps';

export interface GradCamOptions {
  /** Map to explain (one of `explainableMaps(model)`; default: the last stage, the map the head pools). */
  stage?: string;
  /** Class to explain, one for all images or one per image (default: each image's predicted class). */
  classIndex?: number | number[];
  /** ViT: how many prefix tokens to drop (default: inferred from the token count and the input's aspect). */
  prefixTokens?: number;
}

export interface GradCamResult {
  stage: string;
  /** The class explained, per image. */
  classIndex: number[];
  /** Its logit, per image. */
  scores: number[];
  /** ReLU(Σ α·A) at the stage's resolution [b, h, w] (not normalised). The caller disposes it. */
  map: tf.Tensor3D;
  /** `map` upsampled to the input [b, H, W], each image divided by its maximum (all zero stays zero). The caller disposes it. */
  cam: tf.Tensor3D;
  /** Where the map does not line up with the input (e.g. Microscopic-Mamba's H/W transpose quirk). */
  warnings: string[];
}

/** Thrown by the shape pass's tap to stop the forward pass at the stage. */
class StopAtStage {
  constructor(
    readonly shape: number[],
    readonly map?: tf.Tensor,
  ) {}
}

/**
 * Patch grid [gh, gw] and prefix-token count of a ViT token map with T tokens for an H×W input: the largest
 * grid with the input's aspect that leaves 0–8 prefix tokens (`prefix` fixes the count).
 */
export function tokenGrid(tokens: number, height: number, width: number, prefix?: number): [number, number, number] {
  for (let p = prefix ?? 0; p <= (prefix ?? 8); p++) {
    const n = tokens - p;
    if (n < 1) break;
    const gh = Math.round(Math.sqrt((n * height) / width));
    const gw = gh > 0 ? n / gh : 0;
    if (gh > 0 && Number.isInteger(gw) && Math.abs(gh * width - gw * height) <= Math.max(height, width) / 8)
      return [gh, gw, p];
  }
  throw new Error(
    `gradCam: ${tokens} tokens do not form a patch grid for a ${height}×${width} input` +
      (prefix === undefined ? '' : ` after ${prefix} prefix token(s)`) +
      ' (pass prefixTokens)',
  );
}

/** Why maps of `stage` of `model` do not line up with the input (empty when they do). */
export function alignmentWarnings(model: ClassifierModel, stage: string): string[] {
  if (model instanceof MicroscopicMamba && model.config.psffn && !model.config.fixPsffnTranspose && stage !== 'stem') {
    return [
      `${stage}: this Microscopic-Mamba has the official PSFFN H/W transpose (docs/architecture.md §Quirks Q1, ` +
        'fixPsffnTranspose: false): every SS2D adds its output with rows and columns swapped, so maps after the ' +
        'stem mix each position (r, c) with its mirror (c, r) and do not exactly line up with the input ' +
        '(occlusionResponse measures the echo; a model built with fixPsffnTranspose: true has none)',
    ];
  }
  return [];
}

/**
 * The maps `gradCam` and `stageMap` can explain, in forward order: the model's `stageNames`, and for
 * Microscopic-Mamba each stage's map before its PatchMerging (`layers.<i>.blocks`, just before `layers.<i>`).
 */
export function explainableMaps(model: ClassifierModel): string[] {
  if (!(model instanceof MicroscopicMamba)) return [...model.stageNames];
  return model.stageNames.flatMap((s) => (s === 'stem' ? [s] : [`${s}.blocks`, s]));
}

/**
 * A forward context whose stage tap and inner tap both call `fn` for the map `name` (and pass every other
 * map through unchanged).
 */
function mapContext(name: string, fn: (t: tf.Tensor) => tf.Tensor): InnerTapContext {
  const tap = (s: string, t: tf.Tensor) => (s === name ? fn(t) : t);
  return { training: false, tap, tapInner: tap };
}

function checkMapName(model: ClassifierModel, name: string, where: string): void {
  const maps = explainableMaps(model);
  if (!maps.includes(name)) throw new Error(`${where}: unknown stage '${name}'; this model's maps: ${maps.join(', ')}`);
}

/**
 * The map `name` (one of `explainableMaps(model)`) for the batch `x` [b, H, W, 3], in inference mode; the
 * forward pass stops there. [b, h, w, C] (or ViT tokens [b, T, D]). The caller disposes it.
 */
export function stageMap(model: ClassifierModel, x: tf.Tensor4D, name: string): tf.Tensor {
  checkMapName(model, name, 'stageMap');
  model.checkInput(x.shape, x.dtype);
  try {
    tf.dispose(
      model.forward(
        x,
        mapContext(name, (t) => {
          throw new StopAtStage(t.shape, tf.keep(t.clone()));
        }),
      ),
    );
  } catch (e) {
    if (e instanceof StopAtStage) return e.map!;
    throw e;
  }
  throw new Error(`stageMap: the model never passed '${name}' to its tap`);
}

/** Grad-CAM of `model` on the batch `x` [b, H, W, 3] (inference mode: BatchNorm running stats, no DropPath). */
export function gradCam(model: ClassifierModel, x: tf.Tensor4D, opts: GradCamOptions = {}): GradCamResult {
  const stage = opts.stage ?? model.stageNames[model.stageNames.length - 1];
  checkMapName(model, stage, 'gradCam');
  model.checkInput(x.shape, x.dtype);
  const [b, H, W] = x.shape;

  // 1. The stage's shape: run until the tap sees it.
  let shape: number[] | undefined;
  try {
    tf.dispose(
      model.forward(
        x,
        mapContext(stage, (t) => {
          throw new StopAtStage(t.shape);
        }),
      ),
    );
  } catch (e) {
    if (!(e instanceof StopAtStage)) throw e;
    shape = e.shape;
  }
  if (!shape) throw new Error(`gradCam: the model never passed stage '${stage}' to its tap`);
  if (shape.length !== 4 && shape.length !== 3) {
    throw new Error(`gradCam: stage '${stage}' is [${shape}]; expected NHWC [b, h, w, C] or tokens [b, T, D]`);
  }

  // 2. Gradient of the class score w.r.t. the stage map, through a zero probe added at the tap.
  const stageShape: number[] = shape;
  const probe = tf.tidy(() => tf.variable(tf.zeros(stageShape), true, `gradcam_probe_${Date.now()}_${Math.random()}`));
  let activation: tf.Tensor | undefined;
  let logits: tf.Tensor2D | undefined;
  let classIndex: number[] = [];
  try {
    const { value, grads } = tf.variableGrads(() => {
      const ctx = mapContext(stage, (t) => {
        activation = tf.keep(t);
        return tf.add(t, probe);
      });
      const out = model.forward(x, ctx); // [b, K]
      logits = tf.keep(out);
      classIndex = resolveClasses(opts.classIndex, out, b);
      return tf.sum(tf.mul(out, tf.oneHot(tf.tensor1d(classIndex, 'int32'), out.shape[1]))) as tf.Scalar;
    }, [probe]);
    value.dispose();
    const grad = grads[probe.name];
    const scores = tf.tidy(() =>
      Array.from(tf.sum(tf.mul(logits!, tf.oneHot(tf.tensor1d(classIndex, 'int32'), logits!.shape[1])), 1).dataSync()),
    );
    const { map, cam } = tf.tidy(() => {
      let A = activation!;
      let G = grad;
      if (A.rank === 3) {
        // ViT tokens [b, T, D] → drop the prefix tokens → [b, gh, gw, D]
        const [gh, gw, p] = tokenGrid(A.shape[1]!, H, W, opts.prefixTokens);
        A = A.slice([0, p, 0], [-1, -1, -1]).reshape([b, gh, gw, A.shape[2]!]);
        G = G.slice([0, p, 0], [-1, -1, -1]).reshape([b, gh, gw, G.shape[2]!]);
      }
      const alpha = tf.mean(G, [1, 2], true); // [b, 1, 1, C]
      const m = tf.relu(tf.sum(tf.mul(alpha, A), 3)) as tf.Tensor3D; // [b, h, w]
      const up = tf.image.resizeBilinear(m.expandDims(3) as tf.Tensor4D, [H, W]).squeeze([3]); // [b, H, W]
      const peak = tf.max(up, [1, 2], true); // [b, 1, 1]
      const c = tf.div(up, tf.where(tf.greater(peak, 0), peak, tf.onesLike(peak))) as tf.Tensor3D;
      return { map: m, cam: c };
    });
    grad.dispose();
    const warnings = alignmentWarnings(model, stage);
    const empty = tf.tidy(() => Array.from(tf.max(map, [1, 2]).dataSync())).flatMap((peak, i) => (peak > 0 ? [] : [i]));
    if (empty.length > 0) {
      warnings.push(
        `${stage}: the map is all zero for image(s) ${empty.join(', ')}: no position of this stage raises the class ` +
          "score (at ViT's last block this is expected: the head reads only the class token, so the patch tokens " +
          'get no gradient; take an earlier stage)',
      );
    }
    return { stage, classIndex, scores, map, cam, warnings };
  } finally {
    probe.dispose();
    activation?.dispose();
    (logits as tf.Tensor | undefined)?.dispose();
  }
}

function resolveClasses(choice: number | number[] | undefined, logits: tf.Tensor2D, b: number): number[] {
  const k = logits.shape[1];
  const classes =
    choice === undefined
      ? tf.tidy(() => Array.from(tf.argMax(logits, 1).dataSync()))
      : Array.isArray(choice)
        ? choice
        : new Array<number>(b).fill(choice);
  if (classes.length !== b) throw new Error(`gradCam: classIndex has ${classes.length} entries for a batch of ${b}`);
  for (const c of classes) {
    if (!Number.isInteger(c) || c < 0 || c >= k)
      throw new Error(`gradCam: classIndex ${c} is not a class of 0..${k - 1}`);
  }
  return classes;
}
