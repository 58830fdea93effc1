/**
 * Matrix products on wasm: BatchMatMul and _FusedMatMul.
 *
 * tfjs-backend-wasm 4.22 sends a product to XNNPACK only when it is 2-D and untransposed; anything
 * with transposeA/B or a batch > 1 runs a naive loop, and the naive _FusedMatMul also mis-indexes its
 * bias (wrong results). So every product is planned (`planMatMul`) and then, by size:
 *   tiny products      the stock naive loop (it sums in k blocks of 48: kept, so results stay bit-identical)
 *   everything else    the heap GEMM (./simd/matmul.ts), BIT-IDENTICAL to XNNPACK's f32 GEMM: XNNPACK
 *                      sums every output in k order, one product at a time (wasm has no fused
 *                      multiply-add), and so does ours. It reads a transposed operand in place through
 *                      its strides; the tf-op rewrite below had to transpose it first — for a weight
 *                      gradient xᵀ·dy that copy is the whole activation. 4×8 register tiles, k in blocks.
 *   no heap reachable  a composite: transpose first, fold broadcast batches into rows, loop equal batches.
 * Threads (./heap-threads.ts): on the threaded build the heap GEMM is split by output — rows of the
 * product, or whole products of a batch — so every element is one thread's sum in the same k order:
 * bit-identical for any thread count.
 *
 * Glossary: M, K, N (m, k, n) matMul rows / inner / cols.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { Attrs, compositeKernelFunc } from './composite';
import { heapKernels, offsetOf } from './heap';
import { gemmRowShares, runOnHeap, sharesFor, splitRange } from './heap-threads';

const prod = (xs: number[]): number => xs.reduce((p, v) => p * v, 1);

/** k block of the GEMM: 256 rows of a's columns and b's rows stay in L1/L2 while every tile uses them. */
const GEMM_KC = 256;
/** b blocks up to this size (bytes) stay in cache across row tiles: walk rows outside (gemm_m). */
const GEMM_B_BLOCK_CACHED = 256 * 1024;

/** Products per share and pool call when a batch of them is split over threads (fits a worker's call list). */
const MAX_CALLS_PER_SHARE = 256;

/** A product as planMatMul plans it: batch sizes, m × k times k × n, output shape. */
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
 * XNNPACK's product, which is where the stock kernel (after the rewrite below) sends it. A
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
  const gemm = Math.min(GEMM_KC, k) * n * 4 <= GEMM_B_BLOCK_CACHED ? 'gemm_m' : 'gemm_n';
  const [sam, sak] = transposeA ? [1, m] : [k, 1]; // a [k, m] or [m, k]
  const pa = offsetOf(backend, a);
  const pb = offsetOf(backend, bRowMajor);
  const pc = offsetOf(backend, out);
  const threads = sharesFor(batch * m * n * k);
  if (batchB === 1 && !transposeA) {
    // a's batches are just more rows
    runOnHeap(
      heapKernels,
      backend,
      gemmRowShares(gemm, [pa, pb, pc], [batch * m, n, k], [sam, sak, n, GEMM_KC], threads),
    );
  } else {
    const one = (i: number): [string, number[]] => {
      const ai = batchA === 1 ? 0 : i * m * k;
      const bi = batchB === 1 ? 0 : i * k * n;
      return [gemm, [pa + 4 * ai, pb + 4 * bi, pc + 4 * i * m * n, m, n, k, sam, sak, n, GEMM_KC]];
    };
    if (batch >= threads) {
      // whole products per share, in groups that fit a worker's call list
      for (let g0 = 0; g0 < batch; g0 += MAX_CALLS_PER_SHARE * threads) {
        const g1 = Math.min(batch, g0 + MAX_CALLS_PER_SHARE * threads);
        const shares = splitRange(g1 - g0, threads).map(([i0, i1]) =>
          Array.from({ length: i1 - i0 }, (_, j) => one(g0 + i0 + j)),
        );
        runOnHeap(heapKernels, backend, shares);
      }
    } else {
      // fewer products than threads: split each product's rows
      const perBatch = Array.from({ length: batch }, (_, i) => {
        const [, [a0, b0, c0]] = one(i);
        return gemmRowShares(gemm, [a0, b0, c0], [m, n, k], [sam, sak, n, GEMM_KC], threads);
      });
      const shares = splitRange(m, threads, 4).map((_, w) => perBatch.flatMap((rows) => rows[w] ?? []));
      runOnHeap(heapKernels, backend, shares);
    }
  }
  if (bRowMajor !== b) backend.disposeData(bRowMajor.dataId);
  return out;
}

