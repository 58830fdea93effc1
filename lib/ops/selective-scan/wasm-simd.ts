/**
 * The fused selective scan as WebAssembly SIMD (4 × f32 lanes), optionally on several threads: the fast
 * engine behind the wasm and cpu backends' kernels (fused-cpu.ts). It runs exactly the algorithm of
 * cpu-kernel.ts, split by job:
 *   wasm-simd-kernels.ts   the SIMD kernels (how the algorithm maps to SIMD) and their module
 *   wasm-simd-threads.ts   the worker threads that run shares of a call
 *   wasm-simd-memory.ts    where a call's arrays live (the caller's heap, the engine's shared memory)
 *   wasm-simd.ts           this file: the engine — one forward / backward call, split into shares
 *
 * Threads: the batch is split across the calling thread and worker_threads (MSM_SCAN_THREADS, default all
 * cores). The kernel call stays synchronous (tfjs kernels must be): the calling thread waits for the
 * workers with Atomics.wait. Each thread owns whole batch rows, so ∂B/∂C need no locking. ∂A, ∂D, ∂b_Δ
 * (shared by all rows) are summed over the rows in row order in f32 whatever the split, so results are
 * bit-identical for any thread count (and equal to one thread's): the first share keeps a running sum
 * over its rows, the others one record of partials per row, added on in row order at the end.
 *
 * Data flow: on the wasm backend the calling thread's share runs in place on the tensors in tfjs' wasm
 * heap (an instance of the same kernels bound to that memory; scratch from its malloc), so a
 * single-threaded call copies nothing; on the threaded wasm build that heap is shared and the workers
 * run their shares in place there too. Otherwise worker shares run on copies of their batch rows in the
 * engine's own shared WebAssembly.Memory (copied in just before each share starts, out as it ends). On
 * the cpu backend all shares use the shared memory. That memory grows to the largest call seen and is kept.
 * B and C are transposed to time-major [b, g, l, np] inside the kernels' scratch, ∂B and ∂C back.
 *
 * Shape glossary: b batch, d channels (g groups of e), l length, n state size, np = n rounded up to 4,
 * nv = np/4 vectors, T checkpoint chunk, K chunks (code names as in common.ts: d = K·E of
 * docs/architecture.md §Glossary; K here counts chunks, not directions).
 */
import { chunking, CrossArrays, CrossSizes, paddedState, ScanArrays, ScanGradArrays, ScanSizes } from './cpu-kernel';
import { jsEngine, provideSimdEngine, ScanEngine, WasmHeap } from './fused-cpu';
import { compileOptimized, memoryImportFor, WA, WasmMemory } from '../../util/wasm-api';
import { assembleModule } from '../../util/wasm-asm';
import {
  compile,
  compileError,
  compiledKernels,
  Compiled,
  FN_NAMES,
  kernelFunctions,
  LOG2E,
  SIMD_STATE_SIZES,
} from './wasm-simd-kernels';
import { placeCall, Placement, PlacementHost, viewOf } from './wasm-simd-memory';
import { Exports, Share, threadCount, ThreadPool } from './wasm-simd-threads';

export { SIMD_STATE_SIZES } from './wasm-simd-kernels';

/** Floats per batch row of each array (all arrays are batch-major). */
function rowSizes(s: ScanSizes) {
  const { d, l, n, g } = s;
  const np = paddedState(n);
  const { K } = chunking(l);
  return { dl: d * l, gnl: g * n * l, glnp: g * l * np, hs: d * K * np };
}

/**
 * The SIMD engine. A call splits the batch across threads (wasm-simd-threads.ts `split`). Share 0 runs on this thread; when
 * the caller's arrays live in a wasm heap (the wasm backend), share 0 works on them in place through an
 * instance bound to that heap, with scratch from its allocator. The other shares run in worker threads
 * on copies of their rows in the engine's shared memory, copied in just before each share starts and
 * out as it ends (so copies overlap computation). Row-indexed base pointers of a space that holds rows
 * [r0, r1) only are shifted by −r0 rows, so the kernels index absolute batch rows everywhere.
 */
class SimdScanEngine implements ScanEngine {
  readonly name = 'wasm-simd';
  private pool: ThreadPool;
  private locals = new WeakMap<WasmMemory, Exports>();
  private host: PlacementHost;
  constructor(private c: Compiled) {
    this.pool = new ThreadPool(c, FN_NAMES);
    this.host = { memory: c.memory, shared: c.shared, localExports: (m) => this.localExports(m) };
  }

  /** Ends the worker threads (see stopScanThreads). */
  stopThreads(): void {
    this.pool.discardWorkers();
  }

