/**
 * The heap kernels behind the fused SiLU (../activations.ts): x is row-major [rows, c]; SiLU applies to
 * the first p channels of each row and the rest pass through (p = c: plain SiLU; p < c: PSFFN's partial
 * SiLU). σ(x) is ./math.ts's, written out for the gradient kernel. Within each row
 * the columns run 4 per SIMD vector, then a scalar tail, on each side of p. Also the exact GELU and its
 * derivative (erf from ./math.ts). Assembled by ../heap.ts.
 */
import {
  Expr,
  f32,
  f32add,
  f32mul,
  f32sub,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32mul,
  i32sub,
  Local,
  loadF32,
  ValType,
  vadd,
  vload,
  vmul,
  vconst,
  vextract,
  vgt,
  vmax,
  vselect,
  vsplat,
  vsub,
} from '../../util/wasm-asm';
import { at } from './address';
import { emitErf, emitSigmoid, vecMath } from './math';

type Ops = {
  add: typeof vadd;
  sub: typeof vsub;
  mul: typeof vmul;
  load: (a: Expr) => Expr;
  one: Expr;
  store: (f: Fn, a: Expr, e: Expr) => void;
};
const VEC: Ops = {
  add: vadd,
  sub: vsub,
  mul: vmul,
  load: (a) => vload(a),
  one: vsplat(f32(1)),
  store: (f, a, e) => f.storeV128(a, 0, e),
};
const SCALAR: Ops = {
  add: f32add,
  sub: f32sub,
  mul: f32mul,
  load: (a) => loadF32(a),
  one: f32(1),
  store: (f, a, e) => f.storeF32(a, 0, e),
};

/** for j in [from, to): body(ops) with 4-column vectors first, then scalars. */
function span(f: Fn, j: Local, from: Local, to: Local, mid: Local, body: (o: Ops) => void): void {
  f.set(mid, i32add(get(from), i32and(i32sub(get(to), get(from)), i32(~3))));
  f.forUp(j, get(from), get(mid), () => body(VEC), 4);
  f.forUp(j, get(mid), get(to), () => body(SCALAR));
}

/** A lane-wise vector expression of o's kind (a splat for scalars) and back (lane 0 for scalars). */
const toVec = (o: Ops, e: Expr): Expr => (o === VEC ? e : vsplat(e));
const fromVec = (o: Ops, e: Expr): Expr => (o === VEC ? e : vextract(e, 0));

/**
 * psilu(x, s, y, rows, c, p): s = σ(x) and y = x·s on channels [0, p) of each row; y = x and s = 0 on
 * [p, c). σ is ./math.ts's (exp-based, rel. error ~2e-7); s is kept for the gradient.
 */
export function buildPartialSilu(): Fn {
  const f = new Fn('psilu', Array<ValType>(6).fill('i32'));
  const [x, s, y, rows, c, p] = f.params;
  const [r, j, mid, zero, base] = Array.from({ length: 5 }, () => f.local('i32'));
  const m = vecMath(f);
  const [xv, sv] = [f.local('v128'), f.local('v128')];
  f.set(zero, i32(0));
  f.forUp(r, i32(0), get(rows), () => {
    f.set(base, i32mul(get(r), get(c))); // element index of the row's start
    const el = (arr: Local) => at(arr, i32add(get(base), get(j)));
    span(f, j, zero, p, mid, (o) => {
      f.set(xv, toVec(o, o.load(el(x))));
      emitSigmoid(f, m, sv, get(xv));
      o.store(f, el(s), fromVec(o, get(sv)));
      o.store(f, el(y), fromVec(o, vmul(get(xv), get(sv))));
    });
    span(f, j, p, c, mid, (o) => {
      o.store(f, el(y), o.load(el(x)));
      o.store(f, el(s), o === VEC ? vsplat(f32(0)) : f32(0));
    });
  });
  return f;
}

