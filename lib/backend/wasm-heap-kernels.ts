/**
 * WebAssembly SIMD kernels that run in place on the wasm backend's heap. Each one gives BIT-IDENTICAL
 * results to what it replaces — the same f32 operations in the same order — so training runs,
 * checkpoints and recorded results do not change, only their speed (tests compare bits with the stock
 * kernels; `npm run bench:train` reproduced all 756 step losses of its earlier run).
 *
 * Why they exist (64 px, batch 8, one training step; `npm run bench:model -- --profile`):
 *
 *   GEMM (matMul)                  XNNPACK sums every output in k order, one product at a time (wasm
 *     has no fused multiply-add), so a GEMM that does the same is bit-identical. Ours reads a transposed
 *     operand in place through its strides; the rewrite of wasm-kernels.ts had to transpose it first —
 *     for a weight gradient xᵀ·dy that copy is the whole activation. 4×8 register tiles, k in blocks.
 *   Sum / Mean over leading axes   tfjs-backend-wasm 4.22 reduces only over the innermost axes, so
 *     (e.g. Σ over b, h, w of an NHWC tensor: every bias, LayerNorm and BatchNorm gradient, and the
 *     BatchNorm batch moments) it first transposes the whole input to put the reduced axes last, then
 *     sums each output with one sequential scalar loop. ~700 such calls per step, ~130 ms. Here the
 *     input stays as it is; each group of 16 columns keeps its running sums in four SIMD registers while
 *     the rows stream past — every column still summed in row order from 0, as the stock loop does.
 *   depthwise filter gradient      the composite of wasm-kernels.ts runs an XNNPACK depthwise conv whose
 *     "filter" is the whole gradient map (~2.5 ms a call); here a direct loop in the conv's tap order.
 *   Adam                           the PyTorch-exact update (lib/train/optim.ts) is 13 elementwise tf ops
 *     per parameter tensor: ~4,600 kernel calls per step for the ~350 parameters of microscopic-mamba-t,
 *     most of them on tiny tensors where the engine's per-call overhead dominates. Here: one call per
 *     parameter that reads p, g, m, v once and writes p, m, v (wasm f32 add/mul/div/sqrt are IEEE-754
 *     correctly rounded, as XNNPACK's are).
 *   copies                         run copies, 2-D transposes and row fills behind wasm-fixes.ts' Slice,
 *     Concat, Pack, Reverse, Tile and Transpose (a JS element loop costs ~3 ns per element).
 *
 * The kernels are assembled at first use by lib/util/wasm-asm.ts (no toolchain) and instantiated on the
 * backend's own WebAssembly.Memory, so nothing is copied: arguments are byte offsets into the heap.
 * Anything they do not cover (other dtypes, non-contiguous axes, an innermost reduction, which the stock
 * kernel already does without a transpose) goes to the stock kernel, as does everything when the heap
 * cannot be reached (e.g. a build without SIMD).
 *
 * Shape glossary: o outer (kept leading axes), r rows (reduced axes), c columns (kept trailing axes);
 * M, K, N matMul rows / inner / columns; n elements of a parameter.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { backendHeapMemory, compileOptimized, memoryImportFor, WA, WasmMemory, WasmModule } from '../util/wasm-api';
import { replaceWasmKernel } from './wasm-registry';
import {
  assembleModule,
  Expr,
  f32,
  f32add,
  f32div,
  f32mul,
  f32sqrt,
  f32sub,
  emitTranspose4,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32divU,
  i32eq,
  i32minU,
  i32mul,
  i32sub,
  i32ltU,
  loadF32,
  Local,
  select,
  vadd,
  vdiv,
  vload,
  vloadSplat,
  vmul,
  vshuffle,
  vsplat,
  vsqrt,
  vsub,
  vzero,
  ValType,
} from '../util/wasm-asm';

// ---- kernels -----------------------------------------------------------------------------------

/** Byte address `base + 4·index`. */
const at = (base: Local, index: Expr): Expr => i32add(get(base), i32mul(index, i32(4)));

