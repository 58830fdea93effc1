/**
 * The heap kernels behind the fused LayerNorm and BatchNorm (../norms.ts, which has the formulas and a
 * plain-JS version of each). x is row-major [rows, c]; every loop walks the rows once, columns inside,
 * 4 columns per SIMD vector and a scalar tail, so odd channel counts work. BatchNorm's per-channel sums
 * stay in [c]-float accumulators (L1-resident) while the rows stream past; LayerNorm's per-row sums are
 * 4-lane partials added up at the row's end. Sums are f32, in row (BatchNorm) or column (LayerNorm)
 * order. Assembled by ../heap.ts.
 */
import {
  Expr,
  f32,
  f32add,
  f32div,
  f32mul,
  f32sqrt,
  f32sub,
  Fn,
  get,
  i32,
  i32and,
  i32mul,
  Local,
  loadF32,
  ValType,
  vadd,
  vdiv,
  vextract,
  vload,
  vmul,
  vshuffle,
  vsplat,
  vsub,
  vzero,
} from '../../util/wasm-asm';
import { at } from './address';

type Ops = {
  add: (a: Expr, b: Expr) => Expr;
  sub: (a: Expr, b: Expr) => Expr;
  mul: (a: Expr, b: Expr) => Expr;
  div: (a: Expr, b: Expr) => Expr;
  load: (addr: Expr) => Expr;
  store: (f: Fn, addr: Expr, e: Expr) => void;
  /** A scalar f32 local as this width (splat for vectors). */
  wide: (l: Local) => Expr;
  zero: Expr;
};
const VEC: Ops = {
  add: vadd,
  sub: vsub,
  mul: vmul,
  div: vdiv,
  load: (a) => vload(a),
  store: (f, a, e) => f.storeV128(a, 0, e),
  wide: (l) => vsplat(get(l)),
  zero: vzero,
};
const SCALAR: Ops = {
  add: f32add,
  sub: f32sub,
  mul: f32mul,
  div: f32div,
  load: (a) => loadF32(a),
  store: (f, a, e) => f.storeF32(a, 0, e),
  wide: (l) => get(l),
  zero: f32(0),
};

/** Σ of the 4 lanes of v. */
function hsum(v: Expr): Expr {
  return (f) => {
    const s = f.local('v128');
    f.set(s, vadd(v, vshuffle(v, v, [2, 3, 0, 1])));
    vextract(vadd(get(s), vshuffle(get(s), get(s), [1, 0, 3, 2])), 0)(f);
  };
}

/** for j over the columns [0, c): body(ops, j) with 4-column vectors up to c4, then scalars. */
function columns(f: Fn, j: Local, c: Local, c4: Local, body: (o: Ops) => void): void {
  f.forUp(j, i32(0), get(c4), () => body(VEC), 4);
  f.forUp(j, get(c4), get(c), () => body(SCALAR));
}

/** New i32 locals with c4 = c rounded down to a multiple of 4. */
function setup(f: Fn, c: Local): { r: Local; j: Local; c4: Local; row: Local } {
  const [r, j, c4, row] = Array.from({ length: 4 }, () => f.local('i32'));
  f.set(c4, i32and(get(c), i32(~3)));
  return { r, j, c4, row };
}

/** Per-row loop: row = byte address of row r of a [rows, c] array based at `base`. */
const rowAt = (base: Local, r: Local, c: Local): Expr => at(base, i32mul(get(r), get(c)));

/**
 * colsums(x, n, c, mu, s, mode, ld): per column j < c, s[j] = Σ_r x[r, j] (mode 0) or Σ_r (x[r, j] − mu[j])²
 * (mode 1), rows in order from 0; rows are ld floats apart (ld > c: a block of a wider array's columns,
 * one thread's share — every column's sum is its own, so a split changes none).
 */
export function buildColSums(): Fn {
  const f = new Fn('colsums', Array<ValType>(7).fill('i32'));
  const [x, n, c, mu, s, mode, ld] = f.params;
  const { r, j, c4, row } = setup(f, c);
  columns(f, j, c, c4, (o) => o.store(f, at(s, get(j)), o.zero));
  f.forUp(r, i32(0), get(n), () => {
    f.set(row, rowAt(x, r, ld));
    f.if(
      get(mode),
      () =>
        columns(f, j, c, c4, (o) => {
          const d = o.sub(o.load(at(row, get(j))), o.load(at(mu, get(j))));
          o.store(f, at(s, get(j)), o.add(o.load(at(s, get(j))), o.mul(d, d)));
        }),
      () =>
        columns(f, j, c, c4, (o) => o.store(f, at(s, get(j)), o.add(o.load(at(s, get(j))), o.load(at(row, get(j)))))),
    );
  });
  return f;
}

