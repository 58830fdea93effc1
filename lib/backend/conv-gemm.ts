/**
 * Dense Conv2D (NHWC, float32) on the wasm heap as one GEMM around an im2col / col2im copy — the
 * textbook lowering (Chellapilla et al. 2006, "High performance convolutional neural networks for
 * document processing"; Caffe's `im2col`/`col2im`), which is what PyTorch's CPU backward does too. With
 * the patch matrix
 *   cols[(b, y, x), (i, j, ci)] = xpad[b, y·sh + i − pt, x·sw + j − pl, ci]      [b·ho·wo, kh·kw·ci]
 * the forward conv is y = cols · W (W viewed as [kh·kw·ci, co]), so
 *   Conv2DBackpropFilter   dW = colsᵀ · dy         GEMM [kh·kw·ci, b·ho·wo] × [b·ho·wo, co]  (colsᵀ read in place)
 *   Conv2DBackpropInput    dx = col2im(dy · Wᵀ)    GEMM [b·ho·wo, co] × [co, kh·kw·ci], then every patch
 *                                                  row added back where im2col took it from
 *   Conv2D (large filters) y = cols · W            GEMM [b·ho·wo, kh·kw·ci] × [kh·kw·ci, co]
 * A 1×1, stride-1, unpadded conv needs no copy: cols is x itself and dy·Wᵀ is dx.
 *
 * Why: the composites these replace (conv-gradients' forward-conv tricks) spent, per ResNet-18 training
 * step at 64 px, batch 32, about twice the forward convs' time: the filter gradient ran as an XNNPACK conv
 * whose "filter" is the whole dy map (ho·wo taps of b channels each: XNNPACK's indirection GEMM re-enters
 * its micro-kernel for every tap), after transposing x and dy; the input gradient gathered its phase
 * filter with the stock GatherV2 (a scalar loop, ~20 ms per call on a 512-channel 3×3 filter) and, for a
 * stride-2 conv, multiplied the zero taps of its phase filter too (1.8× the MACs at 3×3, 4× at 1×1).
 * Here every multiply-add is one the gradient needs, in the kit's SIMD GEMM (./simd/matmul.ts).
 * The forward conv stays with XNNPACK except for filters of ≥ 1 Mi weights (ResNet-18's last stage):
 * XNNPACK packs a filter afresh whenever its tensor is new — after every optimizer step — and then
 * streams the whole packed filter once per 4 output pixels; at 64 px, batch 32 that made the last
 * stage's forward ~2× slower than the same product here (measured side by side, fresh filters).
 *
 * Numerics: sums run in a different order from the composites' and XNNPACK's (not bit-identical to them;
 * tests compare values within 1e-5 relative and finite differences); the result is deterministic.
 * Threads (./heap-threads.ts): on the threaded build the GEMMs are split by rows of their OUTPUT (whole
 * dot products, each in the kernel's k order) and im2col / col2im by images, or by channels when the
 * batch is smaller than the thread count (col2im adds into one image's dx from that image's patch rows
 * only, and channels never mix), over the backend's thread count: every element is
 * computed by one thread in the same order, so 1 and N threads give bit-identical results.
 * NCHW, non-float32, or a heap the kernels cannot reach fall back to the composite given.
 *
 * Shape glossary: b batch; h, w input rows / cols; ho, wo output rows / cols; kh, kw filter rows / cols;
 * ci, co in / out channels; sh, sw strides; pt, pl top / left padding; P = kh·kw·ci patch length;
 * R = b·ho·wo patch rows.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  type Expr,
  f32,
  f32add,
  Fn,
  get,
  i32,
  i32add,
  i32and,
  i32ltU,
  i32mul,
  i32sub,
  loadF32,
  type Local,
  type ValType,
  vadd,
  vload,
  vzero,
} from '../util/wasm-asm';
import { cnnKernelsOff, heapModule } from './heap-module';
import type { Calls } from './worker-pool';
import { heapKernels, offsetOf } from './heap';
import { gemmRowShares, runOnHeap, sharesFor, splitRange } from './heap-threads';

// ---- kernels -----------------------------------------------------------------------------------

/**
 * The patch walk shared by im2col and col2im: for every patch row (n, y, x) and tap (i, j), in that
 * order, `valid(src, cols)` runs with src = &x[n, y·sh + i − pt, x·sw + j − pl, 0] when that position is
 * inside x, else `padded(cols)`; cols = &cols[(n, y, x), (i, j, 0)] advances by c floats per tap. Both copy
 * or add channels [c0, c1) only (a thread's share when the batch is too small to split).
 * Parameters: x, cols, b, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, c0, c1.
 */
