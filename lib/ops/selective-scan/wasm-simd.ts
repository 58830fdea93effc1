/**
 * The fused selective scan as WebAssembly SIMD (4 × f32 lanes), optionally on several threads: the fast
 * engine behind the wasm and cpu backends' kernels (fused-cpu.ts). It runs exactly the algorithm of
 * cpu-kernel.ts — read that file first; the comments here only say how it maps to SIMD.
 *
 * Vectorisation: over the state index n (4 states per v128, the nv = np/4 vectors of a channel are
 * unrolled, so h, A and the gradient accumulators stay in locals/registers). Each channel walks time
 * sequentially; Δ_t is a splat. B and C are transposed to [b, g, l, np] so the 4 states of one time step
 * are one aligned load. Horizontal sums (y_t, ⟨G, B⟩) take two shuffles each.
 * exp: Ā = exp(Δ·A) = 2^(Δ·A·log2 e); A is pre-scaled by log2 e, the exponent is split into an integer
 * k (added to the float's exponent bits) and f ∈ [−½, ½] (degree-5 polynomial with p(0) = 1 exactly, rel.
 * error ≤ 2e-7 in f32, so decays close to 1 do not drift over long sequences). The exp is most of the
 * work: it runs once per state update in the forward and once in the backward's recomputation.
 * softplus/sigmoid: log1p(w) = 2·atanh(w / (2 + w)) series with w = e^{−|x|}, once per channel-step.
 *
 * Threads: the batch is split across the calling thread and worker_threads (MSM_SCAN_THREADS, default all
 * cores). All threads run instances of the same module on one shared WebAssembly.Memory; the kernel call
 * stays synchronous (tfjs kernels must be) by waiting with Atomics.wait. Each thread owns whole batch
 * rows, so ∂B/∂C need no locking; ∂A, ∂D, ∂b_Δ are per-thread partials summed at the end.
 *
 * Data flow per call: inputs are copied (u, δ, ∂y) or transposed (B, C) into the shared memory, the
 * kernel runs, outputs are copied back into the backend's arrays. The memory grows to the largest call
 * seen and is kept (the working set is ~12 floats per (b, d, l) element at the largest shape).
 *
 * Shape glossary: b batch, d channels (g groups of e), l length, n state size, np = n rounded up to 4,
 * nv = np/4 vectors, T checkpoint chunk, K chunks.
 */
import * as os from 'os';
import * as v8 from 'v8';
import { Worker } from 'worker_threads';
import { chunking, paddedState, ScanArrays, ScanGradArrays, ScanSizes } from './cpu-kernel';
import { jsEngine, provideSimdEngine, ScanEngine } from './fused-cpu';
import {
  assembleModule,
  Expr,
  f32,
  f32add,
  f32mul,
  f32FromF64,
  f64,
  f64add,
  f64FromF32,
  Fn,
  get,
  i32,
  i32add,
  i32divU,
  i32eq,
  i32lt,
  i32minU,
  i32mul,
  i32sub,
  i32x4add,
  i32x4shl,
  Local,
  loadF32,
  loadF64,
  vabs,
  vadd,
  vconst,
  vdiv,
  vextract,
  vge,
  vgt,
  vload,
  vmax,
  vmin,
  vmul,
  vselect,
  vshuffle,
  vsplat,
  vsub,
  vzero,
  ValType,
} from './wasm-asm';

/** State sizes (padded) with a compiled kernel; larger n falls back to the JS engine. */
export const SIMD_STATE_SIZES = [4, 8, 12, 16, 20, 24, 28, 32];

const LOG2E = Math.LOG2E;
const LN2 = Math.LN2;
/** 2^f on [−½, ½], p(0) = 1 exactly (Lawson minimax fit, relative error 1.9e-7 in f32 arithmetic). */
/** 1.5·2^23: adding it rounds a float in (−2^22, 2^22) to an integer (round-to-nearest-even). */
const EXP2_MAGIC = 12582912;
const EXP2_POLY = [
  1.0, 0.6931470036506653, 0.24022242426872253, 0.05550733581185341, 0.009671512991189957, 0.001326472731307149,
];

// ---- kernel emission ---------------------------------------------------------------------------

/**
 * Locals for vexp2: scratch vectors and the constants, hoisted into locals at function entry (a
 * v128.const inside the loop would be re-materialised at every use by V8, three instructions each).
 */
interface ExpTmp {
  t: Local;
  m: Local;
  fr: Local;
  lo: Local;
  hi: Local;
  magic: Local;
  poly: Local[];
}
function expTmp(f: Fn): ExpTmp {
  const tmp: ExpTmp = {
    t: f.local('v128'),
    m: f.local('v128'),
    fr: f.local('v128'),
    lo: f.local('v128'),
    hi: f.local('v128'),
    magic: f.local('v128'),
    poly: EXP2_POLY.map(() => f.local('v128')),
  };
  f.set(tmp.lo, vconst(-125));
  f.set(tmp.hi, vconst(127));
  f.set(tmp.magic, vconst(EXP2_MAGIC));
  EXP2_POLY.forEach((c, i) => f.set(tmp.poly[i], vconst(c)));
  return tmp;
}

