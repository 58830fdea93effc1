/**
 * The depthwise conv forward on wasm (DepthwiseConv2dNative and FusedDepthwiseConv2D), bit-identical to
 * stock tfjs-backend-wasm 4.22 (XNNPACK) and split over the heap threads.
 *
 * Why: XNNPACK's depthwise conv runs on one thread, and its multi-pass kernels (every filter but 2×2, 3×3
 * and 5×5) are slow: per CPU-second, one thread, batch 8 (measured with a busy machine's noise, ±5 %):
 * 3×3 at 16×16×192 0.66 ms stock vs 0.54 ms here, 4×4×768 0.18 vs 0.16 ms; 7×7 (ConvNeXt) at 16×16×96
 * 9.8 ms vs 1.1 ms. Microscopic-Mamba runs 50 per forward (SS2D's conv, PSFFN's, MIFA's) and 82 more per
 * training step (the input gradient is a depthwise conv, ./conv-gradients.ts): together the largest
 * kernel of the forward pass in `bench:model --profile`. Here they also use every heap thread.
 * (Computing two output pixels per filter load measured no faster.)
 *
 * Numerics: the same products summed in XNNPACK's order, so the outputs are the stock kernel's bit for
 * bit (tested): the bias first (+0 without one), then the taps one at a time — column-major (j, i) for
 * 2×2, 3×3 and 5×5 filters (XNNPACK's single-pass kernels; its weight packing is column-major), row-major
 * (i, j) for every other size (its multi-pass kernels); a padded tap adds 0 · k, as XNNPACK's zero
 * buffer does. One difference, on purpose: a NaN stays NaN, where XNNPACK's output clamp turns it into
 * −∞ (no activation) or 0 (ReLU) and hides a diverged run.
 * Threads (./heap-threads.ts): shares of output rows, each element computed by one thread in the same
 * order, so any thread count gives the same bits.
 * Channel multipliers other than 1, dilations, NCHW, activations other than ReLU, a bias that is not one
 * value per channel, and non-float32 inputs go to the stock kernel.
 *
 * Shape glossary: b batch; h, w input rows / cols; ho, wo output rows / cols; kh, kw filter rows / cols;
 * c channels; T = kh·kw taps.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels, offsetOf } from './heap';
import { runOnHeap, sharesFor } from './heap-threads';
import { DWCONV_BIAS, DWCONV_COLUMN_MAJOR, DWCONV_RELU } from './simd/depthwise';
import { splitRange } from './worker-pool';

/**
 * Tap counts XNNPACK 4.22's wasm build runs single-pass, summing in column-major tap order (measured; every
 * other count from 1 to 256 is multi-pass, row-major). ./conv-gradients.ts keeps its filter gradient bit-exact by them.
 */
export const XNNPACK_SINGLE_PASS_TAPS: ReadonlySet<number> = new Set([4, 9, 25]);

interface Attrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  dataFormat?: string;
  activation?: string;
}

/** Replacement for the wasm kernel of DepthwiseConv2dNative or FusedDepthwiseConv2D (see the header). */
export function depthwiseConvKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const a = args.attrs as unknown as Attrs;
    const backend = args.backend as BackendWasm;
    const dil = a.dilations ?? 1;
    const unitDilation = Array.isArray(dil) ? dil[0] === 1 && dil[1] === 1 : dil === 1;
    const activation = a.activation ?? 'linear';
    if (
      !x ||
      !filter ||
      x.shape.length !== 4 ||
      filter.shape.length !== 4 ||
      filter.shape[3] !== 1 ||
      x.shape[3] !== filter.shape[2] ||
      !unitDilation ||
      (a.dataFormat !== undefined && a.dataFormat !== 'NHWC') ||
      x.dtype !== 'float32' ||
      filter.dtype !== 'float32' ||
      preluActivationWeights ||
      (activation !== 'linear' && activation !== 'relu') ||
      (bias && (bias.dtype !== 'float32' || tf.util.sizeFromShape(bias.shape) !== x.shape[3]))
    )
      return stock(args);
    const k = heapKernels(backend);
    if (!k) return stock(args);
    const [b, h, w, c] = x.shape;
    const [kh, kw] = filter.shape;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
      true,
    );
    const { outHeight: ho, outWidth: wo } = info;
    const y = backend.makeOutput([b, ho, wo, c], 'float32');
    if (b * ho * wo * c === 0) return y;
    const taps = kh * kw;
    const rowShares = splitRange(b * ho, sharesFor(b * ho * wo * c * taps));
    // scratch: c zeros (the padded taps' input row), then 2·T addresses per share
    const scratch = backend.makeOutput([c + rowShares.length * 2 * taps], 'float32');
    backend.typedArrayFromHeap(scratch).fill(0, 0, c);
    const off = (t: tf.TensorInfo) => offsetOf(backend, t);
    const flags =
      (bias ? DWCONV_BIAS : 0) |
      (activation === 'relu' ? DWCONV_RELU : 0) |
      (XNNPACK_SINGLE_PASS_TAPS.has(taps) ? DWCONV_COLUMN_MAJOR : 0);
    const shares = rowShares.map(([r0, r1], s): Array<[string, number[]]> => [
      [
        'dwconv',
        [
          off(x),
          off(filter),
          bias ? off(bias) : 0,
          off(scratch),
          off(scratch) + 4 * (c + s * 2 * taps),
          off(y),
          h,
          w,
          c,
          ho,
          wo,
          kh,
          kw,
          info.strideHeight,
          info.strideWidth,
          info.padInfo.top,
          info.padInfo.left,
          r0,
          r1,
          flags,
        ],
      ],
    ]);
    runOnHeap(heapKernels, backend, shares);
    backend.disposeData(scratch.dataId);
    return y;
  };
}