function patchWalk(
  name: string,
  valid: (f: Fn, src: Local, dst: Local, c0: Local, c1: Local) => void,
  padded?: (f: Fn, dst: Local, c0: Local, c1: Local) => void,
): Fn {
  const f = new Fn(name, Array<ValType>(16).fill('i32'));
  const [x, cols, b, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, c0, c1] = f.params;
  const [n, y, xo, i, j, r, col, src, dst, rowBase] = Array.from({ length: 10 }, () => f.local('i32'));
  f.set(dst, get(cols));
  f.forUp(n, i32(0), get(b), () =>
    f.forUp(y, i32(0), get(ho), () =>
      f.forUp(xo, i32(0), get(wo), () =>
        f.forUp(i, i32(0), get(kh), () => {
          f.set(r, i32sub(i32add(i32mul(get(y), get(sh)), get(i)), get(pt)));
          // rowBase = n·h + r: the input row (its validity is checked per tap below)
          f.set(rowBase, i32add(i32mul(get(n), get(h)), get(r)));
          f.forUp(j, i32(0), get(kw), () => {
            f.set(col, i32sub(i32add(i32mul(get(xo), get(sw)), get(j)), get(pl)));
            f.if(
              i32and(i32ltU(get(r), get(h)), i32ltU(get(col), get(w))), // 0 ≤ r < h, 0 ≤ col < w (unsigned)
              () => {
                f.set(
                  src,
                  i32add(get(x), i32mul(i32mul(i32add(i32mul(get(rowBase), get(w)), get(col)), get(c)), i32(4))),
                );
                valid(f, src, dst, c0, c1);
              },
              padded ? () => padded(f, dst, c0, c1) : undefined,
            );
            f.set(dst, i32add(get(dst), i32mul(get(c), i32(4))));
          });
        }),
      ),
    ),
  );
  return f;
}

/** for k in [c0, c1): op(k·4 bytes) — four floats at a time, then one at a time. */
function channelLoop(f: Fn, c0: Local, c1: Local, vec: (off: Expr) => void, scalar: (off: Expr) => void): void {
  const k = f.local('i32');
  const c4 = f.local('i32');
  f.set(c4, i32add(get(c0), i32and(i32sub(get(c1), get(c0)), i32(~3))));
  f.forUp(k, get(c0), get(c4), () => vec(i32mul(get(k), i32(4))), 4);
  f.forUp(k, get(c4), get(c1), () => scalar(i32mul(get(k), i32(4))));
}

/** im2col(x, cols, b, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, c0, c1): cols [R, kh·kw·c] ← patches of x (0 where padded), channels [c0, c1). */
function buildIm2col(): Fn {
  return patchWalk(
    'im2col',
    (f, src, dst, c0, c1) =>
      channelLoop(
        f,
        c0,
        c1,
        (o) => f.storeV128(i32add(get(dst), o), 0, vload(i32add(get(src), o))),
        (o) => f.storeF32(i32add(get(dst), o), 0, loadF32(i32add(get(src), o))),
      ),
    (f, dst, c0, c1) =>
      channelLoop(
        f,
        c0,
        c1,
        (o) => f.storeV128(i32add(get(dst), o), 0, vzero),
        (o) => f.storeF32(i32add(get(dst), o), 0, f32(0)),
      ),
  );
}

