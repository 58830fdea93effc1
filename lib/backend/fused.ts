/**
 * The switch for the kit's fused wasm kernels (LayerNorm and BatchNorm in ./norms.ts, SiLU in
 * ./activations.ts, MIFA's cross gate in ./gates.ts, SS2D's cross-scan in ./cross-scan.ts): one kernel
 * call each way instead of a chain of elementwise, reduction and copy kernels.
 * They are not bit-identical to the tf ops they replace (see those files), so MSM_FUSED_KERNELS=0 keeps
 * the tf ops — read per call, so one process can time or compare both.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels } from './heap';

/** True where a fused kernel named `kernel` runs for x: float32, the switch on, wasm with the kernel and its heap. */
export function fusedKernelsAvailable(x: tf.Tensor, kernel: string): boolean {
  return (
    x.dtype === 'float32' &&
    process.env.MSM_FUSED_KERNELS !== '0' &&
    tf.getBackend() === 'wasm' &&
    tf.getKernel(kernel, 'wasm') !== undefined &&
    heapKernels(tf.backend() as unknown as BackendWasm) !== undefined
  );
}