/**
 * colsum(x, out, o, r, c, mean): x [o, r, c] → out [o, c], out[i, j] = Σ_k x[i, k, j] summed in k order
 * from 0 (the stock kernel's order); with mean = 1 each sum is then divided by r (as the stock Mean does).
 */
function buildColSum(): Fn {
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

/** Bits of adam's `mode`. */
const ADAM_L2 = 1; // g ← g + λ·p        (Adam's weight decay)
const ADAM_DECOUPLED = 2; // p ← p·(1 − lr·λ)   (AdamW's)

/**
 * adam(p, g, m, v, pOut, mOut, vOut, n, β1, 1−β1, β2, 1−β2, √(1−β2ᵗ), ε, lr/(1−β1ᵗ), λ, 1−lr·λ, mode):
 * the update of lib/train/optim.ts `Adam.applyGradients`, operation for operation (see there).
 */
function buildAdam(): Fn {
  const types: ValType[] = [...Array<ValType>(8).fill('i32'), ...Array<ValType>(9).fill('f32'), 'i32'];
  const f = new Fn('adam', types);
  const [p, g, m, v, pOut, mOut, vOut, n] = f.params.slice(0, 8);
  const scalars = f.params.slice(8, 17); // b1, omb1, b2, omb2, sqrtBc2, eps, stepSize, wd, decay
  const mode = f.params[17];
  const splat = scalars.map((sc) => {
    const l = f.local('v128');
    f.set(l, vsplat(get(sc)));
    return l;
  });
  const i = f.local('i32');
  const n4 = f.local('i32');
  f.set(n4, i32and(get(n), i32(~3)));
  /** The update of elements i..i+3 (vectors) or of element i (scalars): the same operations in the same order. */
  const update = (vec: boolean) => {
    const [b1, omb1, b2, omb2, sqrtBc2, eps, stepSize, wd, decay] = vec ? splat : scalars;
    const ops = vec
      ? { add: vadd, sub: vsub, mul: vmul, div: vdiv, sqrt: vsqrt }
      : { add: f32add, sub: f32sub, mul: f32mul, div: f32div, sqrt: f32sqrt };
    const [tg, pv, mv, vv] = Array.from({ length: 4 }, () => f.local(vec ? 'v128' : 'f32'));
    const load = (base: Local) => (vec ? vload(at(base, get(i))) : loadF32(at(base, get(i))));
    const store = (base: Local, e: Expr) =>
      vec ? f.storeV128(at(base, get(i)), 0, e) : f.storeF32(at(base, get(i)), 0, e);
    return () => {
      f.set(tg, load(g));
      f.set(pv, load(p));
      f.if(i32and(get(mode), i32(ADAM_L2)), () => f.set(tg, ops.add(get(tg), ops.mul(get(pv), get(wd)))));
      f.set(mv, ops.add(ops.mul(load(m), get(b1)), ops.mul(get(tg), get(omb1))));
      f.set(vv, ops.add(ops.mul(load(v), get(b2)), ops.mul(ops.mul(get(tg), get(tg)), get(omb2))));
      store(mOut, get(mv));
      store(vOut, get(vv));
      f.if(i32and(get(mode), i32(ADAM_DECOUPLED)), () => f.set(pv, ops.mul(get(pv), get(decay))));
      const denom = ops.add(ops.div(ops.sqrt(get(vv)), get(sqrtBc2)), get(eps));
      store(pOut, ops.sub(get(pv), ops.mul(ops.div(get(mv), denom), get(stepSize))));
    };
  };
  f.forUp(i, i32(0), get(n4), update(true), 4);
  f.forUp(i, get(n4), get(n), update(false));
  return f;
}

/**
 * dwfilter(x, dy, out, acc, b, h, w, c, m, ho, wo, kh, kw, sh, sw, pt, pl): the filter gradient of a depthwise
 * conv with channel multiplier m, x [b, h, w, c], dy [b, ho, wo, c·m] → out [kh, kw, c·m]; for output
 * channel o (input channel o / m):
 *   out[i, j, o] = Σ_b ( Σ_{p, q} x[b, i + p·sh − pt, j + q·sw − pl, o / m] · dy[b, p, q, o] )
 * in the order of the composite kernel it replaces (wasm-kernels.ts: one XNNPACK depthwise conv with dy
 * as the filter, then a Sum over b): the inner sum runs over (p, q) row-major from 0, padded positions
 * included as 0·dy; the outer sum runs over b from 0. The channel loop is innermost (vectorised for
 * m = 1 and 2, scalar otherwise), with the running inner sums in `acc` (c·m floats of scratch).
 */
function buildDepthwiseFilterGrad(): Fn {
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
function buildGemm(order: 'm' | 'n'): Fn {
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

/**
 * copyruns(src, dst, count, run, srcStride, dstStride), all in bytes (run a multiple of 4): copies
 * `count` runs of `run` bytes, the i-th from src + i·srcStride to dst + i·dstStride (strides may be
 * negative). The short-run copies behind wasm-fixes.ts' Reverse, Concat, Slice and SplitV: a JS loop
 * over a [32, 256, 24] flip costs ~3 ns per element, this ~0.1.
 */
function buildCopyRuns(): Fn {
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
function buildTranspose2d(): Fn {
  const f = new Fn('transpose2d', Array<ValType>(4).fill('i32'));
  const [src, dst, R, C] = f.params;
  const [r, c, r4, c4] = Array.from({ length: 4 }, () => f.local('i32'));
  const q = Array.from({ length: 4 }, () => f.local('v128'));
  const o = Array.from({ length: 4 }, () => f.local('v128'));
  const tmp = Array.from({ length: 4 }, () => f.local('v128'));
  const srcAt = (rr: Expr, cc: Expr) => at(src, i32add(i32mul(rr, get(C)), cc));
  const dstAt = (cc: Expr, rr: Expr) => at(dst, i32add(i32mul(cc, get(R)), rr));
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
function buildFillRows(): Fn {
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

// ---- module on the backend's heap --------------------------------------------------------------

/** gemm_m / gemm_n (see buildGemm): byte addresses a, b, c; sizes; a's strides; b's row length; k block. */
type Gemm = (
  a: number,
  b: number,
  c: number,
  M: number,
  N: number,
  K: number,
  sam: number,
  sak: number,
  ldb: number,
  kc: number,
) => void;

/** The heap kernels' entry points (byte addresses and sizes; see each build* function). */
export interface HeapExports {
  colsum(x: number, out: number, outer: number, rows: number, cols: number, mean: number): void;
  adam(...args: number[]): void;
  dwfilter(...args: number[]): void;
  copyruns(src: number, dst: number, count: number, run: number, srcStride: number, dstStride: number): void;
  transpose2d(src: number, dst: number, rows: number, cols: number): void;
  fillrows(base: number, count: number, rep: number, stride: number): void;
  gemm_m: Gemm;
  gemm_n: Gemm;
}

/** The compiled kernels, one module per kind of heap (shared: the threaded build's; see wasm-threads.ts). */
const compiledModules = new Map<boolean, WasmModule>();
let unavailable = false;
const instances = new WeakMap<WasmMemory, HeapExports>();

/** The kernels bound to this wasm backend's memory, or undefined where that memory is not reachable. */
export function heapKernels(backend: BackendWasm): HeapExports | undefined {
  const memory = backendHeapMemory(backend.wasm);
  if (unavailable || !memory) return undefined;
  let ex = instances.get(memory);
  if (!ex) {
    try {
      const limits = memoryImportFor(memory);
      let compiledModule = compiledModules.get(limits.shared);
      compiledModule ??= compileOptimized(
        assembleModule(
          [
            buildColSum(),
            buildAdam(),
            buildDepthwiseFilterGrad(),
            buildGemm('m'),
            buildGemm('n'),
            buildCopyRuns(),
            buildTranspose2d(),
            buildFillRows(),
          ],
          limits,
        ),
      );
      compiledModules.set(limits.shared, compiledModule);
      ex = new WA.Instance(compiledModule, { env: { mem: memory } }).exports as unknown as HeapExports;
    } catch {
      unavailable = true; // e.g. no wasm SIMD: the stock kernels keep working
      return undefined;
    }
    instances.set(memory, ex);
  }
  return ex;
}

/** Byte offset of a tensor's data in the heap. */
function offsetOf(backend: BackendWasm, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId)!.memoryOffset;
}

// ---- Sum and Mean ------------------------------------------------------------------------------

/** x viewed as [o, r, c] when `axis` is one contiguous run of axes with kept axes after it; else undefined. */
export function leadingReduction(
  shape: number[],
  axis: number | number[] | undefined,
): { outer: number; rows: number; cols: number; axes: number[] } | undefined {
  if (axis === undefined || shape.length === 0) return undefined;
  const axes = [...new Set(tf.util.parseAxisParam(axis, shape))].sort((a, b) => a - b);
  if (axes.length === 0 || axes[axes.length - 1] - axes[0] !== axes.length - 1) return undefined;
  const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
  const cols = prod(shape.slice(axes[axes.length - 1] + 1));
  if (cols === 1) return undefined; // innermost: the stock kernel needs no transpose
  return { outer: prod(shape.slice(0, axes[0])), rows: prod(axes.map((a) => shape[a])), cols, axes };
}

/** The shape of a reduction of `shape` over `axes` (kept as 1 with keepDims). */
function reducedShape(shape: number[], axes: number[], keepDims: boolean): number[] {
  return shape.map((s, i) => (axes.includes(i) ? 1 : s)).filter((_, i) => keepDims || !axes.includes(i));
}

/**
 * A reduction of an empty tensor: Σ over nothing is 0, a mean of nothing NaN (as in PyTorch). The stock
 * kernels skip their loop for an empty input and return the uninitialised heap block instead.
 */
function emptyReduction(args: Parameters<tf.KernelFunc>[0], mean: boolean): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  const backend = args.backend as BackendWasm;
  const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
  const out = backend.makeOutput(reducedShape(x.shape, tf.util.parseAxisParam(axis, x.shape), keepDims), 'float32');
  (backend.typedArrayFromHeap(out) as Float32Array).fill(mean ? NaN : 0);
  return out;
}

function reductionKernel(stock: tf.KernelFunc, mean: boolean): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as tf.TensorInfo;
    const backend = args.backend as BackendWasm;
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    if (x.dtype === 'float32' && tf.util.sizeFromShape(x.shape) === 0) return emptyReduction(args, mean);
    const plan = x.dtype === 'float32' ? leadingReduction(x.shape, axis) : undefined;
    const k = plan ? heapKernels(backend) : undefined;
    if (!plan || !k) return stock(args);
    const out = backend.makeOutput(reducedShape(x.shape, plan.axes, keepDims), 'float32');
    if (plan.outer * plan.cols > 0) {
      k.colsum(offsetOf(backend, x), offsetOf(backend, out), plan.outer, plan.rows, plan.cols, mean ? 1 : 0);
    }
    return out;
  };
}

// ---- depthwise filter gradient -----------------------------------------------------------------

/**
 * DepthwiseConv2dNativeBackpropFilter on the heap, bit-identical to `fallback` (the composite kernel of
 * wasm-kernels.ts), which still runs dilated, NCHW or non-float32 cases. The composite spends ~2.5 ms per
 * call at 64 px in an XNNPACK depthwise conv whose "filter" is the whole 16×16 gradient map (XNNPACK has
 * no fast path for such a filter), this one ~0.2 ms.
 */
const XNNPACK_UNIPASS_TAPS = new Set([4, 9, 25]);

export function depthwiseFilterGradKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as Record<string, tf.TensorInfo>;
    const backend = args.backend as BackendWasm;
    const a = args.attrs as unknown as {
      filterShape: [number, number, number, number];
      strides: number | [number, number];
      pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
      dilations?: number | [number, number];
      dataFormat?: string;
    };
    const [kh, kw, c, m] = a.filterShape;
    const dil = a.dilations ?? 1;
    const unitDilation = Array.isArray(dil) ? dil[0] === 1 && dil[1] === 1 : dil === 1;
    const k =
      unitDilation && a.dataFormat !== 'NCHW' && x.dtype === 'float32' && dy.dtype === 'float32'
        ? heapKernels(backend)
        : undefined;
    if (!k) return fallback(args);
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      a.filterShape,
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
      true,
    );
    // The composite's conv has ho·wo taps; XNNPACK runs 4, 9 and 25 taps with its unipass kernels, which
    // sum the taps in another order (measured: every other count from 1 to 256 is sequential). Those
    // (2×2, 3×3 and 5×5 gradient maps: the last stages at small inputs) stay with the composite.
    if (XNNPACK_UNIPASS_TAPS.has(info.outHeight * info.outWidth)) return fallback(args);
    const [b, h, w] = x.shape;
    const out = backend.makeOutput(a.filterShape, 'float32');
    const acc = backend.makeOutput([c * m], 'float32'); // scratch
    const off = (t: tf.TensorInfo) => offsetOf(backend, t);
    k.dwfilter(
      off(x),
      off(dy),
      off(out),
      off(acc),
      b,
      h,
      w,
      c,
      m,
      info.outHeight,
      info.outWidth,
      kh,
      kw,
      info.strideHeight,
      info.strideWidth,
      info.padInfo.top,
      info.padInfo.left,
    );
    backend.disposeData(acc.dataId);
    return out;
  };
}

