/**
 * Fused SiLU and GELU on wasm, optionally on the first p channels only (PSFFN's partial SiLU; p = c: plain SiLU):
 *   y = x·σ(x) on channels [0, p), y = x on [p, c);   dx = dy·σ·(1 + x·(1 − σ)) on [0, p), dx = dy on [p, c)
 * The forward is one heap kernel (./simd/activations.ts; σ from ./simd/math.ts — tfjs-wasm's Sigmoid costs
 * ~8× a multiply) in place of the sigmoid / mask / multiply / add chain, and writes σ for the backward,
 * one heap kernel instead of the ~6–8 kernels of the chain's gradient. Not bit-identical to the tf ops
 * (another σ, other roundings): tested to ≤ 1e-5 / 1e-4 against them; MSM_FUSED_KERNELS=0 keeps them
 * (./fused.ts). Its rows are split over the backend's threads (./heap-threads.ts) without changing any result.
 *
 * GELU (exact, nn.GELU()): y = (x·½)·(erf(x·√½) + 1), dx = dy·(½(erf(x·√½) + 1) + x·e^{−x²/2}/√(2π)), one
 * heap kernel each way in place of 4 tf ops forward (tfjs-wasm's Erf is a slow scalar loop: ~14 ns per
 * element, a third of the stem's time at 224 px) and ~8 backward. erf is ./simd/math.ts's A&S 7.1.26, the
 * formula tfjs' Erf uses.
 *
 * ReLU: y = max(x, 0), dx = dy where x > 0 else 0: one heap kernel each way (tfjs-wasm's Relu costs ~5× a
 * multiply; its gradient is Step and Multiply). The same values as the tf ops (a zero's sign aside).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels, HeapExports, offsetOf } from './heap';
import { rowShares, runOnHeap } from './heap-threads';

export const PARTIAL_SILU_KERNEL = 'MsmPartialSilu';
export const PARTIAL_SILU_GRAD_KERNEL = 'MsmPartialSiluGrad';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function heap(backend: BackendWasm, kernel: string): HeapExports {
  const k = heapKernels(backend);
  if (!k) throw new Error(`${kernel}: the wasm heap is not reachable (check fusedKernelsAvailable() first)`);
  return k;
}

/** x [..., c] as [rows, c] and the attribute p (channels [0, p) get the SiLU). */
function layout(x: Info, attrs: tf.NamedAttrMap | undefined): [number, number, number] {
  const c = x.shape[x.shape.length - 1] ?? 1;
  const rows = c === 0 ? 0 : tf.util.sizeFromShape(x.shape) / c;
  const p = Math.min(Math.max(Number((attrs as { p: number }).p), 0), c);
  return [rows, c, p];
}

/** inputs x [..., c]; attrs p → [y, s = σ(x) on channels [0, p) (0 on the rest)] [..., c]. */
export function partialSiluKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as Record<string, Info>;
  const [rows, c, p] = layout(x, args.attrs);
  const y = backend.makeOutput(x.shape, 'float32');
  const s = backend.makeOutput(x.shape, 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  heap(backend, PARTIAL_SILU_KERNEL); // reachable (else a clear error)
  const at = (t: Info, r0: number) => o(t) + 4 * r0 * c;
  if (rows > 0)
    runOnHeap(
      heapKernels,
      backend,
      rowShares(rows, c, (r0, r1) => ['psilu', [at(x, r0), at(s, r0), at(y, r0), r1 - r0, c, p]]),
    );
  return [y, s];
}

/** inputs dy, x, s = σ(x) [..., c]; attrs p → dx [..., c]. */
export function partialSiluGradKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { dy, x, s } = args.inputs as Record<string, Info>;
  const [rows, c, p] = layout(x, args.attrs);
  const dx = backend.makeOutput(x.shape, 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  heap(backend, PARTIAL_SILU_GRAD_KERNEL); // reachable (else a clear error)
  const at = (t: Info, r0: number) => o(t) + 4 * r0 * c;
  if (rows > 0)
    runOnHeap(
      heapKernels,
      backend,
      rowShares(rows, c, (r0, r1) => ['psilugrad', [at(dy, r0), at(x, r0), at(s, r0), at(dx, r0), r1 - r0, c, p]]),
    );
  return dx;
}

