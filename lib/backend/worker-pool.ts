/**
 * The process's one pool of worker threads for the kit's own wasm kernels: the fused selective scan
 * (lib/ops/selective-scan/wasm-simd.ts, on its engine's shared memory) and the heap kernels of
 * lib/backend (conv-gemm.ts, matmul.ts, max-pool-grad-heap.ts, on the threaded wasm backend's shared
 * heap, ./heap-threads.ts). A kernel call stays synchronous (tfjs kernels must be): the calling thread
 * posts one share of the work to each worker it needs, runs share 0 itself, then runs every share whose
 * worker has not claimed it yet (a worker descheduled on a busy machine, or still starting: a call never
 * waits for a thread that has no core) and waits with Atomics.wait for the shares being run. Shares are lists of calls into a module instance; the caller splits the work so
 * that no two shares write the same memory.
 *
 * A module and the memory it runs on are registered once (`register`); every worker instantiates it on
 * that memory the first time a share names it, having received it over its message port
 * (`receiveMessageOnPort`: the worker is blocked in Atomics.wait, so it reads the port synchronously).
 * Workers start at the first call that needs them and stay (idle in Atomics.wait, unref'd: they never
 * keep the process alive); a call never uses more workers than it has shares.
 */
import { MessageChannel, type MessagePort, Worker } from 'worker_threads';
import type { WasmMemory, WasmModule } from '../util/wasm-api';

/** A kernel module instance's functions by name. */
export type Exports = Record<string, (...args: number[]) => void>;

/** A call list: [function name, args] (numbers, passed as a direct call passes them: i32 and f32 alike). */
export type Calls = Array<[string, number[]]>;

/** One thread's part of a kernel call. */
export interface Share {
  /** JS work for the calling thread just before the share is launched (e.g. copy its inputs in) */
  before?: () => void;
  calls: Calls;
  /** JS work for the calling thread once the share has finished (e.g. copy its outputs out) */
  after?: () => void;
  /** share 0 only: the calling thread's instance, when it is not the registered one (another memory) */
  exports?: Exports;
}

/** Who a pool call is for, so a failure names the kernel and the way out. */
export interface Caller {
  /** e.g. 'selective scan (wasm-simd)' */
  what: string;
  /** what the user can do, e.g. 'set MSM_SCAN_THREADS=1 to run the scan on the calling thread only' */
  hint: string;
}

