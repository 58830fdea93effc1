/**
 * The heap kernel behind the Sum and Mean replacements (../reductions.ts): column sums of an [o, r, c]
 * view, every column summed in row order from 0 as the stock loop does, 16 columns per pass in SIMD
 * registers; and sum4, the cross-merge's sum of four maps. Assembled with the other heap kernels by ../heap.ts.
 */
import {
  Expr,
  f32,
  f32add,
  f32div,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32mul,
  loadF32,
  Local,
  ValType,
  vadd,
  vload,
  vzero,
} from '../../util/wasm-asm';
import { at } from './address';

/**
 * colsum(x, out, o, r, c, mean): x [o, r, c] → out [o, c], out[i, j] = Σ_k x[i, k, j] summed in k order
 * from 0 (the stock kernel's order); with mean = 1 each sum is then divided by r (as the stock Mean does).
 */
export function buildColSum(): Fn {
  const f = new Fn('colsum', ['i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [x, out, outer, rows, cols, mean] = f.params;
  const [i, k, j, c16, c4, row, dst, rowBytes] = Array.from({ length: 8 }, () => f.local('i32'));
  const acc = Array.from({ length: 4 }, () => f.local('v128'));
  const s = f.local('f32');
  const divisor = f.local('f32');
  f.set(c16, i32and(get(cols), i32(~15)));
  f.set(c4, i32and(get(cols), i32(~3)));
  f.set(rowBytes, i32mul(get(cols), i32(4)));
  // f32.convert_i32_u: r as a float, for the mean
  f.set(divisor, (fn) => {
    get(rows)(fn);
    fn.op(0xb3);
  });
  f.forUp(i, i32(0), get(outer), () => {
    // row = &x[i, 0, 0], dst = &out[i, 0]
    f.set(row, i32add(get(x), i32mul(i32mul(get(i), get(rows)), get(rowBytes))));
    f.set(dst, i32add(get(out), i32mul(get(i), get(rowBytes))));
    const addr = (col: Expr): Expr => i32add(get(row), i32add(i32mul(get(k), get(rowBytes)), i32mul(col, i32(4))));
    // 16 columns at a time: four running sums in registers while the rows stream past
    f.forUp(
      j,
      i32(0),
      get(c16),
      () => {
        for (const a of acc) f.set(a, vzero);
        f.forUp(k, i32(0), get(rows), () => {
          acc.forEach((a, q) => f.set(a, vadd(get(a), vload(addr(get(j)), 16 * q))));
        });
        acc.forEach((a, q) => f.storeV128(at(dst, get(j)), 16 * q, get(a)));
      },
      16,
    );
    f.forUp(
      j,
      get(c16),
      get(c4),
      () => {
        f.set(acc[0], vzero);
        f.forUp(k, i32(0), get(rows), () => f.set(acc[0], vadd(get(acc[0]), vload(addr(get(j))))));
        f.storeV128(at(dst, get(j)), 0, get(acc[0]));
      },
      4,
    );
    f.forUp(j, get(c4), get(cols), () => {
      f.set(s, f32(0));
      f.forUp(k, i32(0), get(rows), () => f.set(s, f32add(get(s), loadF32(addr(get(j))))));
      f.storeF32(at(dst, get(j)), 0, get(s));
    });
    f.if(get(mean), () =>
      f.forUp(j, i32(0), get(cols), () =>
        f.storeF32(at(dst, get(j)), 0, f32div(loadF32(at(dst, get(j))), get(divisor))),
      ),
    );
  });
  return f;
}

/**
 * sum4(a, b, c, d, out, n): out = ((a + b) + c) + d over n floats, 4 per vector then a scalar tail (the
 * cross-merge's sum of the four scan directions, ../cross-scan.ts, in the order of the addN it replaces).
 */
export function buildSum4(): Fn {
  const f = new Fn('sum4', Array<ValType>(6).fill('i32'));
  const [a, b, c, d, out, n] = f.params;
  const [i, n4] = [f.local('i32'), f.local('i32')];
  const sum = (load: (p: Local) => Expr, add: (x: Expr, y: Expr) => Expr) =>
    add(add(add(load(a), load(b)), load(c)), load(d));
  f.set(n4, i32and(get(n), i32(~3)));
  f.forUp(
    i,
    i32(0),
    get(n4),
    () =>
      f.storeV128(
        at(out, get(i)),
        0,
        sum((p) => vload(at(p, get(i))), vadd),
      ),
    4,
  );
  f.forUp(i, get(n4), get(n), () =>
    f.storeF32(
      at(out, get(i)),
      0,
      sum((p) => loadF32(at(p, get(i))), f32add),
    ),
  );
  return f;
}