// ---- matrix products ---------------------------------------------------------------------------

/** k block of the GEMM: 256 rows of a's columns and b's rows stay in L1/L2 while every tile uses them. */
const GEMM_KC = 256;
/** b blocks up to this size (bytes) stay in cache across row tiles: walk rows outside (gemm_m). */
const GEMM_B_BLOCK_CACHED = 256 * 1024;

/** A product as wasm-kernels.ts plans it: batch sizes, m × k times k × n, output shape. */
export interface MatMulPlan {
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  outShape: number[];
}

/**
 * a @ b (optionally transposed; batches equal or one of them 1) as the heap GEMM, bit-identical to
 * XNNPACK's product, which is where the stock kernel (after wasm-kernels.ts' rewrite) sends it. A
 * transposed a is read in place through its strides (the rewrite transposes it first: for a weight
 * gradient xᵀ·dy that copy is the whole activation); a transposed b (a weight, small) is transposed once.
 * Returns undefined (the caller's path then runs) where the heap is not reachable.
 */
export function heapBatchMatMul(
  backend: BackendWasm,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  plan: MatMulPlan,
): tf.TensorInfo | undefined {
  const { batchA, batchB, m, k, n } = plan;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return undefined;
  const kx = heapKernels(backend);
  if (!kx) return undefined;
  const out = backend.makeOutput(plan.outShape, 'float32');
  const batch = Math.max(batchA, batchB);
  if (k === 0) {
    (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
    return out;
  }
  let bRowMajor = b; // [batchB, k, n]
  if (transposeB) {
    const perm = b.shape.map((_, i) => i);
    perm.push(...perm.splice(-2).reverse());
    bRowMajor = tf
      .getKernel(tf.Transpose, 'wasm')!
      .kernelFunc({ inputs: { x: b }, backend, attrs: { perm } }) as tf.TensorInfo;
  }
  const gemm = Math.min(GEMM_KC, k) * n * 4 <= GEMM_B_BLOCK_CACHED ? kx.gemm_m : kx.gemm_n;
  const [sam, sak] = transposeA ? [1, m] : [k, 1]; // a [k, m] or [m, k]
  const pa = offsetOf(backend, a);
  const pb = offsetOf(backend, bRowMajor);
  const pc = offsetOf(backend, out);
  if (batchB === 1 && !transposeA) {
    gemm(pa, pb, pc, batch * m, n, k, sam, sak, n, GEMM_KC); // a's batches are just more rows
  } else {
    for (let i = 0; i < batch; i++) {
      const ai = batchA === 1 ? 0 : i * m * k;
      const bi = batchB === 1 ? 0 : i * k * n;
      gemm(pa + 4 * ai, pb + 4 * bi, pc + 4 * i * m * n, m, n, k, sam, sak, n, GEMM_KC);
    }
  }
  if (bRowMajor !== b) backend.disposeData(bRowMajor.dataId);
  return out;
}

// ---- Adam --------------------------------------------------------------------------------------

/** Kernel name of the fused Adam update (inputs param, grad, m, v; outputs [param, m, v]). */
export const ADAM_KERNEL = 'MsmAdamUpdate';

/** Attributes of ADAM_KERNEL: the host scalars of `Adam.applyGradients` (each rounded to f32, as a tf scalar is). */
export interface AdamKernelAttrs {
  beta1: number;
  beta2: number;
  /** √(1 − β2ᵗ) */
  sqrtBc2: number;
  eps: number;
  /** lr / (1 − β1ᵗ) */
  stepSize: number;
  /** λ of Adam's L2 term (0: none) */
  l2: number;
  /** 1 − lr·λ of AdamW's decoupled decay (1: none) */
  decay: number;
}

function adamKernel(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { param, grad, m, v } = args.inputs as Record<string, tf.TensorInfo>;
  const a = args.attrs as unknown as AdamKernelAttrs;
  const n = tf.util.sizeFromShape(param.shape);
  for (const t of [grad, m, v]) {
    if (t.dtype !== 'float32' || tf.util.sizeFromShape(t.shape) !== n) {
      throw new Error(
        `${ADAM_KERNEL}: param, grad, m and v must be float32 of one shape; got [${param.shape}] and [${t.shape}]`,
      );
    }
  }
  const k = heapKernels(backend);
  if (!k) throw new Error(`${ADAM_KERNEL}: the wasm heap is not reachable (check adamKernelAvailable() first)`);
  const outs = [param, m, v].map((t) => backend.makeOutput(t.shape, 'float32'));
  const mode = (a.l2 !== 0 ? ADAM_L2 : 0) | (a.decay !== 1 ? ADAM_DECOUPLED : 0);
  const off = (t: tf.TensorInfo) => offsetOf(backend, t);
  // f64 → f32 rounding of the scalars happens at the call boundary, exactly as for a float32 tf.scalar.
  k.adam(
    off(param),
    off(grad),
    off(m),
    off(v),
    ...outs.map(off),
    n,
    a.beta1,
    1 - a.beta1,
    a.beta2,
    1 - a.beta2,
    a.sqrtBc2,
    a.eps,
    a.stepSize,
    a.l2,
    a.decay,
    mode,
  );
  return outs;
}

/** True when the fused Adam kernel can run on the active backend (wasm, with its heap reachable). */
export function adamKernelAvailable(): boolean {
  if (tf.getBackend() !== 'wasm' || !tf.getKernel(ADAM_KERNEL, 'wasm')) return false;
  return heapKernels(tf.backend() as unknown as BackendWasm) !== undefined;
}

// ---- registration ------------------------------------------------------------------------------

let registered = false;

/** Replaces wasm's Sum and Mean and adds ADAM_KERNEL (once). */
export function registerWasmHeapKernels(): void {
  if (registered) return;
  registered = true;
  replaceWasmKernel(tf.Sum, (stock) => reductionKernel(stock, false));
  replaceWasmKernel(tf.Mean, (stock) => reductionKernel(stock, true));
  if (tf.getKernel(ADAM_KERNEL, 'wasm')) tf.unregisterKernel(ADAM_KERNEL, 'wasm');
  tf.registerKernel({
    kernelName: ADAM_KERNEL,
    backendName: 'wasm',
    kernelFunc: adamKernel as unknown as tf.KernelFunc,
  });
}
