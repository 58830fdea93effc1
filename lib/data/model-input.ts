/**
 * One image → the model's input, as evaluation and `predict` feed it: PIL-bilinear resize to s×s
 * (`Resize((s, s))`, resample.ts; skipped when the image already is s×s), then (x/255 − mean)/std per
 * channel through the run's lookup table (transforms.ts `normalizationTable`). Node (`predictImages`)
 * and the browser app (web/) both call this, so the two cannot drift apart.
 */
import type { RgbImage } from './decode';
import { resizeBilinear } from './resample';
import { normalizeInto } from './transforms';

/** Write image `img`'s s×s normalised float32 HWC input ([s, s, 3], s·s·3 floats) into `out` at `offset`. */
export function modelInputInto(
  out: Float32Array,
  offset: number,
  img: RgbImage,
  size: number,
  lut: Float32Array,
): void {
  const resized = img.width === size && img.height === size ? img : resizeBilinear(img, size, size);
  normalizeInto(out, offset, resized.data, lut);
}
