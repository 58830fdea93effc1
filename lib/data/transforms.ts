/**
 * Image transforms of the training recipe (docs/architecture.md §Training recipe) on RGB uint8 HWC images, all
 * randomness from the kit's seeded `Rng`:
 *
 *   eval      `Resize((s, s))`: PIL bilinear to s×s, no crop (resample.ts). Done once, when the cache is built.
 *   train     `RandomResizedCrop(s)`: scale (0.08, 1), ratio (3/4, 4/3), torchvision's sampling with its
 *             10 attempts and centre-crop fallback, then PIL bilinear to s×s. The official train.py uses only
 *             this; horizontal/vertical flips and rotation are commented out there, so they are opt-in here
 *             (rotation as exact 90° turns, not torchvision's arbitrary-angle RandomRotation).
 *   normalise (x/255 − mean_c)/std_c with per-dataset mean and std over all pixels (population std over
 *             every pixel of the train split, not the official get_means.py mean of per-image stds).
 *
 * Note on RandomResizedCrop: torchvision crops the original image; the kit crops the cached s×s eval-resized
 * image (decoding once per dataset is what makes epochs fast). For square sources (MedMNIST, MHIST, the
 * malaria and synthetic sets) that is the same crop up to resampling; for non-square sources the area and
 * aspect ratio are relative to the squashed s×s image.
 */
import type { RgbImage } from './decode';
import { resizeBilinear, type Crop } from './resample';
import type { Rng } from '../util/random';

/** Python's round(): halves go to the even neighbour (torchvision's `int(round(...))`). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface RandomResizedCropOptions {
  /** Range of the crop's area as a fraction of the image area (torchvision default [0.08, 1]). */
  scale?: [number, number];
  /** Range of the crop's aspect ratio w/h, sampled log-uniformly (default [3/4, 4/3]). */
  ratio?: [number, number];
}

/**
 * torchvision `RandomResizedCrop.get_params` (transforms.py): up to 10 tries of (area, log-ratio) draws,
 * accepting the first crop that fits; otherwise the largest centred crop whose ratio is clamped into range.
 */
export function randomResizedCropParams(
  rng: Rng,
  width: number,
  height: number,
  { scale = [0.08, 1], ratio = [3 / 4, 4 / 3] }: RandomResizedCropOptions = {},
): Crop {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.range(scale[0], scale[1]);
    const aspect = Math.exp(rng.range(logRatio[0], logRatio[1]));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  // Fallback: centre crop with the aspect ratio clamped into [ratio[0], ratio[1]].
  const inRatio = width / height;
  let w: number, h: number;
  if (inRatio < Math.min(...ratio)) {
    w = width;
    h = roundHalfEven(w / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    h = height;
    w = roundHalfEven(h * Math.max(...ratio));
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** RandomResizedCrop: sample a crop, then PIL-bilinear it to size×size. */
export function randomResizedCrop(img: RgbImage, size: number, rng: Rng, opts?: RandomResizedCropOptions): RgbImage {
  return resizeBilinear(img, size, size, randomResizedCropParams(rng, img.width, img.height, opts));
}

/** Mirror left ↔ right. */
export function flipHorizontal(img: RgbImage): RgbImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      const j = (y * w + (w - 1 - x)) * 3;
      out[j] = data[i];
      out[j + 1] = data[i + 1];
      out[j + 2] = data[i + 2];
    }
  }
  return { data: out, width: w, height: h };
}

/** Mirror top ↔ bottom. */
export function flipVertical(img: RgbImage): RgbImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(data.length);
  const row = w * 3;
  for (let y = 0; y < h; y++) out.set(data.subarray(y * row, (y + 1) * row), (h - 1 - y) * row);
  return { data: out, width: w, height: h };
}

/** Rotate by k·90° counter-clockwise (numpy `rot90(img, k)` on HWC); width and height swap for odd k. */
export function rotate90(img: RgbImage, k: number): RgbImage {
  const turns = ((k % 4) + 4) % 4;
  if (turns === 0) return { data: img.data.slice(), width: img.width, height: img.height };
  const { width: w, height: h, data } = img;
  const ow = turns === 2 ? w : h;
  const oh = turns === 2 ? h : w;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // Destination of source pixel (y, x) after `turns` counter-clockwise quarter turns.
      let ny: number, nx: number;
      if (turns === 1) {
        ny = w - 1 - x;
        nx = y;
      } else if (turns === 2) {
        ny = h - 1 - y;
        nx = w - 1 - x;
      } else {
        ny = x;
        nx = h - 1 - y;
      }
      const i = (y * w + x) * 3;
      const j = (ny * ow + nx) * 3;
      out[j] = data[i];
      out[j + 1] = data[i + 1];
      out[j + 2] = data[i + 2];
    }
  }
  return { data: out, width: ow, height: oh };
}

