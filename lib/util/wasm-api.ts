/**
 * The parts of the WebAssembly JS API the kit uses, typed here because tslab compiles lib/ with
 * `lib: ["es2022"]` only, and TypeScript declares the `WebAssembly` namespace in the DOM lib. At run time
 * this is Node's own global.
 */
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
