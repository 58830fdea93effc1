/**
 * The fused selective scan's WebAssembly SIMD kernels (4 × f32 lanes) and the module they are assembled
 * into (lib/util/wasm-asm.ts, at first use): forward and backward per padded state size, SS2D's whole
 * cross-scan forward for inference (`xfwd`), the B/C transposes to time-major and back, and a zero fill. They run exactly the algorithm of cpu-kernel.ts —
 * read that file first; the comments here only say how it maps to SIMD. The engine that calls them is
 * wasm-simd.ts; the threads that run them, wasm-simd-threads.ts; where their arrays live,
 * wasm-simd-memory.ts.
 *
 * Vectorisation: over the state index n (4 states per v128, the nv = np/4 vectors of a channel are
 * unrolled, so h, A and the gradient accumulators stay in locals/registers). Each channel walks time
 * sequentially; Δ_t is a splat. With B and C time-major, the 4 states of one time step are one aligned
 * load. Horizontal sums (y_t, ⟨G, B⟩) take two shuffles each.
 * exp: Ā = exp(Δ·A) = 2^(Δ·A·log2 e); A is pre-scaled by log2 e, the exponent is split into an integer
 * k (added to the float's exponent bits) and f ∈ [−½, ½] (degree-5 polynomial with p(0) = 1 exactly, rel.
 * error ≤ 2e-7 in f32, so decays close to 1 do not drift over long sequences). The exp is most of the
 * work: it runs once per state update in the forward and once in the backward's recomputation.
 * softplus/sigmoid: log1p(w) = 2·atanh(w / (2 + w)) series with w = e^{−|x|}, once per channel-step.
 * B and C are transposed to time-major [b, g, l, np] inside the kernels' scratch, ∂B and ∂C back.
 *
 * Shape glossary: b batch, d channels (g groups of e), l length, n state size, np = n rounded up to 4,
 * nv = np/4 vectors, T checkpoint chunk, K chunks (code names as in common.ts: d = K·E of
 * docs/architecture.md §Glossary; K here counts chunks, not directions).
 */
import { compileOptimized, WA, WasmMemory, WasmModule } from '../../util/wasm-api';
import {
  assembleModule,
  Expr,
  f32,
  f32add,
  f32mul,
  f32FromF64,
  f64add,
  f64FromF32,
  Fn,
  get,
  i32,
  i32add,
  i32divU,
  i32lt,
  i32minU,
  i32eq,
  loadI32,
  i32mul,
  i32sub,
  i32x4add,
  i32x4shl,
  Local,
  loadF32,
  loadF64,
  select,
  vabs,
  vadd,
  vconst,
  vdiv,
  vextract,
  vge,
  vgt,
  vload,
  vloadSplat,
  vmax,
  vmin,
  vmul,
  vreplace,
  vselect,
  vshuffle,
  vsplat,
  vsub,
  vzero,
  ValType,
  emitTranspose4,
} from '../../util/wasm-asm';

/** State sizes (padded) with a compiled kernel; larger n falls back to the JS engine. */
export const SIMD_STATE_SIZES = [4, 8, 12, 16, 20, 24, 28, 32];

export const LOG2E = Math.LOG2E;
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
  const off = i32mul(get(j), i32(4)); // byte offset of the 4 steps starting at step j
  const body = () => {
    f.set(x, vadd(get(x), get(v.bias)));
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
  };
  // whole vectors of 4 steps
  f.forUp(
    j,
    i32(0),
    i32sub(get(v.l), i32(3)),
    () => {
      f.set(x, vload(i32add(v.delta, off)));
      body();
    },
    4,
  );
  // the last l % 4 steps, loaded one by one: never read past the end of δ (it may be a tfjs tensor)
  f.if(i32lt(get(j), get(v.l)), () => {
    f.set(x, vzero);
    for (let q = 0; q < 3; q++) {
      f.if(i32lt(i32add(get(j), i32(q)), get(v.l)), () =>
        f.set(x, vreplace(get(x), q, loadF32(i32add(v.delta, off), 4 * q))),
      );
    }
    body();
  });
}