  /** The kernels' module for another memory (compiled on first use). */
  private localModule(memory: WasmMemory) {
    const limits = memoryImportFor(memory);
    this.c.local ??= new Map();
    let local = this.c.local.get(limits.shared);
    if (!local) this.c.local.set(limits.shared, (local = compileOptimized(assembleModule(kernelFunctions(), limits))));
    return local;
  }

  /** An instance of the kernels bound to another memory (compiled on first use). */
  private localExports(memory: WasmMemory): Exports {
    let ex = this.locals.get(memory);
    if (!ex) {
      ex = new WA.Instance(this.localModule(memory), { env: { mem: memory } }).exports as unknown as Exports;
      this.locals.set(memory, ex);
    }
    return ex;
  }

  /** Runs a call's shares: on the engine's memory, or all in place on a shared caller heap. */
  private runShares(pl: Placement, shares: Share[]): void {
    if (!pl.allInPlace) return this.pool.run(shares);
    const memory = pl.memOf(0);
    this.pool.runOn(this.localModule(memory), memory, this.localExports(memory), FN_NAMES, shares);
  }

  /**
   * The per-channel parameters into every space in use: A·log2(e) zero padded to [d, np] (the kernels
   * compute exp(ΔA) as 2^(Δ·A·log2 e)), D and b_Δ.
   */
  private putParams(pl: Placement, d: number, n: number, np: number): void {
    eachSpace(pl, (w) => {
      const A2 = pl.view(w, 'A2', d * np).fill(0);
      for (let c = 0; c < d; c++) for (let k = 0; k < n; k++) A2[c * np + k] = pl.fresh.A[c * n + k] * LOG2E;
      pl.view(w, 'D', d).set(pl.fresh.Dv);
      pl.view(w, 'bias', d).set(pl.fresh.biasv);
    });
  }

  forward(s: ScanSizes, x: ScanArrays, y: Float32Array, hs: Float32Array, heap?: WasmHeap): void {
    const np = paddedState(s.n);
    if (!SIMD_STATE_SIZES.includes(np)) return jsEngine.forward(s, x, y, hs);
    const { d, l, n, g } = s;
    const { T, K } = chunking(l);
    const R = rowSizes(s);
    const pl = placeCall(
      this.host,
      s,
      heap,
      { u: [x.u, R.dl], delta: [x.delta, R.dl], B: [x.B, R.gnl], C: [x.C, R.gnl], y: [y, R.dl], hs: [hs, R.hs] },
      { BT: [R.glnp, true], CT: [R.glnp, true], A2: [d * np, false], D: [d, false], bias: [d, false] },
      { dtRow: T + 4, Hs: (d / g) * np, DA: T * np },
      { A: x.A, Dv: x.D, biasv: x.bias },
    );
    try {
      this.putParams(pl, d, n, np);
      this.runShares(
        pl,
        pl.parts.map(([b0, b1], w): Share => {
          const P = (k: string) => pl.ptr(w, k);
          const S = (k: string) => pl.perShareAt(w, k);
          return {
            exports: pl.exportsFor(w),
            before: () => pl.copyIn(w, ['u', 'delta', 'B', 'C']),
            calls: [
              ['tin', [P('B'), P('BT'), b0 * g, b1 * g, n, l, np]],
              ['tin', [P('C'), P('CT'), b0 * g, b1 * g, n, l, np]],
              // prettier-ignore
              [`fwd${np}`, [b0, b1, d, l, g, d / g, T, K, P('u'), P('delta'), P('A2'), P('BT'), P('CT'), P('D'), P('bias'),
                P('y'), P('hs'), S('dtRow'), S('Hs'), S('DA')]],
            ],
            after: () => pl.copyOut(w, ['y', 'hs']),
          };
        }),
      );
    } finally {
      pl.release();
    }
  }

