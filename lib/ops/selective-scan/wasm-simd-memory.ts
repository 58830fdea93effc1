/**
 * Where the SIMD scan engine's arrays live for one kernel call (wasm-simd.ts). The batch is split into
 * shares, one per thread (wasm-simd-threads.ts). Space 0 is the caller's wasm heap (the wasm backend):
 * share 0 works there in place, with scratch from the heap's malloc, so a single-threaded call copies
 * nothing; when that heap is shared (the threaded wasm build) every share works there in place, and
 * nothing is copied at all. Otherwise space 1 is the engine's own (shared) WebAssembly.Memory: the other
 * shares run on copies of their batch rows there, copied in just before each share starts and out as it
 * ends. On the cpu backend every share uses space 1. That memory grows to the largest call seen and is kept.
 * Row-indexed base pointers of a space that holds rows [r0, r1) only are shifted by −r0 rows, so the
 * kernels index absolute batch rows everywhere.
 */
import type { ScanSizes } from './cpu-kernel';
import type { WasmHeap } from './fused-cpu';
import { WasmMemory } from '../../util/wasm-api';
import { MAX_PAGES } from './wasm-simd-kernels';
import { Exports, split, threadCount } from './wasm-simd-threads';

/** What a placement needs from the engine: its memory, whether threads can share it, and kernels bound to a heap. */
export interface PlacementHost {
  memory: WasmMemory;
  shared: boolean;
  /** An instance of the kernels bound to another memory (the caller's heap). */
  localExports(memory: WasmMemory): Exports;
}

/** `floats` floats of `memory` from `byteOffset`. */
export function viewOf(memory: WasmMemory, byteOffset: number, floats: number): Float32Array {
  return new Float32Array(memory.buffer, byteOffset, floats);
}

/**
 * Bump allocator for one kernel call: regions 16-byte aligned with 16 bytes of slack, addressed
 * relative to a base that is fixed afterwards (0 in the engine's memory, a malloc'd block in a heap).
 */
class Arena {
  size = 0;
  base = 0;
  private offs: number[] = [];
  /** Reserves `floats` floats; returns a handle for `at`. */
  alloc(floats: number): number {
    this.offs.push(this.size);
    this.size += Math.ceil((floats * 4 + 16) / 16) * 16;
    return this.offs.length - 1;
  }
  /** Byte address of region `h`. */
  at(h: number): number {
    return this.base + this.offs[h];
  }
  /** Grows `memory` to hold the arena at address 0. */
  commit(memory: WasmMemory): void {
    const need = Math.ceil(this.size / 65536);
    const have = memory.buffer.byteLength / 65536;
    if (need > MAX_PAGES) throw new Error(`selective scan (wasm-simd): needs ${this.size} bytes, over wasm32's 4 GiB`);
    if (need > have) memory.grow(need - have);
  }
}

/**
 * Places one call in memory. `arrays`: the caller's batch-major arrays (name → [array, floats per
 * batch row]), used in place by share 0 on a heap, else copied per share; `scratch`: buffers each
 * memory needs (name → [floats, per batch row?]); `perShare`: buffers each thread needs; `extras`:
 * other caller arrays to re-view after allocating. Returns pointer and view helpers per share.
 */
