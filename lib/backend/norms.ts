/**
 * Fused LayerNorm and BatchNorm (training mode) on wasm: ONE kernel call forward and one backward,
 * instead of the ~10 elementwise and reduction kernels each way that the tf-op formulation
 * (lib/nn/layers.ts) runs — each of those pays tfjs' per-call bookkeeping and a full pass over the
 * tensor. Here each kernel makes two or three SIMD passes over the wasm heap in place (./simd/norms.ts).
 *
 *   LayerNorm over the last axis (rows r, channels c):
 *     μ_r = mean_c x,  σ²_r = mean_c (x − μ_r)²,  ρ_r = 1/√(σ²_r + eps),  x̂ = (x − μ_r)·ρ_r,  y = x̂·w + b
 *     backward, with g = dy·w:  dx = ρ_r·(g − mean_c g − x̂·mean_c(g·x̂)),  dw = Σ_r dy·x̂,  db = Σ_r dy
 *   BatchNorm (training) over every axis but the last (rows n = b·h·w, channels c):
 *     μ_c = mean_n x,  σ²_c = mean_n (x − μ_c)² (biased),  ρ_c, x̂ as above,  y = x̂·w + b = x·(w·ρ) + (b − μ·w·ρ)
 *     backward:  dx = w·ρ·(dy − mean_n dy − x̂·mean_n(dy·x̂)) = a·dy + k·(x − μ) + m per channel,
 *                dw = Σ_n dy·x̂,  db = Σ_n dy
 *
 * NOT bit-identical to the tf ops (other summation orders, fewer roundings): the tests hold them to ≤ 1e-5
 * relative forward and ≤ 1e-4 relative gradients against the unfused ops, and to bit-identical repeats.
 * Other backends, other dtypes, a heap without SIMD, and MSM_FUSED_KERNELS=0 (./fused.ts) keep the tf ops.
 * Threads (./heap-threads.ts): the row-wise passes (LayerNorm forward, BatchNorm's `affine` and
 * `bngradapply`) are split by rows over the backend's threads, BatchNorm's sums over rows (`colsums`,
 * `bngradsums`) by channels — no result depends on the split; LayerNorm's backward (its dw / db sum
 * over rows and channels at once) runs on one thread.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { fusedKernelsAvailable } from './fused';
import { heapKernels, HeapExports, offsetOf } from './heap';
import { rowShares, runOnHeap, sharesFor, splitRange } from './heap-threads';
import type { Calls } from './worker-pool';

export const LAYER_NORM_KERNEL = 'MsmLayerNorm';
export const LAYER_NORM_GRAD_KERNEL = 'MsmLayerNormGrad';
export const BATCH_NORM_KERNEL = 'MsmBatchNorm';
export const BATCH_NORM_GRAD_KERNEL = 'MsmBatchNormGrad';
export const BATCH_NORM_INFERENCE_KERNEL = 'MsmBatchNormInference';
export const LAYER_NORM_GATE_KERNEL = 'MsmLayerNormGate';
export const LAYER_NORM_GATE_GRAD_KERNEL = 'MsmLayerNormGateGrad';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** y = x·a + b per channel (`affine`), rows split over the backend's threads. */
function affineRows(backend: BackendWasm, x: number, y: number, n: number, c: number, a: number, b: number): void {
  runOnHeap(
    heapKernels,
    backend,
    rowShares(n, c, (r0, r1) => ['affine', [x + 4 * r0 * c, y + 4 * r0 * c, r1 - r0, c, a, b]]),
  );
}

/** A sum over rows per channel (`colsums`, `bngradsums`), channels split in blocks of 4 over the backend's threads. */
function columnSums(
  backend: BackendWasm,
  fn: 'colsums' | 'bngradsums',
  n: number,
  c: number,
  args: (c0: number, c1: number) => number[],
): void {
  runOnHeap(
    heapKernels,
    backend,
    splitRange(c, sharesFor(n * c), 4).map(([c0, c1]): Calls => [[fn, args(c0, c1)]]),
  );
}