/**
 * dst = 2^x lane-wise, x clamped to [−125, 127] (where the result stays a normal float).
 * Rounding trick: m = x + 1.5·2^23 rounds x to the nearest integer k in the low mantissa bits of m, so
 * k = m − 1.5·2^23 as a float, and (bits(m) << 23) = k << 23 (the magic's own bits vanish in the shift),
 * which added to the bits of p = 2^(x−k) multiplies p by 2^k. No float→int conversion needed.
 */
function emitExp2(f: Fn, dst: Local, x: Expr, tmp: ExpTmp): void {
  f.set(tmp.t, vmin(vmax(x, get(tmp.lo)), get(tmp.hi)));
  f.set(tmp.m, vadd(get(tmp.t), get(tmp.magic)));
  f.set(tmp.fr, vsub(get(tmp.t), vsub(get(tmp.m), get(tmp.magic)))); // f = x − k ∈ [−½, ½], exact
  let p: Expr = get(tmp.poly[5]);
  for (let i = 4; i >= 0; i--) p = vadd(vmul(p, get(tmp.fr)), get(tmp.poly[i]));
  f.set(dst, i32x4add(p, i32x4shl(get(tmp.m), i32(23))));
}

/** Σ of the 4 lanes of v. */
function hsum(v: Expr): Expr {
  return (f) => {
    const s = f.local('v128');
    f.set(s, vadd(v, vshuffle(v, v, [2, 3, 0, 1])));
    vextract(vadd(get(s), vshuffle(get(s), get(s), [1, 0, 3, 2])), 0)(f);
  };
}

/**
 * Softplus (and optionally its derivative, the sigmoid) of δ + b_Δ for one channel row, 4 steps at a
 * time, into dtRow (and sgRow). Reads up to 3 floats past the row (buffers carry 16 bytes of slack).
 */
function emitSoftplusRow(
  f: Fn,
  v: { delta: Expr; bias: Local; l: Local; dtRow: Local; sgRow?: Local; tmp: ExpTmp },
): void {
  const j = f.local('i32');
  const x = f.local('v128');
  const w = f.local('v128');
  const s = f.local('v128');
  const z = f.local('v128');
  const sp = f.local('v128');
  f.forUp(
    j,
    i32(0),
    i32add(get(v.l), i32(3)),
    () => {
      const off = i32mul(get(j), i32(4)); // byte offset of 4 steps starting at step j
      f.set(x, vadd(vload(i32add(v.delta, off)), get(v.bias)));
      emitExp2(f, w, vmul(vabs(get(x)), vconst(-LOG2E)), v.tmp); // w = e^{−|x|} ∈ (0, 1]
      f.set(s, vdiv(get(w), vadd(get(w), vconst(2)))); // s = w / (2 + w) ≤ 1/3
      f.set(z, vmul(get(s), get(s)));
      // log1p(w) = 2 atanh(s) = 2s (1 + z/3 + z²/5 + … + z⁶/13), error < 2e-8
      let series: Expr = vconst(1 / 13);
      for (const k of [11, 9, 7, 5, 3]) series = vadd(vmul(series, get(z)), vconst(1 / k));
      series = vadd(vmul(series, get(z)), vconst(1));
      f.set(sp, vadd(vmax(get(x), vzero), vmul(vmul(get(s), vconst(2)), series)));
      // softplus(x) = x above the threshold 20 (as the CUDA kernel)
      f.storeV128(i32add(get(v.dtRow), off), 0, vselect(get(x), get(sp), vgt(get(x), vconst(20))));
      if (v.sgRow) {
        // sigmoid(x) = 1/(1+w) for x ≥ 0, w/(1+w) for x < 0
        const num = vselect(vconst(1), get(w), vge(get(x), vzero));
        f.storeV128(i32add(get(v.sgRow), off), 0, vdiv(num, vadd(get(w), vconst(1))));
      }
    },
    4,
  );
}

/**
 * Loop order of both kernels: batch row → group → chunk of T steps → channel of the group → step.
 * Taking the channels inside the chunk loop keeps one chunk of the group's B, C (and ∂B, ∂C) in L1
 * while all e channels of the group read it; walking whole sequences per channel instead re-streamed
 * them from memory once per channel. Per-channel state between chunks (h, or the backward's carry and
 * ∂A accumulators) lives in a small per-thread scratch area.
 */

