/**
 * Training-mode BatchNorm (channels last: x viewed as [R, C], R = every other axis) as three SIMD loops
 * on the wasm heap instead of ~15 elementwise and reduction kernels forward and ~20 backward:
 *
 *   MsmBatchNormMoments  x → mean [C], biased variance [C]     (two passes: Σx, then Σ(x − mean)²)
 *   MsmBatchNormApply    x, mean, invstd, γ, β → y = (x − mean)·invstd·γ + β
 *   MsmBatchNormGrad     x, dy, mean, invstd, γ → dx, dγ, dβ  (one pass for the sums, one for dx):
 *     dβ = Σ dy,  dγ = Σ dy·x̂  (x̂ = (x − mean)·invstd),  dx = γ·invstd/R · (R·dy − dβ − x̂·dγ)
 *   (the textbook BatchNorm backward, Ioffe & Szegedy 2015 §3, with the gradient through the batch
 *   statistics folded in; PyTorch's native_batch_norm_backward computes the same.)
 *
 * Forward values equal the unfused tf ops bit for bit (the same f32 operations in the same order: every
 * column summed in row order from 0, as the kit's Sum/Mean heap kernel does); gradients differ from the
 * unfused chain by rounding only (tested ≤ 1e-4 relative). Each kernel is single-threaded, fixed order:
 * deterministic. lib/nn's BatchNorm2d uses them through `batchNormTrainFused` when `batchNormKernelsAvailable()`.
 *
 * Why: a ResNet/MobileOne/RepViT training step runs one BatchNorm per conv; the unfused chain is ~35
 * kernel calls per BatchNorm (MobileOne-S0 at 32 px: ~6,000 calls, ~0.9 s of the 2.6 s step in tfjs'
 * per-call bookkeeping alone), and each elementwise op streams the whole activation once more.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  type Expr,
  f32,
  f32add,
  f32div,
  f32mul,
  f32sub,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32mul,
  loadF32,
  type Local,
  type ValType,
  vadd,
  vload,
  vmul,
  vsplat,
  vsub,
  vzero,
} from '../util/wasm-asm';
import { offsetOf } from './heap';
import { cnnKernelsOff, heapModule } from './heap-module';

// ---- kernels -----------------------------------------------------------------------------------

/** Byte address `base + 4·index`. */
const at = (base: Local, index: Expr): Expr => i32add(get(base), i32mul(index, i32(4)));

/** R as an f32 (f32.convert_i32_u). */
const asF32 =
  (l: Local): Expr =>
  (f) => {
    get(l)(f);
    f.op(0xb3);
  };

/**
 * For every row r < R and channel c < C: body(vec, c) — four channels at a time (vec = true) up to C & ~3,
 * then one at a time; `row` holds the byte offset of row r (r·C·4).
 */
function rowsByChannel(f: Fn, R: Local, C: Local, row: Local, body: (vec: boolean, c: Local) => void): void {
  const [r, c, c4] = [f.local('i32'), f.local('i32'), f.local('i32')];
  f.set(c4, i32and(get(C), i32(~3)));
  f.forUp(r, i32(0), get(R), () => {
    f.set(row, i32mul(i32mul(get(r), get(C)), i32(4)));
    f.forUp(c, i32(0), get(c4), () => body(true, c), 4);
    f.forUp(c, get(c4), get(C), () => body(false, c));
  });
}

/** Per-channel loop (scalar): body(c). */
function channels(f: Fn, C: Local, body: (c: Local) => void): void {
  const c = f.local('i32');
  f.forUp(c, i32(0), get(C), () => body(c));
}

const vOrS = (vec: boolean) =>
  vec
    ? { load: vload, add: vadd, sub: vsub, mul: vmul, zero: vzero }
    : { load: loadF32, add: f32add, sub: f32sub, mul: f32mul, zero: f32(0) };

function store(f: Fn, vec: boolean, addr: Expr, value: Expr): void {
  if (vec) f.storeV128(addr, 0, value);
  else f.storeF32(addr, 0, value);
}

/** bn_moments(x, mean, var, R, C): mean[c] = Σ_r x[r, c] / R; var[c] = Σ_r (x[r, c] − mean[c])² / R. */
function buildMoments(): Fn {
  const f = new Fn('bn_moments', Array<ValType>(5).fill('i32'));
  const [x, mean, variance, R, C] = f.params;
  const row = f.local('i32');
  const rf = f.local('f32');
  f.set(rf, asF32(R));
  const xAt = (c: Local) => i32add(get(x), i32add(get(row), i32mul(get(c), i32(4))));
  channels(f, C, (c) => {
    f.storeF32(at(mean, get(c)), 0, f32(0));
    f.storeF32(at(variance, get(c)), 0, f32(0));
  });
  rowsByChannel(f, R, C, row, (vec, c) => {
    const o = vOrS(vec);
    store(f, vec, at(mean, get(c)), o.add(o.load(at(mean, get(c))), o.load(xAt(c))));
  });
  channels(f, C, (c) => f.storeF32(at(mean, get(c)), 0, f32div(loadF32(at(mean, get(c))), get(rf))));
  rowsByChannel(f, R, C, row, (vec, c) => {
    const o = vOrS(vec);
    const d = f.local(vec ? 'v128' : 'f32');
    f.set(d, o.sub(o.load(xAt(c)), o.load(at(mean, get(c)))));
    store(f, vec, at(variance, get(c)), o.add(o.load(at(variance, get(c))), o.mul(get(d), get(d))));
  });
  channels(f, C, (c) => f.storeF32(at(variance, get(c)), 0, f32div(loadF32(at(variance, get(c))), get(rf))));
  return f;
}