/** SiLU on channels [0, p) of x [..., c], identity on the rest, as the two kernels above (check `fusedKernelsAvailable` first). */
export function fusedPartialSilu(x: tf.Tensor, p: number): tf.Tensor {
  const f = tf.customGrad((xi, save) => {
    const [y, s] = tf.engine().runKernel(PARTIAL_SILU_KERNEL, { x: xi as tf.Tensor }, { p }) as tf.Tensor[];
    (save as tf.GradSaveFunc)([xi as tf.Tensor, s]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xs, ss]: tf.Tensor[]) =>
        tf.engine().runKernel(PARTIAL_SILU_GRAD_KERNEL, { dy, x: xs, s: ss }, { p }) as tf.Tensor,
    };
  });
  return f(x);
}

export const GELU_KERNEL = 'MsmGelu';
export const GELU_GRAD_KERNEL = 'MsmGeluGrad';

/** inputs x → y = GELU(x). */
export function geluKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as Record<string, Info>;
  const y = backend.makeOutput(x.shape, 'float32');
  const n = tf.util.sizeFromShape(x.shape);
  if (n > 0) heap(backend, GELU_KERNEL).gelu(offsetOf(backend, x), offsetOf(backend, y), n);
  return y;
}

/** inputs dy, x → dx = dy·GELU'(x). */
export function geluGradKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { dy, x } = args.inputs as Record<string, Info>;
  const dx = backend.makeOutput(x.shape, 'float32');
  const n = tf.util.sizeFromShape(x.shape);
  const o = (t: Info) => offsetOf(backend, t);
  if (n > 0) heap(backend, GELU_GRAD_KERNEL).gelugrad(o(x), o(dy), o(dx), n);
  return dx;
}

/** The exact GELU as one kernel each way (check `fusedKernelsAvailable(x, GELU_KERNEL)` first). */
export function fusedGelu(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad((xi, save) => {
    (save as tf.GradSaveFunc)([xi as tf.Tensor]);
    return {
      value: tf.engine().runKernel(GELU_KERNEL, { x: xi as tf.Tensor }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, [xs]: tf.Tensor[]) =>
        tf.engine().runKernel(GELU_GRAD_KERNEL, { dy, x: xs }) as tf.Tensor,
    };
  });
  return f(x);
}

export const RELU_KERNEL = 'MsmRelu';
export const RELU_GRAD_KERNEL = 'MsmReluGrad';

/** inputs x → y = max(x, 0). */
export function reluKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as Record<string, Info>;
  const y = backend.makeOutput(x.shape, 'float32');
  const n = tf.util.sizeFromShape(x.shape);
  if (n > 0) heap(backend, RELU_KERNEL).relu(offsetOf(backend, x), offsetOf(backend, y), n);
  return y;
}

/** inputs dy, x → dx = x > 0 ? dy : 0. */
export function reluGradKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { dy, x } = args.inputs as Record<string, Info>;
  const dx = backend.makeOutput(x.shape, 'float32');
  const n = tf.util.sizeFromShape(x.shape);
  const o = (t: Info) => offsetOf(backend, t);
  if (n > 0) heap(backend, RELU_GRAD_KERNEL).relugrad(o(dy), o(x), o(dx), n);
  return dx;
}

/** ReLU as one kernel each way (check `fusedKernelsAvailable(x, RELU_KERNEL)` first). */
export function fusedRelu(x: tf.Tensor): tf.Tensor {
  const f = tf.customGrad((xi, save) => {
    (save as tf.GradSaveFunc)([xi as tf.Tensor]);
    return {
      value: tf.engine().runKernel(RELU_KERNEL, { x: xi as tf.Tensor }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, [xs]: tf.Tensor[]) =>
        tf.engine().runKernel(RELU_GRAD_KERNEL, { dy, x: xs }) as tf.Tensor,
    };
  });
  return f(x);
}