/** Forward for one padded state size: batch rows [b0, b1) of y and the checkpoints (cpu-kernel.ts). */
function buildForward(np: number): Fn {
  const nv = np / 4;
  // prettier-ignore
  const names = ['b0', 'b1', 'd', 'l', 'g', 'e', 'T', 'K', 'u', 'delta', 'A2', 'BT', 'CT', 'Dp', 'biasp', 'y', 'hs', 'dtRow', 'Hs'];
  const f = new Fn(`fwd${np}`, names.map((): ValType => 'i32'));
  const P = Object.fromEntries(names.map((n, i) => [n, f.params[i]]));
  const tmp = expTmp(f);
  const I = () => f.local('i32');
  const [bi, gi, kc, cl, c, i, t0, len, row, bcT, pB, pC, pu, py, pdt, pHs] = Array.from({ length: 16 }, I);
  const [Dc, dt, ut] = [f.local('f32'), f.local('f32'), f.local('f32')];
  const [biasV, dtv, dbu, acc, dA] = Array.from({ length: 5 }, () => f.local('v128'));
  const a = Array.from({ length: nv }, () => f.local('v128'));
  const h = Array.from({ length: nv }, () => f.local('v128'));
  const stride = np * 4; // bytes per time step of BT, CT, a checkpoint, a state
  const c4 = (x: Local) => i32mul(get(x), i32(4));

  f.forUp(bi, get(P.b0), get(P.b1), () => {
    f.forUp(gi, i32(0), get(P.g), () => {
      f.forUp(cl, i32(0), get(P.e), () => {
        for (let v = 0; v < nv; v++) f.storeV128(i32add(get(P.Hs), i32mul(get(cl), i32(stride))), 16 * v, vzero);
      });
      f.forUp(kc, i32(0), get(P.K), () => {
        f.set(t0, i32mul(get(kc), get(P.T)));
        f.set(len, i32minU(get(P.T), i32sub(get(P.l), get(t0))));
        f.set(bcT, i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.g)), get(gi)), get(P.l)), get(t0)), i32(stride)));
        f.forUp(cl, i32(0), get(P.e), () => {
          f.set(c, i32add(i32mul(get(gi), get(P.e)), get(cl)));
          f.set(row, i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.l)), get(t0)), i32(4)));
          f.set(biasV, vsplat(loadF32(i32add(get(P.biasp), c4(c)))));
          emitSoftplusRow(f, { delta: i32add(get(P.delta), get(row)), bias: biasV, l: len, dtRow: P.dtRow, tmp });
          const aRow = i32add(get(P.A2), i32mul(get(c), i32(stride)));
          const hRow = i32add(get(P.Hs), i32mul(get(cl), i32(stride)));
          for (let v = 0; v < nv; v++) {
            f.set(a[v], vload(aRow, 16 * v));
            f.set(h[v], vload(hRow, 16 * v));
          }
          // checkpoint kc = the state entering this chunk (zero for the first)
          f.set(pHs, i32add(get(P.hs), i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.K)), get(kc)), i32(stride))));
          for (let v = 0; v < nv; v++) f.storeV128(get(pHs), 16 * v, get(h[v]));
          f.set(pB, i32add(get(P.BT), get(bcT)));
          f.set(pC, i32add(get(P.CT), get(bcT)));
          f.set(Dc, loadF32(i32add(get(P.Dp), c4(c))));
          f.set(pu, i32add(get(P.u), get(row)));
          f.set(py, i32add(get(P.y), get(row)));
          f.set(pdt, get(P.dtRow));
          f.forUp(i, i32(0), get(len), () => {
            f.set(dt, loadF32(get(pdt)));
            f.set(ut, loadF32(get(pu)));
            f.set(dtv, vsplat(get(dt)));
            f.set(dbu, vsplat(f32mul(get(dt), get(ut))));
            for (let v = 0; v < nv; v++) {
              emitExp2(f, dA, vmul(get(dtv), get(a[v])), tmp); // Ā
              f.set(h[v], vadd(vmul(get(dA), get(h[v])), vmul(get(dbu), vload(get(pB), 16 * v)))); // h = Ā h + Δu B
              const hc = vmul(get(h[v]), vload(get(pC), 16 * v));
              f.set(acc, v === 0 ? hc : vadd(get(acc), hc));
            }
            f.storeF32(get(py), 0, f32add(hsum(get(acc)), f32mul(get(Dc), get(ut)))); // y_t
            f.set(pB, i32add(get(pB), i32(stride)));
            f.set(pC, i32add(get(pC), i32(stride)));
            f.set(pu, i32add(get(pu), i32(4)));
            f.set(py, i32add(get(py), i32(4)));
            f.set(pdt, i32add(get(pdt), i32(4)));
          });
          for (let v = 0; v < nv; v++) f.storeV128(hRow, 16 * v, get(h[v]));
        });
      });
    });
  });
  return f;
}