/**
 * col2im(dx, cols, ...same): dx[n, y·sh + i − pt, x·sw + j − pl, :] += cols[(n, y, x), (i, j, :)] for every
 * tap inside dx (dx must start zeroed), channels [c0, c1). Patch rows and taps are added in walk order:
 * deterministic, and the same order for any channel range (channels never mix).
 */
function buildCol2im(): Fn {
  // The walk's "x" is dx here and its "cols" the patch rows: the same addresses, the copy reversed into a sum.
  return patchWalk('col2im', (f, dxAt, colsAt, c0, c1) =>
    channelLoop(
      f,
      c0,
      c1,
      (o) => f.storeV128(i32add(get(dxAt), o), 0, vadd(vload(i32add(get(dxAt), o)), vload(i32add(get(colsAt), o)))),
      (o) =>
        f.storeF32(i32add(get(dxAt), o), 0, f32add(loadF32(i32add(get(dxAt), o)), loadF32(i32add(get(colsAt), o)))),
    ),
  );
}

// ---- module on the backend's heap --------------------------------------------------------------

type Walk = (x: number, cols: number, ...dims: number[]) => void;

/** im2col / col2im bound to the backend's memory (undefined where it is not reachable). */
const patchKernels = heapModule<{ im2col: Walk; col2im: Walk }>(() => [buildIm2col(), buildCol2im()]);

/**
 * im2col / col2im over the backend's threads, split by images: share [n0, n1) walks images n0..n1 − 1
 * (x / dx and cols offset to image n0); with fewer images than threads, by channels instead (every share
 * walks every image, channels [c0, c1), in blocks of 4). col2im's sums into one element of dx come
 * only from its image's patch rows and its channel, in walk order: the same order as one thread.
 */
function runPatchWalk(
  backend: BackendWasm,
  fn: 'im2col' | 'col2im',
  image: number,
  cols: number,
  g: ConvGeometry,
): void {
  const imageFloats = g.h * g.w * g.ci;
  const colFloats = g.ho * g.wo * g.kh * g.kw * g.ci; // one image's patch rows
  const threads = sharesFor(g.b * colFloats);
  const [, ...dims] = walkArgs(g); // all but b
  const shares =
    g.b >= threads
      ? splitRange(g.b, threads).map(([n0, n1]): Calls => [
          [fn, [image + 4 * n0 * imageFloats, cols + 4 * n0 * colFloats, n1 - n0, ...dims, 0, g.ci]],
        ])
      : splitRange(g.ci, threads, 4).map(([c0, c1]): Calls => [[fn, [image, cols, g.b, ...dims, c0, c1]]]);
  runOnHeap(patchKernels, backend, shares);
}

/** The GEMM c[M, N] = a·b (see ./heap-threads.ts gemmRowShares) over the backend's threads. */
function runGemm(
  backend: BackendWasm,
  fn: 'gemm_m' | 'gemm_n',
  ptrs: [number, number, number],
  sizes: [number, number, number],
  strides: [number, number, number, number],
): void {
  const [M, N, K] = sizes;
  runOnHeap(heapKernels, backend, gemmRowShares(fn, ptrs, sizes, strides, sharesFor(M * N * K)));
}

// ---- kernels for tfjs ------------------------------------------------------------------------------

/** k block of the GEMM and the b-block size below which it walks rows outside (as ./matmul.ts picks them). */
const GEMM_KC = 256;
const GEMM_B_BLOCK_CACHED = 256 * 1024;

interface ConvGeometry {
  b: number;
  h: number;
  w: number;
  ci: number;
  ho: number;
  wo: number;
  kh: number;
  kw: number;
  co: number;
  sh: number;
  sw: number;
  pt: number;
  pl: number;
}

