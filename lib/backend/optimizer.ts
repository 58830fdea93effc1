/**
 * The fused Adam update on wasm (kernel ADAM_KERNEL): the PyTorch-exact update of lib/train/optim.ts
 * is 13 elementwise tf ops per parameter tensor: ~4,600 kernel calls per step for the ~350 parameters
 * of microscopic-mamba-t, most of them on tiny tensors where the engine's per-call overhead dominates.
 * Here: one call per parameter to the SIMD heap kernel `adam` (./simd/optimizer.ts), which reads p, g,
 * m, v once and writes p, m, v with the same operations in the same order (wasm f32 add/mul/div/sqrt
 * are IEEE-754 correctly rounded, as XNNPACK's are), so results are BIT-IDENTICAL. A large parameter is
 * split into element ranges over the backend's threads (./heap-threads.ts): elementwise, so no result changes.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels, offsetOf } from './heap';
import { runOnHeap, sharesFor, splitRange } from './heap-threads';
import { ADAM_DECOUPLED, ADAM_L2 } from './simd/optimizer';

/** Kernel name of the fused Adam update (inputs param, grad, m, v; outputs [param, m, v]). */
export const ADAM_KERNEL = 'MsmAdamUpdate';

/** Attributes of ADAM_KERNEL: the host scalars of `Adam.applyGradients` (each rounded to f32, as a tf scalar is). */
export interface AdamKernelAttrs {
  beta1: number;
  beta2: number;
  /** √(1 − β2ᵗ) */
  sqrtBc2: number;
  eps: number;
  /** lr / (1 − β1ᵗ) */
  stepSize: number;
  /** λ of Adam's L2 term (0: none) */
  l2: number;
  /** 1 − lr·λ of AdamW's decoupled decay (1: none) */
  decay: number;
}

export function adamKernel(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { param, grad, m, v } = args.inputs as Record<string, tf.TensorInfo>;
  const a = args.attrs as unknown as AdamKernelAttrs;
  const n = tf.util.sizeFromShape(param.shape);
  for (const t of [grad, m, v]) {
    if (t.dtype !== 'float32' || tf.util.sizeFromShape(t.shape) !== n) {
      throw new Error(
        `${ADAM_KERNEL}: param, grad, m and v must be float32 of one shape; got [${param.shape}] and [${t.shape}]`,
      );
    }
  }
  const k = heapKernels(backend);
  if (!k) throw new Error(`${ADAM_KERNEL}: the wasm heap is not reachable (check adamKernelAvailable() first)`);
  const outs = [param, m, v].map((t) => backend.makeOutput(t.shape, 'float32'));
  const mode = (a.l2 !== 0 ? ADAM_L2 : 0) | (a.decay !== 1 ? ADAM_DECOUPLED : 0);
  const off = (t: tf.TensorInfo) => offsetOf(backend, t);
  // f64 → f32 rounding of the scalars happens at the call boundary, exactly as for a float32 tf.scalar.
  const scalars = [a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, a.sqrtBc2, a.eps, a.stepSize, a.l2, a.decay, mode];
  // element ranges in blocks of 4 (the kernel's vector width), ~10 operations per element
  const shares = splitRange(n, sharesFor(10 * n), 4).map(([e0, e1]): Array<[string, number[]]> => [
    ['adam', [...[param, grad, m, v, ...outs].map((t) => off(t) + 4 * e0), e1 - e0, ...scalars]],
  ]);
  if (n > 0) runOnHeap(heapKernels, backend, shares);
  return outs;
}

/** True when the fused Adam kernel can run on the active backend (wasm, with its heap reachable). */
export function adamKernelAvailable(): boolean {
  if (tf.getBackend() !== 'wasm' || !tf.getKernel(ADAM_KERNEL, 'wasm')) return false;
  return heapKernels(tf.backend() as unknown as BackendWasm) !== undefined;
}