/** psilugrad(dy, x, s, dx, rows, c, p): dx = dy·s·(1 + x·(1 − s)) on channels [0, p), dx = dy on [p, c). */
export function buildPartialSiluGrad(): Fn {
  const f = new Fn('psilugrad', Array<ValType>(7).fill('i32'));
  const [dy, x, s, dx, rows, c, p] = f.params;
  const [r, j, mid, zero, base] = Array.from({ length: 5 }, () => f.local('i32'));
  f.set(zero, i32(0));
  f.forUp(r, i32(0), get(rows), () => {
    f.set(base, i32mul(get(r), get(c)));
    const el = (arr: Local) => at(arr, i32add(get(base), get(j)));
    span(f, j, zero, p, mid, (o) => {
      const sv = o.load(el(s));
      o.store(f, el(dx), o.mul(o.mul(o.load(el(dy)), sv), o.add(o.one, o.mul(o.load(el(x)), o.sub(o.one, sv)))));
    });
    span(f, j, p, c, mid, (o) => o.store(f, el(dx), o.load(el(dy))));
  });
  return f;
}

/**
 * The exact GELU and its derivative over n contiguous floats, 4 per vector; the last n mod 4 go through
 * the same vector code one lane at a time (loaded into lane 0, stored from lane 0).
 *   y = (x·½)·(erf(x·√½) + 1)        dx = dy·(½(erf(u) + 1) + x·e^{−u²}/√(2π)),  u = x·√½
 * erf and e^{−u²} are ./math.ts's (A&S 7.1.26, as tfjs' Erf).
 */
function geluLoop(name: string, grad: boolean): Fn {
  const f = new Fn(name, Array<ValType>(grad ? 4 : 3).fill('i32'));
  const [x, dy, out, n] = grad ? f.params : [f.params[0], undefined, f.params[1], f.params[2]];
  const m = vecMath(f);
  const [i, n4] = [f.local('i32'), f.local('i32')];
  const [xv, erf, gauss, res] = [0, 1, 2, 3].map(() => f.local('v128'));
  const body = (load: (arr: Local) => Expr, store: (e: Expr) => void) => {
    f.set(xv, load(x));
    emitErf(f, m, erf, vmul(get(xv), vconst(Math.SQRT1_2)), gauss);
    if (!grad) {
      f.set(res, vmul(vmul(get(xv), get(m.half)), vadd(get(erf), get(m.one))));
    } else {
      const slope = vadd(
        vmul(get(m.half), vadd(get(erf), get(m.one))),
        vmul(get(xv), vmul(get(gauss), vconst(1 / Math.sqrt(2 * Math.PI)))),
      );
      f.set(res, vmul(load(dy!), slope));
    }
    store(get(res));
  };
  f.set(n4, i32and(get(n), i32(~3)));
  f.forUp(
    i,
    i32(0),
    get(n4),
    () =>
      body(
        (arr) => vload(at(arr, get(i))),
        (e) => f.storeV128(at(out, get(i)), 0, e),
      ),
    4,
  );
  f.forUp(i, get(n4), get(n), () =>
    body(
      (arr) => vsplat(loadF32(at(arr, get(i)))),
      (e) => f.storeF32(at(out, get(i)), 0, vextract(e, 0)),
    ),
  );
  return f;
}

/** gelu(x, y, n): y = GELU(x) over n floats. */
export const buildGelu = (): Fn => geluLoop('gelu', false);
/** gelugrad(x, dy, dx, n): dx = dy·GELU'(x) over n floats. */
export const buildGeluGrad = (): Fn => geluLoop('gelugrad', true);

/**
 * relu(x, y, n): y = max(x, 0); relugrad(dy, x, dx, n): dx = dy where x > 0, else 0 — over n floats, 4 per
 * vector then a scalar tail (tfjs-wasm's Relu costs ~5× a multiply, and its gradient is two kernels).
 */
