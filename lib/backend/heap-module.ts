/**
 * A module of the kit's own SIMD kernels (assembled by lib/util/wasm-asm.ts) instantiated on the wasm
 * backend's memory, once per memory: the kernels then take byte offsets of tensors in that heap, and
 * nothing is copied. The memory may be shared (a threaded backend build): the module's import then says
 * so, or it would not link.
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

/**
 * `(backend) => exports`: the functions `build()` returns, compiled at first use and bound to the
 * backend's memory; undefined where that memory is not reachable or the module does not compile (e.g.
 * no wasm SIMD), so callers fall back to the kernels they replace.
 */
export function heapModule<Exports>(build: () => Fn[]): (backend: BackendWasm) => Exports | undefined {
  const compiled = new Map<boolean, WasmModule>();
  const instances = new WeakMap<WasmMemory, Exports>();
  let unavailable = false;
  return (backend) => {
    const memory = backendHeapMemory(backend.wasm);
    if (unavailable || !memory) return undefined;
    let ex = instances.get(memory);
    if (!ex) {
      try {
        const limits = memoryImportFor(memory);
        let module = compiled.get(limits.shared);
        if (!module) {
          module = compileOptimized(assembleModule(build(), limits));
          compiled.set(limits.shared, module);
        }
        ex = new WA.Instance(module, { env: { mem: memory } }).exports as unknown as Exports;
      } catch {
        unavailable = true;
        return undefined;
      }
      instances.set(memory, ex);
    }
    return ex;
  };
}

/**
 * MSM_CNN_KERNELS=off: the CNN training kernels (conv-gemm.ts, max-pool-grad-heap.ts) step aside for the kernels they replaced — for side-by-side timings in one process
 * and for tests against those kernels. Read at every call, so it can be flipped between steps.
 */
export function cnnKernelsOff(): boolean {
  return process.env.MSM_CNN_KERNELS === 'off';
}
