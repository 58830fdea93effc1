/**
 * Kernels that tfjs-backend-wasm 4.22 lacks, or runs through slow naive C++ loops, rebuilt from the
 * kernels it runs through XNNPACK (conv2d, depthwiseConv2d, 2-D matMul) plus transposes and reshapes.
 * See docs/platform.md §Missing and slow wasm kernels for the gaps and timings.
 *
 *   Conv2DBackpropFilter                 missing  -> one forward conv2d over transposed tensors
 *   Conv2DBackpropInput                  naive    -> one forward conv2d over "phases" (sub-pixel conv)
 *   DepthwiseConv2dNativeBackpropFilter  missing  -> one depthwise conv over transposed tensors
 *   DepthwiseConv2dNativeBackpropInput   missing  -> one depthwise conv over phases
 *   UnsortedSegmentSum                   missing  -> a scatter-add loop over the wasm heap (gather's gradient)
 *   BatchMatMul / _FusedMatMul           naive whenever transposeA/B is set or a batch > 1 -> transpose
 *                                        first, fold broadcast batches into rows, loop equal batches;
 *                                        the naive _FusedMatMul also mis-indexes its bias (wrong results)
 *   MaxPoolGrad                          wrong when a pooling window is all negative -> a heap loop
 *
 * Registering these kernels (rather than overriding the Conv2D / DepthwiseConv2dNative gradients) also
 * fixes the gradients of the fused ops (FusedConv2D, FusedDepthwiseConv2D, _FusedMatMul), whose
 * gradients call the same backprop kernels from inside `customGrad`, where no gradient override reaches.
 *
 * Glossary of shape symbols
 *   b       batch                         h, w     input rows / cols      ho, wo  output rows / cols
 *   kh, kw  filter rows / cols            ci, co   in / out channels     c       depthwise channels
 *   m       depthwise channel multiplier  s        stride                pt, pl  top / left padding
 *   n       rows (cols) per phase = ceil(h / s)    th, tw  taps of the phase filter
 *   P       number of phases = sh * sw    M, K, N  matMul rows / inner / cols
 *
 * How a composite kernel runs: tfjs calls a kernel with tensors; our body runs ordinary tf ops inside
 * `tf.tidy` (ops inside a kernel are not recorded on the gradient tape), and the result's storage is
 * handed to the kernel's output the way tfjs' own Identity kernel does it (incRef, then dispose).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  depthwiseFilterGradKernel,
  heapBatchMatMul,
  type MatMulPlan,
  registerWasmHeapKernels,
} from './wasm-heap-kernels';
import { registerWasmKernelFixes } from './wasm-fixes';
import { replaceWasmKernel } from './wasm-registry';

type Attrs = Record<string, unknown>;
type Body = (inputs: Record<string, tf.Tensor>, attrs: Attrs) => tf.Tensor;

interface RefCountingBackend {
  incRef(dataId: object): void;
}

/** What the wasm backend exposes that the segment-sum loop needs (see tfjs-backend-wasm backend_wasm.d.ts). */
interface WasmHeapBackend extends RefCountingBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

const prod = (xs: number[]): number => xs.reduce((p, v) => p * v, 1);

/** Kernel whose body is written with tf ops; the result's storage becomes the kernel output. */
function compositeKernelFunc(body: Body): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const be = backend as unknown as RefCountingBackend;
    const given = new Set<tf.Tensor>();
    const out = tf.tidy(() => {
      const tensors: Record<string, tf.Tensor> = {};
      for (const [name, info] of Object.entries(inputs)) {
        if (info == null) continue;
        if (info instanceof tf.Tensor) {
          tensors[name] = info;
          given.add(info);
        } else {
          // A bare TensorInfo (a kernel called from another kernel): wrap it; tidy's dispose undoes the incRef.
          be.incRef(info.dataId);
          tensors[name] = tf.engine().makeTensorFromTensorInfo(info);
        }
      }
      return body(tensors, (attrs ?? {}) as Attrs);
    });
    be.incRef(out.dataId);
    if (!given.has(out)) out.dispose(); // (a body returning its input as is must not dispose the caller's tensor)
    return { dataId: out.dataId, shape: out.shape, dtype: out.dtype };
  };
}

