/**
 * The parts of the WebAssembly JS API the kit uses, typed here because tslab compiles lib/ with
 * `lib: ["es2022"]` only, and TypeScript declares the `WebAssembly` namespace in the DOM lib. At run time
 * this is Node's own global.
 */
import * as v8 from 'v8';

export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(deltaPages: number): number;
}
export type WasmModule = object;
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
export interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
}
export const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/**
 * Compiles straight to optimised code. V8 otherwise starts wasm functions in its baseline compiler
 * (Liftoff, several times slower on this code) and tiers up only on a later call, so a long first kernel
 * call (the first training step) would run entirely in baseline code. The flag is restored afterwards.
 */
export function compileOptimized(bytes: Uint8Array): WasmModule {
  let flagged = false;
  try {
    v8.setFlagsFromString('--no-liftoff');
    v8.setFlagsFromString('--no-wasm-lazy-compilation');
    flagged = true;
  } catch {
    /* flags unavailable: fall back to V8's default tiering */
  }
  try {
    return new WA.Module(bytes);
  } finally {
    if (flagged) {
      v8.setFlagsFromString('--liftoff');
      v8.setFlagsFromString('--wasm-lazy-compilation');
    }
  }
}

/** Pages of wasm32's whole 4 GiB address space: the maximum a shared memory's importer may declare. */
export const WASM32_MAX_PAGES = 65536;

/**
 * The linear memory of tfjs-backend-wasm's Emscripten module (4.22). The one-thread builds export it
 * (`asm.memory`); the threaded build creates it in JS as a shared memory, imports it, and keeps it as
 * `wasmMemory` (docs/platform.md §wasm in Node).
 */
export function backendHeapMemory(emscriptenModule: unknown): WasmMemory | undefined {
  const mod = emscriptenModule as { asm?: { memory?: unknown }; wasmMemory?: unknown } | undefined;
  const memory = mod?.asm?.memory ?? mod?.wasmMemory;
  return memory instanceof WA.Memory ? memory : undefined;
}

/**
 * How a module of the kit declares its imported memory so it can be bound to `memory`: a shared memory
 * must be imported as shared, with a maximum at least its own (tfjs' is the whole 4 GiB).
 */
export function memoryImportFor(memory: WasmMemory): { initial: number; maximum?: number; shared: boolean } {
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
  return shared ? { initial: 1, maximum: WASM32_MAX_PAGES, shared: true } : { initial: 1, shared: false };
}
