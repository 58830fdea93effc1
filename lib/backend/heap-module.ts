/**
 * A module of the kit's own SIMD kernels (assembled by lib/util/wasm-asm.ts) instantiated on the wasm
 * backend's memory, once per memory: the kernels then take byte offsets of tensors in that heap, and
 * nothing is copied. The memory may be shared (a threaded backend build): the module's import then says
 * so, or it would not link, and the same module can run on the worker pool's threads (./heap-threads.ts).
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  backendHeapMemory,
  compileOptimized,
  memoryImportFor,
  WA,
  type WasmMemory,
  type WasmModule,
} from '../util/wasm-api';
import { assembleModule, type Fn } from '../util/wasm-asm';

/** A heap module bound to one backend memory: its exports here, and what a worker needs to bind it too. */
export interface BoundHeapModule<Exports> {
  exports: Exports;
  module: WasmModule;
  memory: WasmMemory;
  /** true on a threaded backend build (SharedArrayBuffer heap): other threads may run the kernels */
  shared: boolean;
}

/**
 * `(backend) => exports`: the functions `build()` returns, compiled at first use and bound to the
 * backend's memory; undefined where that memory is not reachable or the module does not compile (e.g.
 * no wasm SIMD), so callers fall back to the kernels they replace. `.bound(backend)` gives the module
 * and memory as well (for the worker pool).
 */
export type HeapModule<Exports> = ((backend: BackendWasm) => Exports | undefined) & {
  bound(backend: BackendWasm): BoundHeapModule<Exports> | undefined;
};

export function heapModule<Exports>(build: () => Fn[]): HeapModule<Exports> {
  const compiled = new Map<boolean, WasmModule>();
  const instances = new WeakMap<WasmMemory, BoundHeapModule<Exports>>();
  let unavailable = false;
  const bound = (backend: BackendWasm): BoundHeapModule<Exports> | undefined => {
    const memory = backendHeapMemory(backend.wasm);
    if (unavailable || !memory) return undefined;
    let b = instances.get(memory);
    if (!b) {
      try {
        const limits = memoryImportFor(memory);
        let module = compiled.get(limits.shared);
        if (!module) {
          module = compileOptimized(assembleModule(build(), limits));
          compiled.set(limits.shared, module);
        }
        const exports = new WA.Instance(module, { env: { mem: memory } }).exports as unknown as Exports;
        b = { exports, module, memory, shared: limits.shared };
      } catch {
        unavailable = true;
        return undefined;
      }
      instances.set(memory, b);
    }
    return b;
  };
  return Object.assign((backend: BackendWasm) => bound(backend)?.exports, { bound });
}

/**
 * MSM_CNN_KERNELS=off: the CNN training kernels (conv-gemm.ts, max-pool-grad-heap.ts) step aside for the kernels they replaced — for side-by-side timings in one process
 * and for tests against those kernels. Read at every call, so it can be flipped between steps.
 */
export function cnnKernelsOff(): boolean {
  return process.env.MSM_CNN_KERNELS === 'off';
}