function pair(v: unknown, what: string): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  throw new Error(`lib/backend/wasm-kernels.ts: ${what} must be a number or a pair, got ${JSON.stringify(v)}`);
}

function requireUnitDilations(kernel: string, dilations: unknown): void {
  if (dilations == null) return;
  const [dh, dw] = pair(dilations, `${kernel} dilations`);
  if (dh !== 1 || dw !== 1) {
    throw new Error(`lib/backend/wasm-kernels.ts: ${kernel} on wasm supports dilations 1 only, got [${dh}, ${dw}]`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Filter gradients: dW[i, j, ci, co] = sum_{b, y, x} xpad[b, y*s + i, x*s + j, ci] * dy[b, y, x, co]
// ---------------------------------------------------------------------------------------------------

/**
 * Conv padding for the "filter gradient as a forward conv": the conv slides dy (as a filter, dilated by
 * the stride) over x, so the padded input must span (ho-1)*s + k rows. When x has unused trailing rows
 * ('valid' with leftovers) the bottom padding would be negative: pad 0 and drop the extra output rows.
 */
function filterGradPads(size: number, outSize: number, k: number, s: number, padBefore: number): [number, number] {
  const padAfter = (outSize - 1) * s + k - size - padBefore;
  return [padBefore, Math.max(padAfter, 0)];
}

/**
 * Conv2DBackpropFilter (tfjs-core Conv2D_grad.ts `filter:`), NHWC: treat ci as the batch and b as the
 * channels, so a single forward conv2d (XNNPACK) contracts over b, y, x at once:
 *   out[ci, i, j, co] = sum_{y, x, b} xT[ci, i + y*s, j + x*s, b] * dyT[y, x, b, co]   (dilation = s)
 * A 1x1 stride-1 unpadded conv is a plain matMul: dW = x^T dy with x as [b*h*w, ci].
 */
function conv2dBackpropFilterBody(inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor {
  const nchw = attrs.dataFormat === 'NCHW';
  const x = (nchw ? tf.transpose(inputs.x, [0, 2, 3, 1]) : inputs.x) as tf.Tensor4D; // [b, h, w, ci]
  const dy = (nchw ? tf.transpose(inputs.dy, [0, 2, 3, 1]) : inputs.dy) as tf.Tensor4D; // [b, ho, wo, co]
  const filterShape = attrs.filterShape as [number, number, number, number]; // [kh, kw, ci, co]
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    filterShape,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round' | undefined,
  );
  const [kh, kw, ci, co] = filterShape;
  const [b, h, w] = x.shape;
  const { top, left, bottom, right } = info.padInfo;
  const { strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo } = info;
  if (dy.shape[1] !== ho || dy.shape[2] !== wo || dy.shape[3] !== co) {
    throw new Error(
      `lib/backend/wasm-kernels.ts: Conv2DBackpropFilter got dy ${JSON.stringify(dy.shape)}, ` +
        `expected [${b}, ${ho}, ${wo}, ${co}] for x ${JSON.stringify(x.shape)} and filter ${JSON.stringify(filterShape)}`,
    );
  }
  if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && top + left + bottom + right === 0) {
    const x2 = tf.reshape(x, [b * h * w, ci]); // [b*h*w, ci]
    const dy2 = tf.reshape(dy, [b * h * w, co]); // [b*h*w, co]
    return tf.reshape(tf.matMul(tf.transpose(x2), dy2), filterShape); // [1, 1, ci, co]
  }
  const xT = tf.transpose(x, [3, 1, 2, 0]); // [ci, h, w, b]
  const dyT = tf.transpose(dy, [1, 2, 0, 3]); // [ho, wo, b, co]
  const [padT, padB] = filterGradPads(h, ho, kh, sh, top);
  const [padL, padR] = filterGradPads(w, wo, kw, sw, left);
  let r = tf.conv2d(
    xT,
    dyT,
    1,
    [
      [0, 0],
      [padT, padB],
      [padL, padR],
      [0, 0],
    ],
    'NHWC',
    [sh, sw],
  ); // [ci, kh (+ leftover rows), kw (+ leftover cols), co]
  if (r.shape[1] !== kh || r.shape[2] !== kw) r = tf.slice(r, [0, 0, 0, 0], [ci, kh, kw, co]);
  return tf.transpose(r, [1, 2, 0, 3]); // [kh, kw, ci, co]
}

/**
 * DepthwiseConv2dNativeBackpropFilter (tfjs-core DepthwiseConv2dNative_grad.ts `filter:`): the same
 * trick with (b, c) as depthwise channels of a batch-1 image, dy as a huge dilated depthwise filter:
 *   out[0, i, j, (b*c + c')*m + q] = sum_{y, x} xT[0, i + y*s, j + x*s, b*c + c'] * dyT[y, x, b*c + c', q]
 * then sum over b. One XNNPACK depthwise conv instead of kh*kw shifted products.
 */
function depthwiseBackpropFilterBody(inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor {
  const x = inputs.x as tf.Tensor4D; // [b, h, w, c]
  const dy = inputs.dy as tf.Tensor4D; // [b, ho, wo, c*m]
  const filterShape = attrs.filterShape as [number, number, number, number]; // [kh, kw, c, m]
  requireUnitDilations('DepthwiseConv2dNativeBackpropFilter', attrs.dilations);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape,
    filterShape,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round' | undefined,
    true,
  );
  const [kh, kw, c, m] = filterShape;
  const [b, h, w] = x.shape;
  const { strideHeight: sh, strideWidth: sw, outHeight: ho, outWidth: wo } = info;
  const xT = tf.reshape<tf.Rank.R4>(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c]); // [1, h, w, b*c]
  const dyT = tf.reshape<tf.Rank.R4>(tf.transpose(dy, [1, 2, 0, 3]), [ho, wo, b * c, m]); // [ho, wo, b*c, m]
  const [padT, padB] = filterGradPads(h, ho, kh, sh, info.padInfo.top);
  const [padL, padR] = filterGradPads(w, wo, kw, sw, info.padInfo.left);
  let r = tf.depthwiseConv2d(
    xT,
    dyT,
    1,
    [
      [0, 0],
      [padT, padB],
      [padL, padR],
      [0, 0],
    ],
    'NHWC',
    [sh, sw],
  ) as tf.Tensor; // [1, kh (+ leftover), kw (+ leftover), b*c*m]
  if (r.shape[1] !== kh || r.shape[2] !== kw) r = tf.slice(r, [0, 0, 0, 0], [1, kh, kw, b * c * m]);
  const r5 = tf.reshape(r, [kh, kw, b, c, m]); // [kh, kw, b, c, m]
  return b === 1 ? tf.reshape(r5, filterShape) : tf.sum(r5, 2); // [kh, kw, c, m]
}

/** The composite depthwise filter gradient: the fallback of wasm-heap-kernels.ts' SIMD kernel (and its test reference). */
export const depthwiseFilterGradComposite = compositeKernelFunc(depthwiseBackpropFilterBody);

// ---------------------------------------------------------------------------------------------------
// Input gradients as sub-pixel convolutions
// ---------------------------------------------------------------------------------------------------

/**
 * One spatial axis of an input gradient, split into s phases. Forward: y[o] = sum_i x[o*s + i - pt] W[i].
 * Backward, for input row r0 = j*s + rho (phase rho): with q = r0 + pt, only filter rows i = q mod s,
 * q mod s + s, ... contribute, so every phase is a stride-1 correlation of dy with a sub-filter.
 * All phases share one window of `taps` dy rows starting at dy[j + lo]; `kernelIndex[t][rho]` is the
 * filter row that tap t feeds into phase rho (-1: none), so one conv computes every phase at once.
 */
interface PhasePlan {
  s: number;
  n: number;
  taps: number;
  kernelIndex: number[][];
  /** dy rows to add (>0) or drop (<0) before / after, so output row j reads dy[j + lo + t]. */
  before: number;
  after: number;
}

function planPhases(size: number, outSize: number, k: number, s: number, padBefore: number): PhasePlan {
  const n = Math.ceil(size / s);
  const phases = [];
  for (let rho = 0; rho < s; rho++) {
    const r = (rho + padBefore) % s; // first filter row for this phase
    const c = Math.floor((rho + padBefore) / s); // dy offset of that row: dy[j + c]
    const km = r < k ? Math.ceil((k - r) / s) : 0; // filter rows r, r+s, ... < k
    phases.push({ r, c, km });
  }
  const active = phases.filter((p) => p.km > 0); // never empty: some phase has r = 0
  const lo = Math.min(...active.map((p) => p.c - p.km + 1));
  const hi = Math.max(...active.map((p) => p.c));
  const taps = hi - lo + 1;
  const kernelIndex: number[][] = [];
  for (let t = 0; t < taps; t++) {
    kernelIndex.push(
      phases.map(({ r, c, km }) => {
        const mm = c - lo - t; // dy[j + lo + t] = dy[j + c - mm] pairs with filter row r + mm*s
        return mm >= 0 && mm < km ? r + mm * s : -1;
      }),
    );
  }
  return { s, n, taps, kernelIndex, before: -lo, after: n - 1 + hi - (outSize - 1) };
}

/** dy cropped where the plan drops rows; the rows to add become the conv's explicit padding. */
function phaseInput(
  dy: tf.Tensor4D,
  ph: PhasePlan,
  pw: PhasePlan,
): { dy: tf.Tensor4D; pad: tf.backend_util.ExplicitPadding } {
  const [b, ho, wo, ch] = dy.shape;
  const cropT = Math.max(-ph.before, 0);
  const cropB = Math.max(-ph.after, 0);
  const cropL = Math.max(-pw.before, 0);
  const cropR = Math.max(-pw.after, 0);
  const cropped =
    cropT + cropB + cropL + cropR > 0
      ? tf.slice(dy, [0, cropT, cropL, 0], [b, ho - cropT - cropB, wo - cropL - cropR, ch])
      : dy;
  return {
    dy: cropped,
    pad: [
      [0, 0],
      [Math.max(ph.before, 0), Math.max(ph.after, 0)],
      [Math.max(pw.before, 0), Math.max(pw.after, 0)],
      [0, 0],
    ],
  };
}

/** Gather indices into the flattened filter (its last row is zeros) for every (th, tw, rho_h, rho_w). */
function phaseFilterIndices(ph: PhasePlan, pw: PhasePlan, kw: number, zeroRow: number): tf.Tensor1D {
  const idx: number[] = [];
  for (let th = 0; th < ph.taps; th++)
    for (let tw = 0; tw < pw.taps; tw++)
      for (let rh = 0; rh < ph.s; rh++)
        for (let rw = 0; rw < pw.s; rw++) {
          const i = ph.kernelIndex[th][rh];
          const j = pw.kernelIndex[tw][rw];
          idx.push(i >= 0 && j >= 0 ? i * kw + j : zeroRow);
        }
  return tf.tensor1d(idx, 'int32');
}

/** [b, nh, nw, sh, sw, ch] phases -> [b, h, w, ch] rows in order (depth-to-space, then crop). */
function interleavePhases(z: tf.Tensor, b: number, ph: PhasePlan, pw: PhasePlan, h: number, w: number): tf.Tensor4D {
  const ch = z.size / (b * ph.n * pw.n * ph.s * pw.s);
  let out = tf.reshape(z, [b, ph.n, pw.n, ph.s, pw.s, ch]); // [b, nh, nw, sh, sw, ch]
  if (ph.s > 1 || pw.s > 1) out = tf.transpose(out, [0, 1, 3, 2, 4, 5]); // [b, nh, sh, nw, sw, ch]
  const full = tf.reshape<tf.Rank.R4>(out, [b, ph.n * ph.s, pw.n * pw.s, ch]); // [b, nh*sh, nw*sw, ch]
  return full.shape[1] === h && full.shape[2] === w ? full : tf.slice(full, [0, 0, 0, 0], [b, h, w, ch]);
}

/**
 * Conv2DBackpropInput (tfjs-core Conv2D_grad.ts `x:`), NHWC, as one stride-1 XNNPACK conv2d over dy
 * whose filter stacks every phase's sub-filter along the output channels, then depth-to-space:
 *   z[b, j, l, (rho_h, rho_w, ci)] = sum_{th, tw, co} dy[b, j + lo_h + th, l + lo_w + tw, co] * F[th, tw, co, ...]
 * For stride 1 this is the classic "correlate dy with the 180-degree-rotated filter".
 */
function conv2dBackpropInputBody(inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor {
  const nchw = attrs.dataFormat === 'NCHW';
  const dy = (nchw ? tf.transpose(inputs.dy, [0, 2, 3, 1]) : inputs.dy) as tf.Tensor4D; // [b, ho, wo, co]
  const filter = inputs.filter as tf.Tensor4D; // [kh, kw, ci, co]
  const given = attrs.inputShape as [number, number, number, number];
  const inShape: [number, number, number, number] = nchw ? [given[0], given[2], given[3], given[1]] : given;
  const info = tf.backend_util.computeConv2DInfo(
    inShape,
    filter.shape,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round' | undefined,
  );
  const [kh, kw, ci, co] = filter.shape;
  const [b, h, w] = inShape;
  const ph = planPhases(h, info.outHeight, kh, info.strideHeight, info.padInfo.top);
  const pw = planPhases(w, info.outWidth, kw, info.strideWidth, info.padInfo.left);
  const phases = ph.s * pw.s;
  // Filter rows as [kh*kw + 1, co*ci] (W^T per tap, plus a zero row for taps a phase does not use).
  const wT = tf.reshape(tf.transpose(filter, [0, 1, 3, 2]), [kh * kw, co * ci]); // [kh*kw, co*ci]
  const rows = tf.concat([wT, tf.zeros([1, co * ci])], 0); // [kh*kw + 1, co*ci]
  const picked = tf.gather(rows, phaseFilterIndices(ph, pw, kw, kh * kw)); // [th*tw*P, co*ci]
  const f = tf.reshape(tf.transpose(tf.reshape(picked, [ph.taps, pw.taps, phases, co, ci]), [0, 1, 3, 2, 4]), [
    ph.taps,
    pw.taps,
    co,
    phases * ci,
  ]); // [th, tw, co, P*ci]
  const src = phaseInput(dy, ph, pw);
  const z = tf.conv2d(src.dy, f as tf.Tensor4D, 1, src.pad); // [b, nh, nw, P*ci]
  const dx = interleavePhases(z, b, ph, pw, h, w); // [b, h, w, ci]
  return nchw ? tf.transpose(dx, [0, 3, 1, 2]) : dx;
}

/**
 * DepthwiseConv2dNativeBackpropInput (tfjs-core DepthwiseConv2dNative_grad.ts `x:`): the phases become
 * a depthwise channel multiplier P (each dy channel feeds P phase outputs), and the m multiplier
 * channels of each input channel are summed afterwards:
 *   z[b, j, l, (c*m + q)*P + rho] = sum_{th, tw} dy[b, j + lo_h + th, l + lo_w + tw, c*m + q] * F[th, tw, c*m + q, rho]
 */
function depthwiseBackpropInputBody(inputs: Record<string, tf.Tensor>, attrs: Attrs): tf.Tensor {
  const dy = inputs.dy as tf.Tensor4D; // [b, ho, wo, c*m]
  const filter = inputs.filter as tf.Tensor4D; // [kh, kw, c, m]
  requireUnitDilations('DepthwiseConv2dNativeBackpropInput', attrs.dilations);
  const inShape = attrs.inputShape as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    inShape,
    filter.shape,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round' | undefined,
    true,
  );
  const [kh, kw, c, m] = filter.shape;
  const [b, h, w] = inShape;
  const ph = planPhases(h, info.outHeight, kh, info.strideHeight, info.padInfo.top);
  const pw = planPhases(w, info.outWidth, kw, info.strideWidth, info.padInfo.left);
  const phases = ph.s * pw.s;
  let f: tf.Tensor; // [th, tw, c*m, P]
  if (phases === 1) {
    f = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]); // stride 1: the filter rotated by 180°
  } else {
    const rows = tf.concat([tf.reshape(filter, [kh * kw, c * m]), tf.zeros([1, c * m])], 0); // [kh*kw + 1, c*m]
    const picked = tf.gather(rows, phaseFilterIndices(ph, pw, kw, kh * kw)); // [th*tw*P, c*m]
    f = tf.transpose(tf.reshape(picked, [ph.taps, pw.taps, phases, c * m]), [0, 1, 3, 2]);
  }
  const src = phaseInput(dy, ph, pw);
  const z = tf.depthwiseConv2d(src.dy, f as tf.Tensor4D, 1, src.pad); // [b, nh, nw, c*m*P]
  let zc = tf.reshape(z, [b, ph.n, pw.n, c, m, phases]); // [b, nh, nw, c, m, P]
  zc = m === 1 ? tf.reshape(zc, [b, ph.n, pw.n, c, phases]) : tf.sum(zc, 4); // [b, nh, nw, c, P]
  const byPhase = phases === 1 ? zc : tf.transpose(zc, [0, 1, 2, 4, 3]); // [b, nh, nw, P, c]
  return interleavePhases(byPhase, b, ph, pw, h, w); // [b, h, w, c]
}

