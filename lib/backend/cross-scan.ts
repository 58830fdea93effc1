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
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { fusedKernelsAvailable } from './fused';
import { heapKernels, HeapExports, offsetOf } from './heap';

export const CROSS_SCAN_KERNEL = 'MsmCrossScan';
export const CROSS_MERGE_KERNEL = 'MsmCrossMerge';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** The heap kernels (the ops check `crossScanAvailable` first, so they are there). */
function heap(backend: BackendWasm, kernel: string): HeapExports {
  const k = heapKernels(backend);
  if (!k) throw new Error(`${kernel}: the wasm heap is not reachable (check crossScanAvailable() first)`);
  return k;
}

/**
 * inputs x [b, h, w, C]; attrs blocks → u [b, 4, c, l] with c = C (every direction reads all channels) or,
 * with `blocks`, c = C/4 (direction k reads channel block k: per-direction projections computed before
 * the permutation). Per batch entry: one SIMD transpose [l, C] → [C, l] gives the row-major direction (all
 * of it, or every block's rows in place); the column-major rows are [h, w] → [w, h] transposes of those,
 * the reversed ones reversed copies.
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
  const scratch = backend.makeOutput([l], 'float32'); // one column-major row
  const k = heap(backend, CROSS_SCAN_KERNEL);
  const [px, pu, ps] = [x, out, scratch].map((t) => offsetOf(backend, t));
  const uv = backend.typedArrayFromHeap(out) as Float32Array; // after every makeOutput: the heap may grow
  const sv = backend.typedArrayFromHeap(scratch) as Float32Array;
  const el = c * l; // floats per direction
  for (let bi = 0; bi < b; bi++) {
    const ub = bi * 4 * el;
    // row-major: [l, C] → [C, l]; with blocks that is [4, c, l], every direction's rows in row-major order
    k.transpose2d(px + 4 * bi * l * C, pu + 4 * ub, l, C);
    for (let ci = 0; ci < c; ci++) {
      const r0 = ub + ci * l; // direction 0's row (with blocks: rows of direction k sit at r0 + k·el)
      const r1 = r0 + el;
      const r2 = r0 + 2 * el;
      const r3 = r0 + 3 * el;
      // column-major: the row as [h, w] → [w, h]
      k.transpose2d(pu + 4 * (blocks ? r1 : r0), ps, h, w);
      uv.set(sv, r1);
      if (blocks) {
        // direction 3 from its own block: column-major, then reversed
        k.transpose2d(pu + 4 * r3, ps, h, w);
        uv.set(sv, r3);
      } else {
        uv.copyWithin(r2, r0, r0 + l);
        uv.copyWithin(r3, r1, r1 + l);
      }
      uv.subarray(r2, r2 + l).reverse();
      uv.subarray(r3, r3 + l).reverse();
    }
  }
  backend.disposeData(scratch.dataId);
  return out;
}

/**
 * inputs y [b, 4, c, l]; attrs h, w, blocks → [b, h, w, c], the sum over the directions in the order
 * ((y0 + y2) + y1) + y3 in f32 (the reference's addN), or with `blocks` [b, h, w, 4c], direction k into
 * channel block k (crossScan's gradient in that mode). Per batch entry the directions are brought back to
 * row-major rows in a channels-first scratch — reversed rows read backwards; a column-major row is a
 * [w, h] → [h, w] transpose (and the reversed column-major row is that transpose read backwards, since
 * l − 1 − (j·h + i) = (w − 1 − j)·h + (h − 1 − i)) — which one SIMD transpose turns channels-last.
 */
export function crossMergeKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const y = args.inputs.y as Info;
  const { h, w, blocks } = args.attrs as { h: number; w: number; blocks?: boolean };
  const [b, , c, l] = y.shape;
  const C = blocks ? 4 * c : c;
  const out = backend.makeOutput([b, h, w, C], 'float32');
  if (b * c * l === 0) return out;
  const acc = backend.makeOutput([C, l], 'float32'); // channels-first, row-major positions
  const rows = backend.makeOutput([2, l], 'float32'); // directions 1 and 3 transposed
  const k = heap(backend, CROSS_MERGE_KERNEL);
  const [py, po, pa, pr] = [y, out, acc, rows].map((t) => offsetOf(backend, t));
  // One view of the whole heap (after every makeOutput), indexed in floats: no per-row subarrays.
  const H = new Float32Array((backend.typedArrayFromHeap(y) as Float32Array).buffer);
  const [fy, fa, t1, t3] = [py / 4, pa / 4, pr / 4, pr / 4 + l];
  const f = Math.fround;
  const el = c * l;
  for (let bi = 0; bi < b; bi++) {
    for (let ci = 0; ci < c; ci++) {
      const y0 = fy + bi * 4 * el + ci * l;
      const [y2, y3] = [y0 + 2 * el, y0 + 3 * el];
      k.transpose2d(4 * (y0 + el), 4 * t1, w, h); // direction 1 in row-major order
      k.transpose2d(4 * y3, 4 * t3, w, h); // direction 3 in reversed row-major order
      const last = y2 + l - 1;
      if (blocks) {
        const [a0, a1, a2, a3] = [0, 1, 2, 3].map((d) => fa + (d * c + ci) * l);
        H.copyWithin(a0, y0, y0 + l);
        H.copyWithin(a1, t1, t1 + l);
        for (let t = 0; t < l; t++) H[a2 + t] = H[last - t];
        for (let t = 0; t < l; t++) H[a3 + t] = H[t3 + l - 1 - t];
      } else {
        const a0 = fa + ci * l;
        for (let t = 0; t < l; t++) H[a0 + t] = f(f(f(H[y0 + t] + H[last - t]) + H[t1 + t]) + H[t3 + l - 1 - t]);
      }
    }
    k.transpose2d(pa, po + 4 * bi * l * C, C, l);
  }
  backend.disposeData(acc.dataId);
  backend.disposeData(rows.dataId);
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
