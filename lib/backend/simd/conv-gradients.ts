/**
 * The heap kernel behind the depthwise filter gradient (../conv-gradients.ts): a direct loop in the tap
 * order of the composite kernel it replaces. Assembled by ../heap.ts.
 */
import {
  Expr,
  f32,
  f32add,
  f32mul,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32divU,
  i32eq,
  i32mul,
  i32sub,
  i32ltU,
  loadF32,
  Local,
  select,
  vadd,
  vload,
  vloadSplat,
  vmul,
  vshuffle,
  vzero,
  ValType,
} from '../../util/wasm-asm';
import { at } from './address';

/**
 * dwfilter(x, dy, out, acc, b, h, w, c, m, ho, wo, kh, kw, sh, sw, pt, pl): the filter gradient of a depthwise
 * conv with channel multiplier m, x [b, h, w, c], dy [b, ho, wo, c·m] → out [kh, kw, c·m]; for output
 * channel o (input channel o / m):
 *   out[i, j, o] = Σ_b ( Σ_{p, q} x[b, i + p·sh − pt, j + q·sw − pl, o / m] · dy[b, p, q, o] )
 * in the order of the composite kernel it replaces (../conv-gradients.ts: one XNNPACK depthwise conv with dy
 * as the filter, then a Sum over b): the inner sum runs over (p, q) row-major from 0, padded positions
 * included as 0·dy; the outer sum runs over b from 0. The channel loop is innermost (vectorised for
 * m = 1 and 2, scalar otherwise), with the running inner sums in `acc` (c·m floats of scratch).
 */
export function buildDepthwiseFilterGrad(): Fn {
  const f = new Fn('dwfilter', Array<ValType>(17).fill('i32'));
  const [x, dy, out, acc, b, h, w, cIn, m, ho, wo, kh, kw, sh, sw, pt, pl] = f.params;
  const [i, j, ch, bb, p, q, r, col, c, c4, xRow, dyRow, tot] = Array.from({ length: 13 }, () => f.local('i32'));
  f.set(c, i32mul(get(cIn), get(m))); // output channels
  // vectors for multipliers 1 and 2 (MIFA's shared conv); others run the scalar path
  f.set(c4, select(i32and(get(c), i32(~3)), i32(0), i32ltU(get(m), i32(3))));
  /** for every channel: acc[ch] ← acc[ch] + xv(ch)·dy[ch] (xv = 0 at a padded position) */
  const accumulate = (padded: boolean) => {
    /** acc[ch..ch+3] += xv · dy[ch..ch+3] for output channels below c4 */
    const vectors = (xv: () => Expr) =>
      f.forUp(
        ch,
        i32(0),
        get(c4),
        () => f.storeV128(at(acc, get(ch)), 0, vadd(vload(at(acc, get(ch))), vmul(xv(), vload(at(dyRow, get(ch)))))),
        4,
      );
    if (padded) vectors(() => vzero);
    else {
      f.if(
        i32eq(get(m), i32(1)),
        () => vectors(() => vload(at(xRow, get(ch)))),
        // m = 2: output channels ch..ch+3 read input channels ch/2, ch/2, ch/2 + 1, ch/2 + 1
        () =>
          vectors(() => {
            const xc = at(xRow, i32divU(get(ch), i32(2)));
            return vshuffle(vloadSplat(xc), vloadSplat(xc, 4), [0, 1, 4, 5]);
          }),
      );
    }
    f.forUp(ch, get(c4), get(c), () => {
      const xv = padded ? f32(0) : loadF32(at(xRow, i32divU(get(ch), get(m))));
      f.storeF32(at(acc, get(ch)), 0, f32add(loadF32(at(acc, get(ch))), f32mul(xv, loadF32(at(dyRow, get(ch))))));
    });
  };
  const zero = (base: Local) => f.forUp(ch, i32(0), get(c), () => f.storeF32(at(base, get(ch)), 0, f32(0)));
  f.forUp(i, i32(0), get(kh), () =>
    f.forUp(j, i32(0), get(kw), () => {
      // tot = &out[i, j, 0]: the running sum over b
      f.set(tot, at(out, i32mul(i32add(i32mul(get(i), get(kw)), get(j)), get(c))));
      zero(tot);
      f.forUp(bb, i32(0), get(b), () => {
        zero(acc);
        f.forUp(p, i32(0), get(ho), () => {
          f.set(r, i32sub(i32add(get(i), i32mul(get(p), get(sh))), get(pt)));
          f.forUp(q, i32(0), get(wo), () => {
            f.set(col, i32sub(i32add(get(j), i32mul(get(q), get(sw))), get(pl)));
            // dyRow = &dy[bb, p, q, 0], xRow = &x[bb, r, col, 0]
            f.set(
              dyRow,
              at(dy, i32mul(i32add(i32mul(i32add(i32mul(get(bb), get(ho)), get(p)), get(wo)), get(q)), get(c))),
            );
            f.if(
              i32and(i32ltU(get(r), get(h)), i32ltU(get(col), get(w))), // 0 ≤ r < h, 0 ≤ col < w
              () => {
                f.set(
                  xRow,
                  at(x, i32mul(i32add(i32mul(i32add(i32mul(get(bb), get(h)), get(r)), get(w)), get(col)), get(cIn))),
                );
                accumulate(false);
              },
              () => accumulate(true), // a padded position: 0·dy, as the conv adds it
            );
          });
        });
        // tot ← tot + acc
        f.forUp(ch, i32(0), get(c), () =>
          f.storeF32(at(tot, get(ch)), 0, f32add(loadF32(at(tot, get(ch))), loadF32(at(acc, get(ch))))),
        );
      });
    }),
  );
  return f;
}
