/**
 * Reductions on wasm.
 *
 *   Sum / Mean over leading axes   tfjs-backend-wasm 4.22 reduces only over the innermost axes, so
 *     (e.g. Σ over b, h, w of an NHWC tensor: every bias, LayerNorm and BatchNorm gradient, and the
 *     BatchNorm batch moments) it first transposes the whole input to put the reduced axes last, then
 *     sums each output with one sequential scalar loop. ~700 such calls per step, ~130 ms. Here the
 *     input stays as it is and the SIMD heap kernel `colsum` (./simd/reductions.ts) keeps each group of
 *     16 columns' running sums in four registers while the rows stream past — every column still
 *     summed in row order from 0, as the stock loop does, so results are BIT-IDENTICAL. Anything else
 *     (other dtypes, non-contiguous axes, an innermost reduction, which the stock kernel already does
 *     without a transpose) goes to the stock kernel.
 *   UnsortedSegmentSum             missing (the gradient of gather) -> a scatter-add loop over the heap.
 *
 * Shape glossary: o outer (kept leading axes), r rows (reduced axes), c columns (kept trailing axes).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels, offsetOf } from './heap';

type Attrs = Record<string, unknown>;
const prod = (xs: number[]): number => xs.reduce((p, v) => p * v, 1);

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

export function reductionKernel(stock: tf.KernelFunc, mean: boolean): tf.KernelFunc {
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

// ---------------------------------------------------------------------------------------------------
// UnsortedSegmentSum: out[s, ...] = sum over i with ids[i] = s of x[i, ...]  (the gradient of gather)
// ---------------------------------------------------------------------------------------------------

export const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const be = backend as unknown as BackendWasm;
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = Number((attrs as Attrs).numSegments);
  if (segmentIds.dtype !== 'int32') {
    throw new Error(`lib/backend/reductions.ts: UnsortedSegmentSum needs int32 segmentIds, got ${segmentIds.dtype}`);
  }
  const idsRank = segmentIds.shape.length;
  if (JSON.stringify(x.shape.slice(0, idsRank)) !== JSON.stringify(segmentIds.shape)) {
    throw new Error(
      `lib/backend/reductions.ts: UnsortedSegmentSum segmentIds shape ${JSON.stringify(segmentIds.shape)} ` +
        `must be a prefix of x shape ${JSON.stringify(x.shape)}`,
    );
  }
  const inner = prod(x.shape.slice(idsRank));
  const out = be.makeOutput([numSegments, ...x.shape.slice(idsRank)], x.dtype);
  // Views are taken after makeOutput: allocating may grow the wasm heap and detach older views.
  const xs = be.typedArrayFromHeap(x);
  const ids = be.typedArrayFromHeap(segmentIds);
  const o = be.typedArrayFromHeap(out);
  o.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const seg = ids[i];
    if (seg < 0 || seg >= numSegments) continue; // TF semantics: out-of-range ids are dropped
    const src = i * inner;
    const dst = seg * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xs[src + j];
  }
  return out;
};
