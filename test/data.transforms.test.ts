/**
 * Transforms against references: PIL's bilinear resample worked out by hand from Pillow's algorithm,
 * tf.image.resizeBilinear (half-pixel centres) for upscaling, torchvision's RandomResizedCrop sampling
 * rules, numpy-style rot90/flips, exact pixel statistics and the normalisation formula.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { Rng } from '../lib/util/random';
import { resizeBilinear } from '../lib/data/resample';
import {
  augment,
  flipHorizontal,
  flipVertical,
  normalizationTable,
  normalizeInto,
  PixelHistogram,
  randomResizedCropParams,
  rotate90,
  roundHalfEven,
} from '../lib/data/transforms';
import type { RgbImage } from '../lib/data/decode';

before(async () => {
  await initBackend('cpu', { quiet: true });
});

/** A w×h RGB image whose channels are f(x, y), f(x, y)+1, f(x, y)+2 (clamped). */
function image(w: number, h: number, f: (x: number, y: number) => number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.min(255, f(x, y) + c);
  return { data, width: w, height: h };
}

test('PIL bilinear: 2× downscale of a 4-pixel row uses the stretched triangle (3:3:1 / 1:3:3 at the edges)', () => {
  // Pillow precompute_coeffs for in=4, out=2: scale 2, support 2.
  //   out 0: centre 1, taps x=0,1,2 with triangle((x−1+0.5)/2) = .75,.75,.25 → (3a+3b+c)/7
  //   out 1: centre 3, taps x=1,2,3 → .25,.75,.75 → (b+3c+3d)/7
  const row = [0, 70, 140, 210];
  const img = image(4, 1, (x) => row[x]);
  const out = resizeBilinear(img, 2, 1);
  assert.deepEqual([out.data[0], out.data[3]], [50, 160]);
  // Channel 1 holds row + 1: (3·1 + 3·71 + 141)/7 = 51, (71 + 3·141 + 3·211)/7 = 161.
  assert.deepEqual([out.data[1], out.data[4]], [51, 161]);
});

test('PIL bilinear: interior taps of a 2× downscale weigh 1/8, 3/8, 3/8, 1/8', () => {
  const vals = [10, 20, 40, 80, 160, 200, 220, 240];
  const out = resizeBilinear(
    image(8, 1, (x) => vals[x]),
    4,
    1,
  );
  // out 1: centre 3, taps 1..4 with weights .25 .75 .75 .25 (sum 2) → /8.
  assert.equal(out.data[3], Math.round((20 + 3 * 40 + 3 * 80 + 160) / 8));
  assert.equal(out.data[6], Math.round((80 + 3 * 160 + 3 * 200 + 220) / 8));
});

test('PIL bilinear: upscaling equals half-pixel-centre bilinear interpolation (tf.image.resizeBilinear)', () => {
  const img = image(5, 4, (x, y) => (x * 47 + y * 31 + x * y * 13) % 250);
  const out = resizeBilinear(img, 13, 11);
  const ref = tf.tidy(() =>
    tf.image.resizeBilinear(tf.tensor3d(Float32Array.from(img.data), [4, 5, 3]), [11, 13], false, true).dataSync(),
  );
  // PIL rounds the horizontal pass to uint8 before the vertical one, so allow ±1.
  let maxDiff = 0;
  for (let i = 0; i < out.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out.data[i] - ref[i]));
  assert.ok(maxDiff <= 1, `max |PIL − tf| = ${maxDiff}`);
  assert.equal(tf.memory().numTensors, 0);
});

test('resizeBilinear: same size is a copy; a constant image stays constant; crop = crop then resize', () => {
  const img = image(7, 6, (x, y) => x * 10 + y);
  assert.deepEqual(resizeBilinear(img, 7, 6).data, img.data);
  const flat = image(9, 7, () => 123);
  assert.ok(resizeBilinear(flat, 4, 5).data.every((v, i) => v === 123 + (i % 3)));
  const crop = { top: 1, left: 2, height: 4, width: 3 };
  const cropped = image(3, 4, (x, y) => img.data[((y + 1) * 7 + x + 2) * 3]);
  assert.deepEqual(resizeBilinear(img, 5, 5, crop).data, resizeBilinear(cropped, 5, 5).data);
  assert.throws(() => resizeBilinear(img, 4, 4, { top: 3, left: 0, height: 4, width: 2 }), /outside/);
});

test("roundHalfEven matches Python's round", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3]);
});

test('RandomResizedCrop params: inside the image, area and ratio within range, deterministic', () => {
  const a = new Rng(7);
  const b = new Rng(7);
  for (let i = 0; i < 500; i++) {
    const w = 50 + (i % 90);
    const h = 40 + ((i * 7) % 100);
    const p = randomResizedCropParams(a, w, h);
    assert.deepEqual(p, randomResizedCropParams(b, w, h));
    assert.ok(p.top >= 0 && p.left >= 0 && p.top + p.height <= h && p.left + p.width <= w, JSON.stringify(p));
    const area = (p.width * p.height) / (w * h);
    const ratio = p.width / p.height;
    // Rounding w and h to integers moves area and ratio a little beyond the sampled ranges.
    assert.ok(area > 0.06 && area <= 1, `area ${area}`);
    assert.ok(ratio > 0.6 && ratio < 1.6, `ratio ${ratio}`);
  }
});