/** Backward for one padded state size: batch rows [b0, b1) (cpu-kernel.ts scanBackwardJS, same steps). */
function buildBackward(np: number): Fn {
  const nv = np / 4;
  // prettier-ignore
  const names = [
    'b0', 'b1', 'd', 'l', 'g', 'e', 'T', 'K', 'u', 'delta', 'A2', 'BT', 'CT', 'Dp', 'biasp', 'hs', 'dy',
    'du', 'ddelta', 'dBT', 'dCT', 'dApart', 'dDpart', 'dbpart', 'dtRow', 'sgRow', 'Hbuf', 'DAbuf', 'St',
  ];
  const f = new Fn(`bwd${np}`, names.map((): ValType => 'i32'));
  const P = Object.fromEntries(names.map((n, i) => [n, f.params[i]]));
  const tmp = expTmp(f);
  const I = () => f.local('i32');
  const [bi, gi, kc, cl, c, i, t0, len, row, bcT, pB, pH, pDA, off, pTs, pSt, pAcc] = Array.from({ length: 17 }, I);
  const [Dc, dt, ut, gt, gb, da, dd] = Array.from({ length: 7 }, () => f.local('f32'));
  const [dDacc, dbacc] = [f.local('f64'), f.local('f64')];
  const [biasV, dtv, dbu, dA, gv, dtuv, G, GdA, s, sGB, sDA, hs2] = Array.from({ length: 12 }, () => f.local('v128'));
  const a = Array.from({ length: nv }, () => f.local('v128'));
  const hc = Array.from({ length: nv }, () => f.local('v128')); // h while recomputing, then the carry Ā·G
  const dAacc = Array.from({ length: nv }, () => f.local('v128'));
  const stride = np * 4;
  const c4 = (x: Local) => i32mul(get(x), i32(4));
  // Scratch per thread (St): carry [e, np] | ∂A accumulators [e, np] | Σ g·u and Σ ∂δ as f64 [e, 2].
  const stCarry = () => i32add(get(P.St), i32mul(get(cl), i32(stride)));
  const stDA = () => i32add(i32add(get(P.St), i32mul(get(P.e), i32(stride))), i32mul(get(cl), i32(stride)));
  const stAcc = () => i32add(i32add(get(P.St), i32mul(get(P.e), i32(2 * stride))), i32mul(get(cl), i32(16)));

  f.forUp(bi, get(P.b0), get(P.b1), () => {
    f.forUp(gi, i32(0), get(P.g), () => {
      // no gradient flows in after the last step; accumulators start at zero
      f.forUp(pSt, get(P.St), i32add(get(P.St), i32mul(get(P.e), i32(2 * stride + 16))), () => f.storeV128(get(pSt), 0, vzero), 16);
      f.forDown(kc, i32sub(get(P.K), i32(1)), i32(0), () => {
        f.set(t0, i32mul(get(kc), get(P.T)));
        f.set(len, i32minU(get(P.T), i32sub(get(P.l), get(t0))));
        f.set(bcT, i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.g)), get(gi)), get(P.l)), get(t0)), i32(stride)));
        f.forUp(cl, i32(0), get(P.e), () => {
          f.set(c, i32add(i32mul(get(gi), get(P.e)), get(cl)));
          f.set(row, i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.l)), get(t0)), i32(4)));
          f.set(biasV, vsplat(loadF32(i32add(get(P.biasp), c4(c)))));
          emitSoftplusRow(f, {
            delta: i32add(get(P.delta), get(row)),
            bias: biasV,
            l: len,
            dtRow: P.dtRow,
            sgRow: P.sgRow,
            tmp,
          });
          const aRow = i32add(get(P.A2), i32mul(get(c), i32(stride)));
          for (let v = 0; v < nv; v++) {
            f.set(a[v], vload(aRow, 16 * v));
            f.set(dAacc[v], vload(stDA(), 16 * v));
          }
          f.set(pAcc, stAcc());
          f.set(dDacc, loadF64(get(pAcc), 0));
          f.set(dbacc, loadF64(get(pAcc), 8));
          f.set(Dc, loadF32(i32add(get(P.Dp), c4(c))));
          // Recompute h over the chunk from its checkpoint: Hbuf[i] = h_{t0+i−1}, DAbuf[i] = Ā_{t0+i}.
          f.set(pH, get(P.Hbuf));
          const ck = i32add(get(P.hs), i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.K)), get(kc)), i32(stride)));
          for (let v = 0; v < nv; v++) {
            f.set(hc[v], vload(ck, 16 * v));
            f.storeV128(get(pH), 16 * v, get(hc[v]));
          }
          f.set(pB, i32add(get(P.BT), get(bcT)));
          f.set(pDA, get(P.DAbuf));
          f.forUp(i, i32(0), get(len), () => {
            f.set(dt, loadF32(i32add(get(P.dtRow), c4(i))));
            f.set(dtv, vsplat(get(dt)));
            f.set(dbu, vsplat(f32mul(get(dt), loadF32(i32add(i32add(get(P.u), get(row)), c4(i))))));
            f.set(pH, i32add(get(pH), i32(stride)));
            for (let v = 0; v < nv; v++) {
              emitExp2(f, dA, vmul(get(dtv), get(a[v])), tmp);
              f.storeV128(get(pDA), 16 * v, get(dA));
              f.set(hc[v], vadd(vmul(get(dA), get(hc[v])), vmul(get(dbu), vload(get(pB), 16 * v))));
              f.storeV128(get(pH), 16 * v, get(hc[v]));
            }
            f.set(pB, i32add(get(pB), i32(stride)));
            f.set(pDA, i32add(get(pDA), i32(stride)));
          });
          const carry = hc; // h is no longer needed: the same locals now hold the carry Ā_{t+1} ⊙ G_{t+1}
          for (let v = 0; v < nv; v++) f.set(carry[v], vload(stCarry(), 16 * v));
          // Reverse recurrence over the chunk.
          f.forDown(i, i32sub(get(len), i32(1)), i32(0), () => {
            f.set(pTs, i32add(get(row), c4(i))); // byte offset of step t0+i in the [b, d, l] rows
            f.set(gt, loadF32(i32add(get(P.dy), get(pTs))));
            f.set(dt, loadF32(i32add(get(P.dtRow), c4(i))));
            f.set(ut, loadF32(i32add(get(P.u), get(pTs))));
            f.set(gv, vsplat(get(gt)));
            f.set(dtv, vsplat(get(dt)));
            f.set(dtuv, vsplat(f32mul(get(dt), get(ut))));
            f.set(off, i32add(get(bcT), i32mul(get(i), i32(stride)))); // step t0+i of BT, CT, dBT, dCT
            f.set(pH, i32add(get(P.Hbuf), i32mul(get(i), i32(stride)))); // h_{t−1}; h_t is one stride on
            f.set(pDA, i32add(get(P.DAbuf), i32mul(get(i), i32(stride))));
            for (let v = 0; v < nv; v++) {
              const o = 16 * v;
              const addr = (base: Local) => i32add(get(base), get(off));
              f.set(G, vadd(vmul(get(gv), vload(addr(P.CT), o)), get(carry[v]))); // G_t = g C_t + Ā_{t+1} G_{t+1}
              f.storeV128(addr(P.dCT), o, vadd(vload(addr(P.dCT), o), vmul(get(gv), vload(get(pH), stride + o))));
              f.storeV128(addr(P.dBT), o, vadd(vload(addr(P.dBT), o), vmul(get(G), get(dtuv))));
              f.set(GdA, vmul(get(G), vload(get(pDA), o)));
              f.set(s, vmul(get(GdA), vload(get(pH), o))); // G Ā h_{t−1}
              f.set(dAacc[v], vadd(get(dAacc[v]), vmul(get(s), get(dtv))));
              const sa = vmul(get(s), get(a[v]));
              const gb4 = vmul(get(G), vload(addr(P.BT), o));
              f.set(sDA, v === 0 ? sa : vadd(get(sDA), sa));
              f.set(sGB, v === 0 ? gb4 : vadd(get(sGB), gb4));
              f.set(carry[v], get(GdA));
            }
            // Both horizontal sums at once: lanes 0 and 2 of hs2 are Σ sGB and Σ sDA.
            f.set(hs2, vadd(vshuffle(get(sGB), get(sDA), [0, 1, 4, 5]), vshuffle(get(sGB), get(sDA), [2, 3, 6, 7])));
            f.set(hs2, vadd(get(hs2), vshuffle(get(hs2), get(hs2), [1, 0, 3, 2])));
            f.set(gb, vextract(get(hs2), 0)); // ⟨G_t, B_t⟩
            f.set(da, f32mul(vextract(get(hs2), 2), f32(LN2))); // Σ G Ā h A (A2 = A log2 e)
            f.storeF32(i32add(get(P.du), get(pTs)), 0, f32add(f32mul(get(dt), get(gb)), f32mul(get(gt), get(Dc))));
            f.set(dd, f32mul(f32add(f32mul(get(gb), get(ut)), get(da)), loadF32(i32add(get(P.sgRow), c4(i)))));
            f.storeF32(i32add(get(P.ddelta), get(pTs)), 0, get(dd));
            f.set(dbacc, f64add(get(dbacc), f64FromF32(get(dd))));
            f.set(dDacc, f64add(get(dDacc), f64FromF32(f32mul(get(gt), get(ut)))));
          });
          for (let v = 0; v < nv; v++) {
            f.storeV128(stCarry(), 16 * v, get(carry[v]));
            f.storeV128(stDA(), 16 * v, get(dAacc[v]));
          }
          f.storeF64(get(pAcc), 0, get(dDacc));
          f.storeF64(get(pAcc), 8, get(dbacc));
        });
      });
      // This (batch row, group) is done: add its ∂A, ∂D, ∂b_Δ into the thread's partial sums.
      f.forUp(cl, i32(0), get(P.e), () => {
        f.set(c, i32add(i32mul(get(gi), get(P.e)), get(cl)));
        const dArow = i32add(get(P.dApart), i32mul(get(c), i32(stride)));
        for (let v = 0; v < nv; v++) f.storeV128(dArow, 16 * v, vadd(vload(dArow, 16 * v), vload(stDA(), 16 * v)));
        f.set(pAcc, stAcc());
        const at4 = (base: Local) => i32add(get(base), c4(c));
        f.storeF32(at4(P.dDpart), 0, f32add(loadF32(at4(P.dDpart)), f32FromF64(loadF64(get(pAcc), 0))));
        f.storeF32(at4(P.dbpart), 0, f32add(loadF32(at4(P.dbpart)), f32FromF64(loadF64(get(pAcc), 8))));
      });
    });
  });
  return f;
}

