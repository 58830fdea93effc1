/**
 * The heap kernel behind ../broadcast.ts: out[o, m, i] = a[o, m, i] ⊕ b[o, i] for a row-major a
 * [O, M, I] and b [O, I] (b broadcast over the middle axis), ⊕ = +, ·, or − (op 0, 1, 2; 3: b − a). With
 * I ≥ 4 the inner axis runs 4 per vector (then a scalar tail); with I = 1 (b one value per o) the middle
 * axis does, b splatted. One f32 operation per element, as the stock kernels: bit-identical.
 * Assembled by ../heap.ts.
 */
import {
  Expr,
  f32add,
  f32mul,
  f32sub,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32eq,
  i32mul,
  Local,
  loadF32,
  ValType,
  vadd,
  vload,
  vloadSplat,
  vmul,
  vsub,
} from '../../util/wasm-asm';
import { at } from './address';

type Ops = { v: (x: Expr, y: Expr) => Expr; s: (x: Expr, y: Expr) => Expr };
const OPS: Ops[] = [
  { v: vadd, s: f32add },
  { v: vmul, s: f32mul },
  { v: vsub, s: f32sub },
  { v: (x, y) => vsub(y, x), s: (x, y) => f32sub(y, x) },
];

/** bcast(a, b, out, O, M, I, op): see the header. */
export function buildBroadcastBinary(): Fn {
  const f = new Fn('bcast', Array<ValType>(7).fill('i32'));
  const [a, b, out, O, M, I, op] = f.params;
  const [o, m, i, row, brow, n4] = Array.from({ length: 6 }, () => f.local('i32'));
  /** for j in [0, n): out[base + j] = a[base + j] ⊕ bv(j), 4 at a time then a scalar tail. */
  const run = (base: Local, n: Local, ops: Ops, bVec: (j: Local) => Expr, bScalar: (j: Local) => Expr) => {
    const el = (arr: Local, j: Local) => at(arr, i32add(get(base), get(j)));
    f.set(n4, i32and(get(n), i32(~3)));
    f.forUp(i, i32(0), get(n4), () => f.storeV128(el(out, i), 0, ops.v(vload(el(a, i)), bVec(i))), 4);
    f.forUp(i, get(n4), get(n), () => f.storeF32(el(out, i), 0, ops.s(loadF32(el(a, i)), bScalar(i))));
  };
  OPS.forEach((ops, k) => {
    f.if(i32eq(get(op), i32(k)), () => {
      f.if(
        i32eq(get(I), i32(1)),
        () => {
          // one b value per o: the middle axis is the contiguous one
          f.forUp(o, i32(0), get(O), () => {
            f.set(row, i32mul(get(o), get(M)));
            run(
              row,
              M,
              ops,
              () => vloadSplat(at(b, get(o))),
              () => loadF32(at(b, get(o))),
            );
          });
        },
        () => {
          f.forUp(o, i32(0), get(O), () => {
            f.set(brow, i32mul(get(o), get(I)));
            f.forUp(m, i32(0), get(M), () => {
              f.set(row, i32mul(i32add(i32mul(get(o), get(M)), get(m)), get(I)));
              run(
                row,
                I,
                ops,
                (j) => vload(at(b, i32add(get(brow), get(j)))),
                (j) => loadF32(at(b, i32add(get(brow), get(j)))),
              );
            });
          });
        },
      );
    });
  });
  return f;
}
