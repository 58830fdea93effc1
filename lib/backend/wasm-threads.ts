/**
 * Starts tfjs-backend-wasm with XNNPACK on several threads under Node: its threaded SIMD build
 * (`tfjs-backend-wasm-threaded-simd.wasm`), which tfjs 4.22 ships but never uses in Node. One thread
 * (`MSM_THREADS=1`, `--threads 1`) starts the plain SIMD build exactly as tfjs does by itself.
 * See docs/platform.md §wasm in Node.
 *
 * Why the threaded build does not start in Node by itself, and what is done about each, only while the
 * backend initialises (everything is put back afterwards):
 *
 *   1. tfjs reports `WASM_HAS_MULTITHREAD_SUPPORT` false whenever IS_NODE (tfjs#3830). The flag is set
 *      through `tf.env()`, its documented switch, and `setThreadsCount` names the count.
 *   2. Emscripten starts each pthread worker as `new Worker(URL.createObjectURL(blob))`, and Node's
 *      `worker_threads.Worker` refuses `blob:` URLs (ERR_WORKER_PATH). The glue assigns Node's class to
 *      `globalThis.Worker` and then constructs `new Worker(url)`; during initialisation that global reads
 *      as `PthreadWorker` below, a `worker_threads.Worker` that starts from code (`eval: true`): a small
 *      bootstrap that receives the text of the blob (Emscripten's pthread worker script, read back with
 *      `buffer.resolveObjectURL`) and runs it.
 *   3. The pthread worker then loads the Emscripten glue with `importScripts(urlOrBlob)`, a file read;
 *      tfjs hands it a Blob holding `"var WasmBackendModuleThreadedSimd = " + factory.toString()`. That
 *      text is read back on the main thread and sent to the worker, whose `importScripts` evaluates it.
 *      Lifted out of tfjs' rollup bundle, the factory refers to a few names of that bundle (its
 *      `require$$N` aliases of fs, path, perf_hooks and os, tslib's `__read`/`__values`/`__spreadArray`,
 *      `commonjsGlobal`); GLUE_PRELUDE defines them in the worker.
 *   4. tfjs sizes XNNPACK's pool as min(requested, 8, logical cores / 2) (it assumes two hyper-threads
 *      per core), the cores read in Node from `os.cpus().length`: a 2-core machine would get 1 thread.
 *      While the module starts, `os.cpus()` lists twice the requested count, so the request is what
 *      decides. 8 is a hard limit: the build pre-starts 8 pthread workers, and a pool thread beyond them
 *      would wait for a worker that can only load after the wait ends.
 *
 * Memory: the threaded build's heap is a shared WebAssembly.Memory (SharedArrayBuffer), kept as the
 * module's `wasmMemory` rather than exported (`backendHeapMemory`, ../util/wasm-api.ts); the kit's own
 * wasm kernels import it as shared.
 *
 * Changing the count in a running process re-creates the wasm backend (tf.removeBackend + the same
 * factory): tensors held on the old one are gone, as with any backend removal.
 */
import * as tf from '@tensorflow/tfjs';
import { Blob, resolveObjectURL } from 'buffer';
import * as path from 'path';
import * as worker_threads from 'worker_threads';

type WasmPackage = typeof import('@tensorflow/tfjs-backend-wasm');

/** XNNPACK threads the threaded build can run (its pre-started pthread workers). */
export const MAX_WASM_THREADS = 8;
/** The tfjs-backend-wasm release the glue handling (GLUE_PRELUDE) was written against. */
const SUPPORTED_WASM_VERSION = '4.22.0';

export interface ThreadsChoice {
  threads: number;
  source: 'argument' | 'MSM_THREADS' | 'default';
  /** set when the request was above MAX_WASM_THREADS */
  capped?: number;
}

