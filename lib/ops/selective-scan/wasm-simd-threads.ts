/**
 * The worker threads of the SIMD scan engine (wasm-simd.ts): the process's worker pool
 * (lib/backend/worker-pool.ts, shared with the heap kernels' GEMMs) running the scan kernels' module on
 * the engine's shared WebAssembly.Memory. A kernel call stays synchronous (tfjs kernels must be): the
 * calling thread runs its own share, then waits for the workers with Atomics.wait. Thread count:
 * MSM_SCAN_THREADS, default all cores (at most 16).
 */
import * as os from 'os';
import { type Caller, type Exports, type Share, workerPool } from '../../backend/worker-pool';
import { WA, WasmMemory, WasmModule } from '../../util/wasm-api';

export type { Calls, Exports, Share } from '../../backend/worker-pool';

const SCAN: Caller = {
  what: 'selective scan (wasm-simd)',
  hint: 'set MSM_SCAN_THREADS=1 to run the scan on the calling thread only',
};

/** The scan kernels' module on its memory, run by the shared worker pool. */
export class ThreadPool {
  /** the kernels on the engine's memory, for calls on this thread alone */
  readonly exports: Exports;
  private id: number;

  /** `c`: the kernels' module and the shared memory every thread instantiates it on; `names`: its functions. */
  constructor(c: { module: WasmModule; memory: WasmMemory }, names: readonly string[]) {
    const inst = new WA.Instance(c.module, { env: { mem: c.memory } });
    this.exports = inst.exports as unknown as Exports;
    this.id = workerPool().register(c.module, c.memory, names);
  }

  /**
   * Runs one share per thread (share 0 on this thread) and returns when all are done. Each share may
   * bring JS work for this thread: `before` (copy the share's inputs in) runs just before the share is
   * launched, `after` (copy its outputs out) once it has finished, so copies overlap other threads' work.
   */
  run(shares: Share[]): void {
    workerPool().run(this.id, this.exports, shares, SCAN);
  }

  /**
   * The same on another shared memory (the threaded wasm backend's heap): `module` bound to `memory` on
   * every thread, `main` its instance here.
   */
  runOn(module: WasmModule, memory: WasmMemory, main: Exports, names: readonly string[], shares: Share[]): void {
    const pool = workerPool();
    pool.run(pool.register(module, memory, names), main, shares, SCAN);
  }

  /** Ends the pool's workers (after a failure, or to release the threads): the next call starts fresh ones. */
  discardWorkers(): void {
    workerPool().discardWorkers();
  }
}

export function threadCount(): number {
  const env = Number(process.env.MSM_SCAN_THREADS);
  if (Number.isInteger(env) && env >= 1) return Math.min(env, 16);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(cores, 16));
}

/** Batch rows [start, end) for each of `threads` threads (no empty shares). */
export function split(b: number, threads: number): Array<[number, number]> {
  const t = Math.max(1, Math.min(threads, b));
  return Array.from({ length: t }, (_, i) => [Math.floor((i * b) / t), Math.floor(((i + 1) * b) / t)]);
}
