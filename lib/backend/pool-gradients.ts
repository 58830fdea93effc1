/**
 * MaxPoolGrad on wasm: the stock kernel starts its running max at FLT_MIN (the smallest *positive*
 * float, MaxPoolGrad.cc), so in a window of negative values no position wins and dy lands on the
 * window's first cell. Rewritten as a loop over the heap: dx[argmax of each window] += dy (first max
 * wins, as in the cpu backend's maxPoolPositions).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Attrs = Record<string, unknown>;

export const maxPoolGradKernel: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const be = backend as unknown as BackendWasm;
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