/** Cores this process may use (Node's `availableParallelism`, which honours CPU affinity). */
export function availableCores(): number {
  const os = require('os') as typeof import('os');
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

function parseCount(raw: string | number, where: string): number {
  const n = typeof raw === 'number' ? raw : Number(raw.trim());
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`${where} must be a whole number of threads ≥ 1 (got '${raw}'); 1 = the one-thread wasm build`);
  }
  return n;
}

/** XNNPACK threads for the wasm backend: argument > MSM_THREADS > all cores, at most MAX_WASM_THREADS. */
export function resolveThreads(requested?: number): ThreadsChoice {
  let n: number;
  let source: ThreadsChoice['source'];
  if (requested !== undefined) {
    n = parseCount(requested, '--threads');
    source = 'argument';
  } else if (process.env.MSM_THREADS !== undefined && process.env.MSM_THREADS.trim() !== '') {
    n = parseCount(process.env.MSM_THREADS, 'MSM_THREADS');
    source = 'MSM_THREADS';
  } else {
    n = availableCores();
    source = 'default';
  }
  if (n > MAX_WASM_THREADS) return { threads: MAX_WASM_THREADS, source, capped: n };
  return { threads: n, source };
}

/** `--threads N` / `--threads=N` from an argv list, for scripts (undefined when absent). */
export function threadsFromArgv(argv: string[] = process.argv.slice(2)): number | undefined {
  for (let i = 0; i < argv.length; i++) {
    let raw: string | undefined;
    if (argv[i] === '--threads') raw = argv[i + 1] ?? '';
    else if (argv[i].startsWith('--threads=')) raw = argv[i].slice('--threads='.length);
    if (raw !== undefined) return parseCount(raw, '--threads');
  }
  return undefined;
}

// ---- the pthread worker --------------------------------------------------------------------------

/** What importScripts is asked for instead of the glue's Blob. */
const GLUE_NAME = 'msm:tfjs-backend-wasm-threaded-simd.js';

/**
 * Names the glue (the Emscripten factory cut out of tfjs' rollup bundle) uses from that bundle, defined
 * for the worker: the `require$$N` aliases (tf-backend-wasm.node.js lines 20-23), tslib helpers with
 * the semantics the glue relies on (iterate arrays, spread call arguments), `commonjsGlobal`, and the
 * directory the glue would resolve files against (it loads nothing from there: the worker instantiates
 * the module it is sent).
 */
function gluePrelude(distDir: string): string {
  return [
    "var require$$0 = require('fs'), require$$1 = require('path'),",
    "  require$$3 = require('perf_hooks'), require$$4 = require('os');",
    'var commonjsGlobal = globalThis, _scriptDir = undefined;',
    `var __dirname = ${JSON.stringify(distDir)};`,
    'function __values(o) { return o[Symbol.iterator](); }',
    'function __read(o, n) { var a = Array.from(o); return n === undefined ? a : a.slice(0, n); }',
    'function __spreadArray(to, from) { return to.concat(Array.prototype.slice.call(from)); }',
    '',
  ].join('\n');
}

/**
 * Runs in each pthread worker (`eval: true`): waits for the boot message (Emscripten's worker script
 * and the glue), runs the worker script, and answers importScripts(GLUE_NAME) with the glue. Messages
 * Emscripten posts meanwhile are held on the main thread (PthreadWorker), so nothing arrives early.
 */
const BOOTSTRAP = `
const { parentPort } = require('worker_threads');
globalThis.require = require;
parentPort.once('message', (boot) => {
  try {
    (0, eval)(boot.workerScript);
    const importFile = globalThis.importScripts;
    globalThis.importScripts = (f) => (f === ${JSON.stringify(GLUE_NAME)} ? (0, eval)(boot.glue) : importFile(f));
  } catch (e) {
    parentPort.postMessage({ msmBootError: String((e && e.stack) || e) });
  }
});
`;

/** How the threaded build is started; tests swap them to simulate workers that fail or never start. */
export const threadedStart = {
  /** the code each pthread worker starts from */
  bootstrap: BOOTSTRAP,
  /** a start that has not finished by then is reported instead of waited for */
  timeoutMs: 120_000,
};