/** affine(x, y, n, c, a, b): y[r, j] = x[r, j]·a[j] + b[j] (BatchNorm's forward with a = w·ρ, b = β − μ·a). */
export function buildAffine(): Fn {
  const f = new Fn('affine', Array<ValType>(6).fill('i32'));
  const [x, y, n, c, a, b] = f.params;
  const { r, j, c4, row } = setup(f, c);
  const out = f.local('i32');
  f.forUp(r, i32(0), get(n), () => {
    f.set(row, rowAt(x, r, c));
    f.set(out, rowAt(y, r, c));
    columns(f, j, c, c4, (o) =>
      o.store(f, at(out, get(j)), o.add(o.mul(o.load(at(row, get(j))), o.load(at(a, get(j)))), o.load(at(b, get(j))))),
    );
  });
  return f;
}

/** bngradsums(dy, x, n, c, mu, sdy, sdx, ld): per column, sdy[j] = Σ_r dy, sdx[j] = Σ_r dy·(x − mu[j]); rows ld floats apart (as colsums). */
export function buildBatchNormGradSums(): Fn {
  const f = new Fn('bngradsums', Array<ValType>(8).fill('i32'));
  const [dy, x, n, c, mu, sdy, sdx, ld] = f.params;
  const { r, j, c4, row } = setup(f, c);
  const grow = f.local('i32');
  columns(f, j, c, c4, (o) => {
    o.store(f, at(sdy, get(j)), o.zero);
    o.store(f, at(sdx, get(j)), o.zero);
  });
  f.forUp(r, i32(0), get(n), () => {
    f.set(row, rowAt(x, r, ld));
    f.set(grow, rowAt(dy, r, ld));
    columns(f, j, c, c4, (o) => {
      const g = o.load(at(grow, get(j)));
      o.store(f, at(sdy, get(j)), o.add(o.load(at(sdy, get(j))), g));
      const d = o.sub(o.load(at(row, get(j))), o.load(at(mu, get(j))));
      o.store(f, at(sdx, get(j)), o.add(o.load(at(sdx, get(j))), o.mul(o.load(at(grow, get(j))), d)));
    });
  });
  return f;
}

/** bngradapply(dy, x, dx, n, c, a, k, mu, m): dx[r, j] = a[j]·dy + k[j]·(x − mu[j]) + m[j]. */
export function buildBatchNormGradApply(): Fn {
  const f = new Fn('bngradapply', Array<ValType>(9).fill('i32'));
  const [dy, x, dx, n, c, a, k, mu, m] = f.params;
  const { r, j, c4, row } = setup(f, c);
  const [grow, out] = [f.local('i32'), f.local('i32')];
  f.forUp(r, i32(0), get(n), () => {
    f.set(row, rowAt(x, r, c));
    f.set(grow, rowAt(dy, r, c));
    f.set(out, rowAt(dx, r, c));
    columns(f, j, c, c4, (o) => {
      const d = o.sub(o.load(at(row, get(j))), o.load(at(mu, get(j))));
      const v = o.add(
        o.add(o.mul(o.load(at(a, get(j))), o.load(at(grow, get(j)))), o.mul(o.load(at(k, get(j))), d)),
        o.load(at(m, get(j))),
      );
      o.store(f, at(out, get(j)), v);
    });
  });
  return f;
}

/** Σ over the columns of one row: vector partials then the scalar tail. `term(o)` is the summand at column j. */
function rowSum(f: Fn, j: Local, c: Local, c4: Local, term: (o: Ops) => Expr, into: Local): void {
  const acc = f.local('v128');
  f.set(acc, vzero);
  f.forUp(j, i32(0), get(c4), () => f.set(acc, vadd(get(acc), term(VEC))), 4);
  f.set(into, hsum(get(acc)));
  f.forUp(j, get(c4), get(c), () => f.set(into, f32add(get(into), term(SCALAR))));
}