/** bn_apply(x, y, mean, invstd, gamma, beta, R, C): y = (x − mean)·invstd·γ + β. */
function buildApply(): Fn {
  const f = new Fn('bn_apply', Array<ValType>(8).fill('i32'));
  const [x, y, mean, invstd, gamma, beta, R, C] = f.params;
  const row = f.local('i32');
  const off = (base: Local, c: Local) => i32add(get(base), i32add(get(row), i32mul(get(c), i32(4))));
  rowsByChannel(f, R, C, row, (vec, c) => {
    const o = vOrS(vec);
    const xhat = o.mul(o.sub(o.load(off(x, c)), o.load(at(mean, get(c)))), o.load(at(invstd, get(c))));
    store(f, vec, off(y, c), o.add(o.mul(xhat, o.load(at(gamma, get(c)))), o.load(at(beta, get(c)))));
  });
  return f;
}

/**
 * bn_grad(x, dy, mean, invstd, gamma, dx, dgamma, dbeta, k, R, C): dβ = Σ dy, dγ = Σ dy·x̂, then
 * dx = k·(R·dy − dβ − x̂·dγ) with k[c] = γ·invstd/R (k: C floats of scratch).
 */
function buildGrad(): Fn {
  const f = new Fn('bn_grad', Array<ValType>(11).fill('i32'));
  const [x, dy, mean, invstd, gamma, dx, dgamma, dbeta, k, R, C] = f.params;
  const row = f.local('i32');
  const rf = f.local('f32');
  const rv = f.local('v128');
  f.set(rf, asF32(R));
  f.set(rv, vsplat(get(rf)));
  const off = (base: Local, c: Local) => i32add(get(base), i32add(get(row), i32mul(get(c), i32(4))));
  const xhatOf = (vec: boolean, c: Local) => {
    const o = vOrS(vec);
    return o.mul(o.sub(o.load(off(x, c)), o.load(at(mean, get(c)))), o.load(at(invstd, get(c))));
  };
  channels(f, C, (c) => {
    f.storeF32(at(dbeta, get(c)), 0, f32(0));
    f.storeF32(at(dgamma, get(c)), 0, f32(0));
  });
  rowsByChannel(f, R, C, row, (vec, c) => {
    const o = vOrS(vec);
    const g = f.local(vec ? 'v128' : 'f32');
    f.set(g, o.load(off(dy, c)));
    store(f, vec, at(dbeta, get(c)), o.add(o.load(at(dbeta, get(c))), get(g)));
    store(f, vec, at(dgamma, get(c)), o.add(o.load(at(dgamma, get(c))), o.mul(get(g), xhatOf(vec, c))));
  });
  channels(f, C, (c) =>
    f.storeF32(at(k, get(c)), 0, f32div(f32mul(loadF32(at(gamma, get(c))), loadF32(at(invstd, get(c)))), get(rf))),
  );
  rowsByChannel(f, R, C, row, (vec, c) => {
    const o = vOrS(vec);
    const scaled = o.mul(o.load(off(dy, c)), vec ? get(rv) : get(rf)); // R·dy
    const inner = o.sub(o.sub(scaled, o.load(at(dbeta, get(c)))), o.mul(xhatOf(vec, c), o.load(at(dgamma, get(c)))));
    store(f, vec, off(dx, c), o.mul(o.load(at(k, get(c))), inner));
  });
  return f;
}

type Call = (...args: number[]) => void;
const bnKernels = heapModule<{ bn_moments: Call; bn_apply: Call; bn_grad: Call }>(() => [
  buildMoments(),
  buildApply(),
  buildGrad(),
]);

// ---- kernels for tfjs ------------------------------------------------------------------------------

export const BN_MOMENTS = 'MsmBatchNormMoments';
export const BN_APPLY = 'MsmBatchNormApply';
export const BN_GRAD = 'MsmBatchNormGrad';

