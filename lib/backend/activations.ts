/**
 * Fused SiLU on wasm, optionally on the first p channels only (PSFFN's partial SiLU; p = c: plain SiLU):
 *   y = x·σ(x) on channels [0, p), y = x on [p, c);   dx = dy·σ·(1 + x·(1 − σ)) on [0, p), dx = dy on [p, c)
 * The forward runs the stock Sigmoid kernel and one heap kernel (./simd/activations.ts) in place of the
 * sigmoid / mask / multiply / add chain; the backward is one heap kernel instead of the ~6–8 kernels of
 * the chain's gradient. Not bit-identical to the tf ops (the backward rounds differently): tested to
 * ≤ 1e-5 / 1e-4 against them; MSM_FUSED_KERNELS=0 keeps them (./fused.ts). Elementwise: rows are split
 * over the backend's threads (./heap-threads.ts) without changing any result.
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

/** inputs x, s = σ(x) [..., c]; attrs p → y [..., c]. */
export function partialSiluKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x, s } = args.inputs as Record<string, Info>;
  const [rows, c, p] = layout(x, args.attrs);
  const y = backend.makeOutput(x.shape, 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  heap(backend, PARTIAL_SILU_KERNEL); // reachable (else a clear error)
  const at = (t: Info, r0: number) => o(t) + 4 * r0 * c;
  if (rows > 0)
    runOnHeap(
      heapKernels,
      backend,
      rowShares(rows, c, (r0, r1) => ['psilu', [at(x, r0), at(s, r0), at(y, r0), r1 - r0, c, p]]),
    );
  return y;
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
