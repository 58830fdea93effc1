/**
 * The kit's heap kernels on several threads: the GEMMs of ./conv-gemm.ts and ./matmul.ts, im2col /
 * col2im, ./max-pool-grad-heap.ts, the depthwise filter gradient (./conv-gradients.ts), the row-wise
 * passes and BatchNorm's per-channel sums of ./norms.ts, ./activations.ts, and the Adam update
 * (./optimizer.ts); LayerNorm's backward and ./reductions.ts stay on the calling thread.
 * The threaded wasm build (./wasm-threads.ts) keeps its heap in a shared WebAssembly.Memory, so the
 * same kernel module runs unchanged on the process's worker pool (./worker-pool.ts, the threads of the
 * fused selective scan too), every thread on the very tensors of the heap: nothing is copied.
 *
 * Thread count: the one the backend was started with (MSM_THREADS / --threads, default all cores, at
 * most 8: what `initBackend` reported), 1 on the one-thread build (its heap is not shared);
 * MSM_HEAP_THREADS=N caps it (read at every call: 1 keeps these kernels on the calling thread while
 * XNNPACK keeps its threads — for side-by-side timings, and for a machine where the extra threads only
 * compete with other work; results do not change). A call is
 * split only as far as it has work: at least MIN_WORK_PER_SHARE multiply-adds (or taps) per share, so a
 * small product is not slowed by waking threads.
 *
 * Determinism by construction: callers split a call by OUTPUT (rows of a GEMM's result, images of a
 * col2im or a pool gradient), never by a sum's index, so every output element is computed by one thread
 * in the same summation order whatever the thread count — results are bit-identical for 1 and N threads.
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { currentBackend } from './hooks';
import type { HeapModule } from './heap-module';
import { type Caller, type Calls, type Exports, splitRange, workerPool } from './worker-pool';

export { splitRange } from './worker-pool';

const HEAP: Caller = {
  what: "wasm heap kernels (the kit's GEMM, im2col / col2im, MaxPoolGrad)",
  hint: 'run with MSM_THREADS=1 (or --threads 1) to compute on the calling thread only',
};

/** Below this much work (multiply-adds, or window taps) per share a call is not split further. */
export const MIN_WORK_PER_SHARE = 1 << 18;

/** Threads the heap kernels may use on this backend: the wasm backend's reported thread count (capped by MSM_HEAP_THREADS), else 1. */
export function heapThreads(): number {
  const info = currentBackend();
  const t = info?.name === 'wasm' ? info.details.threads : undefined;
  const backend = typeof t === 'number' && Number.isInteger(t) && t > 1 ? t : 1;
  const raw = process.env.MSM_HEAP_THREADS;
  if (raw === undefined || raw.trim() === '') return backend;
  const cap = Number(raw);
  if (!Number.isInteger(cap) || cap < 1) {
    throw new Error(
      `MSM_HEAP_THREADS must be a whole number of threads ≥ 1 (got '${raw}'); unset it to use the backend's count`,
    );
  }
  return Math.min(backend, cap);
}

/** Shares for `work` units of work: heapThreads(), fewer when a share would get under MIN_WORK_PER_SHARE. */
export function sharesFor(work: number): number {
  return Math.max(1, Math.min(heapThreads(), Math.floor(work / MIN_WORK_PER_SHARE)));
}

/**
 * Runs `shares` (call lists of `kernels`' functions, each writing memory no other share writes) on the
 * backend's heap: share 0 on this thread, the others on the worker pool. Where the heap is not shared
 * (the one-thread build) the shares run one after another here — the same calls, so the same results.
 */
export function runOnHeap<E>(kernels: HeapModule<E>, backend: BackendWasm, shares: Calls[]): void {
  const b = kernels.bound(backend);
  if (!b) throw new Error('wasm heap kernels: the backend heap is not reachable (check availability first)');
  const here = b.exports as unknown as Exports;
  if (shares.length <= 1 || !b.shared) {
    for (const calls of shares) for (const [name, args] of calls) here[name](...args);
    return;
  }
  const pool = workerPool();
  const id = pool.register(b.module, b.memory, Object.keys(b.exports as object));
  pool.run(
    id,
    here,
    shares.map((calls) => ({ calls })),
    HEAP,
  );
}

/**
 * A GEMM c[M, N] = a·b (gemm_m / gemm_n of ./simd/matmul.ts; a's element (m, k) at a + 4·(m·sam + k·sak),
 * c row-major) as one call per share: rows of c in blocks of 4 (the kernel's row tile). Each share's
 * rows are whole dot products in the kernel's k order: the split changes no sum.
 */
export function gemmRowShares(
  fn: 'gemm_m' | 'gemm_n',
  [a, b, c]: [number, number, number],
  [M, N, K]: [number, number, number],
  [sam, sak, ldb, kc]: [number, number, number, number],
  shares: number,
): Calls[] {
  return splitRange(M, shares, 4).map(([m0, m1]) => [
    [fn, [a + 4 * m0 * sam, b, c + 4 * m0 * N, m1 - m0, N, K, sam, sak, ldb, kc]],
  ]);
}

/**
 * Calls of an elementwise or row-wise kernel split by rows: `call(r0, r1)` is the call for rows [r0, r1)
 * (its pointers offset to row r0); `rowWork`: work per row (e.g. its elements).
 */
export function rowShares(
  rows: number,
  rowWork: number,
  call: (r0: number, r1: number) => [string, number[]],
): Calls[] {
  return splitRange(rows, sharesFor(rows * rowWork)).map(([r0, r1]) => [call(r0, r1)]);
}