/** Conv geometry from tfjs' own conv info (so 'same' / 'valid' / explicit pads and rounding match the forward op). */
function geometry(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  attrs: Record<string, unknown>,
): ConvGeometry {
  const info = tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    attrs.strides as [number, number],
    1,
    attrs.pad as 'same',
    attrs.dimRoundingMode as 'round' | undefined,
  );
  return {
    b: xShape[0],
    h: xShape[1],
    w: xShape[2],
    ci: xShape[3],
    ho: info.outHeight,
    wo: info.outWidth,
    kh: filterShape[0],
    kw: filterShape[1],
    co: filterShape[3],
    sh: info.strideHeight,
    sw: info.strideWidth,
    pt: info.padInfo.top,
    pl: info.padInfo.left,
  };
}

/** True when the patch matrix is x itself: 1×1 filter, stride 1, no padding (so ho = h, wo = w). */
const isPointwise = (g: ConvGeometry) =>
  g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.pt === 0 && g.pl === 0 && g.ho === g.h && g.wo === g.w;

const walkArgs = (g: ConvGeometry) => [g.b, g.h, g.w, g.ci, g.ho, g.wo, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl];

type Attrs = Record<string, unknown>;

/** What both kernels need to run here rather than in `fallback`. */
function eligible(attrs: Attrs, ...ts: tf.TensorInfo[]): boolean {
  return (
    !cnnKernelsOff() && attrs.dataFormat !== 'NCHW' && ts.every((t) => t.dtype === 'float32' && t.shape.length === 4)
  );
}

/** Conv2DBackpropFilter: dW [kh, kw, ci, co] = colsᵀ · dy. */
export function conv2dFilterGradKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
    const attrs = (args.attrs ?? {}) as Attrs;
    const backend = args.backend as BackendWasm;
    if (!eligible(attrs, x, dy)) return fallback(args);
    const gemm = heapKernels(backend);
    const patches = gemm && patchKernels(backend);
    if (!gemm || !patches) return fallback(args);
    const filterShape = attrs.filterShape as [number, number, number, number];
    const g = geometry(x.shape as [number, number, number, number], filterShape, attrs);
    if (dy.shape[1] !== g.ho || dy.shape[2] !== g.wo || dy.shape[3] !== g.co) return fallback(args); // its error
    const rows = g.b * g.ho * g.wo; // R
    const patch = g.kh * g.kw * g.ci; // P
    const out = backend.makeOutput(filterShape, 'float32'); // [P, co]
    if (rows === 0 || patch * g.co === 0) {
      (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
      return out;
    }
    let cols: tf.TensorInfo | undefined;
    if (!isPointwise(g)) {
      cols = backend.makeOutput([rows, patch], 'float32'); // [R, P]
      runPatchWalk(backend, 'im2col', offsetOf(backend, x), offsetOf(backend, cols), g);
    }
    const pa = offsetOf(backend, cols ?? x);
    const run = Math.min(GEMM_KC, rows) * g.co * 4 <= GEMM_B_BLOCK_CACHED ? 'gemm_m' : 'gemm_n';
    // colsᵀ in place: element (p, r) at cols + 4·(p + r·P); threads split dW's rows p (the sum over r stays whole)
    runGemm(
      backend,
      run,
      [pa, offsetOf(backend, dy), offsetOf(backend, out)],
      [patch, g.co, rows],
      [1, patch, g.co, GEMM_KC],
    );
    if (cols) backend.disposeData(cols.dataId);
    return out;
  };
}

