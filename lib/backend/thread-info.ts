/**
 * The threads the kit computes with, as benchmarks and run summaries record them.
 *
 *   backend  the active backend's kernel threads, read from what `initBackend` reported
 *            (`currentBackend().details.threads`: tfjs-backend-wasm's pool; 1 in Node with stock tfjs,
 *            where the threaded build cannot start its workers). `cpu` runs on the calling thread: 1.
 *            WebGPU and tensorflow report none (the GPU / libtensorflow's own pool): null.
 *            On the threaded wasm build the kit's heap kernels (GEMMs, im2col, MaxPoolGrad) use this count too
 *            (heap-threads.ts, on the worker pool).
 *   scan     worker threads of the fused selective scan (lib/ops/selective-scan/wasm-simd.ts: MSM_SCAN_THREADS,
 *            else the available cores, at most 16)
 * `threads` is the larger of the two: what a side-by-side run elsewhere (PyTorch) should be given.
 */
import * as os from 'os';
import { currentBackend } from './index';

export interface ThreadInfo {
  /** Kernel threads of the active backend; null where the backend does not say (WebGPU, tensorflow). */
  backend: number | null;
  /** Worker threads of the fused selective scan. */
  scan: number;
  /** The most threads the kit runs at once: max(backend, scan). */
  threads: number;
  cores: number;
  /** One line, e.g. 'wasm 1 thread (backend-reported), scan 2 (cores; MSM_SCAN_THREADS unset), 2 cores'. */
  text: string;
}

const cores = () => (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);

/** The fused scan's thread count, as wasm-simd.ts chooses it. */
export function scanThreads(): { count: number; source: string } {
  const env = Number(process.env.MSM_SCAN_THREADS);
  if (Number.isInteger(env) && env >= 1) return { count: Math.min(env, 16), source: 'MSM_SCAN_THREADS' };
  return { count: Math.max(1, Math.min(cores(), 16)), source: 'cores; MSM_SCAN_THREADS unset' };
}

/** Threads of the backend `initBackend` chose last (and of the scan). */
export function threadInfo(): ThreadInfo {
  const info = currentBackend();
  const reported = info?.details.threads;
  let backend: number | null;
  let source: string;
  if (typeof reported === 'number') [backend, source] = [reported, 'backend-reported'];
  else if (info?.name === 'cpu') [backend, source] = [1, 'pure JS, the calling thread'];
  else [backend, source] = [null, info ? 'not reported by the backend' : 'no backend initialised'];
  const scan = scanThreads();
  const n = cores();
  const name = info?.name ?? 'backend';
  const text =
    `${name} ${backend ?? '?'} thread${backend === 1 ? '' : 's'} (${source}), ` +
    `scan ${scan.count} (${scan.source}), ${n} cores`;
  return { backend, scan: scan.count, threads: Math.max(backend ?? 1, scan.count), cores: n, text };
}
