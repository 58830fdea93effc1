/**
 * SS2D's cross-scan and cross-merge (lib/ops/selective-scan/index.ts `crossScanSSM`; official
 * `CrossScan` / `CrossMerge`, microscopicmamba.py L609–683 via VMamba's csms6s) as one wasm kernel each.
 *
 * Shapes: b batch   h, w map size   l = h·w   e channels   K = 4 directions
 *   position p = i·w + j (row-major); direction k reads the positions in the order
 *     k = 0  row-major          t = p
 *     k = 1  column-major       t = j·h + i
 *     k = 2  row-major reversed t = l − 1 − p
 *     k = 3  column-major rev.  t = l − 1 − (j·h + i)
 *
 *   crossScan(x [b, h, w, e])     → u [b, K, e, l],   u[b, k, c, t_k(p)] = x[b, p, c]   (the scan's channels-first layout)
 *   crossMerge(y [b, K, e, l])    → o [b, h, w, e],   o[b, p, c] = Σ_k y[b, k, c, t_k(p)]
 *   with `blocks`: x [b, h, w, K·c] → [b, K, c, l], direction k permuting channel block k (a per-direction
 *   projection computed before the permutation: it is position-wise, so it commutes with it), and back.
 *
 * Each is the other's gradient (a copy to four places ↔ the sum of the four). As tf ops (`crossScanReference`,
 * `crossMergeReference`: the tests' reference and what the unfused path computes) they are a transpose, two
 * reverses, a stack and a transpose forward, and a transpose, an unstack, two reverses, two transposes and an
 * addN back — each a pass over the map with tfjs' per-call bookkeeping, and about as many again for their
 * gradients. Here one pass each, a plain loop over the heap (a gather/scatter with no arithmetic: the
 * strided side of it, not the loop, is what it costs). crossScan is an exact copy; crossMerge adds the four
 * terms in the order y0 + y2 + y1 + y3, as the reference's addN. MSM_FUSED_KERNELS=0 keeps the tf ops (./fused.ts).
 * Threads (./heap-threads.ts): whole images per share (each with its own scratch maps), so the result is
 * the same for any thread count.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { fusedKernelsAvailable } from './fused';
import { heapKernels, offsetOf } from './heap';
import { runOnHeap, sharesFor } from './heap-threads';
import { splitRange, type Calls } from './worker-pool';

export const CROSS_SCAN_KERNEL = 'MsmCrossScan';
export const CROSS_MERGE_KERNEL = 'MsmCrossMerge';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** Checks that the heap kernels are there (the ops check `crossScanAvailable` first). */
function requireHeap(backend: BackendWasm, kernel: string): void {
  if (!heapKernels(backend))
    throw new Error(`${kernel}: the wasm heap is not reachable (check crossScanAvailable() first)`);
}

/** A worker's call list holds this many calls at most (its job buffer: 4096 numbers, 8 per call here). */
const MAX_CALLS_PER_SHARE = 400;

/**
 * Runs the call lists of images 0..b−1 (`callsOf(image, share)`) over the heap threads, whole images per
 * share, in pool calls whose shares fit a worker's call list. `work`: floats moved in all; `perImage`: calls
 * per image (`moveDirection` makes 2 + 2·w for the four directions).
 */
function runImages(
  backend: BackendWasm,
  b: number,
  work: number,
  perImage: number,
  callsOf: (bi: number, share: number) => Calls,
): void {
  const threads = sharesFor(work);
  const imagesPerShare = Math.max(1, Math.floor(MAX_CALLS_PER_SHARE / perImage));
  for (let g0 = 0; g0 < b; g0 += imagesPerShare * threads) {
    const g1 = Math.min(b, g0 + imagesPerShare * threads);
    const shares = splitRange(g1 - g0, threads).map(([i0, i1], w) =>
      Array.from({ length: i1 - i0 }, (_, j) => callsOf(g0 + i0 + j, w)).flat(),
    );
    runOnHeap(heapKernels, backend, shares);
  }
}