/** x as [rows, channels]: the last axis is the channel axis. */
function rowsAndChannels(x: Info): [number, number] {
  const c = x.shape[x.shape.length - 1] ?? 1;
  return [c === 0 ? 0 : tf.util.sizeFromShape(x.shape) / c, c];
}

/** The heap kernels (the ops check `fusedNormsAvailable` first, so they are there). */
function heap(backend: BackendWasm, kernel: string): HeapExports {
  const k = heapKernels(backend);
  if (!k) throw new Error(`${kernel}: the wasm heap is not reachable (check fusedNormsAvailable() first)`);
  return k;
}

/** Float32 views of `infos` on the heap, taken after every output is allocated (allocation may grow the heap). */
function views(backend: BackendWasm, infos: Info[]): Float32Array[] {
  return infos.map((t) => backend.typedArrayFromHeap(t) as Float32Array);
}

/** inputs x [..., c], weight [c], bias [c]; attrs eps → [y [..., c], mean [rows], rstd [rows]]. */
export function layerNormKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { x, weight, bias } = args.inputs as Record<string, Info>;
  const eps = Number((args.attrs as { eps: number }).eps);
  const [rows, c] = rowsAndChannels(x);
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput([rows], 'float32')];
  outs.push(backend.makeOutput([rows], 'float32'));
  const [px, pw, pb, py, pm, pr] = [x, weight, bias, ...outs].map((t) => offsetOf(backend, t));
  if (rows > 0) heap(backend, LAYER_NORM_KERNEL); // reachable (else a clear error)
  const shares = rowShares(rows, c, (r0, r1) => [
    'lnforward',
    [px + 4 * r0 * c, py + 4 * r0 * c, r1 - r0, c, pw, pb, pm + 4 * r0, pr + 4 * r0, c, eps],
  ]);
  if (rows > 0) runOnHeap(heapKernels, backend, shares);
  return outs;
}

/** inputs dy, x [..., c], weight [c], mean, rstd [rows] → [dx [..., c], dw [c], db [c]]. */
export function layerNormGradKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { dy, x, weight, mean, rstd } = args.inputs as Record<string, Info>;
  const [rows, c] = rowsAndChannels(x);
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput([c], 'float32')];
  outs.push(backend.makeOutput([c], 'float32'));
  const [pg, px, pw, pm, pr, pdx, pdw, pdb] = [dy, x, weight, mean, rstd, ...outs].map((t) => offsetOf(backend, t));
  heap(backend, LAYER_NORM_GRAD_KERNEL).lnbackward(pg, px, pdx, rows, c, pw, pm, pr, pdw, pdb, c);
  return outs;
}

/**
 * inputs x [..., c], weight [c], bias [c]; attrs eps → [y [..., c], mean [c], variance [c] (biased), rstd [c]]:
 * Σx and Σ(x − μ)² by `colsums`, the per-channel constants here, y by `affine`.
 */
export function batchNormKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { x, weight, bias } = args.inputs as Record<string, Info>;
  const eps = Number((args.attrs as { eps: number }).eps);
  const [n, c] = rowsAndChannels(x);
  heap(backend, BATCH_NORM_KERNEL); // reachable (else a clear error)
  const outs = [backend.makeOutput(x.shape, 'float32')];
  for (let i = 0; i < 3; i++) outs.push(backend.makeOutput([c], 'float32'));
  const [y, mean, variance, rstd] = outs;
  const scratch = [backend.makeOutput([c], 'float32'), backend.makeOutput([c], 'float32')]; // w·ρ, b − μ·w·ρ
  const p = (t: Info) => offsetOf(backend, t);
  columnSums(backend, 'colsums', n, c, (c0, c1) => [
    p(x) + 4 * c0,
    n,
    c1 - c0,
    p(mean) + 4 * c0,
    p(mean) + 4 * c0,
    0,
    c,
  ]); // Σ_n x
  const [mv, vv, rv, wv, bv, sv, hv] = views(backend, [mean, variance, rstd, weight, bias, ...scratch]);
  for (let j = 0; j < c; j++) mv[j] /= n;
  // Σ_n (x − μ)²
  columnSums(backend, 'colsums', n, c, (c0, c1) => [
    p(x) + 4 * c0,
    n,
    c1 - c0,
    p(mean) + 4 * c0,
    p(variance) + 4 * c0,
    1,
    c,
  ]);
  for (let j = 0; j < c; j++) {
    vv[j] /= n;
    rv[j] = 1 / Math.sqrt(vv[j] + eps);
    sv[j] = wv[j] * rv[j];
    hv[j] = bv[j] - mv[j] * sv[j];
  }
  affineRows(backend, p(x), p(y), n, c, p(scratch[0]), p(scratch[1]));
  for (const t of scratch) backend.disposeData(t.dataId);
  return outs;
}