  /**
   * SS2D's whole cross-scan forward without a backward (inference; wasm-simd-kernels.ts `xfwd`): the merged
   * y [b, h, w, e] from the conv map x [b, h, w, e], its x_proj output xdbl [b, h, w, 4·(R+2N)] and the
   * parameters (A [4e, n], W = dt_projs_weight [4, e, R], D and b_Δ [4e]). Rows split over the threads
   * as in `forward`; bit-identical to the training path for any thread count (see the kernel).
   */
  crossForward(s: CrossSizes, x: CrossArrays, y: Float32Array, heap?: WasmHeap): void {
    const { b, h, w, e, r, n } = s;
    const np = paddedState(n);
    if (!SIMD_STATE_SIZES.includes(np)) throw new Error(`crossForward: no SIMD kernel for state size ${n}`);
    const l = h * w;
    const d = 4 * e;
    const cs = 4 * (r + 2 * n);
    const lp = Math.ceil(l / 4) * 4 + 4; // a row of gathered dt, with the kernel's slack
    const { T, K } = chunking(l);
    const pl = placeCall(
      this.host,
      { b, d, l, n, g: 4 },
      heap,
      { x: [x.x, l * e], xdbl: [x.xdbl, l * cs], y: [y, l * e] },
      { A2: [d * np, false], D: [d, false], bias: [d, false], W: [d * r, false], pos: [4 * l, false] },
      { BT: l * np, CT: l * np, dtG: r * lp, urow: T + 4, dRow: T + 4, dtRow: T + 4, Hs: e * np, DA: T * np },
      { A: x.A, Dv: x.D, biasv: x.bias, Wv: x.W },
    );
    try {
      this.putParams(pl, d, n, np);
      const pos = scanPositions(h, w);
      eachSpace(pl, (s) => {
        pl.view(s, 'W', d * r).set(pl.fresh.Wv);
        new Int32Array(pl.memOf(pl.spaceOf(s)).buffer, pl.ptr(s, 'pos'), 4 * l).set(pos);
      });
      this.runShares(
        pl,
        pl.parts.map(([b0, b1], w): Share => {
          const P = (k: string) => pl.ptr(w, k);
          const S = (k: string) => pl.perShareAt(w, k);
          return {
            exports: pl.exportsFor(w),
            before: () => pl.copyIn(w, ['x', 'xdbl']),
            calls: [
              // prettier-ignore
              [`xfwd${np}`, [b0, b1, l, e, r, n, cs, T, K, lp, P('x'), P('xdbl'), P('A2'), P('W'), P('D'), P('bias'),
                P('y'), P('pos'), S('BT'), S('CT'), S('dtG'), S('urow'), S('dRow'), S('dtRow'), S('Hs'), S('DA')]],
            ],
            after: () => pl.copyOut(w, ['y']),
          };
        }),
      );
    } finally {
      pl.release();
    }
  }

  backward(
    s: ScanSizes,
    x: ScanArrays,
    hs: Float32Array,
    dy: Float32Array,
    out: ScanGradArrays,
    heap?: WasmHeap,
  ): void {
    const np = paddedState(s.n);
    if (!SIMD_STATE_SIZES.includes(np)) return jsEngine.backward(s, x, hs, dy, out);
    const { d, l, n, g } = s;
    const { T, K } = chunking(l);
    const R = rowSizes(s);
    // A record of the shared parameters' partials: ∂A [d, np] | ∂D [d] | ∂b_Δ [d], whole vectors.
    const recFloats = Math.ceil((d * np + 2 * d) / 4) * 4;
    const pl = placeCall(
      this.host,
      s,
      heap,
      {
        u: [x.u, R.dl],
        delta: [x.delta, R.dl],
        dy: [dy, R.dl],
        B: [x.B, R.gnl],
        C: [x.C, R.gnl],
        hs: [hs, R.hs],
        du: [out.du, R.dl],
        ddelta: [out.ddelta, R.dl],
        dB: [out.dB, R.gnl],
        dC: [out.dC, R.gnl],
      },
      {
        BT: [R.glnp, true],
        CT: [R.glnp, true],
        dBT: [R.glnp, true],
        dCT: [R.glnp, true],
        A2: [d * np, false],
        D: [d, false],
        bias: [d, false],
        rec: [recFloats, true],
        recSum: [recFloats, false],
      },
      {
        dtRow: T + 4,
        sgRow: T + 4,
        H: (T + 1) * np,
        DA: T * np,
        St: (d / g) * (2 * np + 4),
      },
      { A: x.A, Dv: x.D, biasv: x.bias, dA: out.dA, dD: out.dD, dbias: out.dbias },
    );
    const bytes = (floats: number) => Math.ceil((floats * 4) / 16) * 16;
    try {
      this.putParams(pl, d, n, np);
      this.runShares(
        pl,
        pl.parts.map(([b0, b1], w): Share => {
          const P = (k: string) => pl.ptr(w, k);
          const S = (k: string) => pl.perShareAt(w, k);
          const rows: [number, number] = [b0 * g, b1 * g];
          const mine = (k: string) => P(k) + b0 * R.glnp * 4; // this share's rows of dBT / dCT
          // share 0: one record (a running sum over its rows); the others: one record per row
          const recBytes = w === 0 ? 0 : recFloats * 4;
          return {
            exports: pl.exportsFor(w),
            before: () => pl.copyIn(w, ['u', 'delta', 'dy', 'B', 'C', 'hs']),
            calls: [
              ['tin', [P('B'), P('BT'), ...rows, n, l, np]],
              ['tin', [P('C'), P('CT'), ...rows, n, l, np]],
              ['zero', [mine('dBT'), bytes((b1 - b0) * R.glnp)]],
              ['zero', [mine('dCT'), bytes((b1 - b0) * R.glnp)]],
              ['zero', [P('rec') + b0 * recFloats * 4, w === 0 ? recFloats * 4 : (b1 - b0) * recFloats * 4]],
              // prettier-ignore
              [`bwd${np}`, [
                b0, b1, d, l, g, d / g, T, K, P('u'), P('delta'), P('A2'), P('BT'), P('CT'), P('D'), P('bias'), P('hs'),
                P('dy'), P('du'), P('ddelta'), P('dBT'), P('dCT'), P('rec'), recBytes, S('dtRow'),
                S('sgRow'), S('H'), S('DA'), S('St'),
              ]],
              ['tout', [P('dBT'), P('dB'), ...rows, n, l, np]],
              ['tout', [P('dCT'), P('dC'), ...rows, n, l, np]],
            ],
            after: () => pl.copyOut(w, ['du', 'ddelta', 'dB', 'dC']),
          };
        }),
      );
      // ∂A, ∂D, ∂b_Δ: share 0's running sum, then (more than one share) the other rows' records added on
      // in row order, in the engine's memory where those rows live.
      let sum = viewOf(pl.memOf(pl.spaceOf(0)), pl.ptr(0, 'rec'), recFloats);
      if (pl.parts.length > 1) {
        const b1 = pl.parts[0][1];
        const acc = pl.ptr(1, 'recSum');
        const mem = pl.memOf(pl.spaceOf(1));
        const ex = pl.allInPlace ? this.localExports(mem) : this.pool.exports;
        viewOf(mem, acc, recFloats).set(sum);
        ex.rowsum(acc, pl.ptr(1, 'rec') + b1 * recFloats * 4, s.b - b1, recFloats);
        sum = viewOf(mem, acc, recFloats);
      }
      const dA = new Float32Array(d * n);
      for (let c = 0; c < d; c++) for (let k = 0; k < n; k++) dA[c * n + k] = sum[c * np + k];
      const dD = sum.subarray(d * np, d * np + d);
      const db = sum.subarray(d * np + d, d * np + 2 * d);
      pl.fresh.dA.set(dA);
      pl.fresh.dD.set(dD);
      pl.fresh.dbias.set(db);
    } finally {
      pl.release();
    }
  }
}