export function placeCall(
  host: PlacementHost,
  s: ScanSizes,
  heap: WasmHeap | undefined,
  arrays: Record<string, [Float32Array, number]>,
  scratch: Record<string, [number, boolean]>,
  perShare: Record<string, number>,
  extras: Record<string, Float32Array>,
) {
  const parts = split(s.b, host.shared ? threadCount() : 1);
  const inPlace = heap !== undefined;
  // a shared heap: the workers compute on it too (the threaded backend build)
  const allInPlace =
    inPlace && typeof SharedArrayBuffer !== 'undefined' && heap.memory.buffer instanceof SharedArrayBuffer;
  // Where the caller's arrays are, taken before any allocation can grow (and detach) the heap.
  const where: Record<string, [number, number]> = {};
  for (const [k, a] of Object.entries({
    ...extras,
    ...Object.fromEntries(Object.entries(arrays).map(([k, [a]]) => [k, a])),
  })) {
    where[k] = [a.byteOffset, a.length];
  }
  const callerArray = (k: string, a: Float32Array) => (inPlace ? viewOf(heap.memory, where[k][0], where[k][1]) : a);
  // Space 0 = the caller's heap (share 0, or every share on a shared heap) when in place; space 1 = the
  // engine's memory.
  const firstShared = allInPlace ? parts.length : inPlace ? 1 : 0;
  const sharedRows: [number, number] = [parts[Math.min(firstShared, parts.length - 1)][0], s.b];
  const hasShared = firstShared < parts.length;
  const arenas = [new Arena(), new Arena()];
  const handles: Array<Record<string, number>> = [{}, {}];
  const spaceOf = (w: number) => (inPlace && (w === 0 || allInPlace) ? 0 : 1);
  const spaces = inPlace ? (hasShared ? [0, 1] : [0]) : [1];
  for (const sp of spaces) {
    const ar = arenas[sp];
    // space 0 holds rows from 0: share 0's, or all of them
    const nRows = sp === 0 ? (allInPlace ? s.b : parts[0][1]) : sharedRows[1] - sharedRows[0];
    if (sp === 1) for (const [k, [, row]] of Object.entries(arrays)) handles[sp][k] = ar.alloc(nRows * row);
    for (const [k, [size, perRow]] of Object.entries(scratch)) handles[sp][k] = ar.alloc(perRow ? nRows * size : size);
  }
  const shareHandles = parts.map((_, w) => {
    const h: Record<string, number> = {};
    for (const [k, size] of Object.entries(perShare)) h[k] = arenas[spaceOf(w)].alloc(size);
    return h;
  });
  let block = 0;
  if (inPlace) {
    block = heap.malloc(arenas[0].size + 16);
    if (!block) throw new Error(`selective scan (wasm-simd): the wasm heap cannot allocate ${arenas[0].size} bytes`);
    arenas[0].base = Math.ceil(block / 16) * 16;
  }
  if (hasShared) arenas[1].commit(host.memory);
  const memOf = (sp: number) => (sp === 0 ? (heap as WasmHeap).memory : host.memory);
  // Caller arrays again (a heap growth in malloc detaches the old views).
  const fresh: Record<string, Float32Array> = {};
  for (const [k, [a]] of Object.entries(arrays)) fresh[k] = callerArray(k, a);
  for (const [k, a] of Object.entries(extras)) fresh[k] = callerArray(k, a);
  /** Byte pointer of `name` for share w (row-shifted in the shared space). */
  const ptr = (w: number, name: string): number => {
    const sp = spaceOf(w);
    if (sp === 0 && name in arrays) return fresh[name].byteOffset;
    const h = handles[sp][name];
    const base = arenas[sp].at(h);
    const row = arrays[name]?.[1] ?? (scratch[name]?.[1] ? scratch[name][0] : 0);
    return sp === 1 ? base - sharedRows[0] * row * 4 : base;
  };
  const perShareAt = (w: number, name: string) => arenas[spaceOf(w)].at(shareHandles[w][name]);
  const view = (w: number, name: string, floats: number) => viewOf(memOf(spaceOf(w)), ptr(w, name), floats);
  const copyIn = (w: number, names: string[]) => {
    if (spaceOf(w) === 0) return;
    const [b0, b1] = parts[w];
    for (const k of names) {
      const row = arrays[k][1];
      viewOf(host.memory, ptr(w, k) + b0 * row * 4, (b1 - b0) * row).set(fresh[k].subarray(b0 * row, b1 * row));
    }
  };
  const copyOut = (w: number, names: string[]) => {
    if (spaceOf(w) === 0) return;
    const [b0, b1] = parts[w];
    for (const k of names) {
      const row = arrays[k][1];
      fresh[k].set(viewOf(host.memory, ptr(w, k) + b0 * row * 4, (b1 - b0) * row), b0 * row);
    }
  };
  const exportsFor = (w: number) => (spaceOf(w) === 0 ? host.localExports((heap as WasmHeap).memory) : undefined);
  const release = () => {
    if (inPlace) heap.free(block);
  };
  return { parts, ptr, perShareAt, view, copyIn, copyOut, exportsFor, release, fresh, spaceOf, memOf, allInPlace };
}

/** One call's placement (see placeCall). */
export type Placement = ReturnType<typeof placeCall>;