/**
 * DAbuf[i] = Ā_{t0+i} = 2^(Δ·A·log2 e) for the len steps of a chunk, in a loop of its own: the exps of
 * different steps are independent, so the CPU overlaps them, where inside the recurrence each step's
 * long exp chain would wait for the previous step (loop fission; about 1.5× faster on this code).
 */
function emitDecays(
  f: Fn,
  v: {
    len: Local;
    dtRow: Local;
    DAbuf: Local;
    a: Local[];
    i: Local;
    pdt: Local;
    pDA: Local;
    dtv: Local;
    dA: Local;
    tmp: ExpTmp;
    stride: number;
  },
): void {
  f.set(v.pdt, get(v.dtRow));
  f.set(v.pDA, get(v.DAbuf));
  f.forUp(v.i, i32(0), get(v.len), () => {
    f.set(v.dtv, vloadSplat(get(v.pdt)));
    v.a.forEach((a, k) => {
      emitExp2(f, v.dA, vmul(get(v.dtv), get(a)), v.tmp);
      f.storeV128(get(v.pDA), 16 * k, get(v.dA));
    });
    f.set(v.pdt, i32add(get(v.pdt), i32(4)));
    f.set(v.pDA, i32add(get(v.pDA), i32(v.stride)));
  });
}

/**
 * One step of the recurrence for one channel (forward and the inference kernel): Δ_t and u_t from their
 * rows, h = Ā h + Δu·B over the nv state vectors, acc = Σ_vectors h ⊙ C (the caller adds its lanes and D·u).
 */
function emitStateStep(
  f: Fn,
  v: {
    nv: number;
    h: Local[];
    acc: Local;
    dbu: Local;
    dt: Local;
    ut: Local;
    pdt: Local;
    pu: Local;
    pDA: Local;
    pB: Local;
    pC: Local;
  },
): void {
  f.set(v.dt, loadF32(get(v.pdt)));
  f.set(v.ut, loadF32(get(v.pu)));
  f.set(v.dbu, vsplat(f32mul(get(v.dt), get(v.ut))));
  for (let q = 0; q < v.nv; q++) {
    const dAv = vload(get(v.pDA), 16 * q);
    f.set(v.h[q], vadd(vmul(dAv, get(v.h[q])), vmul(get(v.dbu), vload(get(v.pB), 16 * q)))); // h = Ā h + Δu B
    const hc = vmul(get(v.h[q]), vload(get(v.pC), 16 * q));
    f.set(v.acc, q === 0 ? hc : vadd(get(v.acc), hc));
  }
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
  const names = ['b0', 'b1', 'd', 'l', 'g', 'e', 'T', 'K', 'u', 'delta', 'A2', 'BT', 'CT', 'Dp', 'biasp', 'y', 'hs', 'dtRow', 'Hs', 'DAbuf'];
  const f = new Fn(
    `fwd${np}`,
    names.map((): ValType => 'i32'),
  );
  const P = Object.fromEntries(names.map((n, i) => [n, f.params[i]]));
  const tmp = expTmp(f);
  const I = () => f.local('i32');
  const [bi, gi, kc, cl, c, i, t0, len, row, bcT, pB, pC, pu, py, pdt, pHs, pDA] = Array.from({ length: 17 }, I);
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
          f.set(
            pHs,
            i32add(
              get(P.hs),
              i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.K)), get(kc)), i32(stride)),
            ),
          );
          for (let v = 0; v < nv; v++) f.storeV128(get(pHs), 16 * v, get(h[v]));
          f.set(pB, i32add(get(P.BT), get(bcT)));
          f.set(pC, i32add(get(P.CT), get(bcT)));
          f.set(Dc, loadF32(i32add(get(P.Dp), c4(c))));
          f.set(pu, i32add(get(P.u), get(row)));
          f.set(py, i32add(get(P.y), get(row)));
          emitDecays(f, { len, dtRow: P.dtRow, DAbuf: P.DAbuf, a, i, pdt, pDA, dtv, dA, tmp, stride });
          f.set(pdt, get(P.dtRow));
          f.set(pDA, get(P.DAbuf));
          f.forUp(i, i32(0), get(len), () => {
            emitStateStep(f, { nv, h, acc, dbu, dt, ut, pdt, pu, pDA, pB, pC });
            f.storeF32(get(py), 0, f32add(hsum(get(acc)), f32mul(get(Dc), get(ut)))); // y_t
            f.set(pB, i32add(get(pB), i32(stride)));
            f.set(pC, i32add(get(pC), i32(stride)));
            f.set(pu, i32add(get(pu), i32(4)));
            f.set(py, i32add(get(py), i32(4)));
            f.set(pdt, i32add(get(pdt), i32(4)));
            f.set(pDA, i32add(get(pDA), i32(stride)));
          });
          for (let v = 0; v < nv; v++) f.storeV128(hRow, 16 * v, get(h[v]));
        });
      });
    });
  });
  return f;
}

