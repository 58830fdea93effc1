/**
 * The heap kernels behind the copying kernels of ../copies.ts: strided run copies, 2-D transposes and
 * row fills (a JS element loop costs ~3 ns per element). Assembled by ../heap.ts.
 */
import {
  Expr,
  emitTranspose4,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32mul,
  i32sub,
  loadF32,
  vload,
  vloadSplat,
  ValType,
} from '../../util/wasm-asm';
import { at } from './address';

/**
 * copyruns(src, dst, count, run, srcStride, dstStride), all in bytes (run a multiple of 4): copies
 * `count` runs of `run` bytes, the i-th from src + i·srcStride to dst + i·dstStride (strides may be
 * negative). The short-run copies behind ../copies.ts' Reverse, Concat, Slice and SplitV: a JS loop
 * over a [32, 256, 24] flip costs ~3 ns per element, this ~0.1.
 */
export function buildCopyRuns(): Fn {
  const f = new Fn('copyruns', Array<ValType>(6).fill('i32'));
  const [src, dst, count, run, srcStride, dstStride] = f.params;
  const [i, off, run16, ps, pd] = Array.from({ length: 5 }, () => f.local('i32'));
  f.set(run16, i32and(get(run), i32(~15)));
  f.set(ps, get(src));
  f.set(pd, get(dst));
  f.forUp(i, i32(0), get(count), () => {
    f.forUp(
      off,
      i32(0),
      get(run16),
      () => f.storeV128(i32add(get(pd), get(off)), 0, vload(i32add(get(ps), get(off)))),
      16,
    );
    f.forUp(
      off,
      get(run16),
      get(run),
      () => f.storeF32(i32add(get(pd), get(off)), 0, loadF32(i32add(get(ps), get(off)))),
      4,
    );
    f.set(ps, i32add(get(ps), get(srcStride)));
    f.set(pd, i32add(get(pd), get(dstStride)));
  });
  return f;
}

/**
 * transpose2d(src, dst, R, C): dst[c, r] = src[r, c] for a row-major [R, C] matrix (4-byte elements).
 * 4×4 blocks move as four vector loads, a register transpose and four vector stores; the ragged
 * edges element by element.
 */
export function buildTranspose2d(): Fn {
  return transposeFn(false);
}

/**
 * transpose2ds(src, dst, R, C, srcStride, dstStride): dst[c·dstStride + r] = src[r·srcStride + c] — the
 * same with row strides in elements (srcStride may be negative: rows read backwards). Used by
 * ../cross-scan.ts to reorder and transpose a channel block in one pass.
 */
export function buildTranspose2dStrided(): Fn {
  return transposeFn(true);
}

function transposeFn(strided: boolean): Fn {
  const f = new Fn(strided ? 'transpose2ds' : 'transpose2d', Array<ValType>(strided ? 6 : 4).fill('i32'));
  const [src, dst, R, C] = f.params;
  const [srcStride, dstStride] = strided ? f.params.slice(4) : [C, R];
  const [r, c, r4, c4] = Array.from({ length: 4 }, () => f.local('i32'));
  const q = Array.from({ length: 4 }, () => f.local('v128'));
  const o = Array.from({ length: 4 }, () => f.local('v128'));
  const tmp = Array.from({ length: 4 }, () => f.local('v128'));
  const srcAt = (rr: Expr, cc: Expr) => at(src, i32add(i32mul(rr, get(srcStride)), cc));
  const dstAt = (cc: Expr, rr: Expr) => at(dst, i32add(i32mul(cc, get(dstStride)), rr));
  const scalar = (rr: Expr, cc: Expr) => f.storeF32(dstAt(cc, rr), 0, loadF32(srcAt(rr, cc)));
  f.set(r4, i32and(get(R), i32(~3)));
  f.set(c4, i32and(get(C), i32(~3)));
  f.forUp(
    r,
    i32(0),
    get(r4),
    () => {
      f.forUp(
        c,
        i32(0),
        get(c4),
        () => {
          for (let j = 0; j < 4; j++) f.set(q[j], vload(srcAt(i32add(get(r), i32(j)), get(c))));
          emitTranspose4(f, q, o, tmp);
          for (let j = 0; j < 4; j++) f.storeV128(dstAt(i32add(get(c), i32(j)), get(r)), 0, get(o[j]));
        },
        4,
      );
      f.forUp(c, get(c4), get(C), () => {
        for (let j = 0; j < 4; j++) scalar(i32add(get(r), i32(j)), get(c));
      });
    },
    4,
  );
  f.forUp(r, get(r4), get(R), () => f.forUp(c, i32(0), get(C), () => scalar(get(r), get(c))));
  return f;
}

/**
 * fillrows(base, count, rep, stride) — in place, 4-byte elements, element units: for each i < count the
 * element at base + i·stride is repeated over the rep − 1 elements after it (a broadcast along the
 * innermost axis, e.g. dy of a LayerNorm mean, [.., 1] → [.., c]).
 */
export function buildFillRows(): Fn {
  const f = new Fn('fillrows', Array<ValType>(4).fill('i32'));
  const [base, count, rep, stride] = f.params;
  const [i, j, row, rep4] = Array.from({ length: 4 }, () => f.local('i32'));
  const v = f.local('v128');
  f.set(rep4, i32and(i32sub(get(rep), i32(1)), i32(~3)));
  f.forUp(i, i32(0), get(count), () => {
    f.set(row, at(base, i32mul(get(i), get(stride)))); // &element; fill row + 1 .. row + rep − 1
    f.set(v, vloadSplat(get(row)));
    f.forUp(j, i32(0), get(rep4), () => f.storeV128(at(row, i32add(get(j), i32(1))), 0, get(v)), 4);
    f.forUp(j, i32add(get(rep4), i32(1)), get(rep), () => f.storeF32(at(row, get(j)), 0, loadF32(get(row))));
  });
  return f;
}