interface GlueTexts {
  workerScript: string;
  glue: string;
}

/** State of one initialisation: the texts, read back from tfjs' blobs once, and how it failed. */
class GlueSource {
  private workerUrl?: string;
  private glueBlob?: Blob;
  private waiting: Array<() => void> = [];
  private texts?: Promise<GlueTexts>;
  /** Rejects with the first failure of a worker while the backend starts. */
  readonly failed: Promise<never>;
  fail!: (why: string) => void;
  /** Set once the backend has started: later worker errors take Emscripten's own course. */
  started = false;
  /** Set when the start failed: the other workers' errors (the same failure, arriving later) are already reported. */
  abandoned = false;
  /** Every pthread worker started, to be ended if the start fails. */
  readonly workers: worker_threads.Worker[] = [];
  constructor(private distDir: string) {
    this.failed = new Promise<never>((_, reject) => (this.fail = (why) => reject(new Error(why))));
    this.failed.catch(() => {}); // observed by the caller's race; never an unhandled rejection
  }

  offerWorkerUrl(url: string): void {
    this.workerUrl ??= url;
    this.poke();
  }
  offerGlue(blob: Blob): void {
    this.glueBlob ??= blob;
    this.poke();
  }
  private poke(): void {
    if (this.workerUrl && this.glueBlob) for (const w of this.waiting.splice(0)) w();
  }
  /** Resolves once both blobs have been seen and read. */
  get(): Promise<GlueTexts> {
    this.texts ??= new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.poke();
    }).then(async () => {
      const workerBlob = resolveObjectURL(this.workerUrl!);
      if (!workerBlob) throw new Error(`the pthread worker script ${this.workerUrl} was revoked before it was read`);
      return { workerScript: await workerBlob.text(), glue: gluePrelude(this.distDir) + (await this.glueBlob!.text()) };
    });
    return this.texts;
  }
}

/** Emscripten's pthread worker, started from code: `new Worker(blobUrl)` as the glue calls it. */
function pthreadWorkerClass(source: GlueSource) {
  return class PthreadWorker extends worker_threads.Worker {
    /** Emscripten's messages until the boot message has gone out (undefined afterwards). */
    private held: Array<[unknown, readonly worker_threads.TransferListItem[] | undefined]> | undefined = [];
    constructor(url: string | URL) {
      super(threadedStart.bootstrap, { eval: true });
      source.workers.push(this);
      source.offerWorkerUrl(String(url));
      super.on('message', (m: { msmBootError?: string } | undefined) => {
        if (m && typeof m === 'object' && m.msmBootError) source.fail(m.msmBootError);
      });
      source.get().then(
        (texts) => {
          super.postMessage(texts);
          for (const [m, t] of this.held ?? []) super.postMessage(m, t);
          this.held = undefined;
        },
        (e: Error) => source.fail(e.message),
      );
    }
    postMessage(message: unknown, transfer?: readonly worker_threads.TransferListItem[]): void {
      const m = message as { cmd?: string; urlOrBlob?: unknown } | undefined;
      if (m && m.cmd === 'load' && m.urlOrBlob instanceof Blob) {
        source.offerGlue(m.urlOrBlob);
        message = { ...m, urlOrBlob: GLUE_NAME };
      }
      if (this.held) this.held.push([message, transfer]);
      else super.postMessage(message, transfer);
    }
    /**
     * Emscripten refs a worker while it runs a pthread, as a program's own threads would keep it alive;
     * XNNPACK's pool threads wait for work for the module's whole life, so they never hold the process.
     */
    ref(): void {}
    /** A worker that dies while the backend starts fails the start (Emscripten would rethrow it uncaught). */
    emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'error' && source.abandoned) return true;
      if (event === 'error' && !source.started) {
        const e = args[0] as Error | undefined;
        source.fail(`a pthread worker failed: ${e?.message ?? String(e)}`);
        return true;
      }
      return super.emit(event, ...args);
    }
  };
}