/**
 * Moves one direction between a row-major map (rows = positions, `stride` floats apart, c channels each:
 * the whole map or a channel block of it) and the direction's channels-first block [c, l] (steps in the
 * direction's order), with the strided SIMD transpose `transpose2ds` (negative strides walk backwards):
 * directions 0 and 2 in one call, 1 and 3 in one call per map column j (its h positions are h consecutive
 * steps). toBlock: map → block (crossScan), else block → map (crossMerge). Byte addresses; h·w = l.
 */
function moveDirection(
  calls: Calls,
  dir: number,
  map: number,
  stride: number,
  block: number,
  c: number,
  h: number,
  w: number,
  toBlock: boolean,
): void {
  const l = h * w;
  // mapRow: the map row of the first of `rows` steps starting at step t0, mapStep: between consecutive steps
  const move = (mapRow: number, mapStep: number, t0: number, rows: number) =>
    calls.push([
      'transpose2ds',
      toBlock
        ? [map + 4 * mapRow * stride, block + 4 * t0, rows, c, mapStep * stride, l]
        : [block + 4 * t0, map + 4 * mapRow * stride, c, rows, l, mapStep * stride],
    ]);
  if (dir === 0) move(0, 1, 0, l);
  else if (dir === 2)
    move(l - 1, -1, 0, l); // step t at position l − 1 − t
  else {
    for (let j = 0; j < w; j++) {
      if (dir === 1)
        move(j, w, j * h, h); // steps j·h + i at positions i·w + j
      else move((h - 1) * w + j, -w, l - (j + 1) * h, h); // steps l − 1 − (j·h + i), i from h − 1 down
    }
  }
}

/**
 * inputs x [b, h, w, C]; attrs blocks → u [b, 4, c, l] with c = C (every direction reads all channels) or,
 * with `blocks`, c = C/4 (direction k reads channel block k: per-direction projections computed before
 * the permutation). One strided SIMD transpose pass per direction (`moveDirection`).
 */
export function crossScanKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const x = args.inputs.x as Info;
  const blocks = Boolean((args.attrs as { blocks?: boolean } | undefined)?.blocks);
  const [b, h, w, C] = x.shape;
  const c = blocks ? C / 4 : C;
  const l = h * w;
  const out = backend.makeOutput([b, 4, c, l], 'float32');
  if (b * c * l === 0) return out;
  requireHeap(backend, CROSS_SCAN_KERNEL);
  const [px, pu] = [x, out].map((t) => offsetOf(backend, t));
  runImages(backend, b, b * 4 * c * l, 2 + 2 * w, (bi) => {
    const calls: Calls = [];
    for (let dir = 0; dir < 4; dir++) {
      const map = px + 4 * (bi * l * C + (blocks ? dir * c : 0));
      moveDirection(calls, dir, map, C, pu + 4 * (bi * 4 + dir) * c * l, c, h, w, true);
    }
    return calls;
  });
  return out;
}

/**
 * inputs y [b, 4, c, l]; attrs h, w, blocks → [b, h, w, c], the sum over the directions in the order
 * ((y0 + y2) + y1) + y3 in f32 (the reference's addN), or with `blocks` [b, h, w, 4c], direction k into
 * channel block k (crossScan's gradient in that mode). One strided SIMD transpose pass per direction
 * (`moveDirection`), into the output or, to be summed (`sum4`, SIMD), into four row-major scratch maps.
 */
export function crossMergeKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const y = args.inputs.y as Info;
  const { h, w, blocks } = args.attrs as { h: number; w: number; blocks?: boolean };
  const [b, , c, l] = y.shape;
  const C = blocks ? 4 * c : c;
  const out = backend.makeOutput([b, h, w, C], 'float32');
  if (b * c * l === 0) return out;
  requireHeap(backend, CROSS_MERGE_KERNEL);
  const lc = l * c;
  const work = b * 4 * lc;
  // the four directions' maps, row-major, one set per share (scratch)
  const maps = blocks ? undefined : backend.makeOutput([sharesFor(work), 4, l, c], 'float32');
  const [py, po] = [y, out].map((t) => offsetOf(backend, t));
  runImages(backend, b, work, 2 + 2 * w + (blocks ? 0 : 1), (bi, share) => {
    const calls: Calls = [];
    const pm = maps ? offsetOf(backend, maps) + 16 * share * lc : 0;
    for (let dir = 0; dir < 4; dir++) {
      const block = py + 4 * (bi * 4 + dir) * lc;
      if (blocks) moveDirection(calls, dir, po + 4 * (bi * l * C + dir * c), C, block, c, h, w, false);
      else moveDirection(calls, dir, pm + 4 * dir * lc, c, block, c, h, w, false);
    }
    if (!blocks) calls.push(['sum4', [pm, pm + 8 * lc, pm + 4 * lc, pm + 12 * lc, po + 4 * bi * lc, lc]]); // ((y0 + y2) + y1) + y3
    return calls;
  });
  if (maps) backend.disposeData(maps.dataId);
  return out;
}