/** [rows, n, l] -> [rows, l, np] (zero padded), for rows [r0, r1). */
function buildTransposeIn(): Fn {
  const f = new Fn('tin', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, r0, r1, n, l, np] = f.params;
  const [r, k, t, ps, pd] = Array.from({ length: 5 }, () => f.local('i32'));
  f.forUp(r, get(r0), get(r1), () => {
    f.forUp(k, i32(0), get(np), () => {
      f.set(pd, i32add(get(dst), i32mul(i32add(i32mul(i32mul(get(r), get(l)), get(np)), get(k)), i32(4))));
      f.if(
        i32lt(get(k), get(n)),
        () => {
          f.set(ps, i32add(get(src), i32mul(i32mul(i32add(i32mul(get(r), get(n)), get(k)), get(l)), i32(4))));
          f.forUp(t, i32(0), get(l), () => {
            f.storeF32(get(pd), 0, loadF32(get(ps)));
            f.set(ps, i32add(get(ps), i32(4)));
            f.set(pd, i32add(get(pd), i32mul(get(np), i32(4))));
          });
        },
        () => {
          f.forUp(t, i32(0), get(l), () => {
            f.storeF32(get(pd), 0, f32(0));
            f.set(pd, i32add(get(pd), i32mul(get(np), i32(4))));
          });
        },
      );
    });
  });
  return f;
}