/** Below this many multiply-adds the naive loop beats the cost of extra transposes and kernel calls. */
const SMALL_MATMUL = 1 << 15;

function swapLast2(t: tf.Tensor): tf.Tensor {
  const perm = t.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1], perm[r - 2]];
  return tf.transpose(t, perm);
}

function planMatMul(a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean): MatMulPlan | null {
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return null;
  const batchA = prod(a.shape.slice(0, -2));
  const batchB = prod(b.shape.slice(0, -2));
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null; // leave the error to the original kernel
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  if (k !== kb) return null;
  let outBatch: number[];
  try {
    outBatch = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  } catch {
    return null;
  }
  return { batchA, batchB, m, k, n, outShape: [...outBatch, m, n] };
}

/**
 * Fewer output rows than this per product and the naive loop beats XNNPACK on weights it must pack
 * afresh (measured ~0.6 ms to pack and free a 24 x 1568 operand, ~1 ns per naive multiply-add).
 */
const MIN_ROWS_FRESH_WEIGHTS = 48;

/** The stock naive loop sums k in blocks of this many; with k ≤ one block it sums like the GEMM. */
const NAIVE_K_BLOCK = 48;

/**
 * Keep the stock kernel when it already reaches XNNPACK, when the product is tiny, or when b differs
 * per batch entry (so its weights would be packed afresh for every product) and the rows are few — but
 * not when k fits one of the naive loop's k blocks: it then sums each output from 0 in k order, one product
 * at a time, exactly as the heap GEMM, so the GEMM gives the same bits much faster (e.g. SS2D's batched
 * dt_proj, [b·4]·[E, R] @ [R, l] with R ≤ 6: ~4 ms naive, ~0.1 ms as GEMM at 64 px).
 */
function keepOriginal(p: MatMulPlan, transposeA: boolean, transposeB: boolean): boolean {
  const direct = !transposeA && !transposeB && p.batchA === 1 && p.batchB === 1;
  if (direct || Math.max(p.batchA, p.batchB) * p.m * p.k * p.n < SMALL_MATMUL) return true;
  return p.batchB > 1 && p.m < MIN_ROWS_FRESH_WEIGHTS && p.k > NAIVE_K_BLOCK;
}

/**
 * a @ b with transposes applied up front and batches reorganised so that every product is a plain
 * 2-D [rows, k] @ [k, n] (the only case tfjs-backend-wasm sends to XNNPACK):
 *   b shared (batchB = 1):  rows = batchA*m, one product; b's storage is reused, so XNNPACK's packed
 *                           weights stay cached across calls for a weight tensor.
 *   a shared (batchA = 1):  a @ [k, batchB*n], one product, then un-fold the columns.
 *   equal batches:          one 2-D product per batch entry.
 */
function matMulBody(a: tf.Tensor, b: tf.Tensor, transposeA: boolean, transposeB: boolean, p: MatMulPlan): tf.Tensor {
  const { batchA, batchB, m, k, n } = p;
  const a3 = tf.reshape(transposeA ? swapLast2(a) : a, [batchA, m, k]); // [batchA, m, k]
  const b3 = tf.reshape(transposeB ? swapLast2(b) : b, [batchB, k, n]); // [batchB, k, n]
  let out: tf.Tensor;
  if (batchB === 1) {
    out = tf.matMul(tf.reshape(a3, [batchA * m, k]), tf.reshape(b3, [k, n])); // [batchA*m, n]
  } else if (batchA === 1) {
    const bCols = tf.reshape(tf.transpose(b3, [1, 0, 2]), [k, batchB * n]); // [k, batchB*n]
    const wide = tf.reshape(tf.matMul(tf.reshape(a3, [m, k]), bCols), [m, batchB, n]); // [m, batchB, n]
    out = tf.transpose(wide, [1, 0, 2]); // [batchB, m, n]
  } else {
    const as = tf.unstack(a3); // batch x [m, k]
    const bs = tf.unstack(b3); // batch x [k, n]
    out = tf.stack(as.map((ai, i) => tf.matMul(ai, bs[i]))); // [batch, m, n]
  }
  return tf.reshape(out, p.outShape);
}