/** True where the fused cross-scan / cross-merge run for x (./fused.ts: float32, wasm, the switch on). */
export function crossScanAvailable(x: tf.Tensor): boolean {
  return x.rank === 4 && fusedKernelsAvailable(x, CROSS_SCAN_KERNEL);
}

const scanOp = (x: tf.Tensor, blocks: boolean): tf.Tensor =>
  tf.engine().runKernel(CROSS_SCAN_KERNEL, { x }, { blocks }) as tf.Tensor;
const mergeOp = (y: tf.Tensor, h: number, w: number, blocks: boolean): tf.Tensor =>
  tf.engine().runKernel(CROSS_MERGE_KERNEL, { y }, { h, w, blocks }) as tf.Tensor;

/**
 * x [b, h, w, C] → [b, 4, C, l], or with `blocks` → [b, 4, C/4, l] (direction k from channel block k), as
 * one kernel each way (see the header); check `crossScanAvailable` first.
 */
export function fusedCrossScan(x: tf.Tensor4D, blocks = false): tf.Tensor4D {
  const [, h, w] = x.shape;
  const f = tf.customGrad((xi) => ({
    value: scanOp(xi as tf.Tensor, blocks),
    gradFunc: (dy: tf.Tensor) => mergeOp(dy, h, w, blocks),
  }));
  return f(x) as tf.Tensor4D;
}

/** y [b, 4, e, l] → [b, h, w, e] (l = h·w), the sum of the four directions, as one kernel each way. */
export function fusedCrossMerge(y: tf.Tensor4D, h: number, w: number): tf.Tensor4D {
  const f = tf.customGrad((yi) => ({
    value: mergeOp(yi as tf.Tensor, h, w, false),
    gradFunc: (dy: tf.Tensor) => scanOp(dy, false),
  }));
  return f(y) as tf.Tensor4D;
}

/** crossScan as tf ops (the reference of the tests). */
export function crossScanReference(x: tf.Tensor4D, blocks = false): tf.Tensor4D {
  const [b, h, w, C] = x.shape;
  const l = h * w;
  return tf.tidy(() => {
    const rowMajor = x.reshape([b, l, C]); // t = p
    const colMajor = tf.transpose(x, [0, 2, 1, 3]).reshape([b, l, C]); // t = j·h + i
    let dirs = [rowMajor, colMajor, tf.reverse(rowMajor, 1), tf.reverse(colMajor, 1)]; // 4 × [b, l, C]
    if (blocks) dirs = dirs.map((d, k) => tf.slice(d, [0, 0, (k * C) / 4], [b, l, C / 4])); // 4 × [b, l, C/4]
    return tf.transpose(tf.stack(dirs, 1), [0, 1, 3, 2]) as tf.Tensor4D; // [b, 4, c, l]
  });
}

/** crossMerge as tf ops (the reference of the tests). */
export function crossMergeReference(y: tf.Tensor4D, h: number, w: number): tf.Tensor4D {
  const [b, , e] = y.shape;
  return tf.tidy(() => {
    const ys = tf.unstack(tf.transpose(y, [1, 0, 3, 2])); // 4 × [b, l, e]
    const unT = (t: tf.Tensor) => tf.transpose(t.reshape([b, w, h, e]), [0, 2, 1, 3]); // col-major → [b, h, w, e]
    const y0 = ys[0].reshape([b, h, w, e]);
    const y2 = tf.reverse(ys[2], 1).reshape([b, h, w, e]);
    return tf.addN([y0, y2, unT(ys[1]), unT(tf.reverse(ys[3], 1))]) as tf.Tensor4D;
  });
}