/** [rows, l, np] -> [rows, n, l], for rows [r0, r1). */
function buildTransposeOut(): Fn {
  const f = new Fn('tout', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, r0, r1, n, l, np] = f.params;
  const [r, k, t, ps, pd] = Array.from({ length: 5 }, () => f.local('i32'));
  f.forUp(r, get(r0), get(r1), () => {
    f.forUp(k, i32(0), get(n), () => {
      f.set(ps, i32add(get(src), i32mul(i32add(i32mul(i32mul(get(r), get(l)), get(np)), get(k)), i32(4))));
      f.set(pd, i32add(get(dst), i32mul(i32mul(i32add(i32mul(get(r), get(n)), get(k)), get(l)), i32(4))));
      f.forUp(t, i32(0), get(l), () => {
        f.storeF32(get(pd), 0, loadF32(get(ps)));
        f.set(pd, i32add(get(pd), i32(4)));
        f.set(ps, i32add(get(ps), i32mul(get(np), i32(4))));
      });
    });
  });
  return f;
}

/** Fills [p, p + bytes) with zeros, 16 bytes at a time (bytes is a multiple of 16). */
function buildZero(): Fn {
  const f = new Fn('zero', ['i32', 'i32']);
  const [p, bytes] = f.params;
  const q = f.local('i32');
  f.forUp(q, get(p), i32add(get(p), get(bytes)), () => f.storeV128(get(q), 0, vzero), 16);
  return f;
}

// ---- module, memory, threads -------------------------------------------------------------------

const MAX_PAGES = 65536; // 4 GiB: wasm32's whole address space
const FN_NAMES = [
  'tin',
  'tout',
  'zero',
  ...SIMD_STATE_SIZES.map((np) => `fwd${np}`),
  ...SIMD_STATE_SIZES.map((np) => `bwd${np}`),
];

/**
 * Compiles straight to optimised code. V8 otherwise starts wasm functions in its baseline compiler
 * (Liftoff, several times slower on this code) and tiers up only on a later call, so a long first kernel
 * call (the first training step) would run entirely in baseline code. The flag is restored afterwards.
 */
function compileOptimized(bytes: Uint8Array): WebAssembly.Module {
  let flagged = false;
  try {
    v8.setFlagsFromString('--no-liftoff');
    v8.setFlagsFromString('--no-wasm-lazy-compilation');
    flagged = true;
  } catch {
    /* flags unavailable: fall back to V8's default tiering */
  }
  try {
    return new WebAssembly.Module(bytes);
  } finally {
    if (flagged) {
      v8.setFlagsFromString('--liftoff');
      v8.setFlagsFromString('--wasm-lazy-compilation');
    }
  }
}

let compiled: { module: WebAssembly.Module; memory: WebAssembly.Memory; shared: boolean } | undefined;
let unavailable: string | undefined;

function compile(): typeof compiled {
  if (compiled || unavailable) return compiled;
  try {
    const shared = typeof SharedArrayBuffer !== 'undefined';
    const fns = [buildTransposeIn(), buildTransposeOut(), buildZero()];
    for (const np of SIMD_STATE_SIZES) fns.push(buildForward(np));
    for (const np of SIMD_STATE_SIZES) fns.push(buildBackward(np));
    const bytes = assembleModule(fns, { initial: 1, maximum: MAX_PAGES, shared });
    const module = compileOptimized(bytes);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared } as WebAssembly.MemoryDescriptor);
    compiled = { module, memory, shared };
  } catch (e) {
    unavailable = (e as Error).message;
  }
  return compiled;
}

type Exports = Record<string, (...args: number[]) => void>;

/** Source of the worker threads: instantiate the module on the shared memory, then run jobs forever. */
const WORKER_SOURCE = `
const { workerData } = require('worker_threads');
const { module, memory, ctrl, job, names } = workerData;
const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
const fns = names.map((n) => inst.exports[n]);
const ctl = new Int32Array(ctrl);
const jb = new Int32Array(job);
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

interface WorkerSlot {
  worker: Worker;
  ctl: Int32Array;
  job: Int32Array;
}

/** A call list: [function name, i32 args]. */
type Calls = Array<[string, number[]]>;
/** One thread's part of a kernel call. */
interface Share {
  before?: () => void;
  calls: Calls;
  after?: () => void;
}

class ThreadPool {
  private workers: WorkerSlot[] = [];
  private main: Exports;

  constructor(private c: NonNullable<typeof compiled>) {
    const inst = new WebAssembly.Instance(c.module, { env: { mem: c.memory } });
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
        slot.job[p++] = FN_NAMES.indexOf(name);
        slot.job[p++] = args.length;
        for (const a of args) slot.job[p++] = a;
      }
      const gen = Atomics.add(slot.ctl, 0, 1) + 1;
      Atomics.notify(slot.ctl, 0);
      gens.push(gen);
    }
    shares[0].before?.();
    for (const [name, args] of shares[0].calls) this.main[name](...args);
    shares[0].after?.();
    for (let w = 1; w < shares.length; w++) {
      const slot = this.workers[w - 1];
      for (;;) {
        const done = Atomics.load(slot.ctl, 1);
        if (done === gens[w - 1]) break;
        Atomics.wait(slot.ctl, 1, done);
      }
      if (Atomics.load(slot.ctl, 2) !== 1) throw new Error('selective scan (wasm-simd): a worker thread failed');
      shares[w].after?.();
    }
  }

  private spawn(): void {
    const ctrl = new SharedArrayBuffer(16);
    const job = new SharedArrayBuffer(JOB_INTS * 4);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module: this.c.module, memory: this.c.memory, ctrl, job, names: FN_NAMES },
    });
    worker.unref(); // never keeps the process alive
    this.workers.push({ worker, ctl: new Int32Array(ctrl), job: new Int32Array(job) });
  }
}

/** Bump allocator over the shared memory for one kernel call (regions 16-byte aligned + 16 bytes slack). */
class Arena {
  private top = 0;
  private regions: Array<{ off: number; floats: number }> = [];
  alloc(floats: number): number {
    const off = this.top;
    this.top += Math.ceil((floats * 4 + 16) / 16) * 16;
    this.regions.push({ off, floats });
    return off;
  }
  /** Grows the memory to hold everything allocated; call before taking views. */
  commit(memory: WebAssembly.Memory): void {
    const need = Math.ceil(this.top / 65536);
    const have = memory.buffer.byteLength / 65536;
    if (need > MAX_PAGES) throw new Error(`selective scan (wasm-simd): needs ${this.top} bytes, over wasm32's 4 GiB`);
    if (need > have) memory.grow(need - have);
  }
}

