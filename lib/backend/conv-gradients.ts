/**
 * Convolution gradients on wasm: tfjs-backend-wasm 4.22 lacks three of them and runs the fourth through
 * a naive C++ loop, so they are rebuilt from the kernels it runs through XNNPACK (conv2d,
 * depthwiseConv2d) plus transposes and reshapes; the depthwise filter gradient then runs as a SIMD
 * heap kernel (./simd/conv-gradients.ts) bit-identical to that composite. See docs/platform.md
 * §Missing and slow wasm kernels for the gaps and timings.
 *
 *   Conv2DBackpropFilter                 missing  -> one forward conv2d over transposed tensors
 *   Conv2DBackpropInput                  naive    -> one forward conv2d over "phases" (sub-pixel conv)
 *   DepthwiseConv2dNativeBackpropFilter  missing  -> a direct SIMD loop (fallback: one depthwise conv
 *                                                    over transposed tensors)
 *   DepthwiseConv2dNativeBackpropInput   missing  -> one depthwise conv over phases
 *
 * Registering these kernels (rather than overriding the Conv2D / DepthwiseConv2dNative gradients) also
 * fixes the gradients of the fused ops (FusedConv2D, FusedDepthwiseConv2D), whose gradients call the
 * same backprop kernels from inside `customGrad`, where no gradient override reaches.
 *
 * Glossary of shape symbols
 *   b       batch                         h, w     input rows / cols      ho, wo  output rows / cols
 *   kh, kw  filter rows / cols            ci, co   in / out channels     c       depthwise channels
 *   m       depthwise channel multiplier  s        stride                pt, pl  top / left padding
 *   n       rows (cols) per phase = ceil(h / s)    th, tw  taps of the phase filter
 *   P       number of phases = sh * sw
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { Attrs, compositeKernelFunc } from './composite';
import { XNNPACK_SINGLE_PASS_TAPS } from './depthwise-conv';
import { heapKernels, offsetOf } from './heap';
import { runOnHeap, sharesFor, splitRange } from './heap-threads';

function pair(v: unknown, what: string): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  throw new Error(`lib/backend/conv-gradients.ts: ${what} must be a number or a pair, got ${JSON.stringify(v)}`);
}

function requireUnitDilations(kernel: string, dilations: unknown): void {
  if (dilations == null) return;
  const [dh, dw] = pair(dilations, `${kernel} dilations`);
  if (dh !== 1 || dw !== 1) {
    throw new Error(`lib/backend/conv-gradients.ts: ${kernel} on wasm supports dilations 1 only, got [${dh}, ${dw}]`);
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
      `lib/backend/conv-gradients.ts: Conv2DBackpropFilter got dy ${JSON.stringify(dy.shape)}, ` +
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

/** The composite depthwise filter gradient: the fallback of the SIMD kernel below (and its test reference). */
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
// Depthwise filter gradient on the heap
// ---------------------------------------------------------------------------------------------------

/**
 * DepthwiseConv2dNativeBackpropFilter on the heap, bit-identical to `fallback` (the composite kernel of
 * above), which still runs dilated, NCHW or non-float32 cases. The composite spends ~2.5 ms per
 * call at 64 px in an XNNPACK depthwise conv whose "filter" is the whole 16×16 gradient map (XNNPACK has
 * no fast path for such a filter), this one ~0.2 ms.
 */
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
    if (XNNPACK_SINGLE_PASS_TAPS.has(info.outHeight * info.outWidth)) return fallback(args);
    const [b, h, w] = x.shape;
    const out = backend.makeOutput(a.filterShape, 'float32');
    // Threads (./heap-threads.ts) split the filter's rows i: a share computes out[i0..i1) whole (its own
    // running sums in its own scratch), the filter rows shifted to start at 0 (pt − i0 keeps every tap's input row).
    const rowShares = splitRange(kh, sharesFor(b * info.outHeight * info.outWidth * kh * kw * c * m));
    const acc = backend.makeOutput([rowShares.length * c * m], 'float32'); // scratch: c·m per share
    const off = (t: tf.TensorInfo) => offsetOf(backend, t);
    const shares = rowShares.map(([i0, i1], s): Array<[string, number[]]> => [
      [
        'dwfilter',
        [
          off(x),
          off(dy),
          off(out) + 4 * i0 * kw * c * m,
          off(acc) + 4 * s * c * m,
          b,
          h,
          w,
          c,
          m,
          info.outHeight,
          info.outWidth,
          i1 - i0,
          kw,
          info.strideHeight,
          info.strideWidth,
          info.padInfo.top - i0,
          info.padInfo.left,
        ],
      ],
    ]);
    runOnHeap(heapKernels, backend, shares);
    backend.disposeData(acc.dataId);
    return out;
  };
}

// ---------------------------------------------------------------------------------------------------
// The kernels (registered by ./registrations.ts)
// ---------------------------------------------------------------------------------------------------

export const conv2dBackpropFilterKernel = compositeKernelFunc(conv2dBackpropFilterBody);
export const conv2dBackpropInputKernel = compositeKernelFunc(conv2dBackpropInputBody);
export const depthwiseBackpropFilterKernel = depthwiseFilterGradKernel(depthwiseFilterGradComposite);
export const depthwiseBackpropInputKernel = compositeKernelFunc(depthwiseBackpropInputBody);