/**
 * inputs dy, x [..., c], weight, mean, rstd [c] → [dx [..., c], dw [c], db [c]]: Σdy and Σdy·(x − μ) by
 * `bngradsums`, the per-channel constants a, k, m here, dx by `bngradapply`.
 */
export function batchNormGradKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { dy, x, weight, mean, rstd } = args.inputs as Record<string, Info>;
  const [n, c] = rowsAndChannels(x);
  heap(backend, BATCH_NORM_GRAD_KERNEL); // reachable (else a clear error)
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput([c], 'float32')];
  outs.push(backend.makeOutput([c], 'float32'));
  const [dx, dw, db] = outs;
  const scratch = [0, 1, 2].map(() => backend.makeOutput([c], 'float32')); // a, k, m
  const p = (t: Info) => offsetOf(backend, t);
  // db = Σ dy; dw = Σ dy·(x − μ) for now
  columnSums(backend, 'bngradsums', n, c, (c0, c1) => {
    const col = (t: Info) => p(t) + 4 * c0;
    return [col(dy), col(x), n, c1 - c0, col(mean), col(db), col(dw), c];
  });
  const [wv, rv, dwv, dbv, av, kv, mv] = views(backend, [weight, rstd, dw, db, ...scratch]);
  for (let j = 0; j < c; j++) {
    const rho = rv[j];
    const sdyx = dwv[j] * rho; // Σ dy·x̂
    av[j] = wv[j] * rho;
    kv[j] = (-av[j] * rho * sdyx) / n;
    mv[j] = (-av[j] * dbv[j]) / n;
    dwv[j] = sdyx;
  }
  const [pa, pk, pm] = [p(scratch[0]), p(scratch[1]), p(scratch[2])];
  const rowsAt = (t: Info, r0: number) => p(t) + 4 * r0 * c;
  runOnHeap(
    heapKernels,
    backend,
    rowShares(n, c, (r0, r1) => [
      'bngradapply',
      [rowsAt(dy, r0), rowsAt(x, r0), rowsAt(dx, r0), r1 - r0, c, pa, pk, p(mean), pm],
    ]),
  );
  for (const t of scratch) backend.disposeData(t.dataId);
  return outs;
}

/**
 * inputs x [..., c], weight, bias, mean, variance [c] (the running statistics); attrs eps → y [..., c]:
 * BatchNorm in eval mode, y = x·s + (b − μ·s) with s = w/√(σ² + eps) computed here per channel, x by `affine`.
 */
export function batchNormInferenceKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x, weight, bias, mean, variance } = args.inputs as Record<string, Info>;
  const eps = Number((args.attrs as { eps: number }).eps);
  const [n, c] = rowsAndChannels(x);
  heap(backend, BATCH_NORM_INFERENCE_KERNEL); // reachable (else a clear error)
  const y = backend.makeOutput(x.shape, 'float32');
  const scratch = [backend.makeOutput([c], 'float32'), backend.makeOutput([c], 'float32')]; // s, b − μ·s
  const [wv, bv, mv, vv, sv, hv] = views(backend, [weight, bias, mean, variance, ...scratch]);
  for (let j = 0; j < c; j++) {
    sv[j] = wv[j] / Math.sqrt(vv[j] + eps);
    hv[j] = bv[j] - mv[j] * sv[j];
  }
  const p = (t: Info) => offsetOf(backend, t);
  if (n > 0) affineRows(backend, p(x), p(y), n, c, p(scratch[0]), p(scratch[1]));
  for (const t of scratch) backend.disposeData(t.dataId);
  return y;
}