function reluLoop(name: string, grad: boolean): Fn {
  const f = new Fn(name, Array<ValType>(grad ? 4 : 3).fill('i32'));
  const [dy, x, out, n] = grad ? f.params : [undefined, f.params[0], f.params[1], f.params[2]];
  const [i, n4] = [f.local('i32'), f.local('i32')];
  const zero = f.local('v128');
  f.set(zero, vsplat(f32(0)));
  const value = (load: (arr: Local) => Expr): Expr =>
    grad ? vselect(load(dy!), get(zero), vgt(load(x), get(zero))) : vmax(load(x), get(zero));
  f.set(n4, i32and(get(n), i32(~3)));
  f.forUp(
    i,
    i32(0),
    get(n4),
    () =>
      f.storeV128(
        at(out, get(i)),
        0,
        value((arr) => vload(at(arr, get(i)))),
      ),
    4,
  );
  f.forUp(i, get(n4), get(n), () =>
    f.storeF32(
      at(out, get(i)),
      0,
      vextract(
        value((arr) => vsplat(loadF32(at(arr, get(i))))),
        0,
      ),
    ),
  );
  return f;
}

/** relu(x, y, n): y = max(x, 0). */
export const buildRelu = (): Fn => reluLoop('relu', false);
/** relugrad(dy, x, dx, n): dx = x > 0 ? dy : 0. */
export const buildReluGrad = (): Fn => reluLoop('relugrad', true);

/**
 * silugate(n, z, y, s, count): s = σ(z), y = n·(z·s) — a LayerNorm's output gated by SiLU(z) (SS2D's
 * y ⊙ SiLU(z), ../norms.ts). silugategrad(dy, n, z, s, dn, dz, count): dn = dy·(z·s),
 * dz = (dy·n)·s·(1 + z·(1 − s)). Over count floats, 4 per vector, the tail one lane at a time.
 */
function siluGateLoop(name: string, grad: boolean): Fn {
  const f = new Fn(name, Array<ValType>(grad ? 7 : 5).fill('i32'));
  const [dy, n, z, s, o1, o2, count] = grad
    ? f.params
    : [undefined, f.params[0], f.params[1], f.params[3], f.params[2], undefined, f.params[4]];
  const m = vecMath(f);
  const [i, n4] = [f.local('i32'), f.local('i32')];
  const [zv, sv] = [f.local('v128'), f.local('v128')];
  const body = (load: (arr: Local) => Expr, store: (arr: Local, e: Expr) => void) => {
    f.set(zv, load(z));
    if (!grad) {
      emitSigmoid(f, m, sv, get(zv));
      store(s, get(sv));
      store(o1, vmul(load(n), vmul(get(zv), get(sv))));
    } else {
      f.set(sv, load(s));
      store(o1, vmul(load(dy!), vmul(get(zv), get(sv))));
      const slope = vadd(get(m.one), vmul(get(zv), vsub(get(m.one), get(sv))));
      store(o2!, vmul(vmul(vmul(load(dy!), load(n)), get(sv)), slope));
    }
  };
  f.set(n4, i32and(get(count), i32(~3)));
  f.forUp(
    i,
    i32(0),
    get(n4),
    () =>
      body(
        (arr) => vload(at(arr, get(i))),
        (arr, e) => f.storeV128(at(arr, get(i)), 0, e),
      ),
    4,
  );
  f.forUp(i, get(n4), get(count), () =>
    body(
      (arr) => vsplat(loadF32(at(arr, get(i)))),
      (arr, e) => f.storeF32(at(arr, get(i)), 0, vextract(e, 0)),
    ),
  );
  return f;
}

/** silugate(n, z, y, s, count): see siluGateLoop. */
export const buildSiluGate = (): Fn => siluGateLoop('silugate', false);
/** silugategrad(dy, n, z, s, dn, dz, count): see siluGateLoop. */
export const buildSiluGateGrad = (): Fn => siluGateLoop('silugategrad', true);