// ---------------------------------------------------------------------------------------------------
// UnsortedSegmentSum: out[s, ...] = sum over i with ids[i] = s of x[i, ...]  (the gradient of gather)
// ---------------------------------------------------------------------------------------------------

const unsortedSegmentSumKernel: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const be = backend as unknown as WasmHeapBackend;
  const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = Number((attrs as Attrs).numSegments);
  if (segmentIds.dtype !== 'int32') {
    throw new Error(`lib/backend/wasm-kernels.ts: UnsortedSegmentSum needs int32 segmentIds, got ${segmentIds.dtype}`);
  }
  const idsRank = segmentIds.shape.length;
  if (JSON.stringify(x.shape.slice(0, idsRank)) !== JSON.stringify(segmentIds.shape)) {
    throw new Error(
      `lib/backend/wasm-kernels.ts: UnsortedSegmentSum segmentIds shape ${JSON.stringify(segmentIds.shape)} ` +
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

// ---------------------------------------------------------------------------------------------------
// MaxPoolGrad: the stock kernel starts its running max at FLT_MIN (the smallest *positive* float,
// MaxPoolGrad.cc), so in a window of negative values no position wins and dy lands on the window's
// first cell. Rewritten as a loop over the heap: dx[argmax of each window] += dy (first max wins, as
// in the cpu backend's maxPoolPositions).
// ---------------------------------------------------------------------------------------------------

const maxPoolGradKernel: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const be = backend as unknown as WasmHeapBackend;
  const { dy, input } = inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const a = attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number] };
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    (attrs as Attrs).pad as 'same',
    (attrs as Attrs).dimRoundingMode as 'round' | undefined,
  );
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: c, outHeight: ho, outWidth: wo } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { filterHeight: kh, filterWidth: kw } = info;
  const { top, left } = info.padInfo;
  const out = be.makeOutput(input.shape, 'float32');
  const x = be.typedArrayFromHeap(input); // views after makeOutput (heap growth detaches older views)
  const g = be.typedArrayFromHeap(dy);
  const dx = be.typedArrayFromHeap(out);
  dx.fill(0);
  for (let n = 0; n < b; n++)
    for (let oy = 0; oy < ho; oy++)
      for (let ox = 0; ox < wo; ox++)
        for (let ch = 0; ch < c; ch++) {
          let best = -Infinity;
          let at = -1;
          for (let fy = 0; fy < kh; fy++) {
            const iy = oy * sh - top + fy * dh;
            if (iy < 0 || iy >= h) continue;
            for (let fx = 0; fx < kw; fx++) {
              const ix = ox * sw - left + fx * dw;
              if (ix < 0 || ix >= w) continue;
              const idx = ((n * h + iy) * w + ix) * c + ch;
              if (x[idx] > best) {
                best = x[idx];
                at = idx;
              }
            }
          }
          if (at >= 0) dx[at] += g[((n * ho + oy) * wo + ox) * c + ch];
        }
  return out;
};