/** x as [R, C] (channels last); throws a one-line error for what the kernels do not take. */
function rowsAndChannels(kernel: string, x: tf.TensorInfo, ...perChannel: tf.TensorInfo[]): [number, number] {
  const c = x.shape[x.shape.length - 1];
  const ok = x.shape.length >= 2 && [x, ...perChannel].every((t) => t.dtype === 'float32');
  if (!ok || perChannel.some((t) => t.shape.length !== 1 || t.shape[0] !== c)) {
    throw new Error(
      `lib/backend/batch-norm-heap.ts: ${kernel} needs float32 x [..., C] and per-channel [C] tensors; got x [${x.shape}]`,
    );
  }
  return [tf.util.sizeFromShape(x.shape) / c, c];
}

function kernelsOf(kernel: string, backend: unknown) {
  const k = bnKernels(backend as BackendWasm);
  if (!k) throw new Error(`${kernel}: the wasm heap is not reachable (check batchNormKernelsAvailable() first)`);
  return { k, backend: backend as BackendWasm };
}

/** MsmBatchNormMoments: x → [mean, biased variance]. */
export const batchNormMomentsKernel = (args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo[] => {
  const { x } = args.inputs as Record<string, tf.TensorInfo>;
  const { k, backend } = kernelsOf(BN_MOMENTS, args.backend);
  const [R, C] = rowsAndChannels(BN_MOMENTS, x);
  const outs = [backend.makeOutput([C], 'float32'), backend.makeOutput([C], 'float32')]; // mean, var
  k.bn_moments(offsetOf(backend, x), offsetOf(backend, outs[0]), offsetOf(backend, outs[1]), R, C);
  return outs;
};

/** MsmBatchNormApply: y = (x − mean)·invstd·γ + β. */
export const batchNormApplyKernel = (args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo => {
  const { x, mean, invstd, gamma, beta } = args.inputs as Record<string, tf.TensorInfo>;
  const { k, backend } = kernelsOf(BN_APPLY, args.backend);
  const [R, C] = rowsAndChannels(BN_APPLY, x, mean, invstd, gamma, beta);
  const y = backend.makeOutput(x.shape, 'float32');
  const off = (t: tf.TensorInfo) => offsetOf(backend, t);
  k.bn_apply(off(x), off(y), off(mean), off(invstd), off(gamma), off(beta), R, C);
  return y;
};

/** MsmBatchNormGrad: x, dy, mean, invstd, γ → [dx, dγ, dβ]. */
export const batchNormGradKernel = (args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo[] => {
  const { x, dy, mean, invstd, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const { k, backend } = kernelsOf(BN_GRAD, args.backend);
  const [R, C] = rowsAndChannels(BN_GRAD, x, mean, invstd, gamma);
  if (dy.dtype !== 'float32' || tf.util.sizeFromShape(dy.shape) !== R * C) {
    throw new Error(`lib/backend/batch-norm-heap.ts: ${BN_GRAD} needs dy of x's shape [${x.shape}], got [${dy.shape}]`);
  }
  const outs = [x.shape, [C], [C]].map((s) => backend.makeOutput(s, 'float32')); // dx, dγ, dβ
  const scratch = backend.makeOutput([C], 'float32');
  const off = (t: tf.TensorInfo) => offsetOf(backend, t);
  k.bn_grad(off(x), off(dy), off(mean), off(invstd), off(gamma), ...outs.map(off), off(scratch), R, C);
  backend.disposeData(scratch.dataId);
  return outs;
};

/**
 * True when the fused kernels run on the active backend (wasm with a reachable heap) and are not
 * switched off (MSM_CNN_KERNELS=off, for side-by-side timings and tests against the unfused ops).
 */
export function batchNormKernelsAvailable(): boolean {
  if (cnnKernelsOff()) return false;
  if (tf.getBackend() !== 'wasm' || !tf.getKernel(BN_GRAD, 'wasm')) return false;
  return bnKernels(tf.backend() as unknown as BackendWasm) !== undefined;
}

/**
 * Training-mode BatchNorm over the last axis with the fused kernels: returns y and the batch moments
 * (mean, biased variance; no gradient flows through them: they feed the running statistics). The
 * gradient of y with respect to x, γ and β is the one kernel MsmBatchNormGrad.
 */
export function batchNormTrainFused(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps: number,
): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const engine = tf.engine();
  const [mean, variance] = engine.runKernel(BN_MOMENTS, { x }) as [tf.Tensor1D, tf.Tensor1D]; // [C], [C]
  const invstd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor1D; // [C]
  const fused = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [xs, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    save([xs, g, mean, invstd]);
    const y = engine.runKernel(BN_APPLY, { x: xs, mean, invstd, gamma: g, beta: b }) as tf.Tensor;
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, sm, si] = saved;
        return engine.runKernel(BN_GRAD, { x: sx, dy, mean: sm, invstd: si, gamma: sg }) as tf.Tensor[];
      },
    };
  });
  return { y: fused(x, gamma, beta) as tf.Tensor, mean, variance };
}
