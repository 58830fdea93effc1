/**
 * Fused SiLU on wasm, optionally on the first p channels only (PSFFN's partial SiLU; p = c: plain SiLU):
 *   y = x·σ(x) on channels [0, p), y = x on [p, c);   dx = dy·σ·(1 + x·(1 − σ)) on [0, p), dx = dy on [p, c)
 * The forward runs the stock Sigmoid kernel and one heap kernel (./simd/activations.ts) in place of the
 * sigmoid / mask / multiply / add chain; the backward is one heap kernel instead of the ~6–8 kernels of
 * the chain's gradient. Not bit-identical to the tf ops (the backward rounds differently): tested to
 * ≤ 1e-5 / 1e-4 against them; MSM_FUSED_KERNELS=0 keeps them (./fused.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels, HeapExports, offsetOf } from './heap';

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

/** inputs x, s = σ(x) [..., c]; attrs p → y [..., c]. */
export function partialSiluKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x, s } = args.inputs as Record<string, Info>;
  const [rows, c, p] = layout(x, args.attrs);
  const y = backend.makeOutput(x.shape, 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  if (rows > 0) heap(backend, PARTIAL_SILU_KERNEL).psilu(o(x), o(s), o(y), rows, c, p);
  return y;
}

/** inputs dy, x, s = σ(x) [..., c]; attrs p → dx [..., c]. */
export function partialSiluGradKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { dy, x, s } = args.inputs as Record<string, Info>;
  const [rows, c, p] = layout(x, args.attrs);
  const dx = backend.makeOutput(x.shape, 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  if (rows > 0) heap(backend, PARTIAL_SILU_GRAD_KERNEL).psilugrad(o(dy), o(x), o(s), o(dx), rows, c, p);
  return dx;
}

/** SiLU on channels [0, p) of x [..., c], identity on the rest, as the two kernels above (check `fusedKernelsAvailable` first). */
export function fusedPartialSilu(x: tf.Tensor, p: number): tf.Tensor {
  const f = tf.customGrad((xi, save) => {
    const s = tf.sigmoid(xi as tf.Tensor);
    const y = tf.engine().runKernel(PARTIAL_SILU_KERNEL, { x: xi as tf.Tensor, s }, { p }) as tf.Tensor;
    (save as tf.GradSaveFunc)([xi as tf.Tensor, s]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xs, ss]: tf.Tensor[]) =>
        tf.engine().runKernel(PARTIAL_SILU_GRAD_KERNEL, { dy, x: xs, s: ss }, { p }) as tf.Tensor,
    };
  });
  return f(x);
}