// ---------------------------------------------------------------------------------------------------
// BatchMatMul / _FusedMatMul: keep every product on XNNPACK's 2-D, untransposed fast path
// ---------------------------------------------------------------------------------------------------

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

/**
 * Keep the stock kernel when it already reaches XNNPACK, when the product is tiny, or when b differs
 * per batch entry (so its weights would be packed afresh for every product) and the rows are few.
 */
function keepOriginal(p: MatMulPlan, transposeA: boolean, transposeB: boolean): boolean {
  const direct = !transposeA && !transposeB && p.batchA === 1 && p.batchB === 1;
  if (direct || Math.max(p.batchA, p.batchB) * p.m * p.k * p.n < SMALL_MATMUL) return true;
  return p.batchB > 1 && p.m < MIN_ROWS_FRESH_WEIGHTS;
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

function fastBatchMatMul(original: tf.KernelFunc): tf.KernelFunc {
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
      throw new Error(`lib/backend/wasm-kernels.ts: _FusedMatMul activation '${attrs.activation}' is unknown`);
  }
}

/**
 * _FusedMatMul = activation(a @ b + bias). The stock kernel is right only on its XNNPACK path (no
 * transposes, batch 1, bias of length n): its naive loop indexes a [n] bias by row * n + col, clamped,
 * so every row after the first gets bias[n - 1]. So: fold to that path when b is shared and the bias
 * is per column; otherwise run the product through the BatchMatMul rewrite and add bias and activation.
 */
