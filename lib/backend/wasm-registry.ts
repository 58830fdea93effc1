/**
 * Where the kit swaps tfjs-backend-wasm kernels for its own (the list: ./registrations.ts) and remembers
 * the stock ones: the replacements fall back to them for the cases they do
 * not cover, and the tests compare against them bit for bit.
 */
import * as tf from '@tensorflow/tfjs';

const stockKernels = new Map<string, tf.KernelFunc>();

/**
 * Registers `wrap(stock)` as wasm kernel `name`, keeping the stock kernel's setupFunc/disposeFunc (the
 * wasm backend runs them on (re)initialisation, and a stock kernelFunc we fall back to needs its setup:
 * it binds the C++ entry point). Returns false, changing nothing, when there is no stock kernel.
 */
export function replaceWasmKernel(name: string, wrap: (stock: tf.KernelFunc) => tf.KernelFunc): boolean {
  const stock = tf.getKernel(name, 'wasm');
  if (!stock) return false;
  stockKernels.set(name, stock.kernelFunc);
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...stock, kernelFunc: wrap(stock.kernelFunc) });
  return true;
}

/** The tfjs-backend-wasm kernel that `replaceWasmKernel` replaced (undefined if it was never replaced). */
export function stockWasmKernel(name: string): tf.KernelFunc | undefined {
  return stockKernels.get(name);
}
