/**
 * The heap kernels behind the fused SiLU (../activations.ts): x is row-major [rows, c]; SiLU applies to
 * the first p channels of each row and the rest pass through (p = c: plain SiLU; p < c: PSFFN's partial
 * SiLU). σ(x) comes in precomputed (the stock Sigmoid kernel), so no exp is needed here. Within each row
 * the columns run 4 per SIMD vector, then a scalar tail, on each side of p. Assembled by ../heap.ts.
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
  vsplat,
  vsub,
} from '../../util/wasm-asm';
import { at } from './address';

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