export function fastBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
  const composite = compositeKernelFunc((inputs, attrs) => {
    const tA = Boolean(attrs.transposeA);
    const tB = Boolean(attrs.transposeB);
    return matMulBody(inputs.a, inputs.b, tA, tB, planMatMul(inputs.a, inputs.b, tA, tB) as MatMulPlan);
  });
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const attrs = (args.attrs ?? {}) as Attrs;
    const tA = Boolean(attrs.transposeA);
    const tB = Boolean(attrs.transposeB);
    const plan = a.dtype === 'float32' && b.dtype === 'float32' ? planMatMul(a, b, tA, tB) : null;
    if (plan == null) return original(args);
    const direct = !tA && !tB && plan.batchA === 1 && plan.batchB === 1;
    // The stock naive loop (tiny products) sums in k blocks of 48: keep it, so results stay bit-identical.
    if (!direct && keepOriginal(plan, tA, tB)) return original(args);
    // Every other product ends in XNNPACK's GEMM: the heap GEMM computes it bit for bit, transposes free.
    const heap = heapBatchMatMul(args.backend as unknown as BackendWasm, a, b, tA, tB, plan);
    if (heap) return heap;
    return direct ? original(args) : composite(args);
  };
}

/** The activations _FusedMatMul may carry (tfjs-core fused_types.ts), applied after the bias. */
function applyActivation(y: tf.Tensor, attrs: Attrs, prelu: tf.Tensor | undefined): tf.Tensor {
  switch (attrs.activation ?? 'linear') {
    case 'linear':
      return y;
    case 'relu':
      return tf.relu(y);
    case 'relu6':
      return tf.relu6(y);
    case 'elu':
      return tf.elu(y);
    case 'sigmoid':
      return tf.sigmoid(y);
    case 'leakyrelu':
      return tf.leakyRelu(y, Number(attrs.leakyreluAlpha ?? 0.2));
    case 'prelu':
      return tf.prelu(y, prelu as tf.Tensor);
    default:
      throw new Error(`lib/backend/matmul.ts: _FusedMatMul activation '${attrs.activation}' is unknown`);
  }
}

/**
 * _FusedMatMul = activation(a @ b + bias). The stock kernel is right only on its XNNPACK path (no
 * transposes, batch 1, bias of length n): its naive loop indexes a [n] bias by row * n + col, clamped,
 * so every row after the first gets bias[n - 1]. So: fold to that path when b is shared and the bias
 * is per column; otherwise run the product through the BatchMatMul rewrite and add bias and activation.
 */
export function fastFusedMatMul(original: tf.KernelFunc): tf.KernelFunc {
  const folded = compositeKernelFunc((inputs, attrs) => {
    const tA = Boolean(attrs.transposeA);
    const tB = Boolean(attrs.transposeB);
    const p = planMatMul(inputs.a, inputs.b, tA, tB) as MatMulPlan;
    const a3 = tf.reshape(tA ? swapLast2(inputs.a) : inputs.a, [1, p.batchA * p.m, p.k]); // [1, batchA*m, k]
    const b3 = tf.reshape(tB ? swapLast2(inputs.b) : inputs.b, [1, p.k, p.n]); // [1, k, n]
    const fused: tf.NamedTensorMap = { a: a3, b: b3 };
    if (inputs.bias) fused.bias = inputs.bias;
    if (inputs.preluActivationWeights) fused.preluActivationWeights = inputs.preluActivationWeights;
    const y = tf.engine().runKernel('_FusedMatMul', fused, {
      ...attrs,
      transposeA: false,
      transposeB: false,
    } as unknown as tf.NamedAttrMap) as tf.Tensor; // [1, batchA*m, n]
    return tf.reshape(y, p.outShape);
  });
  const decomposed = compositeKernelFunc((inputs, attrs) => {
    let y = tf.matMul(inputs.a, inputs.b, Boolean(attrs.transposeA), Boolean(attrs.transposeB)); // [..., m, n]
    if (inputs.bias) y = tf.add(y, inputs.bias);
    return applyActivation(y, attrs, inputs.preluActivationWeights);
  });
  return (args) => {
    const { a, b, bias, preluActivationWeights: prelu } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const attrs = (args.attrs ?? {}) as Attrs;
    const tA = Boolean(attrs.transposeA);
    const tB = Boolean(attrs.transposeB);
    if (a == null || b == null || a.dtype !== 'float32' || b.dtype !== 'float32') return original(args);
    const plan = planMatMul(a, b, tA, tB);
    if (plan == null) return original(args); // leave shape errors to the stock kernel
    const perColumn = (t: tf.TensorInfo | undefined) => t == null || (t.shape.length === 1 && t.shape[0] === plan.n);
    const xnnSafe = perColumn(bias) && perColumn(prelu);
    const direct = !tA && !tB && plan.batchA === 1 && plan.batchB === 1;
    if (direct && xnnSafe) return original(args);
    if (plan.batchB === 1 && xnnSafe) return folded(args);
    return decomposed(args);
  };
}
