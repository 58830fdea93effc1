/**
 * WebGPU in Node through Dawn (npm `webgpu`). (Not named webgpu.ts: tslab would resolve
 * `require('webgpu')` to this file instead of the package.)
 *
 * Order of attempts: Dawn's default (Vulkan on Linux: a real GPU), then OpenGL through EGL surfaceless
 * with a `compatibility` feature-level adapter (Mesa llvmpipe on a CPU-only machine). Force one with
 * MSM_WEBGPU=vulkan|opengl. tfjs-backend-webgpu requests its adapter without `featureLevel`, so
 * requestAdapter is wrapped to add it; `navigator.gpu` must exist before the backend module loads
 * (tfjs#8066), which is why the backend is required lazily here.
 */
export interface WebGPUInfo {
  dawnBackend: string;
  adapter: string;
}

interface GPULike {
  requestAdapter(opts?: Record<string, unknown>): Promise<AdapterLike | null>;
}
interface AdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
}

let ready: WebGPUInfo | undefined;

/** What to do when no adapter is found; index.ts puts it in the BackendUnavailableError. */
export const WEBGPU_HOW_TO =
  'on a GPU machine install the Vulkan driver (NVIDIA: the proprietary driver with libvulkan1); ' +
  'on a CPU-only Debian machine: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri (the bootstrap does this), ' +
  'or force a Dawn backend with MSM_WEBGPU=vulkan|opengl. See README § Backends.';

function describeAdapter(a: AdapterLike): string {
  const i = a.info ?? {};
  return (
    [i.vendor, i.architecture, i.device, i.description].filter((s) => s && String(s).length > 0).join(' ') || 'unknown'
  );
}

export async function initWebGPU(): Promise<WebGPUInfo> {
  if (ready) return ready;
  let dawn: { create(flags: string[]): GPULike; globals: Record<string, unknown> };
  try {
    dawn = require('webgpu');
  } catch (e) {
    throw new Error(`the npm package 'webgpu' (Dawn) failed to load: ${(e as Error).message}`);
  }
  Object.assign(globalThis, dawn.globals);
  const forced = (process.env.MSM_WEBGPU ?? '').toLowerCase();
  const attempts: Array<{ label: string; flags: string[]; compat: boolean }> = [];
  if (forced !== 'opengl') attempts.push({ label: 'vulkan', flags: [], compat: false });
  if (forced !== 'vulkan') attempts.push({ label: 'opengl', flags: ['backend=opengl'], compat: true });
  const failures: string[] = [];
  for (const attempt of attempts) {
    if (attempt.label === 'opengl' && !process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = 'surfaceless';
    let gpu: GPULike;
    let adapter: AdapterLike | null = null;
    try {
      gpu = dawn.create(attempt.flags);
      const request = gpu.requestAdapter.bind(gpu);
      const wrapped = (o: Record<string, unknown> = {}) =>
        request(attempt.compat ? { ...o, featureLevel: 'compatibility' } : o);
      adapter = await wrapped();
      if (!adapter) {
        failures.push(`${attempt.label}: no adapter`);
        continue;
      }
      gpu.requestAdapter = wrapped;
    } catch (e) {
      failures.push(`${attempt.label}: ${(e as Error).message}`);
      continue;
    }
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    require('@tensorflow/tfjs-backend-webgpu');
    ready = { dawnBackend: attempt.label, adapter: describeAdapter(adapter) };
    return ready;
  }
  throw new Error(`no WebGPU adapter (${failures.join('; ')}).`);
}
