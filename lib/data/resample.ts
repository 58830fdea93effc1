/**
 * Bilinear resize with PIL's semantics, the resize behind torchvision's `Resize((s, s))` and
 * `RandomResizedCrop(s)` on PIL images (the official pipeline: ImageFolder → PIL → transforms).
 *
 * PIL's "bilinear" (Pillow `ImagingResample`, `src/libImaging/Resample.c`) is a separable convolution with
 * a triangle kernel, *not* 4-tap interpolation when shrinking:
 *   - output pixel x samples the input around centre c = (x + 0.5)·scale, scale = in/out (pixel centres
 *     aligned, i.e. align_corners=False / half-pixel centres);
 *   - the triangle is stretched by max(scale, 1), so downscaling averages over all covered pixels
 *     (antialiasing); upscaling is plain bilinear interpolation;
 *   - weights falling outside the image are dropped and the rest renormalised (edge handling);
 *   - weights are 22-bit fixed point, the horizontal pass runs first and its result is rounded to uint8
 *     before the vertical pass; a pass whose size does not change is skipped.
 * All of that is reproduced below, so for the same uint8 input this gives PIL's bytes. tf.image's
 * `resizeBilinear` does not antialias, which is why it is not used for data preparation.
 *
 * Shapes: images are HWC uint8 with 3 channels; `crop` selects a source window first (torchvision's
 * `resized_crop` = crop, then resize), and the window's borders act as the image borders.
 */
import type { RgbImage } from './decode';

/** An integer source window: rows top..top+height, columns left..left+width. */
export interface Crop {
  top: number;
  left: number;
  height: number;
  width: number;
}

const PRECISION_BITS = 32 - 8 - 2; // Pillow's fixed-point precision for 8-bit images
const HALF = 1 << (PRECISION_BITS - 1);

/** Per output pixel: first input index, tap count, and fixed-point weights (stride `ksize`). */
interface Coefficients {
  ksize: number;
  first: Int32Array; // [out]
  count: Int32Array; // [out]
  weights: Int32Array; // [out · ksize]
}

/** The triangle ("bilinear") filter of support 1. */
function triangle(x: number): number {
  const a = x < 0 ? -x : x;
  return a < 1 ? 1 - a : 0;
}

/** Pillow `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis: inSize input pixels → outSize. */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // triangle support (1) stretched when shrinking
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // (int) casts in C truncate toward zero; Math.trunc keeps that for the slightly negative left edge.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = triangle((x + xmin - center + 0.5) / filterScale);
      sum += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = sum !== 0 ? k[x] / sum : 0;
      weights[xx * ksize + x] = Math.trunc(w < 0 ? w * (1 << PRECISION_BITS) - 0.5 : w * (1 << PRECISION_BITS) + 0.5);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, first, count, weights };
}

/** Pillow's clip8 on a fixed-point accumulator. */
function clip8(ss: number): number {
  if (ss >= 255 << PRECISION_BITS) return 255;
  if (ss <= 0) return 0;
  return ss >> PRECISION_BITS;
}

/**
 * Resize `src` (or its `crop` window) to outW×outH with PIL bilinear semantics. Returns a new image;
 * when nothing changes (no crop, same size) the input data is copied.
 */
export function resizeBilinear(src: RgbImage, outW: number, outH: number, crop?: Crop): RgbImage {
  const { top, left, height: inH, width: inW } = crop ?? { top: 0, left: 0, height: src.height, width: src.width };
  if (top < 0 || left < 0 || top + inH > src.height || left + inW > src.width || inH < 1 || inW < 1) {
    throw new RangeError(`crop ${JSON.stringify(crop)} is outside the ${src.width}×${src.height} image`);
  }
  if (outW < 1 || outH < 1) throw new RangeError(`output size ${outW}×${outH} must be positive`);
  const sw = src.width;
  const s = src.data;

  // Horizontal pass: [inH, inW] → [inH, outW] (skipped when the width does not change).
  let mid: Uint8Array;
  let midStride: number; // pixels per row of `mid`
  let midLeft: number; // column offset of the window inside `mid`
  let midTop: number; // row offset of the window inside `mid`
  if (outW !== inW) {
    const c = coefficients(inW, outW);
    mid = new Uint8Array(inH * outW * 3);
    midStride = outW;
    midLeft = 0;
    midTop = 0;
    for (let y = 0; y < inH; y++) {
      const rowIn = ((top + y) * sw + left) * 3;
      const rowOut = y * outW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const w0 = xx * c.ksize;
        const n = c.count[xx];
        let p = rowIn + c.first[xx] * 3;
        let r = HALF,
          g = HALF,
          b = HALF;
        for (let x = 0; x < n; x++, p += 3) {
          const w = c.weights[w0 + x];
          r += s[p] * w;
          g += s[p + 1] * w;
          b += s[p + 2] * w;
        }
        const o = rowOut + xx * 3;
        mid[o] = clip8(r);
        mid[o + 1] = clip8(g);
        mid[o + 2] = clip8(b);
      }
    }
  } else {
    mid = s;
    midStride = sw;
    midLeft = left;
    midTop = top;
  }

  // Vertical pass: [inH, outW] → [outH, outW] (skipped when the height does not change).
  const out = new Uint8Array(outH * outW * 3);
  if (outH !== inH) {
    const c = coefficients(inH, outH);
    for (let yy = 0; yy < outH; yy++) {
      const w0 = yy * c.ksize;
      const n = c.count[yy];
      const y0 = c.first[yy];
      for (let xx = 0; xx < outW; xx++) {
        let r = HALF,
          g = HALF,
          b = HALF;
        let p = ((midTop + y0) * midStride + midLeft + xx) * 3;
        const step = midStride * 3;
        for (let y = 0; y < n; y++, p += step) {
          const w = c.weights[w0 + y];
          r += mid[p] * w;
          g += mid[p + 1] * w;
          b += mid[p + 2] * w;
        }
        const o = (yy * outW + xx) * 3;
        out[o] = clip8(r);
        out[o + 1] = clip8(g);
        out[o + 2] = clip8(b);
      }
    }
  } else {
    for (let y = 0; y < outH; y++) {
      const from = ((midTop + y) * midStride + midLeft) * 3;
      out.set(mid.subarray(from, from + outW * 3), y * outW * 3);
    }
  }
  return { data: out, width: outW, height: outH };
}
