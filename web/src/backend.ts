/**
 * The page's tfjs backend: wasm by default (XNNPACK; its .wasm files are served next to the app under
 * wasm/), WebGPU when asked for and the browser has an adapter. The kit's kernels and gradient fixes are
 * registered exactly as `initBackend` does in Node (lib/backend), then the backend is announced so the
 * selective-scan kernels register for it (lib/backend/hooks.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-backend-webgpu';
import { registerKitKernels } from '../../lib/backend/registrations';
import { announceBackend, type BackendName } from '../../lib/backend/hooks';

export type PageBackend = Extract<BackendName, 'wasm' | 'webgpu'>;

/** Does this browser expose WebGPU with a usable adapter? */
export async function hasWebGPU(): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) != null;
  } catch {
    return false;
  }
}

/** Start `name` (the .wasm files are fetched from `wasmDir`), register the kit's kernels, and say what runs. */
export async function startBackend(name: PageBackend, wasmDir: string): Promise<string> {
  if (name === 'webgpu' && !(await hasWebGPU())) {
    throw new Error('WebGPU is not available in this browser (no navigator.gpu adapter): choose wasm');
  }
  // The threaded build needs cross-origin isolation (SharedArrayBuffer), which static hosting rarely has.
  if (name === 'wasm') setWasmPaths(wasmDir.endsWith('/') ? wasmDir : wasmDir + '/');
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) throw new Error(`tfjs could not start the ${name} backend in this browser`);
  registerKitKernels();
  const details: Record<string, string | number | boolean> = {};
  if (name === 'wasm') details.simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  announceBackend({ name, source: 'argument', tfjsVersion: tf.version.tfjs, details });
  const d = Object.entries(details)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `${name}${d ? ` (${d})` : ''}, tfjs ${tf.version.tfjs}`;
}