/** Which random transforms a training loader applies (in this order). */
export interface AugmentConfig {
  /** RandomResizedCrop to the loader's size (default on for training; `true` = torchvision defaults). */
  randomResizedCrop?: boolean | RandomResizedCropOptions;
  /** Random horizontal flip with p = 0.5. */
  hflip?: boolean;
  /** Random vertical flip with p = 0.5. */
  vflip?: boolean;
  /** Random rotation by 0/90/180/270°, each with p = 0.25. */
  rotate90?: boolean;
}

/** The official training transform: RandomResizedCrop only (train.py L25–28). */
export const OFFICIAL_TRAIN_AUGMENT: AugmentConfig = { randomResizedCrop: true };

/**
 * Apply `cfg` to one image, drawing from `rng` in a fixed order (crop, hflip, vflip, rotation), and return a
 * size×size image. Without a crop the image must already be size×size (the cache guarantees it).
 */
export function augment(img: RgbImage, size: number, rng: Rng, cfg: AugmentConfig): RgbImage {
  let out = img;
  if (cfg.randomResizedCrop) {
    out = randomResizedCrop(out, size, rng, cfg.randomResizedCrop === true ? {} : cfg.randomResizedCrop);
  } else if (out.width !== size || out.height !== size) {
    out = resizeBilinear(out, size, size);
  }
  if (cfg.hflip && rng.uniform() < 0.5) out = flipHorizontal(out);
  if (cfg.vflip && rng.uniform() < 0.5) out = flipVertical(out);
  if (cfg.rotate90) out = rotate90(out, rng.int(4));
  return out;
}

/** Per-channel mean and std of pixel values scaled to [0, 1]. */
export interface ChannelStats {
  mean: [number, number, number];
  std: [number, number, number];
  /** How many pixels (per channel) the statistics cover. */
  pixels: number;
}

/**
 * Exact per-channel statistics over all pixels: a 256-bin histogram per channel, so the mean and the
 * population std over every pixel of every image come out exactly (no float drift, any number of images).
 */
export class PixelHistogram {
  private counts = new Float64Array(3 * 256);
  private n = 0;

  /** Add one RGB uint8 image (or any HWC buffer with 3 channels). */
  add(data: Uint8Array): void {
    const c = this.counts;
    for (let i = 0; i < data.length; i += 3) {
      c[data[i]]++;
      c[256 + data[i + 1]]++;
      c[512 + data[i + 2]]++;
    }
    this.n += data.length / 3;
  }

  get pixels(): number {
    return this.n;
  }

  stats(): ChannelStats {
    if (this.n === 0) throw new Error('PixelHistogram.stats(): no pixels were added');
    const mean = [0, 0, 0] as [number, number, number];
    const std = [0, 0, 0] as [number, number, number];
    for (let ch = 0; ch < 3; ch++) {
      let s = 0,
        s2 = 0;
      for (let v = 0; v < 256; v++) {
        const k = this.counts[ch * 256 + v];
        s += k * v;
        s2 += k * v * v;
      }
      const m = s / this.n;
      mean[ch] = m / 255;
      std[ch] = Math.sqrt(Math.max(s2 / this.n - m * m, 0)) / 255;
    }
    return { mean, std, pixels: this.n };
  }
}

/** The official hard-coded statistics (train.py L30, presumably MedFM-Colon's). */
export const OFFICIAL_STATS: Readonly<ChannelStats> = {
  mean: [0.7016, 0.5726, 0.74],
  std: [0.1949, 0.2388, 0.1536],
  pixels: 0,
};

/** Lookup table [3·256]: value v of channel c ↦ (v/255 − mean_c)/std_c, in float32. */
export function normalizationTable(stats: Pick<ChannelStats, 'mean' | 'std'>): Float32Array {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const std = stats.std[c] > 0 ? stats.std[c] : 1; // a constant channel would divide by zero
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - stats.mean[c]) / std;
  }
  return lut;
}

/** Write the normalised float32 version of RGB uint8 `src` into `out` starting at `offset`. */
export function normalizeInto(out: Float32Array, offset: number, src: Uint8Array, lut: Float32Array): void {
  for (let i = 0; i < src.length; i += 3) {
    out[offset + i] = lut[src[i]];
    out[offset + i + 1] = lut[256 + src[i + 1]];
    out[offset + i + 2] = lut[512 + src[i + 2]];
  }
}
