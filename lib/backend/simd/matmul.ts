/**
 * The heap GEMM behind BatchMatMul (../matmul.ts): XNNPACK's summation order, a transposed operand read
 * in place through its strides. Assembled by ../heap.ts.
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
  i32eq,
  i32minU,
  i32mul,
  i32sub,
  loadF32,
  vadd,
  vload,
  vloadSplat,
  vmul,
  vzero,
  ValType,
} from '../../util/wasm-asm';

/**
 * gemm_m / gemm_n(a, b, c, M, N, K, sam, sak, ldb, kc): c[M, N] = a·b, where a's element (m, k) is at
 * a + 4·(m·sam + k·sak) (so a transposed a costs nothing) and b is row-major [K, ldb ≥ N].
 * Every output is Σ_k a[m, k]·b[k, n] summed in k order from 0 — the order of XNNPACK's f32 GEMM
 * micro-kernels (one running sum per output, one product added per k; wasm has no fused multiply-add),
 * so results equal the stock kernel's bit for bit. Tiles of 4 rows × 8 columns (8 accumulators in
 * registers, b's 8 columns as two vectors, a splatted); k runs in blocks of kc, the partial sums
 * parked in c between blocks (which keeps the order). gemm_m walks row tiles outside and column tiles
 * inside (b's block stays in cache: many rows, small b); gemm_n the reverse (few rows, large b).
 */
export function buildGemm(order: 'm' | 'n'): Fn {
  const f = new Fn(`gemm_${order}`, Array<ValType>(10).fill('i32'));
  const [a, b, c, M, N, K, sam, sak, ldb, kc] = f.params;
  const [kb, kend, m0, n0, k, m4, n8, n4, pb, pc, sakB, ldbB] = Array.from({ length: 12 }, () => f.local('i32'));
  const pa = Array.from({ length: 4 }, () => f.local('i32'));
  const vacc = Array.from({ length: 8 }, () => f.local('v128'));
  const sacc = Array.from({ length: 4 }, () => f.local('f32'));
  const bv = [f.local('v128'), f.local('v128')];
  const sb = f.local('f32');
  const av = f.local('v128');
  const sa = f.local('f32');
  f.set(m4, i32and(get(M), i32(~3)));
  f.set(n8, i32and(get(N), i32(~7)));
  f.set(n4, i32and(get(N), i32(~3)));
  f.set(sakB, i32mul(get(sak), i32(4)));
  f.set(ldbB, i32mul(get(ldb), i32(4)));
  /** One tile: rows m0..m0+R, columns n0..n0+4W (W = 0: one column, scalar), over k in [kb, kend). */
  const tile = (R: 1 | 4, W: 0 | 1 | 2) => {
    const vec = W > 0;
    const nw = vec ? W : 1;
    const acc = (r: number, w: number) => (vec ? vacc[r * 2 + w] : sacc[r]);
    for (let r = 0; r < R; r++) {
      f.set(
        pa[r],
        i32add(get(a), i32mul(i32add(i32mul(i32add(get(m0), i32(r)), get(sam)), i32mul(get(kb), get(sak))), i32(4))),
      );
    }
    f.set(pb, i32add(get(b), i32mul(i32add(i32mul(get(kb), get(ldb)), get(n0)), i32(4))));
    f.set(pc, i32add(get(c), i32mul(i32add(i32mul(get(m0), get(N)), get(n0)), i32(4))));
    const cAt = (r: number): Expr => i32add(get(pc), i32mul(i32mul(i32(r), get(N)), i32(4)));
    // first k block: start from 0 (as XNNPACK's zero bias); later blocks: continue the parked sums
    f.if(
      i32eq(get(kb), i32(0)),
      () => {
        for (let r = 0; r < R; r++) for (let w = 0; w < nw; w++) f.set(acc(r, w), vec ? vzero : f32(0));
      },
      () => {
        for (let r = 0; r < R; r++)
          for (let w = 0; w < nw; w++) f.set(acc(r, w), vec ? vload(cAt(r), 16 * w) : loadF32(cAt(r)));
      },
    );
    f.forUp(k, get(kb), get(kend), () => {
      for (let w = 0; w < nw; w++) f.set(vec ? bv[w] : sb, vec ? vload(get(pb), 16 * w) : loadF32(get(pb)));
      for (let r = 0; r < R; r++) {
        f.set(vec ? av : sa, vec ? vloadSplat(get(pa[r])) : loadF32(get(pa[r])));
        for (let w = 0; w < nw; w++) {
          f.set(
            acc(r, w),
            vec ? vadd(get(acc(r, w)), vmul(get(av), get(bv[w]))) : f32add(get(acc(r, w)), f32mul(get(sa), get(sb))),
          );
        }
        f.set(pa[r], i32add(get(pa[r]), get(sakB)));
      }
      f.set(pb, i32add(get(pb), get(ldbB)));
    });
    for (let r = 0; r < R; r++) {
      for (let w = 0; w < nw; w++) {
        if (vec) f.storeV128(cAt(r), 16 * w, get(acc(r, w)));
        else f.storeF32(cAt(r), 0, get(acc(r, w)));
      }
    }
  };
  const rowTiles = (W: 0 | 1 | 2) => {
    f.forUp(m0, i32(0), get(m4), () => tile(4, W), 4);
    f.forUp(m0, get(m4), get(M), () => tile(1, W));
  };
  const colTiles = (R: 1 | 4) => {
    f.forUp(n0, i32(0), get(n8), () => tile(R, 2), 8);
    f.forUp(n0, get(n8), get(n4), () => tile(R, 1), 4);
    f.forUp(n0, get(n4), get(N), () => tile(R, 0));
  };
  f.forUp(kb, i32(0), get(K), () => {
    f.set(kend, i32minU(i32add(get(kb), get(kc)), get(K)));
    if (order === 'm') {
      f.forUp(m0, i32(0), get(m4), () => colTiles(4), 4);
      f.forUp(m0, get(m4), get(M), () => colTiles(1));
    } else {
      f.forUp(n0, i32(0), get(n8), () => rowTiles(2), 8);
      f.forUp(n0, get(n8), get(n4), () => rowTiles(1), 4);
      f.forUp(n0, get(n4), get(N), () => rowTiles(0));
    }
    // next block: kb ← kend (forUp adds 1 after the body)
    f.set(kb, i32sub(get(kend), i32(1)));
  });
  return f;
}