function threadCount(): number {
  const env = Number(process.env.MSM_SCAN_THREADS);
  if (Number.isInteger(env) && env >= 1) return Math.min(env, 16);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(cores, 16));
}

/** Batch rows [start, end) for each of `threads` threads (no empty shares). */
function split(b: number, threads: number): Array<[number, number]> {
  const t = Math.max(1, Math.min(threads, b));
  return Array.from({ length: t }, (_, i) => [Math.floor((i * b) / t), Math.floor(((i + 1) * b) / t)]);
}

class SimdScanEngine implements ScanEngine {
  readonly name = 'wasm-simd';
  private pool: ThreadPool;
  constructor(private c: NonNullable<typeof compiled>) {
    this.pool = new ThreadPool(c);
  }

  private f32(off: number, floats: number): Float32Array {
    return new Float32Array(this.c.memory.buffer, off, floats);
  }

  /** Copies rows [r0, r1) of `rowSize` floats between a caller array and the shared memory at `off`. */
  private rowsIn(off: number, src: Float32Array, rowSize: number, r0: number, r1: number): void {
    this.f32(off + r0 * rowSize * 4, (r1 - r0) * rowSize).set(src.subarray(r0 * rowSize, r1 * rowSize));
  }
  private rowsOut(off: number, dst: Float32Array, rowSize: number, r0: number, r1: number): void {
    dst.set(this.f32(off + r0 * rowSize * 4, (r1 - r0) * rowSize), r0 * rowSize);
  }

  /** A·log2(e), zero padded to [d, np] (the kernels compute exp(ΔA) as 2^(Δ·A·log2 e)). */
  private putA2(off: number, A: Float32Array, d: number, n: number, np: number): void {
    const A2 = this.f32(off, d * np).fill(0);
    for (let c = 0; c < d; c++) for (let k = 0; k < n; k++) A2[c * np + k] = A[c * n + k] * LOG2E;
  }

  forward(s: ScanSizes, x: ScanArrays, y: Float32Array, hs: Float32Array): void {
    const np = paddedState(s.n);
    if (!SIMD_STATE_SIZES.includes(np)) return jsEngine.forward(s, x, y, hs);
    const { b, d, l, n, g } = s;
    const { T, K } = chunking(l);
    const parts = split(b, this.c.shared ? threadCount() : 1);
    const ar = new Arena();
    const p = {
      u: ar.alloc(x.u.length),
      delta: ar.alloc(x.delta.length),
      A2: ar.alloc(d * np),
      B: ar.alloc(x.B.length),
      C: ar.alloc(x.C.length),
      BT: ar.alloc(b * g * l * np),
      CT: ar.alloc(b * g * l * np),
      D: ar.alloc(d),
      bias: ar.alloc(d),
      y: ar.alloc(b * d * l),
      hs: ar.alloc(hs.length),
      dtRow: parts.map(() => ar.alloc(T + 4)),
      Hs: parts.map(() => ar.alloc((d / g) * np)),
    };
    ar.commit(this.c.memory);
    this.f32(p.D, d).set(x.D);
    this.f32(p.bias, d).set(x.bias);
    this.putA2(p.A2, x.A, d, n, np);
    const [dl, gnl, hsRow] = [d * l, g * n * l, d * K * np]; // floats per batch row

    this.pool.run(
      parts.map(([b0, b1], w): Share => ({
        before: () => {
          this.rowsIn(p.u, x.u, dl, b0, b1);
          this.rowsIn(p.delta, x.delta, dl, b0, b1);
          this.rowsIn(p.B, x.B, gnl, b0, b1);
          this.rowsIn(p.C, x.C, gnl, b0, b1);
        },
        calls: [
          ['tin', [p.B, p.BT, b0 * g, b1 * g, n, l, np]],
          ['tin', [p.C, p.CT, b0 * g, b1 * g, n, l, np]],
          // prettier-ignore
          [`fwd${np}`, [b0, b1, d, l, g, d / g, T, K, p.u, p.delta, p.A2, p.BT, p.CT, p.D, p.bias, p.y, p.hs, p.dtRow[w], p.Hs[w]]],
        ],
        after: () => {
          this.rowsOut(p.y, y, dl, b0, b1);
          this.rowsOut(p.hs, hs, hsRow, b0, b1);
        },
      })),
    );
  }

