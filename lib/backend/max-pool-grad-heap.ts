/**
 * MaxPoolGrad (NHWC, float32) as a SIMD loop on the wasm heap: dx[argmax of each window] += dy, the
 * first maximum of a window winning (strictly greater replaces; NaN never wins), windows visited in
 * (b, oy, ox) order — the rule and the order of the JS loop it replaces (the stock tfjs-backend-wasm
 * kernel starts its running max at FLT_MIN, the smallest positive float, so an all-negative window sends
 * dy to its first cell), so the results are bit-identical to that loop. Four channels run at once: a
 * lane mask `x > best` picks both the new maximum and its byte offset; the offsets are then scattered
 * lane by lane (channels differ per lane, so no two lanes add to one cell).
 *
 * Why: ResNet-18's stem pool at 64 px, batch 32 is 4.7 M window taps, ~70 ms a step in the JS loop.
 * Threads: on the threaded build the batch is split over the backend's threads (./heap-threads.ts); each
 * image's windows are still visited in order by one thread, so results do not depend on the count.
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
  i32ge,
  i32ltU,
  i32mul,
  i32sub,
  loadF32,
  type ValType,
  vconst,
  vgt,
  vload,
  vselect,
} from '../util/wasm-asm';
import { offsetOf } from './heap';
import { cnnKernelsOff, heapModule } from './heap-module';
import { runOnHeap, sharesFor, splitRange } from './heap-threads';
import type { Calls } from './worker-pool';

/** f32.gt (an i32 0 / 1; false when either side is NaN) */
const f32gt =
  (a: Expr, b: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    f.op(0x5e);
  };
/** i32x4.splat */
const i32x4splat =
  (a: Expr): Expr =>
  (f) => {
    a(f);
    f.simd(0x11);
  };
/** i32x4.add */
const i32x4add =
  (a: Expr, b: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    f.simd(0xae);
  };
/** i32x4.extract_lane */
const i32x4lane =
  (a: Expr, lane: number): Expr =>
  (f) => {
    a(f);
    f.simd(0x1b, lane);
  };
/** v128.const of four i32 lanes. */
const i32x4const =
  (lanes: [number, number, number, number]): Expr =>
  (f) => {
    const bytes = [...new Uint8Array(new Int32Array(lanes).buffer)];
    f.simd(0x0c, ...bytes);
  };
/** f32x4.extract_lane */
const f32lane =
  (a: Expr, lane: number): Expr =>
  (f) => {
    a(f);
    f.simd(0x1f, lane);
  };

/**
 * maxpoolgrad(x, dy, dx, b, h, w, c, ho, wo, kh, kw, sh, sw, dh, dw, pt, pl): dx (zeroed by the caller)
 * [b, h, w, c] += dy [b, ho, wo, c] at each window's first maximum of x.
 */