/** Calls `f` with one share of each memory space in use (per-call parameters are written once per space). */
function eachSpace(pl: Placement, f: (share: number) => void): void {
  const done = new Set<number>();
  pl.parts.forEach((_, w) => {
    if (done.has(pl.spaceOf(w))) return;
    done.add(pl.spaceOf(w));
    f(w);
  });
}

/**
 * The position each direction reads at each step (index.ts §crossScanSSM): pos[k·l + t] for the four scan
 * orders of an h × w map (row-major p = i·w + j): row-major, column-major, and both reversed.
 */
export function scanPositions(h: number, w: number): Int32Array {
  const l = h * w;
  const pos = new Int32Array(4 * l);
  for (let t = 0; t < l; t++) {
    const col = (t % h) * w + Math.floor(t / h); // column-major step t = j·h + i  →  p = i·w + j
    pos[t] = t;
    pos[l + t] = col;
    pos[2 * l + l - 1 - t] = t;
    pos[3 * l + l - 1 - t] = col;
  }
  return pos;
}

let engine: SimdScanEngine | undefined;

/** The SIMD engine, or undefined (with the reason in `simdUnavailableReason`) where wasm SIMD is missing. */
export function simdScanEngine(): ScanEngine | undefined {
  if (engine) return engine;
  const c = compile();
  if (!c) return undefined;
  engine = new SimdScanEngine(c);
  return engine;
}

/** Ends the SIMD engine's worker threads (they are idle between calls; the next call starts new ones). */
export function stopScanThreads(): void {
  engine?.stopThreads();
}

export function simdUnavailableReason(): string | undefined {
  compile();
  return compileError();
}

/** Bytes the SIMD engine's shared memory holds now (its high-water mark: wasm memory never shrinks). */
export function simdMemoryBytes(): number {
  const c = compiledKernels();
  return c ? c.memory.buffer.byteLength : 0;
}

/** Threads the SIMD engine uses for a batch of `b` (for benchmark tables). */
export function simdThreads(b = Number.MAX_SAFE_INTEGER): number {
  const c = compile();
  return c && c.shared ? Math.min(threadCount(), b) : 1;
}

provideSimdEngine(simdScanEngine);