test('RandomResizedCrop params: after 10 failed attempts, the centred fallback clamps the ratio', () => {
  // ratio (3, 4) on a square never fits (w = sqrt(A·r) > width), so torchvision falls back to the centre crop
  // with w = width, h = round(w / 3).
  const p = randomResizedCropParams(new Rng(1), 60, 60, { scale: [0.9, 1], ratio: [3, 4] });
  assert.deepEqual(p, { top: 20, left: 0, height: 20, width: 60 });
  // Input ratio inside range: the fallback is the whole image.
  const q = randomResizedCropParams(new Rng(1), 60, 60, { scale: [2, 3], ratio: [0.75, 1.333] });
  assert.deepEqual(q, { top: 0, left: 0, height: 60, width: 60 });
});

test('flips and rot90 follow numpy (fliplr, flipud, rot90 counter-clockwise)', () => {
  // 3×2 image, pixel value = 10·row + col (channel 0).
  const img = image(3, 2, (x, y) => 10 * y + x);
  const ch0 = (im: RgbImage) => Array.from({ length: im.width * im.height }, (_, i) => im.data[3 * i]);
  assert.deepEqual(ch0(flipHorizontal(img)), [2, 1, 0, 12, 11, 10]);
  assert.deepEqual(ch0(flipVertical(img)), [10, 11, 12, 0, 1, 2]);
  const r1 = rotate90(img, 1); // np.rot90([[0,1,2],[10,11,12]]) = [[2,12],[1,11],[0,10]]
  assert.deepEqual([r1.width, r1.height], [2, 3]);
  assert.deepEqual(ch0(r1), [2, 12, 1, 11, 0, 10]);
  assert.deepEqual(ch0(rotate90(img, 2)), [12, 11, 10, 2, 1, 0]);
  assert.deepEqual(ch0(rotate90(img, 3)), [10, 0, 11, 1, 12, 2]);
  assert.deepEqual(rotate90(rotate90(img, 3), 1).data, img.data);
});

test('PixelHistogram: exact mean and population std over all pixels (not the mean of per-image stds)', () => {
  const rng = new Rng(3);
  const imgs = [image(4, 4, () => rng.int(256)), image(8, 2, () => 250), image(3, 5, () => rng.int(50))];
  const h = new PixelHistogram();
  imgs.forEach((im) => h.add(im.data));
  const s = h.stats();
  for (let c = 0; c < 3; c++) {
    const vals = imgs.flatMap((im) =>
      Array.from(im.data)
        .filter((_, i) => i % 3 === c)
        .map((v) => v / 255),
    );
    const mean = vals.reduce((a, b) => a + b, 0) / vals.length;
    const std = Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / vals.length);
    assert.ok(Math.abs(s.mean[c] - mean) < 1e-12 && Math.abs(s.std[c] - std) < 1e-12);
    const perImage = imgs.map((im) => {
      const v = Array.from(im.data)
        .filter((_, i) => i % 3 === c)
        .map((x) => x / 255);
      const m = v.reduce((a, b) => a + b, 0) / v.length;
      return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
    });
    assert.ok(Math.abs(s.std[c] - perImage.reduce((a, b) => a + b, 0) / perImage.length) > 0.01);
  }
  assert.equal(s.pixels, 16 + 16 + 15);
});

test('normalizeInto: (v/255 − mean)/std per channel', () => {
  const stats = {
    mean: [0.5, 0.25, 0.75] as [number, number, number],
    std: [0.2, 0.1, 0.3] as [number, number, number],
  };
  const src = Uint8Array.from([0, 128, 255, 17, 34, 51]);
  const out = new Float32Array(8);
  normalizeInto(out, 2, src, normalizationTable(stats));
  src.forEach((v, i) => assert.ok(Math.abs(out[2 + i] - (v / 255 - stats.mean[i % 3]) / stats.std[i % 3]) < 1e-6));
  assert.deepEqual([out[0], out[1]], [0, 0]);
});

test('augment: deterministic per seed, always size×size, flips/rotation only permute pixels', () => {
  const img = image(32, 32, (x, y) => (x * 7 + y * 3) % 256);
  const cfg = { randomResizedCrop: true, hflip: true, vflip: true, rotate90: true };
  const a = augment(img, 24, new Rng(11), cfg);
  assert.deepEqual(a.data, augment(img, 24, new Rng(11), cfg).data);
  assert.notDeepEqual(a.data, augment(img, 24, new Rng(12), cfg).data);
  assert.deepEqual([a.width, a.height], [24, 24]);
  const p = augment(img, 32, new Rng(5), { hflip: true, vflip: true, rotate90: true });
  assert.deepEqual(Array.from(p.data).sort(), Array.from(img.data).sort());
});