  backward(s: ScanSizes, x: ScanArrays, hs: Float32Array, dy: Float32Array, out: ScanGradArrays): void {
    const np = paddedState(s.n);
    if (!SIMD_STATE_SIZES.includes(np)) return jsEngine.backward(s, x, hs, dy, out);
    const { b, d, l, n, g } = s;
    const { T, K } = chunking(l);
    const parts = split(b, this.c.shared ? threadCount() : 1);
    const ar = new Arena();
    const bgl = b * g * l * np;
    const p = {
      u: ar.alloc(x.u.length),
      delta: ar.alloc(x.delta.length),
      A2: ar.alloc(d * np),
      B: ar.alloc(x.B.length),
      C: ar.alloc(x.C.length),
      BT: ar.alloc(bgl),
      CT: ar.alloc(bgl),
      D: ar.alloc(d),
      bias: ar.alloc(d),
      hs: ar.alloc(hs.length),
      dy: ar.alloc(dy.length),
      du: ar.alloc(dy.length),
      ddelta: ar.alloc(dy.length),
      dBT: ar.alloc(bgl),
      dCT: ar.alloc(bgl),
      dB: ar.alloc(x.B.length),
      dC: ar.alloc(x.C.length),
      dA: parts.map(() => ar.alloc(d * np)),
      dD: parts.map(() => ar.alloc(d)),
      db: parts.map(() => ar.alloc(d)),
      dtRow: parts.map(() => ar.alloc(T + 4)),
      sgRow: parts.map(() => ar.alloc(T + 4)),
      H: parts.map(() => ar.alloc((T + 1) * np)),
      DA: parts.map(() => ar.alloc(T * np)),
      St: parts.map(() => ar.alloc((d / g) * (2 * np + 4))),
    };
    ar.commit(this.c.memory);
    this.f32(p.D, d).set(x.D);
    this.f32(p.bias, d).set(x.bias);
    this.putA2(p.A2, x.A, d, n, np);
    const bytes = (floats: number) => Math.ceil((floats * 4) / 16) * 16;
    const [dl, gnl, hsRow, glnp] = [d * l, g * n * l, d * K * np, g * l * np]; // floats per batch row

    this.pool.run(
      parts.map(([b0, b1], w): Share => {
        const rows: [number, number] = [b0 * g, b1 * g];
        const mine = (base: number) => base + b0 * glnp * 4; // this thread's part of dBT / dCT
        return {
          before: () => {
            for (const [off, src, size] of [
              [p.u, x.u, dl],
              [p.delta, x.delta, dl],
              [p.dy, dy, dl],
              [p.B, x.B, gnl],
              [p.C, x.C, gnl],
              [p.hs, hs, hsRow],
            ] as const) {
              this.rowsIn(off, src, size, b0, b1);
            }
          },
          calls: [
            ['tin', [p.B, p.BT, ...rows, n, l, np]],
            ['tin', [p.C, p.CT, ...rows, n, l, np]],
            ['zero', [mine(p.dBT), bytes((b1 - b0) * glnp)]],
            ['zero', [mine(p.dCT), bytes((b1 - b0) * glnp)]],
            ['zero', [p.dA[w], bytes(d * np)]],
            ['zero', [p.dD[w], bytes(d)]],
            ['zero', [p.db[w], bytes(d)]],
            // prettier-ignore
            [`bwd${np}`, [
              b0, b1, d, l, g, d / g, T, K, p.u, p.delta, p.A2, p.BT, p.CT, p.D, p.bias, p.hs, p.dy, p.du, p.ddelta,
              p.dBT, p.dCT, p.dA[w], p.dD[w], p.db[w], p.dtRow[w], p.sgRow[w], p.H[w], p.DA[w], p.St[w],
            ]],
            ['tout', [p.dBT, p.dB, ...rows, n, l, np]],
            ['tout', [p.dCT, p.dC, ...rows, n, l, np]],
          ],
          after: () => {
            this.rowsOut(p.du, out.du, dl, b0, b1);
            this.rowsOut(p.ddelta, out.ddelta, dl, b0, b1);
            this.rowsOut(p.dB, out.dB, gnl, b0, b1);
            this.rowsOut(p.dC, out.dC, gnl, b0, b1);
          },
        };
      }),
    );
    out.dA.fill(0);
    out.dD.fill(0);
    out.dbias.fill(0);
    parts.forEach((_, w) => {
      const dA = this.f32(p.dA[w], d * np);
      const dD = this.f32(p.dD[w], d);
      const db = this.f32(p.db[w], d);
      for (let c = 0; c < d; c++) {
        for (let k = 0; k < n; k++) out.dA[c * n + k] += dA[c * np + k];
        out.dD[c] += dD[c];
        out.dbias[c] += db[c];
      }
    });
  }
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

export function simdUnavailableReason(): string | undefined {
  compile();
  return unavailable;
}

/** Bytes the SIMD engine's shared memory holds now (its high-water mark: wasm memory never shrinks). */
export function simdMemoryBytes(): number {
  return compiled ? compiled.memory.buffer.byteLength : 0;
}

/** Threads the SIMD engine uses for a batch of `b` (for benchmark tables). */
export function simdThreads(b = Number.MAX_SAFE_INTEGER): number {
  const c = compile();
  return c && c.shared ? Math.min(threadCount(), b) : 1;
}

provideSimdEngine(simdScanEngine);
