/**
 * Vector math for the heap kernels (lib/backend/simd/*.ts), 4 × f32 lanes: exp, the logistic sigmoid and
 * erf, shared so that each kernel file does not grow its own. Emitted inline (no calls): each function
 * sets a destination local from an expression, using scratch locals and constants that `vecMath(f)` hoists
 * to the function's entry (a v128.const inside a loop is re-materialised at every use by V8).
 *
 *   exp(x)   = 2^(x·log2 e): the exponent is split into an integer k, added to the float's exponent bits,
 *              and f ∈ [−½, ½], a degree-5 polynomial with p(0) = 1 (relative error ≈ 2e-7 in f32); x is
 *              clamped to [−87, 88] (2^±125…127), where the result stays a normal float.
 *   σ(x)     = 1 / (1 + exp(−x))
 *   erf(x)   = sign(x)·(1 − t·P(t)·exp(−x²)), t = 1/(1 + p·|x|): Abramowitz & Stegun 7.1.26, absolute error
 *              ≤ 1.5e-7 — the formula tfjs' own Erf kernels use.
 *
 * The same exp2 construction as the selective scan's kernels (lib/ops/selective-scan/wasm-simd-kernels.ts).
 */
import {
  Expr,
  Fn,
  get,
  i32,
  i32x4add,
  i32x4shl,
  Local,
  vabs,
  vadd,
  vconst,
  vdiv,
  vgt,
  vmax,
  vmin,
  vmul,
  vneg,
  vselect,
  vsub,
  vzero,
} from '../../util/wasm-asm';

/** 2^f on [−½, ½], p(0) = 1 exactly (minimax fit, relative error 1.9e-7 in f32 arithmetic). */
const EXP2_POLY = [
  1.0, 0.6931470036506653, 0.24022242426872253, 0.05550733581185341, 0.009671512991189957, 0.001326472731307149,
];
/** 1.5·2^23: adding it rounds a float in (−2^22, 2^22) to an integer (round-to-nearest-even). */
const EXP2_MAGIC = 12582912;
/** Abramowitz & Stegun 7.1.26: p and a1..a5. */
const ERF_P = 0.3275911;
const ERF_A = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429];

/** The hoisted constants and scratch locals of one function's vector math. */
export interface VecMath {
  one: Local;
  half: Local;
  log2e: Local;
  lo: Local;
  hi: Local;
  magic: Local;
  poly: Local[];
  erfP: Local;
  erfA: Local[];
  /** scratch (exp's; erf's) */
  t: Local;
  m: Local;
  fr: Local;
  e: Local;
  u: Local;
}

/** Declares the locals of `VecMath` and sets its constants; call once at the function's entry. */
export function vecMath(f: Fn): VecMath {
  const v = (): Local => f.local('v128');
  const m: VecMath = {
    one: v(),
    half: v(),
    log2e: v(),
    lo: v(),
    hi: v(),
    magic: v(),
    poly: EXP2_POLY.map(v),
    erfP: v(),
    erfA: ERF_A.map(v),
    t: v(),
    m: v(),
    fr: v(),
    e: v(),
    u: v(),
  };
  f.set(m.one, vconst(1));
  f.set(m.half, vconst(0.5));
  f.set(m.log2e, vconst(Math.LOG2E));
  f.set(m.lo, vconst(-125));
  f.set(m.hi, vconst(127));
  f.set(m.magic, vconst(EXP2_MAGIC));
  EXP2_POLY.forEach((c, i) => f.set(m.poly[i], vconst(c)));
  f.set(m.erfP, vconst(ERF_P));
  ERF_A.forEach((c, i) => f.set(m.erfA[i], vconst(c)));
  return m;
}

/** dst = e^x lane-wise (uses m.t, m.m, m.fr; x may read dst but not those). */
export function emitExp(f: Fn, m: VecMath, dst: Local, x: Expr): void {
  f.set(m.t, vmin(vmax(vmul(x, get(m.log2e)), get(m.lo)), get(m.hi)));
  f.set(m.m, vadd(get(m.t), get(m.magic)));
  f.set(m.fr, vsub(get(m.t), vsub(get(m.m), get(m.magic)))); // f = t − k ∈ [−½, ½], exact
  let p: Expr = get(m.poly[5]);
  for (let i = 4; i >= 0; i--) p = vadd(vmul(p, get(m.fr)), get(m.poly[i]));
  // (bits(m) << 23) = k << 23: the magic's own bits vanish in the shift; adding it multiplies p by 2^k
  f.set(dst, i32x4add(p, i32x4shl(get(m.m), i32(23))));
}

/** dst = σ(x) = 1 / (1 + e^{−x}) lane-wise (uses exp's scratch). */
export function emitSigmoid(f: Fn, m: VecMath, dst: Local, x: Expr): void {
  emitExp(f, m, dst, vneg(x));
  f.set(dst, vdiv(get(m.one), vadd(get(m.one), get(dst))));
}

/**
 * dst = erf(x) lane-wise, and `gauss` (if given) = e^{−x²}, which erf needs anyway (GELU's derivative
 * reuses it). Uses exp's scratch and m.e, m.u; x is read once (into m.u).
 */
export function emitErf(f: Fn, m: VecMath, dst: Local, x: Expr, gauss?: Local): void {
  f.set(m.u, x);
  const g = gauss ?? m.e;
  emitExp(f, m, g, vneg(vmul(get(m.u), get(m.u)))); // e^{−x²}
  f.set(dst, vdiv(get(m.one), vadd(get(m.one), vmul(get(m.erfP), vabs(get(m.u)))))); // t
  let poly: Expr = get(m.erfA[4]);
  for (let i = 3; i >= 0; i--) poly = vadd(vmul(poly, get(dst)), get(m.erfA[i]));
  f.set(dst, vsub(get(m.one), vmul(vmul(poly, get(dst)), get(g)))); // erf(|x|)
  f.set(dst, vselect(vneg(get(dst)), get(dst), vgt(vzero, get(m.u)))); // odd: erf(−x) = −erf(x)
}

/** Expression σ(x)·(1 − σ(x)) from s = σ(x). */
export const sigmoidSlope = (m: VecMath, s: Expr): Expr => vmul(s, vsub(get(m.one), s));
