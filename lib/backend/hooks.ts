/**
 * Which backend is active, and the hooks other parts of lib run once one is (e.g. the selective-scan
 * kernels). Kept apart from index.ts, which picks and starts backends in Node (fs, Dawn), so code that
 * also runs in a browser (lib/ops, the web app) can register and fire hooks without Node modules.
 */
export type BackendName = 'wasm' | 'cpu' | 'webgpu' | 'tensorflow';

export interface BackendInfo {
  /** The tfjs backend that is now active. */
  name: BackendName;
  /** Where the choice came from. */
  source: 'argument' | 'MSM_BACKEND' | 'default';
  tfjsVersion: string;
  /** wasm: SIMD and thread count; webgpu: adapter; tensorflow: the package that provided it. */
  details: Record<string, string | number | boolean>;
}

const afterInitHooks: Array<(name: BackendName) => void> = [];
let current: BackendInfo | undefined;

/** Run `hook` after every backend start (and now, when one is already active). */
export function onBackendInit(hook: (name: BackendName) => void): void {
  afterInitHooks.push(hook);
  if (current) hook(current.name);
}

/** The backend announced last, if any. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

/** Record `info` as the active backend and run every hook for it (called once the backend is ready). */
export function announceBackend(info: BackendInfo): void {
  current = info;
  for (const hook of afterInitHooks) hook(info.name);
}
