/**
 * The heap kernels behind the fused SiLU (../activations.ts): x is row-major [rows, c]; SiLU applies to
 * the first p channels of each row and the rest pass through (p = c: plain SiLU; p < c: PSFFN's partial
 * SiLU). σ(x) comes in precomputed (the stock Sigmoid kernel), so no exp is needed here. Within each row
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
  vsplat,
  vsub,
} from '../../util/wasm-asm';
import { at } from './address';
import { emitErf, vecMath } from './math';

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

/** psilu(x, s, y, rows, c, p): y = x·s on channels [0, p) of each row, y = x on [p, c) (s = σ(x)). */
export function buildPartialSilu(): Fn {
  const f = new Fn('psilu', Array<ValType>(6).fill('i32'));
  const [x, s, y, rows, c, p] = f.params;
  const [r, j, mid, zero, base] = Array.from({ length: 5 }, () => f.local('i32'));
  f.set(zero, i32(0));
  f.forUp(r, i32(0), get(rows), () => {
    f.set(base, i32mul(get(r), get(c))); // element index of the row's start
    const el = (arr: Local) => at(arr, i32add(get(base), get(j)));
    span(f, j, zero, p, mid, (o) => o.store(f, el(y), o.mul(o.load(el(x)), o.load(el(s)))));
    span(f, j, p, c, mid, (o) => o.store(f, el(y), o.load(el(x))));
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