/** Conv2DBackpropInput: dx [b, h, w, ci] = col2im(dy · Wᵀ). */
export function conv2dInputGradKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = (args.attrs ?? {}) as Attrs;
    const backend = args.backend as BackendWasm;
    if (!eligible(attrs, dy, filter)) return fallback(args);
    const gemm = heapKernels(backend);
    const patches = gemm && patchKernels(backend);
    if (!gemm || !patches) return fallback(args);
    const inShape = attrs.inputShape as [number, number, number, number];
    const g = geometry(inShape, filter.shape as [number, number, number, number], attrs);
    if (dy.shape[0] !== g.b || dy.shape[1] !== g.ho || dy.shape[2] !== g.wo || dy.shape[3] !== g.co) {
      return fallback(args); // let the composite report the mismatch
    }
    const rows = g.b * g.ho * g.wo; // R
    const patch = g.kh * g.kw * g.ci; // P
    const dx = backend.makeOutput(inShape, 'float32');
    if (rows * patch * g.co === 0) {
      (backend.typedArrayFromHeap(dx) as Float32Array).fill(0);
      return dx;
    }
    // Wᵀ [co, P], row-major (the GEMM's b): W is [P, co]
    const wT = backend.makeOutput([g.co, patch], 'float32');
    gemm.transpose2d(offsetOf(backend, filter), offsetOf(backend, wT), patch, g.co);
    const pointwise = isPointwise(g);
    const dcols = pointwise ? dx : backend.makeOutput([rows, patch], 'float32'); // [R, P]
    const run = Math.min(GEMM_KC, g.co) * patch * 4 <= GEMM_B_BLOCK_CACHED ? 'gemm_m' : 'gemm_n';
    runGemm(
      backend,
      run,
      [offsetOf(backend, dy), offsetOf(backend, wT), offsetOf(backend, dcols)],
      [rows, patch, g.co],
      [g.co, 1, patch, GEMM_KC],
    );
    backend.disposeData(wT.dataId);
    if (!pointwise) {
      (backend.typedArrayFromHeap(dx) as Float32Array).fill(0); // views after the last makeOutput
      runPatchWalk(backend, 'col2im', offsetOf(backend, dx), offsetOf(backend, dcols), g);
      backend.disposeData(dcols.dataId);
    }
    return dx;
  };
}

/** Filters with at least this many weights run forward here (see the header), smaller ones in XNNPACK. */
const FORWARD_GEMM_MIN_WEIGHTS = 1 << 20;

/** Conv2D: y [b, ho, wo, co] = cols · W for filters of ≥ FORWARD_GEMM_MIN_WEIGHTS weights; `stock` (XNNPACK) otherwise. */
export function conv2dForwardKernel(stock: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
    const attrs = (args.attrs ?? {}) as Attrs;
    const backend = args.backend as BackendWasm;
    const dil = attrs.dilations ?? 1;
    const unitDilation = Array.isArray(dil) ? dil.every((d) => d === 1) : dil === 1;
    if (!unitDilation || !eligible(attrs, x, filter)) return stock(args);
    if (tf.util.sizeFromShape(filter.shape) < FORWARD_GEMM_MIN_WEIGHTS) return stock(args);
    const gemm = heapKernels(backend);
    const patches = gemm && patchKernels(backend);
    if (!gemm || !patches) return stock(args);
    const g = geometry(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      attrs,
    );
    if (x.shape[3] !== filter.shape[2]) return stock(args); // its error
    const rows = g.b * g.ho * g.wo; // R
    const patch = g.kh * g.kw * g.ci; // P
    const y = backend.makeOutput([g.b, g.ho, g.wo, g.co], 'float32');
    if (rows === 0) return y;
    let cols: tf.TensorInfo | undefined;
    if (!isPointwise(g)) {
      cols = backend.makeOutput([rows, patch], 'float32'); // [R, P]
      runPatchWalk(backend, 'im2col', offsetOf(backend, x), offsetOf(backend, cols), g);
    }
    const run = Math.min(GEMM_KC, patch) * g.co * 4 <= GEMM_B_BLOCK_CACHED ? 'gemm_m' : 'gemm_n';
    runGemm(
      backend,
      run,
      [offsetOf(backend, cols ?? x), offsetOf(backend, filter), offsetOf(backend, y)],
      [rows, g.co, patch],
      [patch, 1, g.co, GEMM_KC],
    );
    if (cols) backend.disposeData(cols.dataId);
    return y;
  };
}

/** True when the kernels above can run on the active backend (wasm, heap GEMM and im2col reachable). */
export function convGemmAvailable(): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  const backend = tf.backend() as unknown as BackendWasm;
  return heapKernels(backend) !== undefined && patchKernels(backend) !== undefined;
}
