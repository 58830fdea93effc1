/**
 * The worker threads of the SIMD scan engine (wasm-simd.ts): each instantiates the kernels' module on
 * the engine's shared WebAssembly.Memory and runs the call lists posted to it. A kernel call stays
 * synchronous (tfjs kernels must be): the calling thread runs its own share, then waits for the workers
 * with Atomics.wait. Thread count: MSM_SCAN_THREADS, default all cores (at most 16).
 */
import * as os from 'os';
import { Worker } from 'worker_threads';
import { WA, WasmMemory, WasmModule } from '../../util/wasm-api';

/** A kernel module instance's functions by name. */
export type Exports = Record<string, (...args: number[]) => void>;

/** Source of the worker threads: instantiate the module on the shared memory, then run jobs forever. */
const WORKER_SOURCE = `
const { workerData } = require('worker_threads');
const { module, memory, ctrl, job, names } = workerData;
const ctl = new Int32Array(ctrl);
const jb = new Int32Array(job);
let fns;
try {
  const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
  fns = names.map((n) => inst.exports[n]);
  Atomics.store(ctl, 3, 1); // started
} catch (e) {
  Atomics.store(ctl, 3, -1); // failed to start: wake the caller, which reports it
  Atomics.notify(ctl, 1);
  throw e;
}
let seen = 0;
for (;;) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  let ok = 1;
  try {
    let p = 0;
    const calls = jb[p++];
    for (let c = 0; c < calls; c++) {
      const fn = jb[p++], na = jb[p++];
      fns[fn](...jb.subarray(p, p + na));
      p += na;
    }
  } catch (e) { ok = 0; }
  Atomics.store(ctl, 2, ok);
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
`;

const JOB_INTS = 1024;
/** A worker that has not started after this long is reported (the caller is blocked waiting for it). */
const WORKER_START_TIMEOUT_MS = 60_000;

interface WorkerSlot {
  worker: Worker;
  /** [0] job generation posted, [1] generation done, [2] 1 = last job ok, [3] 1 started / −1 failed to start */
  ctl: Int32Array;
  job: Int32Array;
  spawnedAt: number;
}

/** A call list: [function name, i32 args]. */
export type Calls = Array<[string, number[]]>;
/** One thread's part of a kernel call. */
export interface Share {
  before?: () => void;
  calls: Calls;
  after?: () => void;
  /** this thread's instance, when share 0 runs on another memory (the caller's heap) */
  exports?: Exports;
}

export class ThreadPool {
  /** The workers' source and start timeout; tests swap them to simulate a worker that cannot start. */
  static workerSource = WORKER_SOURCE;
  static startTimeoutMs = WORKER_START_TIMEOUT_MS;
  private workers: WorkerSlot[] = [];
  private main: Exports;

  /** `c`: the kernels' module and the shared memory every thread instantiates it on; `names`: its functions, by index. */
  constructor(
    private c: { module: WasmModule; memory: WasmMemory },
    private names: readonly string[],
  ) {
    const inst = new WA.Instance(c.module, { env: { mem: c.memory } });
    this.main = inst.exports as unknown as Exports;
  }

  /**
   * Runs one share per thread (share 0 on this thread) and returns when all are done. Each share may
   * bring JS work for this thread: `before` (copy the share's inputs in) runs just before the share is
   * launched, `after` (copy its outputs out) once it has finished, so copies overlap other threads' work.
   */
  run(shares: Share[]): void {
    while (this.workers.length < shares.length - 1) this.spawn();
    const gens: number[] = [];
    for (let w = 1; w < shares.length; w++) {
      shares[w].before?.();
      const slot = this.workers[w - 1];
      let p = 0;
      slot.job[p++] = shares[w].calls.length;
      for (const [name, args] of shares[w].calls) {
        slot.job[p++] = this.names.indexOf(name);
        slot.job[p++] = args.length;
        for (const a of args) slot.job[p++] = a;
      }
      const gen = Atomics.add(slot.ctl, 0, 1) + 1;
      Atomics.notify(slot.ctl, 0);
      gens.push(gen);
    }
    shares[0].before?.();
    const main = shares[0].exports ?? this.main;
    for (const [name, args] of shares[0].calls) main[name](...args);
    shares[0].after?.();
    for (let w = 1; w < shares.length; w++) {
      const slot = this.workers[w - 1];
      // The event loop is blocked here, so a dead worker cannot announce itself with an event: it
      // flags a failed start in ctl[3], and a worker that never starts is caught by the timeout.
      for (;;) {
        const done = Atomics.load(slot.ctl, 1);
        if (done === gens[w - 1]) break;
        const state = Atomics.load(slot.ctl, 3);
        if (state < 0 || (state === 0 && Date.now() - slot.spawnedAt > ThreadPool.startTimeoutMs)) {
          this.discardWorkers();
          throw new Error(
            `selective scan (wasm-simd): a worker thread ${state < 0 ? 'failed to start' : `did not start within ${ThreadPool.startTimeoutMs / 1000} s`}; ` +
              'set MSM_SCAN_THREADS=1 to run the scan on the calling thread only',
          );
        }
        Atomics.wait(slot.ctl, 1, done, Math.min(1000, ThreadPool.startTimeoutMs));
      }
      if (Atomics.load(slot.ctl, 2) !== 1) throw new Error('selective scan (wasm-simd): a worker thread failed');
      shares[w].after?.();
    }
  }

  /** Ends every worker (after a failure, or to release the threads): the next call starts fresh ones. */
  discardWorkers(): void {
    for (const slot of this.workers) void slot.worker.terminate();
    this.workers = [];
  }

  private spawn(): void {
    const ctrl = new SharedArrayBuffer(16);
    const job = new SharedArrayBuffer(JOB_INTS * 4);
    const worker = new Worker(ThreadPool.workerSource, {
      eval: true,
      workerData: { module: this.c.module, memory: this.c.memory, ctrl, job, names: this.names },
    });
    worker.unref(); // never keeps the process alive
    worker.on('error', () => {}); // a failed start is reported by run() through ctl[3], not as an uncaught error
    this.workers.push({ worker, ctl: new Int32Array(ctrl), job: new Int32Array(job), spawnedAt: Date.now() });
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