/**
 * SS2D's whole cross-scan forward for one padded state size, for inference (no checkpoints, no backward):
 * batch rows [b0, b1) of the merged output y [b, l, e] straight from the conv map x [b, l, e] and its
 * x_proj output xdbl [b, l, 4·(R+2N)] (index.ts `crossScanSSM` without a gradient tape). The same
 * arithmetic as the training path's CrossScan → dt_proj → scan → CrossMerge, in the same order, so the
 * result is bit-identical to it:
 *   direction k reads position pos[k·l + t] at step t (the four scan orders, a table the engine fills);
 *   Δ_raw = Σ_r W[k, c, r]·dt_k[r, t], summed in r order one product at a time, as the GEMM it replaces;
 *   the directions are merged as the cross-merge adds them, y0 + y2 + y1 + y3: the groups run in that
 *   order, the first storing its y at each position and the others adding theirs on.
 * Per (row, group) it gathers dt (R rows of lp floats), B and C (time-major [l, np], zero padded) into
 * scratch; per channel and chunk it gathers u from the channels-last map, then runs forward's steps.
 */
function buildCrossForward(np: number): Fn {
  const nv = np / 4;
  // prettier-ignore
  const names = ['b0', 'b1', 'l', 'e', 'r', 'n', 'cs', 'T', 'K', 'lp', 'x', 'xdbl', 'A2', 'W', 'Dp', 'biasp', 'y',
    'pos', 'BT', 'CT', 'dtG', 'urow', 'dRow', 'dtRow', 'Hs', 'DAbuf'];
  const f = new Fn(
    `xfwd${np}`,
    names.map((): ValType => 'i32'),
  );
  const P = Object.fromEntries(names.map((n, i) => [n, f.params[i]]));
  const tmp = expTmp(f);
  const I = () => f.local('i32');
  const [bi, kk, k, kc, cl, c, i, t, j, rr, t0, len, pB, pC, pu, pdt, pDA] = Array.from({ length: 17 }, I);
  const [src, dst, posK, xb, yb, wRow, addr, cc, pe] = Array.from({ length: 9 }, I);
  const [Dc, dt, ut, val] = [f.local('f32'), f.local('f32'), f.local('f32'), f.local('f32')];
  const [biasV, dtv, dbu, acc, dA, dv] = Array.from({ length: 6 }, () => f.local('v128'));
  const a = Array.from({ length: nv }, () => f.local('v128'));
  const h = Array.from({ length: nv }, () => f.local('v128'));
  const stride = np * 4; // bytes per time step of BT, CT, a state
  const c4 = (x: Local) => i32mul(get(x), i32(4));

  f.set(cc, i32add(get(P.r), i32mul(get(P.n), i32(2)))); // R + 2N: floats of one direction in a row of xdbl
  f.set(pe, i32mul(get(P.e), i32(4))); // bytes per position of x and y
  f.forUp(bi, get(P.b0), get(P.b1), () => {
    f.forUp(kk, i32(0), i32(4), () => {
      // merge order y0 + y2 + y1 + y3: groups 0, 2, 1, 3
      f.set(k, select(i32(2), select(i32(1), get(kk), i32eq(get(kk), i32(2))), i32eq(get(kk), i32(1))));
      f.set(posK, i32add(get(P.pos), i32mul(i32mul(get(k), get(P.l)), i32(4))));
      // gather dt_k [R, lp], B_k and C_k [l, np] of this row (zero padding past n)
      f.forUp(t, i32(0), get(P.l), () => {
        // src = xdbl[bi, pos, k·(R+2N)]
        f.set(
          src,
          i32add(
            get(P.xdbl),
            i32mul(
              i32add(
                i32mul(i32add(i32mul(get(bi), get(P.l)), loadI32(i32add(get(posK), c4(t)))), get(P.cs)),
                i32mul(get(k), get(cc)),
              ),
              i32(4),
            ),
          ),
        );
        f.forUp(rr, i32(0), get(P.r), () =>
          f.storeF32(
            i32add(get(P.dtG), i32mul(i32add(i32mul(get(rr), get(P.lp)), get(t)), i32(4))),
            0,
            loadF32(i32add(get(src), c4(rr))),
          ),
        );
        f.set(src, i32add(get(src), c4(P.r))); // B_t
        f.set(dst, i32mul(get(t), i32(stride)));
        f.forUp(j, i32(0), get(P.n), () => {
          f.storeF32(i32add(get(P.BT), i32add(get(dst), c4(j))), 0, loadF32(i32add(get(src), c4(j))));
          f.storeF32(
            i32add(get(P.CT), i32add(get(dst), c4(j))),
            0,
            loadF32(i32add(get(src), i32mul(i32add(get(j), get(P.n)), i32(4)))),
          );
        });
        f.forUp(j, get(P.n), i32(np), () => {
          f.storeF32(i32add(get(P.BT), i32add(get(dst), c4(j))), 0, f32(0));
          f.storeF32(i32add(get(P.CT), i32add(get(dst), c4(j))), 0, f32(0));
        });
      });
      // the vector reads of Δ_raw run up to 3 steps past l: keep that slack zero
      f.forUp(rr, i32(0), get(P.r), () =>
        f.storeV128(i32add(get(P.dtG), i32mul(i32add(i32mul(get(rr), get(P.lp)), get(P.l)), i32(4))), 0, vzero),
      );
      f.forUp(cl, i32(0), get(P.e), () => {
        for (let v = 0; v < nv; v++) f.storeV128(i32add(get(P.Hs), i32mul(get(cl), i32(stride))), 16 * v, vzero);
      });
      f.forUp(kc, i32(0), get(P.K), () => {
        f.set(t0, i32mul(get(kc), get(P.T)));
        f.set(len, i32minU(get(P.T), i32sub(get(P.l), get(t0))));
        f.forUp(cl, i32(0), get(P.e), () => {
          f.set(c, i32add(i32mul(get(k), get(P.e)), get(cl)));
          f.set(xb, i32add(get(P.x), i32add(i32mul(i32mul(get(bi), get(P.l)), get(pe)), c4(cl))));
          f.set(yb, i32add(get(P.y), i32add(i32mul(i32mul(get(bi), get(P.l)), get(pe)), c4(cl))));
          // u of this chunk from the channels-last map
          f.forUp(i, i32(0), get(len), () =>
            f.storeF32(
              i32add(get(P.urow), c4(i)),
              0,
              loadF32(
                i32add(get(xb), i32mul(loadI32(i32add(get(posK), i32mul(i32add(get(t0), get(i)), i32(4)))), get(pe))),
              ),
            ),
          );
          // Δ_raw = Σ_r W[c, r]·dt[r, t0 + i], 4 steps at a time
          f.set(wRow, i32add(get(P.W), i32mul(i32mul(get(c), get(P.r)), i32(4))));
          f.forUp(
            i,
            i32(0),
            get(len),
            () => {
              f.set(pdt, i32add(get(P.dtG), i32mul(i32add(get(t0), get(i)), i32(4))));
              f.set(dv, vmul(vloadSplat(get(wRow)), vload(get(pdt))));
              f.forUp(rr, i32(1), get(P.r), () =>
                f.set(
                  dv,
                  vadd(
                    get(dv),
                    vmul(
                      vloadSplat(i32add(get(wRow), c4(rr))),
                      vload(i32add(get(pdt), i32mul(i32mul(get(rr), get(P.lp)), i32(4)))),
                    ),
                  ),
                ),
              );
              f.storeV128(i32add(get(P.dRow), c4(i)), 0, get(dv));
            },
            4,
          );
          f.set(biasV, vsplat(loadF32(i32add(get(P.biasp), c4(c)))));
          emitSoftplusRow(f, { delta: get(P.dRow), bias: biasV, l: len, dtRow: P.dtRow, tmp });
          const aRow = i32add(get(P.A2), i32mul(get(c), i32(stride)));
          const hRow = i32add(get(P.Hs), i32mul(get(cl), i32(stride)));
          for (let v = 0; v < nv; v++) {
            f.set(a[v], vload(aRow, 16 * v));
            f.set(h[v], vload(hRow, 16 * v));
          }
          f.set(pB, i32add(get(P.BT), i32mul(get(t0), i32(stride))));
          f.set(pC, i32add(get(P.CT), i32mul(get(t0), i32(stride))));
          f.set(Dc, loadF32(i32add(get(P.Dp), c4(c))));
          f.set(pu, get(P.urow));
          emitDecays(f, { len, dtRow: P.dtRow, DAbuf: P.DAbuf, a, i, pdt, pDA, dtv, dA, tmp, stride });
          f.set(pdt, get(P.dtRow));
          f.set(pDA, get(P.DAbuf));
          f.forUp(i, i32(0), get(len), () => {
            emitStateStep(f, { nv, h, acc, dbu, dt, ut, pdt, pu, pDA, pB, pC });
            f.set(val, f32add(hsum(get(acc)), f32mul(get(Dc), get(ut)))); // y_t of direction k
            f.set(
              addr,
              i32add(get(yb), i32mul(loadI32(i32add(get(posK), i32mul(i32add(get(t0), get(i)), i32(4)))), get(pe))),
            );
            f.if(
              i32eq(get(kk), i32(0)),
              () => f.storeF32(get(addr), 0, get(val)),
              () => f.storeF32(get(addr), 0, f32add(loadF32(get(addr)), get(val))),
            );
            f.set(pB, i32add(get(pB), i32(stride)));
            f.set(pC, i32add(get(pC), i32(stride)));
            f.set(pu, i32add(get(pu), i32(4)));
            f.set(pdt, i32add(get(pdt), i32(4)));
            f.set(pDA, i32add(get(pDA), i32(stride)));
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
    'du', 'ddelta', 'dBT', 'dCT', 'pRows', 'rowBytes', 'dtRow', 'sgRow', 'Hbuf', 'DAbuf', 'St',
  ];
  const f = new Fn(
    `bwd${np}`,
    names.map((): ValType => 'i32'),
  );
  const P = Object.fromEntries(names.map((n, i) => [n, f.params[i]]));
  const tmp = expTmp(f);
  const I = () => f.local('i32');
  const [bi, gi, kc, cl, c, i, t0, len, row, bcT, pB, pH, pDA, off, pTs, pSt, pAcc] = Array.from({ length: 17 }, I);
  const [Dc, dt, ut, gt, gb, da, dd] = Array.from({ length: 7 }, () => f.local('f32'));
  const [dDacc, dbacc] = [f.local('f64'), f.local('f64')];
  const pRec = f.local('i32');
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
      f.forUp(
        pSt,
        get(P.St),
        i32add(get(P.St), i32mul(get(P.e), i32(2 * stride + 16))),
        () => f.storeV128(get(pSt), 0, vzero),
        16,
      );
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
          const ck = i32add(
            get(P.hs),
            i32mul(i32add(i32mul(i32add(i32mul(get(bi), get(P.d)), get(c)), get(P.K)), get(kc)), i32(stride)),
          );
          for (let v = 0; v < nv; v++) {
            f.set(hc[v], vload(ck, 16 * v));
            f.storeV128(get(pH), 16 * v, get(hc[v]));
          }
          emitDecays(f, { len, dtRow: P.dtRow, DAbuf: P.DAbuf, a, i, pdt: pTs, pDA, dtv, dA, tmp, stride });
          f.set(pB, i32add(get(P.BT), get(bcT)));
          f.set(pDA, get(P.DAbuf));
          f.forUp(i, i32(0), get(len), () => {
            f.set(dt, loadF32(i32add(get(P.dtRow), c4(i))));
            f.set(dbu, vsplat(f32mul(get(dt), loadF32(i32add(i32add(get(P.u), get(row)), c4(i))))));
            f.set(pH, i32add(get(pH), i32(stride)));
            for (let v = 0; v < nv; v++) {
              f.set(hc[v], vadd(vmul(vload(get(pDA), 16 * v), get(hc[v])), vmul(get(dbu), vload(get(pB), 16 * v))));
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
      // This (batch row, group) is done: add its ∂A, ∂D, ∂b_Δ into the row's record of the shared
      // parameters' partials (∂A [d, np] | ∂D [d] | ∂b_Δ [d], wasm-simd.ts) at pRows + row · rowBytes. The
      // first share passes rowBytes = 0: one record, a running sum over its rows in row order; the others
      // keep a record per row, which the engine adds on in row order (the same f32 sums as one thread's
      // running sum, whatever the split).
      f.set(pRec, i32add(get(P.pRows), i32mul(get(bi), get(P.rowBytes)))); // this row's record
      f.forUp(cl, i32(0), get(P.e), () => {
        f.set(c, i32add(i32mul(get(gi), get(P.e)), get(cl)));
        const dArow = i32add(get(pRec), i32mul(get(c), i32(stride)));
        for (let v = 0; v < nv; v++) f.storeV128(dArow, 16 * v, vadd(vload(dArow, 16 * v), vload(stDA(), 16 * v)));
        f.set(pAcc, stAcc());
        const dDat = i32add(get(pRec), i32add(i32mul(get(P.d), i32(stride)), c4(c)));
        const dbAt = i32add(dDat, c4(P.d));
        f.storeF32(dDat, 0, f32add(loadF32(dDat), f32FromF64(loadF64(get(pAcc), 0))));
        f.storeF32(dbAt, 0, f32add(loadF32(dbAt), f32FromF64(loadF64(get(pAcc), 8))));
      });
    });
  });
  return f;
}

/**
 * Between [rows, n, l] (the caller's B, C layout) and [rows, l, np] (time-major, np padded), for rows
 * [r0, r1). 'tin' goes to time-major (padding states set to 0), 'tout' comes back. Whole 4×4 blocks
 * move as four vectors and a register transpose; the ragged edges (n or l not multiples of 4, and the
 * padding) element by element.
 */
function buildTranspose(dir: 'tin' | 'tout'): Fn {
  const f = new Fn(dir, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, r0, r1, n, l, np] = f.params;
  const [r, k, t, n4, l4] = Array.from({ length: 5 }, () => f.local('i32'));
  const q = Array.from({ length: 4 }, () => f.local('v128'));
  const o = Array.from({ length: 4 }, () => f.local('v128'));
  const tmp = Array.from({ length: 4 }, () => f.local('v128'));
  // byte addresses of element (k, t) of row r in each layout
  const kl = (kk: Expr, tt: Expr) => i32mul(i32add(i32mul(i32add(i32mul(get(r), get(n)), kk), get(l)), tt), i32(4));
  const lk = (kk: Expr, tt: Expr) => i32mul(i32add(i32mul(i32add(i32mul(get(r), get(l)), tt), get(np)), kk), i32(4));
  const fromAt = (kk: Expr, tt: Expr) => i32add(get(src), dir === 'tin' ? kl(kk, tt) : lk(kk, tt));
  const toAt = (kk: Expr, tt: Expr) => i32add(get(dst), dir === 'tin' ? lk(kk, tt) : kl(kk, tt));
  /** element loops over k in [k0, k1), t in [t0, t1) */
  const scalar = (k0: Expr, k1: Expr, t0: Expr, t1: Expr) =>
    f.forUp(k, k0, k1, () =>
      f.forUp(t, t0, t1, () =>
        f.storeF32(
          toAt(get(k), get(t)),
          0,
          dir === 'tin'
            ? select(loadF32(fromAt(get(k), get(t))), f32(0), i32lt(get(k), get(n)))
            : loadF32(fromAt(get(k), get(t))),
        ),
      ),
    );
  f.set(n4, i32mul(i32divU(get(n), i32(4)), i32(4)));
  f.set(l4, i32mul(i32divU(get(l), i32(4)), i32(4)));
  f.forUp(r, get(r0), get(r1), () => {
    f.forUp(
      k,
      i32(0),
      get(n4),
      () => {
        f.forUp(
          t,
          i32(0),
          get(l4),
          () => {
            for (let j = 0; j < 4; j++) {
              // tin: q[j] = 4 steps of state k+j; tout: q[j] = 4 states at step t+j
              const at =
                dir === 'tin' ? fromAt(i32add(get(k), i32(j)), get(t)) : fromAt(get(k), i32add(get(t), i32(j)));
              f.set(q[j], vload(at));
            }
            emitTranspose4(f, q, o, tmp);
            for (let j = 0; j < 4; j++) {
              const at = dir === 'tin' ? toAt(get(k), i32add(get(t), i32(j))) : toAt(i32add(get(k), i32(j)), get(t));
              f.storeV128(at, 0, get(o[j]));
            }
          },
          4,
        );
      },
      4,
    );
    // ragged edges: the last l % 4 steps of every state, then the states past n4 (and the padding)
    const kEnd = dir === 'tin' ? np : n;
    scalar(i32(0), get(kEnd), get(l4), get(l));
    scalar(get(n4), get(kEnd), i32(0), get(l4));
  });
  return f;
}

/**
 * dst[i] += Σ_r src[r·m + i] for r = 0, 1, …, rows − 1 in that order (m a multiple of 4): each lane adds
 * the rows of its own elements in row order, so the sums are those of a scalar loop, bit for bit.
 */
function buildRowSum(): Fn {
  const f = new Fn('rowsum', ['i32', 'i32', 'i32', 'i32']);
  const [dst, src, rows, m] = f.params;
  const [i, r, p, rowBytes] = Array.from({ length: 4 }, () => f.local('i32'));
  const acc = f.local('v128');
  f.set(rowBytes, i32mul(get(m), i32(4)));
  f.forUp(
    i,
    i32(0),
    get(rowBytes),
    () => {
      f.set(acc, vload(i32add(get(dst), get(i))));
      f.set(p, i32add(get(src), get(i)));
      f.forUp(r, i32(0), get(rows), () => {
        f.set(acc, vadd(get(acc), vload(get(p))));
        f.set(p, i32add(get(p), get(rowBytes)));
      });
      f.storeV128(i32add(get(dst), get(i)), 0, get(acc));
    },
    16,
  );
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

export const MAX_PAGES = 65536; // 4 GiB: wasm32's whole address space
/** The kernels by name, in module order (worker threads call them by index into this list). */
export const FN_NAMES = [
  'tin',
  'tout',
  'zero',
  'rowsum',
  ...SIMD_STATE_SIZES.map((np) => `fwd${np}`),
  ...SIMD_STATE_SIZES.map((np) => `bwd${np}`),
  ...SIMD_STATE_SIZES.map((np) => `xfwd${np}`),
];

export interface Compiled {
  /** the kernels on the engine's own memory (shared with the worker threads when possible) */
  module: WasmModule;
  memory: WasmMemory;
  shared: boolean;
  /** the same kernels for any other memory, e.g. the wasm backend's heap (shared in its threaded build), by shared-ness; built on first use */
  local?: Map<boolean, WasmModule>;
}
let compiled: Compiled | undefined;
let unavailable: string | undefined;

export function kernelFunctions(): Fn[] {
  const fns = [buildTranspose('tin'), buildTranspose('tout'), buildZero(), buildRowSum()];
  for (const np of SIMD_STATE_SIZES) fns.push(buildForward(np));
  for (const np of SIMD_STATE_SIZES) fns.push(buildBackward(np));
  for (const np of SIMD_STATE_SIZES) fns.push(buildCrossForward(np));
  return fns;
}

/** The kernels compiled for the engine's own memory (once), or undefined where wasm SIMD is missing (see `compileError`). */
export function compile(): Compiled | undefined {
  if (compiled || unavailable) return compiled;
  try {
    const shared = typeof SharedArrayBuffer !== 'undefined';
    const bytes = assembleModule(kernelFunctions(), { initial: 1, maximum: MAX_PAGES, shared });
    const module = compileOptimized(bytes);
    const memory = new WA.Memory({ initial: 1, maximum: MAX_PAGES, shared });
    compiled = { module, memory, shared };
  } catch (e) {
    unavailable = (e as Error).message;
  }
  return compiled;
}

/** Why the kernels could not be compiled (undefined: they could, or `compile` has not run yet). */
export function compileError(): string | undefined {
  return unavailable;
}

/** The compiled kernels, if `compile` has run and succeeded (does not compile). */
export function compiledKernels(): Compiled | undefined {
  return compiled;
}