/** Runs `init` with the pthread Worker class and the core count Emscripten sees swapped in. */
async function withThreadedGlue<T>(threads: number, distDir: string, init: () => Promise<T>): Promise<T> {
  const source = new GlueSource(distDir);
  const Worker = pthreadWorkerClass(source);
  const g = globalThis as Record<string, unknown>;
  const savedWorker = Object.getOwnPropertyDescriptor(g, 'Worker');
  // The glue assigns worker_threads.Worker to the global before constructing; the assignment is dropped.
  Object.defineProperty(g, 'Worker', { configurable: true, get: () => Worker, set: () => {} });
  const os = require('os') as { cpus: () => unknown[] };
  const cpus = os.cpus;
  os.cpus = () => {
    const real = cpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  };
  let timer: NodeJS.Timeout | undefined;
  const { timeoutMs } = threadedStart;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ready after ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    return await Promise.race([init(), source.failed, timeout]);
  } catch (e) {
    source.abandoned = true;
    for (const w of source.workers) void w.terminate(); // they would keep the process alive, loading forever
    throw e;
  } finally {
    source.started = true;
    clearTimeout(timer);
    os.cpus = cpus;
    if (savedWorker) Object.defineProperty(g, 'Worker', savedWorker);
    else delete g.Worker;
  }
}

// ---- starting the backend ------------------------------------------------------------------------

/** The thread count the current wasm backend instance was started with (undefined: not started by us). */
let startedWith: number | undefined;

/**
 * Makes `activate()` (which sets the 'wasm' backend and waits for it) start tfjs' wasm backend on
 * `threads` XNNPACK threads, re-creating it first when it already runs with another count. Returns the
 * count XNNPACK reports.
 */
export async function startWasmThreads(threads: number, activate: () => Promise<void>): Promise<number> {
  const wasm = require('@tensorflow/tfjs-backend-wasm') as WasmPackage;
  const engine = tf.engine() as unknown as { registry: Record<string, unknown> };
  if (engine.registry.wasm) {
    const running = startedWith ?? wasm.getThreadsCount();
    if (running === threads) {
      await activate();
      return wasm.getThreadsCount();
    }
    recreateWasmBackend();
  }
  if (threads > 1 && wasm.version_wasm !== SUPPORTED_WASM_VERSION) {
    throw new Error(
      `--threads/MSM_THREADS ${threads}: the threaded wasm start-up is written for tfjs-backend-wasm ` +
        `${SUPPORTED_WASM_VERSION}, installed is ${wasm.version_wasm}; use MSM_THREADS=1 (see docs/platform.md)`,
    );
  }
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', threads > 1);
  wasm.setThreadsCount(threads);
  startedWith = undefined;
  if (threads === 1) {
    await activate();
  } else {
    const distDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    try {
      await withThreadedGlue(threads, distDir, activate);
    } catch (e) {
      throw new Error(
        `the threaded wasm backend (${threads} threads) did not start: ${(e as Error).message.split('\n')[0]}; ` +
          'run with MSM_THREADS=1 (or --threads 1) for the one-thread build',
      );
    }
  }
  const got = wasm.getThreadsCount();
  if (got !== threads) {
    throw new Error(
      `the wasm backend runs ${got} XNNPACK thread(s), ${threads} were asked for (MSM_THREADS/--threads)`,
    );
  }
  startedWith = threads;
  return got;
}

/** Drops the wasm backend instance and registers its factory again, so the next setBackend starts anew. */
function recreateWasmBackend(): void {
  const factory = tf.findBackendFactory('wasm');
  const registered = (tf.engine() as unknown as { registryFactory: Record<string, { priority: number }> })
    .registryFactory.wasm;
  if (!factory || !registered) throw new Error('the wasm backend is not registered with tfjs');
  const priority = registered.priority;
  tf.removeBackend('wasm');
  tf.registerBackend('wasm', factory, priority);
}
