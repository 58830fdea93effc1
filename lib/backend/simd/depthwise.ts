/**
 * The heap kernel behind the depthwise conv forward (../depthwise-conv.ts): XNNPACK's indirection design
 * (a table of input-row addresses per output pixel, padded taps pointing at a zero row) with XNNPACK's
 * summation order, so its results are the stock kernel's bit for bit. Assembled by ../heap.ts.
 */
import {
  f32,
  f32add,
  f32max,
  f32mul,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32divU,
  i32ltU,
  i32mul,
  i32sub,
  loadF32,
  loadI32,
  select,
  vadd,
  vload,
  vmax,
  vmul,
  vzero,
  type Expr,
  type ValType,
} from '../../util/wasm-asm';
import { at } from './address';

/** dwconv flags (bit set): a bias input, ReLU after it, taps in column-major order. */
export const DWCONV_BIAS = 1;
export const DWCONV_RELU = 2;
export const DWCONV_COLUMN_MAJOR = 4;

/**
 * dwconv(x, k, bias, zero, tab, y, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, r0, r1, flags): output rows
 * r0..r1 (r = image · ho + output row) of a depthwise conv with channel multiplier 1,
 * x [b, h, w, c], k [kh, kw, c] → y [b, ho, wo, c]:
 *   y[n, oy, ox, ch] = bias[ch] + Σ_taps x[n, oy·sh + i − pt, ox·sw + j − pl, ch] · k[i, j, ch]
 * with the bias first (+0 without one) and the taps added one by one in row-major (i, j) order, or in
 * column-major (j, i) order under DWCONV_COLUMN_MAJOR; a padded tap adds 0 · k (read from `zero`, c
 * zeros). `tab` is scratch for 2·kh·kw addresses. ReLU is max(acc, 0) + 0: NaN stays NaN and −0 becomes +0.
 */
export function buildDepthwiseConv(): Fn {
  const f = new Fn('dwconv', Array<ValType>(20).fill('i32'));
  const [x, k, bias, zero, tab, y, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, r0, r1, flags] = f.params;
  const [r, n, oy, ox, i, j, ch, c4, tp, tabEnd, iy, ix, out, xa, ka] = Array.from({ length: 15 }, () =>
    f.local('i32'),
  );
  const accs = Array.from({ length: 4 }, () => f.local('v128'));
  const c16 = f.local('i32');
  const sacc = f.local('f32');
  const flag = (bit: number): Expr => i32and(get(flags), i32(bit));
  f.set(c4, i32and(get(c), i32(~3)));
  f.set(c16, i32and(get(c), i32(~15)));
  f.set(tabEnd, i32add(get(tab), i32mul(i32mul(get(kh), get(kw)), i32(8))));
  /** tab[tp] ← the input row of tap (i, j) (or the zero row), tab[tp + 4] ← its filter row; tp += 8 */
  const tap = () => {
    f.set(iy, i32sub(i32add(i32mul(get(oy), get(sh)), get(i)), get(pt)));
    f.set(ix, i32sub(i32add(i32mul(get(ox), get(sw)), get(j)), get(pl)));
    const row = at(x, i32mul(i32add(i32mul(i32add(i32mul(get(n), get(h)), get(iy)), get(w)), get(ix)), get(c)));
    const inside = i32and(i32ltU(get(iy), get(h)), i32ltU(get(ix), get(w))); // unsigned: negatives are outside
    f.storeI32(get(tp), 0, select(row, get(zero), inside));
    f.storeI32(get(tp), 4, at(k, i32mul(i32add(i32mul(get(i), get(kw)), get(j)), get(c))));
    f.set(tp, i32add(get(tp), i32(8)));
  };
  const relu = (v: Expr): Expr => vadd(vmax(v, vzero), vzero);
  /** y[pixel, ch .. ch + 4·q) from the table: the bias, every tap in table order, ReLU */
  const vectorBlock = (q: number) => {
    const lanes = accs.slice(0, q);
    lanes.forEach((a, u) => {
      f.set(a, vzero);
      f.if(flag(DWCONV_BIAS), () => f.set(a, vload(at(bias, get(ch)), 16 * u)));
    });
    f.forUp(
      tp,
      get(tab),
      get(tabEnd),
      () => {
        f.set(xa, i32add(loadI32(get(tp)), i32mul(get(ch), i32(4))));
        f.set(ka, i32add(loadI32(get(tp), 4), i32mul(get(ch), i32(4))));
        lanes.forEach((a, u) => f.set(a, vadd(get(a), vmul(vload(get(xa), 16 * u), vload(get(ka), 16 * u)))));
      },
      8,
    );
    lanes.forEach((a, u) => {
      f.if(flag(DWCONV_RELU), () => f.set(a, relu(get(a))));
      f.storeV128(at(out, get(ch)), 16 * u, get(a));
    });
  };
  f.forUp(r, get(r0), get(r1), () => {
    f.set(n, i32divU(get(r), get(ho)));
    f.set(oy, i32sub(get(r), i32mul(get(n), get(ho))));
    f.forUp(ox, i32(0), get(wo), () => {
      f.set(tp, get(tab));
      f.if(
        flag(DWCONV_COLUMN_MAJOR),
        () => f.forUp(j, i32(0), get(kw), () => f.forUp(i, i32(0), get(kh), tap)),
        () => f.forUp(i, i32(0), get(kh), () => f.forUp(j, i32(0), get(kw), tap)),
      );
      f.set(out, at(y, i32mul(i32add(i32mul(get(r), get(wo)), get(ox)), get(c))));
      // 16 channels at a time (four accumulators: the table is read once per 16), then 4, then one
      f.forUp(ch, i32(0), get(c16), () => vectorBlock(4), 16);
      f.forUp(ch, get(c16), get(c4), () => vectorBlock(1), 4);
      f.forUp(ch, get(c4), get(c), () => {
        f.set(sacc, f32(0));
        f.if(flag(DWCONV_BIAS), () => f.set(sacc, loadF32(at(bias, get(ch)))));
        f.forUp(
          tp,
          get(tab),
          get(tabEnd),
          () =>
            f.set(
              sacc,
              f32add(
                get(sacc),
                f32mul(
                  loadF32(i32add(loadI32(get(tp)), i32mul(get(ch), i32(4)))),
                  loadF32(i32add(loadI32(get(tp), 4), i32mul(get(ch), i32(4)))),
                ),
              ),
            ),
          8,
        );
        f.if(flag(DWCONV_RELU), () => f.set(sacc, f32max(get(sacc), f32(0))));
        f.storeF32(at(out, get(ch)), 0, get(sacc));
      });
    });
  });
  return f;
}