/** Source of the worker threads: load the modules sent over the port, then run call lists forever. */
const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('worker_threads');
const { ctrl, job, port } = workerData;
const ctl = new Int32Array(ctrl);
const jb = new Float64Array(job); // f64 holds every i32 and f32 argument exactly
const instances = []; // id → functions by index
function load() {
  for (let m; (m = receiveMessageOnPort(port)); ) {
    const { id, module, memory, names } = m.message;
    const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
    instances[id] = names.map((n) => inst.exports[n]);
  }
}
try {
  load();
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
  // Claim the share: the caller takes it over instead when this thread comes too late (ctl[4] = 2).
  if (Atomics.compareExchange(ctl, 4, 0, 1) === 0) {
    try {
      load();
      let p = 0;
      const fns = instances[jb[p++]];
      const calls = jb[p++];
      for (let c = 0; c < calls; c++) {
        const fn = jb[p++], na = jb[p++];
        fns[fn](...jb.subarray(p, p + na));
        p += na;
      }
    } catch (e) { Atomics.store(ctl, 2, 0); }
  }
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
`;

/** Numbers (f64) of a worker's job buffer: instance, call count, then per call [function, arg count, args…]. */
const JOB_SLOTS = 4096;
/** A worker that has not started after this long is reported (the caller is blocked waiting for it). */
const WORKER_START_TIMEOUT_MS = 60_000;

interface WorkerSlot {
  worker: Worker;
  port: MessagePort;
  /**
   * [0] job generation posted, [1] generation done, [2] 1 = last job ok (0: it threw), [3] 1 started / −1
   * failed to start, [4] who runs the posted share: 0 not claimed yet, 1 the worker, 2 the calling thread
   */
  ctl: Int32Array;
  job: Float64Array;
  spawnedAt: number;
  /** instances already sent to this worker */
  sent: Set<number>;
}

interface Registered {
  module: WasmModule;
  memory: WasmMemory;
  names: readonly string[];
  /** function index by name */
  index: Map<string, number>;
}

export class WorkerPool {
  /** The workers' source and start timeout; tests swap them to simulate a worker that cannot start. */
  static workerSource = WORKER_SOURCE;
  static startTimeoutMs = WORKER_START_TIMEOUT_MS;
  private workers: WorkerSlot[] = [];
  private instances: Registered[] = [];
  private busy = false;

  /**
   * Registers `module` bound to `memory` (which must be shared: the workers compute on it) with its
   * functions `names`; returns the id that `run` takes. The same pair registered again gets the same id.
   */
  register(module: WasmModule, memory: WasmMemory, names: readonly string[]): number {
    const known = this.instances.findIndex((r) => r.module === module && r.memory === memory);
    if (known >= 0) return known;
    this.instances.push({ module, memory, names, index: new Map(names.map((n, i) => [n, i])) });
    return this.instances.length - 1;
  }

  /**
   * Runs one share per thread of instance `id` (share 0 on this thread, with `main`, its instance here)
   * and returns when all are done. `before` of a share runs just before it is launched, `after` once it
   * has finished, so the calling thread's copies overlap other threads' work.
   */
  run(id: number, main: Exports, shares: Share[], caller: Caller): void {
    if (this.busy) throw new Error(`${caller.what}: the worker pool is already running a call (re-entered)`);
    this.busy = true;
    try {
      this.runShares(id, main, shares, caller);
    } catch (e) {
      // Workers may still be running shares of the failed call: end them, so no later job is written
      // under a running one (the next call starts fresh workers).
      this.discardWorkers();
      throw e;
    } finally {
      this.busy = false;
    }
  }

  private runShares(id: number, main: Exports, shares: Share[], caller: Caller): void {
    const inst = this.instances[id];
    while (this.workers.length < shares.length - 1) this.spawn();
    const gens: number[] = [];
    for (let w = 1; w < shares.length; w++) {
      shares[w].before?.();
      const slot = this.workers[w - 1];
      if (!slot.sent.has(id)) {
        slot.port.postMessage({ id, module: inst.module, memory: inst.memory, names: inst.names });
        slot.sent.add(id);
      }
      let p = 0;
      slot.job[p++] = id;
      slot.job[p++] = shares[w].calls.length;
      for (const [name, args] of shares[w].calls) {
        if (p + 2 + args.length > JOB_SLOTS) throw new Error(`${caller.what}: a share's call list is too long`);
        const fn = inst.index.get(name);
        if (fn === undefined) throw new Error(`${caller.what}: no kernel function '${name}'`);
        slot.job[p++] = fn;
        slot.job[p++] = args.length;
        for (const a of args) slot.job[p++] = a;
      }
      // The job is written before its claim word opens (a late worker that still claims it finds it whole).
      Atomics.store(slot.ctl, 2, 1);
      Atomics.store(slot.ctl, 4, 0);
      const gen = Atomics.add(slot.ctl, 0, 1) + 1;
      Atomics.notify(slot.ctl, 0);
      gens.push(gen);
    }
    shares[0].before?.();
    const here = shares[0].exports ?? main;
    for (const [name, args] of shares[0].calls) here[name](...args);
    shares[0].after?.();
    // Shares whose worker has not woken yet (a busy machine, a worker still starting) run here, so a call
    // never waits for a thread that has no core: the same calls on the same memory, the same results.
    const taken = shares.map((_, w) => w > 0 && Atomics.compareExchange(this.workers[w - 1].ctl, 4, 0, 2) === 0);
    for (let w = 1; w < shares.length; w++) {
      if (taken[w]) for (const [name, args] of shares[w].calls) main[name](...args);
    }
    for (let w = 1; w < shares.length; w++) {
      const slot = this.workers[w - 1];
      if (!taken[w]) {
        // Claimed by its worker, which has started: wait for it. (The event loop is blocked here, so a
        // worker cannot announce anything with an event; a kernel that throws is caught in the worker.)
        for (;;) {
          const done = Atomics.load(slot.ctl, 1);
          if (done === gens[w - 1]) break;
          Atomics.wait(slot.ctl, 1, done, 1000);
        }
        if (Atomics.load(slot.ctl, 2) !== 1) {
          this.discardWorkers();
          throw new Error(`${caller.what}: a worker thread failed; ${caller.hint}`);
        }
      }
      shares[w].after?.();
    }
    // A worker that failed to start, or has not started long after it was spawned, is reported (its
    // shares ran here meanwhile); the next call starts fresh workers.
    for (let w = 1; w < shares.length; w++) {
      const slot = this.workers[w - 1];
      const state = Atomics.load(slot.ctl, 3);
      if (state < 0 || (state === 0 && Date.now() - slot.spawnedAt > WorkerPool.startTimeoutMs)) {
        this.discardWorkers();
        throw new Error(
          `${caller.what}: a worker thread ${state < 0 ? 'failed to start' : `did not start within ${WorkerPool.startTimeoutMs / 1000} s`}; ` +
            caller.hint,
        );
      }
    }
  }

  /** Starts workers until there are `count` (benchmarks start them up front to tell their threads apart). */
  prestart(count: number): void {
    while (this.workers.length < count) this.spawn();
  }

  /** Worker threads running now (for tests and benchmarks). */
  get size(): number {
    return this.workers.length;
  }

  /** Ends every worker (after a failure, or to release the threads): the next call starts fresh ones. */
  discardWorkers(): void {
    for (const slot of this.workers) {
      void slot.worker.terminate();
      slot.port.close();
    }
    this.workers = [];
  }

  private spawn(): void {
    const ctrl = new SharedArrayBuffer(20);
    const job = new SharedArrayBuffer(JOB_SLOTS * 8);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WorkerPool.workerSource, {
      eval: true,
      workerData: { ctrl, job, port: port2 },
      transferList: [port2],
    });
    worker.unref(); // never keeps the process alive
    port1.unref();
    worker.on('error', () => {}); // a failed start is reported by run() through ctl[3], not as an uncaught error
    this.workers.push({
      worker,
      port: port1,
      ctl: new Int32Array(ctrl),
      job: new Float64Array(job),
      spawnedAt: Date.now(),
      sent: new Set(),
    });
  }
}

let pool: WorkerPool | undefined;

/** The process's worker pool (created at first use; its workers start when a call needs them). */
export function workerPool(): WorkerPool {
  pool ??= new WorkerPool();
  return pool;
}

/** Index ranges [start, end) for each of at most `threads` threads over `n` items in steps of `grain` (no empty shares). */
export function splitRange(n: number, threads: number, grain = 1): Array<[number, number]> {
  const units = Math.ceil(n / grain);
  const t = Math.max(1, Math.min(threads, units));
  return Array.from({ length: t }, (_, i) => [
    Math.min(n, Math.floor((i * units) / t) * grain),
    Math.min(n, Math.floor(((i + 1) * units) / t) * grain),
  ]);
}