// ---------------------------------------------------------------------------------------------------
// The ops (used by lib/nn/layers.ts)
// ---------------------------------------------------------------------------------------------------

/** True where the fused norms run for x (./fused.ts: float32, wasm, MSM_FUSED_KERNELS not 0). */
export function fusedNormsAvailable(x: tf.Tensor): boolean {
  return fusedKernelsAvailable(x, LAYER_NORM_KERNEL);
}

/** LayerNorm over the last axis as one kernel each way (see the header); check `fusedNormsAvailable` first. */
export function fusedLayerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  const f = tf.customGrad((xi, wi, bi, save) => {
    const [y, mean, rstd] = tf
      .engine()
      .runKernel(
        LAYER_NORM_KERNEL,
        { x: xi as tf.Tensor, weight: wi as tf.Tensor, bias: bi as tf.Tensor },
        { eps },
      ) as tf.Tensor[];
    (save as tf.GradSaveFunc)([xi as tf.Tensor, wi as tf.Tensor, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, ms, rs] = saved;
        return tf
          .engine()
          .runKernel(LAYER_NORM_GRAD_KERNEL, { dy, x: xs, weight: ws, mean: ms, rstd: rs }) as tf.Tensor[];
      },
    };
  });
  return f(x, weight, bias);
}

/**
 * BatchNorm with batch statistics as one kernel each way (see the header). `onBatchMoments` gets the batch
 * mean and biased variance [c] while they exist (they are freed right after: update running statistics
 * there; they carry no gradient).
 */
export function fusedBatchNorm(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  eps: number,
  onBatchMoments: (mean: tf.Tensor, variance: tf.Tensor) => void,
): tf.Tensor {
  const f = tf.customGrad((xi, wi, bi, save) => {
    const [y, mean, variance, rstd] = tf
      .engine()
      .runKernel(
        BATCH_NORM_KERNEL,
        { x: xi as tf.Tensor, weight: wi as tf.Tensor, bias: bi as tf.Tensor },
        { eps },
      ) as tf.Tensor[];
    onBatchMoments(mean, variance);
    (save as tf.GradSaveFunc)([xi as tf.Tensor, wi as tf.Tensor, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws, ms, rs] = saved;
        return tf
          .engine()
          .runKernel(BATCH_NORM_GRAD_KERNEL, { dy, x: xs, weight: ws, mean: ms, rstd: rs }) as tf.Tensor[];
      },
    };
  });
  return f(x, weight, bias);
}

/**
 * BatchNorm in eval mode (running statistics) as one kernel (see batchNormInferenceKernel). Its gradient,
 * needed only when a model is differentiated in eval mode (e.g. Grad-CAM), is written with tf ops.
 */
export function fusedBatchNormInference(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  runningMean: tf.Tensor,
  runningVar: tf.Tensor,
  eps: number,
): tf.Tensor {
  const f = tf.customGrad((xi, wi, bi, save) => {
    const inputs = {
      x: xi as tf.Tensor,
      weight: wi as tf.Tensor,
      bias: bi as tf.Tensor,
      mean: runningMean,
      variance: runningVar,
    };
    const y = tf.engine().runKernel(BATCH_NORM_INFERENCE_KERNEL, inputs, { eps }) as tf.Tensor;
    (save as tf.GradSaveFunc)([xi as tf.Tensor, wi as tf.Tensor]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) => {
        const axes = xs.shape.slice(0, -1).map((_, i) => i); // all but channels
        const rstd = tf.rsqrt(tf.add(runningVar, eps)); // [c]
        const dx = tf.mul(dy, tf.mul(ws, rstd)); // [..., c]
        const dw = tf.sum(tf.mul(dy, tf.mul(tf.sub(xs, runningMean), rstd)), axes); // [c]
        return [dx, dw, tf.sum(dy, axes)];
      },
    };
  });
  return f(x, weight, bias);
}