/**
 * lnforward(x, y, rows, c, w, b, mean, rstd, cf, eps): per row, μ = Σx / cf, ρ = 1/√(Σ(x − μ)²/cf + eps),
 * y = (x − μ)·ρ·w + b; μ and ρ stored per row (cf = c as f32).
 */
export function buildLayerNormForward(): Fn {
  const types: ValType[] = [...Array<ValType>(8).fill('i32'), 'f32', 'f32'];
  const f = new Fn('lnforward', types);
  const [x, y, rows, c, w, b, mean, rstd, cf, eps] = f.params;
  const { r, j, c4, row } = setup(f, c);
  const out = f.local('i32');
  const [s, mu, rho] = [f.local('f32'), f.local('f32'), f.local('f32')];
  f.forUp(r, i32(0), get(rows), () => {
    f.set(row, rowAt(x, r, c));
    f.set(out, rowAt(y, r, c));
    rowSum(f, j, c, c4, (o) => o.load(at(row, get(j))), s);
    f.set(mu, f32div(get(s), get(cf)));
    rowSum(
      f,
      j,
      c,
      c4,
      (o) => {
        const d = o.sub(o.load(at(row, get(j))), o.wide(mu));
        return o.mul(d, d);
      },
      s,
    );
    f.set(rho, f32div(f32(1), f32sqrt(f32add(f32div(get(s), get(cf)), get(eps)))));
    f.storeF32(at(mean, get(r)), 0, get(mu));
    f.storeF32(at(rstd, get(r)), 0, get(rho));
    columns(f, j, c, c4, (o) => {
      const xhat = o.mul(o.sub(o.load(at(row, get(j))), o.wide(mu)), o.wide(rho));
      o.store(f, at(out, get(j)), o.add(o.mul(xhat, o.load(at(w, get(j)))), o.load(at(b, get(j)))));
    });
  });
  return f;
}

/**
 * lnbackward(dy, x, dx, rows, c, w, mean, rstd, dw, db, cf): per row, with x̂ = (x − μ)·ρ and g = dy·w,
 * dx = ρ·(g − Σg/cf − x̂·Σ(g·x̂)/cf); over all rows dw = Σ dy·x̂, db = Σ dy (zeroed first).
 */
export function buildLayerNormBackward(): Fn {
  const types: ValType[] = [...Array<ValType>(10).fill('i32'), 'f32'];
  const f = new Fn('lnbackward', types);
  const [dy, x, dx, rows, c, w, mean, rstd, dw, db, cf] = f.params;
  const { r, j, c4, row } = setup(f, c);
  const [grow, out] = [f.local('i32'), f.local('i32')];
  const [mu, rho, sg, sgx, mg, mgx] = Array.from({ length: 6 }, () => f.local('f32'));
  columns(f, j, c, c4, (o) => {
    o.store(f, at(dw, get(j)), o.zero);
    o.store(f, at(db, get(j)), o.zero);
  });
  f.forUp(r, i32(0), get(rows), () => {
    f.set(row, rowAt(x, r, c));
    f.set(grow, rowAt(dy, r, c));
    f.set(out, rowAt(dx, r, c));
    f.set(mu, loadF32(at(mean, get(r))));
    f.set(rho, loadF32(at(rstd, get(r))));
    const xhat = (o: Ops) => o.mul(o.sub(o.load(at(row, get(j))), o.wide(mu)), o.wide(rho));
    const g = (o: Ops) => o.mul(o.load(at(grow, get(j))), o.load(at(w, get(j))));
    rowSum(f, j, c, c4, g, sg);
    rowSum(f, j, c, c4, (o) => o.mul(g(o), xhat(o)), sgx);
    f.set(mg, f32div(get(sg), get(cf)));
    f.set(mgx, f32div(get(sgx), get(cf)));
    columns(f, j, c, c4, (o) => {
      const d = o.load(at(grow, get(j)));
      o.store(f, at(dw, get(j)), o.add(o.load(at(dw, get(j))), o.mul(d, xhat(o))));
      o.store(f, at(db, get(j)), o.add(o.load(at(db, get(j))), d));
      o.store(f, at(out, get(j)), o.mul(o.wide(rho), o.sub(o.sub(g(o), o.wide(mg)), o.mul(xhat(o), o.wide(mgx)))));
    });
  });
  return f;
}
