/**
 * Cumsum / Cumprod with a negative axis, on every backend (a kernel fix, registered by ./registrations.ts).
 */
import * as tf from '@tensorflow/tfjs';

/** The backends whose Cumsum / Cumprod kernels get the fix (each once its kernels are loaded). */
export const CUMULATIVE_BACKENDS = ['cpu', 'wasm', 'webgpu', 'webgl', 'tensorflow'];
const axisFixed = new Set<string>();

/**
 * The cpu, wasm and webgpu Cumsum/Cumprod kernels build their transpose from the raw axis
 * (backend_util.getAxesPermutation([axis], rank)), so axis = -1 yields the permutation [0, 1, 2, -1]:
 * a shape error on cpu and an out-of-bounds write that corrupts the wasm heap. Normalise the axis
 * before the stock kernel sees it (once per backend whose kernels are loaded).
 */
export function fixNegativeAxis(kernelName: string, backendName: string): void {
  const key = `${kernelName}/${backendName}`;
  const stock = tf.getKernel(kernelName, backendName);
  if (axisFixed.has(key) || !stock) return;
  axisFixed.add(key);
  tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({
    ...stock,
    kernelFunc: (args) => {
      const axis = Number((args.attrs as { axis?: number } | undefined)?.axis ?? 0);
      const rank = (args.inputs.x as tf.TensorInfo).shape.length;
      if (axis >= 0) return stock.kernelFunc(args);
      if (axis < -rank) throw new Error(`${kernelName}: axis ${axis} is out of range for rank ${rank}`);
      return stock.kernelFunc({ ...args, attrs: { ...args.attrs, axis: axis + rank } });
    },
  });
}