function fastFusedMatMul(original: tf.KernelFunc): tf.KernelFunc {
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

// ---------------------------------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------------------------------

/** Kernel names this file registers (or wraps) for the wasm backend. */
export const WASM_KERNEL_FIXES = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'UnsortedSegmentSum',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPoolGrad',
] as const;

let wasmDone = false;

function replaceKernel(name: string, wrap: (original: tf.KernelFunc) => tf.KernelFunc): void {
  if (!replaceWasmKernel(name, wrap)) {
    throw new Error(`lib/backend/wasm-kernels.ts: wasm kernel '${name}' to wrap is not registered`);
  }
}

function addKernel(name: string, kernelFunc: tf.KernelFunc): void {
  if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm'); // a future tfjs may ship its own
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
}

/**
 * Register the wasm kernels above, the SIMD heap kernels (wasm-heap-kernels.ts) and the copy-kernel fixes
 * (wasm-fixes.ts), once. Needs @tensorflow/tfjs-backend-wasm to be loaded (its kernels
 * registered); returns false (and does nothing) when it is not, so a later call can try again.
 */
export function registerWasmKernels(): boolean {
  if (wasmDone) return true;
  if (!tf.getKernel('Conv2D', 'wasm')) return false;
  wasmDone = true;
  addKernel('Conv2DBackpropFilter', compositeKernelFunc(conv2dBackpropFilterBody));
  addKernel('DepthwiseConv2dNativeBackpropFilter', depthwiseFilterGradKernel(depthwiseFilterGradComposite));
  addKernel('DepthwiseConv2dNativeBackpropInput', compositeKernelFunc(depthwiseBackpropInputBody));
  addKernel('UnsortedSegmentSum', unsortedSegmentSumKernel);
  const newInput = compositeKernelFunc(conv2dBackpropInputBody);
  replaceKernel('Conv2DBackpropInput', () => newInput);
  replaceKernel('BatchMatMul', fastBatchMatMul);
  replaceKernel('_FusedMatMul', fastFusedMatMul);
  replaceKernel('MaxPoolGrad', () => maxPoolGradKernel);
  registerWasmHeapKernels();
  registerWasmKernelFixes();
  return true;
}