function buildMaxPoolGrad(): Fn {
  const f = new Fn('maxpoolgrad', Array<ValType>(17).fill('i32'));
  const [x, dy, dx, b, h, w, c, ho, wo, kh, kw, sh, sw, dh, dw, pt, pl] = f.params;
  const [n, oy, ox, ch, fy, fx, iy, ix, c4, pix, tap, g, off] = Array.from({ length: 13 }, () => f.local('i32'));
  const best = f.local('v128');
  const at = f.local('v128');
  const xv = f.local('v128');
  const mask = f.local('v128');
  const sBest = f.local('f32');
  const sAt = f.local('i32');
  const sx = f.local('f32');
  f.set(c4, i32and(get(c), i32(~3)));
  /** byte offset of x[n, iy, ix, 0] */
  const pixelOffset = (): Expr =>
    i32mul(i32mul(i32add(i32mul(i32add(i32mul(get(n), get(h)), get(iy)), get(w)), get(ix)), get(c)), i32(4));
  /** walk the window's taps inside x: body() with pix = byte offset of x[n, iy, ix, 0] */
  const window = (body: () => void) =>
    f.forUp(fy, i32(0), get(kh), () => {
      f.set(iy, i32add(i32sub(i32mul(get(oy), get(sh)), get(pt)), i32mul(get(fy), get(dh))));
      f.if(i32ltU(get(iy), get(h)), () =>
        f.forUp(fx, i32(0), get(kw), () => {
          f.set(ix, i32add(i32sub(i32mul(get(ox), get(sw)), get(pl)), i32mul(get(fx), get(dw))));
          f.if(i32ltU(get(ix), get(w)), () => {
            f.set(pix, pixelOffset());
            body();
          });
        }),
      );
    });
  f.forUp(n, i32(0), get(b), () =>
    f.forUp(oy, i32(0), get(ho), () =>
      f.forUp(ox, i32(0), get(wo), () => {
        // g = byte offset of dy[n, oy, ox, 0]
        f.set(
          g,
          i32mul(i32mul(i32add(i32mul(i32add(i32mul(get(n), get(ho)), get(oy)), get(wo)), get(ox)), get(c)), i32(4)),
        );
        f.forUp(
          ch,
          i32(0),
          get(c4),
          () => {
            f.set(best, vconst(-Infinity));
            f.set(at, i32x4const([-1, -1, -1, -1]));
            window(() => {
              f.set(tap, i32add(get(pix), i32mul(get(ch), i32(4))));
              f.set(xv, vload(i32add(get(x), get(tap))));
              f.set(mask, vgt(get(xv), get(best)));
              f.set(best, vselect(get(xv), get(best), get(mask)));
              f.set(at, vselect(i32x4add(i32x4splat(get(tap)), i32x4const([0, 4, 8, 12])), get(at), get(mask)));
            });
            for (let lane = 0; lane < 4; lane++) {
              f.set(off, i32x4lane(get(at), lane));
              f.if(i32ge(get(off), i32(0)), () => {
                const cell = i32add(get(dx), get(off));
                const grad = f32lane(vload(i32add(get(dy), i32add(get(g), i32mul(get(ch), i32(4))))), lane);
                f.storeF32(cell, 0, f32add(loadF32(cell), grad));
              });
            }
          },
          4,
        );
        f.forUp(ch, get(c4), get(c), () => {
          f.set(sBest, f32(-Infinity));
          f.set(sAt, i32(-1));
          window(() => {
            f.set(tap, i32add(get(pix), i32mul(get(ch), i32(4))));
            f.set(sx, loadF32(i32add(get(x), get(tap))));
            f.if(f32gt(get(sx), get(sBest)), () => {
              f.set(sBest, get(sx));
              f.set(sAt, get(tap));
            });
          });
          f.if(i32ge(get(sAt), i32(0)), () => {
            const cell = i32add(get(dx), get(sAt));
            f.storeF32(
              cell,
              0,
              f32add(loadF32(cell), loadF32(i32add(get(dy), i32add(get(g), i32mul(get(ch), i32(4)))))),
            );
          });
        });
      }),
    ),
  );
  return f;
}

const poolKernels = heapModule<{ maxpoolgrad: (...args: number[]) => void }>(() => [buildMaxPoolGrad()]);

/** MaxPoolGrad on the heap; `fallback` (./pool-gradients.ts' JS loop) runs other dtypes, a heap the kernels cannot reach, and MSM_CNN_KERNELS=off. */
export function maxPoolGradHeapKernel(fallback: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
    const backend = args.backend as BackendWasm;
    const k =
      input.dtype === 'float32' && dy.dtype === 'float32' && !cnnKernelsOff() ? poolKernels(backend) : undefined;
    if (!k) return fallback(args);
    const a = args.attrs as unknown as {
      filterSize: number | [number, number];
      strides: number | [number, number];
      pad: 'valid' | 'same' | number;
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
    };
    const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number],
      a.filterSize,
      a.strides,
      1,
      a.pad,
      a.dimRoundingMode,
    );
    const out = backend.makeOutput(input.shape, 'float32');
    (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
    const { batchSize: b, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
    const [image, dyImage] = [h * w * c, oh * ow * c]; // floats of one image of input / dx and of dy
    const taps = b * dyImage * info.filterHeight * info.filterWidth;
    // Threads split the batch (./heap-threads.ts): an image's windows write only that image's dx.
    const shares = splitRange(b, sharesFor(taps)).map(([n0, n1]): Calls => [
      [
        'maxpoolgrad',
        [
          offsetOf(backend, input) + 4 * n0 * image,
          offsetOf(backend, dy) + 4 * n0 * dyImage,
          offsetOf(backend, out) + 4 * n0 * image,
          n1 - n0,
          h,
          w,
          c,
          oh,
          ow,
          info.filterHeight,
          info.filterWidth,
          info.strideHeight,
          info.strideWidth,
          info.dilationHeight,
          info.dilationWidth,
          info.padInfo.top,
          info.padInfo.left,
        ],
      ],
    ]);
    runOnHeap(poolKernels, backend, shares);
    return out;
  };
}

/** True when the SIMD MaxPoolGrad can run on the active backend (wasm with its heap reachable). */
export function maxPoolGradHeapAvailable(): boolean {
  return tf.getBackend() === 'wasm' && poolKernels(tf.backend() as unknown as BackendWasm) !== undefined;
}