// ---------------------------------------------------------------------------------------------------
// LayerNorm gated by SiLU (SS2D's out_norm(y) ⊙ SiLU(z)): one kernel each way
// ---------------------------------------------------------------------------------------------------

/**
 * inputs x, z [..., c], weight, bias [c]; attrs eps → [y, n = LN(x), s = σ(z) [..., c], mean, rstd [rows]]:
 * `lnforward` into n, then `silugate`: y = n·(z·s).
 */
export function layerNormGateKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { x, weight, bias, z } = args.inputs as Record<string, Info>;
  const eps = Number((args.attrs as { eps: number }).eps);
  const [rows, c] = rowsAndChannels(x);
  const outs = [0, 1, 2].map(() => backend.makeOutput(x.shape, 'float32'));
  outs.push(backend.makeOutput([rows], 'float32'), backend.makeOutput([rows], 'float32'));
  const [py, pn, ps, pm, pr] = outs.map((t) => offsetOf(backend, t));
  const [px, pw, pb, pz] = [x, weight, bias, z].map((t) => offsetOf(backend, t));
  if (rows > 0) {
    const k = heap(backend, LAYER_NORM_GATE_KERNEL);
    k.lnforward(px, pn, rows, c, pw, pb, pm, pr, c, eps);
    k.silugate(pn, pz, py, ps, rows * c);
  }
  return outs;
}

/**
 * inputs dy, x, z, n, s [..., c], weight [c], mean, rstd [rows] → [dx, dz [..., c], dw, db [c]]:
 * `silugategrad` (dn = dy·z·s, dz) into a scratch dn, then `lnbackward` of dn.
 */
export function layerNormGateGradKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { dy, x, z, n, s, weight, mean, rstd } = args.inputs as Record<string, Info>;
  const [rows, c] = rowsAndChannels(x);
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput(x.shape, 'float32')];
  outs.push(backend.makeOutput([c], 'float32'), backend.makeOutput([c], 'float32'));
  const dn = backend.makeOutput(x.shape, 'float32');
  const p = (t: Info) => offsetOf(backend, t);
  const k = heap(backend, LAYER_NORM_GATE_GRAD_KERNEL);
  k.silugategrad(p(dy), p(n), p(z), p(s), p(dn), p(outs[1]), rows * c);
  k.lnbackward(p(dn), p(x), p(outs[0]), rows, c, p(weight), p(mean), p(rstd), p(outs[2]), p(outs[3]), c);
  backend.disposeData(dn.dataId);
  return outs;
}

/**
 * LN(x)·w + b ⊙ SiLU(z) (LayerNorm over the last axis, then gated) as one kernel each way; check
 * `fusedKernelsAvailable(x, LAYER_NORM_GATE_KERNEL)` first. The tf-op version is lib/nn `layerNormSiluGate`'s.
 */
export function fusedLayerNormGate(
  x: tf.Tensor,
  weight: tf.Tensor,
  bias: tf.Tensor,
  z: tf.Tensor,
  eps: number,
): tf.Tensor {
  const f = tf.customGrad((xi, wi, bi, zi, save) => {
    const inputs = { x: xi as tf.Tensor, weight: wi as tf.Tensor, bias: bi as tf.Tensor, z: zi as tf.Tensor };
    const [y, n, s, mean, rstd] = tf.engine().runKernel(LAYER_NORM_GATE_KERNEL, inputs, { eps }) as tf.Tensor[];
    (save as tf.GradSaveFunc)([inputs.x, inputs.z, n, s, inputs.weight, mean, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, zs, ns, ss, ws, ms, rs] = saved;
        const [dx, dz, dw, db] = tf.engine().runKernel(LAYER_NORM_GATE_GRAD_KERNEL, {
          dy,
          x: xs,
          z: zs,
          n: ns,
          s: ss,
          weight: ws,
          mean: ms,
          rstd: rs,
        }) as tf.Tensor[];
        return [dx, dw, db, dz];
      },
    };
  });
  return f(x, weight, bias, z);
}
