/**
 * SYNTHETIC microscopy: a procedurally rendered thin-blood-smear cell set, the kit's default dataset for the
 * quickstart and fast tests. It is not real data and is labelled synthetic everywhere: the folder name
 * (`synthetic-microscopy-…`), a README.txt inside, `dataset.json` with `"synthetic": true`, and
 * `info.synthetic` on the opened Dataset.
 *
 * Each image is a crop centred on one red blood cell of a Giemsa-like smear; the label is the state of that
 * centre cell (classes, in order; the first N are used, N = 2…5):
 *   0 uninfected   a biconcave disc (pale centre), nothing inside
 *   1 ring-stage   a thin parasite ring with one or two chromatin dots (early P. falciparum trophozoite)
 *   2 trophozoite  an irregular, amoeboid parasite body with brown haemozoin pigment grains
 *   3 schizont     a cluster of 8–20 merozoite dots around a pigment clump
 *   4 gametocyte   a crescent ("banana") parasite stretching an elongated host cell
 * What makes it non-trivial: stain colour and intensity vary per image, parasites are small and sometimes
 * faint, neighbouring cells overlap the centre cell (and are themselves infected now and then), platelets
 * and stain-precipitate dots appear in every class, and each image gets optical blur, uneven illumination
 * and sensor noise.
 *
 * Rendering (per image, S×S): optical density is accumulated per channel (Beer–Lambert: each stained
 * structure adds density × its stain's absorbance vector), intensity = illumination · exp(−OD), then a
 * Gaussian blur, Gaussian noise and 8-bit quantisation. Every image is a pure function of (seed, split,
 * class, index) through the kit's Rng, so the set is identical on every machine.
 */
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { Rng } from '../util/random';
import type { RgbImage } from './decode';
import { DataError } from './errors';
import { mixSeed } from './split';
import { SPLIT_NAMES, type SplitName } from './types';

export const SYNTHETIC_CLASSES = ['uninfected', 'ring-stage', 'trophozoite', 'schizont', 'gametocyte'] as const;
export const SYNTHETIC_VERSION = 1;

type Vec3 = [number, number, number];

/** Optical-density canvas: 3 planes of S×S. */
class Canvas {
  readonly od: Float32Array;
  constructor(readonly size: number) {
    this.od = new Float32Array(3 * size * size);
  }

  /**
   * Add `stain · amount · density(x, y)` over the bounding box (cx ± r, cy ± r); `density` returns 0..1
   * (coverage with an anti-aliased edge, times any interior profile).
   */
  paint(
    cx: number,
    cy: number,
    r: number,
    stain: Vec3,
    amount: number,
    density: (x: number, y: number) => number,
  ): void {
    const S = this.size;
    const x0 = Math.max(0, Math.floor(cx - r - 1));
    const x1 = Math.min(S - 1, Math.ceil(cx + r + 1));
    const y0 = Math.max(0, Math.floor(cy - r - 1));
    const y1 = Math.min(S - 1, Math.ceil(cy + r + 1));
    const plane = S * S;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const d = density(x + 0.5, y + 0.5);
        if (d <= 0) continue;
        const i = y * S + x;
        this.od[i] += stain[0] * amount * d;
        this.od[plane + i] += stain[1] * amount * d;
        this.od[2 * plane + i] += stain[2] * amount * d;
      }
    }
  }
}

/** Anti-aliased coverage from a signed distance in pixels (negative inside). */
const coverage = (sd: number) => (sd <= -0.5 ? 1 : sd >= 0.5 ? 0 : 0.5 - sd);

/** Approximate signed distance to a rotated ellipse (radii a, b; angle t), in pixels. */
function ellipseSd(x: number, y: number, cx: number, cy: number, a: number, b: number, t: number): number {
  const dx = x - cx;
  const dy = y - cy;
  const u = dx * Math.cos(t) + dy * Math.sin(t);
  const v = -dx * Math.sin(t) + dy * Math.cos(t);
  const k = Math.sqrt((u / a) ** 2 + (v / b) ** 2);
  return (k - 1) * Math.min(a, b);
}

/** Per-image stain and optics parameters. */
interface Look {
  rbc: Vec3;
  cytoplasm: Vec3;
  chromatin: Vec3;
  pigment: Vec3;
  platelet: Vec3;
  illumination: Vec3;
  gradient: [number, number];
  blurSigma: number;
  noise: number;
  /** Pixel scale relative to a 64 px image. */
  px: number;
}

function jitter(rng: Rng, v: Vec3, spread: number): Vec3 {
  const g = rng.range(1 - spread, 1 + spread); // overall intensity
  return v.map((c) => c * g * rng.range(1 - spread / 2, 1 + spread / 2)) as Vec3;
}

function sampleLook(rng: Rng, size: number): Look {
  const px = size / 64;
  return {
    rbc: jitter(rng, [0.12, 0.5, 0.3], 0.35), // eosin-like pink: absorbs green most
    cytoplasm: jitter(rng, [0.55, 0.55, 0.18], 0.35), // Giemsa blue-purple
    chromatin: jitter(rng, [0.75, 1.1, 0.45], 0.3), // dark magenta-purple
    pigment: jitter(rng, [0.45, 0.65, 0.95], 0.3), // haemozoin brown
    platelet: jitter(rng, [0.6, 0.75, 0.3], 0.3),
    illumination: [rng.range(0.86, 0.98), rng.range(0.84, 0.97), rng.range(0.82, 0.97)],
    gradient: [rng.range(-0.08, 0.08), rng.range(-0.08, 0.08)],
    blurSigma: rng.range(0.35, 1.25) * px,
    noise: rng.range(1, 5) / 255,
    px,
  };
}

/** A red blood cell: biconcave profile (pale centre), optional elongation. Returns its geometry. */
function paintRbc(cv: Canvas, look: Look, rng: Rng, cx: number, cy: number, r: number, elong = 1, angle = 0) {
  const a = r * elong;
  const b = r / Math.sqrt(elong);
  const pallor = rng.range(0.3, 0.65);
  const amount = rng.range(0.75, 1.15);
  cv.paint(cx, cy, Math.max(a, b), look.rbc, amount, (x, y) => {
    const sd = ellipseSd(x, y, cx, cy, a, b, angle);
    const c = coverage(sd);
    if (c === 0) return 0;
    const k = Math.min(1, Math.max(0, 1 + sd / Math.min(a, b))); // 0 at the centre, 1 at the rim
    return c * (1 - pallor + pallor * k * k);
  });
  return { cx, cy, a, b, angle };
}

/** A point inside the cell at relative radius ≤ maxRel. */
function pointIn(rng: Rng, cx: number, cy: number, r: number, maxRel: number): [number, number] {
  const t = rng.range(0, 2 * Math.PI);
  const d = Math.sqrt(rng.uniform()) * maxRel * r;
  return [cx + d * Math.cos(t), cy + d * Math.sin(t)];
}

function dot(cv: Canvas, stain: Vec3, amount: number, x: number, y: number, rad: number): void {
  cv.paint(x, y, rad, stain, amount, (px, py) => coverage(Math.hypot(px - x, py - y) - rad));
}

function paintRing(cv: Canvas, look: Look, rng: Rng, cx: number, cy: number, r: number, strength: number): void {
  const [x, y] = pointIn(rng, cx, cy, r, 0.55);
  const rr = r * rng.range(0.17, 0.3);
  const thick = look.px * rng.range(0.8, 1.5);
  cv.paint(x, y, rr + thick, look.cytoplasm, strength * rng.range(0.6, 1.0), (px, py) =>
    coverage(Math.abs(Math.hypot(px - x, py - y) - rr) - thick / 2),
  );
  const dots = rng.uniform() < 0.3 ? 2 : 1; // "headphone" rings have two chromatin dots
  const t0 = rng.range(0, 2 * Math.PI);
  for (let k = 0; k < dots; k++) {
    const t = t0 + k * rng.range(0.6, 1.2);
    dot(cv, look.chromatin, strength, x + rr * Math.cos(t), y + rr * Math.sin(t), look.px * rng.range(0.7, 1.2));
  }
}

function paintTrophozoite(cv: Canvas, look: Look, rng: Rng, cx: number, cy: number, r: number, strength: number): void {
  const [x, y] = pointIn(rng, cx, cy, r, 0.3);
  const lobes = Array.from({ length: 3 + rng.int(4) }, () => {
    const [lx, ly] = pointIn(rng, x, y, r, 0.28);
    return { lx, ly, lr: r * rng.range(0.14, 0.28) };
  });
  cv.paint(x, y, r * 0.65, look.cytoplasm, strength * rng.range(0.6, 1.0), (px, py) => {
    let best = 0;
    for (const l of lobes) best = Math.max(best, coverage(Math.hypot(px - l.lx, py - l.ly) - l.lr));
    return best;
  });
  dot(cv, look.chromatin, strength, ...pointIn(rng, x, y, r, 0.2), look.px * rng.range(0.8, 1.3));
  const grains = 3 + rng.int(6);
  for (let k = 0; k < grains; k++) {
    dot(
      cv,
      look.pigment,
      strength * rng.range(0.7, 1.2),
      ...pointIn(rng, x, y, r, 0.35),
      look.px * rng.range(0.4, 0.8),
    );
  }
}

function paintSchizont(cv: Canvas, look: Look, rng: Rng, cx: number, cy: number, r: number, strength: number): void {
  const [x, y] = pointIn(rng, cx, cy, r, 0.2);
  const spread = rng.range(0.4, 0.6);
  cv.paint(x, y, r * spread, look.cytoplasm, strength * 0.35, (px, py) =>
    coverage(Math.hypot(px - x, py - y) - r * spread),
  );
  const merozoites = 8 + rng.int(13);
  for (let k = 0; k < merozoites; k++) {
    dot(
      cv,
      look.chromatin,
      strength * rng.range(0.7, 1.1),
      ...pointIn(rng, x, y, r, spread * 0.9),
      look.px * rng.range(0.6, 1.1),
    );
  }
  dot(cv, look.pigment, strength, ...pointIn(rng, x, y, r, 0.1), look.px * rng.range(1.0, 1.8));
}

/** Crescent body along the host cell's long axis. */
function paintGametocyte(
  cv: Canvas,
  look: Look,
  rng: Rng,
  cx: number,
  cy: number,
  r: number,
  angle: number,
  strength: number,
): void {
  const a = r * rng.range(0.75, 0.95);
  const b = r * rng.range(0.2, 0.3);
  const bend = rng.range(0.4, 0.9) / r; // curvature of the banana
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  cv.paint(cx, cy, a + b, look.cytoplasm, strength * rng.range(0.7, 1.0), (px, py) => {
    const dx = px - cx;
    const dy = py - cy;
    const u = dx * c + dy * s;
    const v = -dx * s + dy * c - bend * (u * u - a * a * 0.3);
    return coverage((Math.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * b);
  });
  const v0 = bend * a * a * 0.3; // the crescent's centre line at u = 0
  dot(cv, look.chromatin, strength * 0.8, cx - v0 * s, cy + v0 * c, look.px * rng.range(1.0, 1.6));
  const grains = 4 + rng.int(6);
  for (let k = 0; k < grains; k++) {
    const u = rng.range(-0.5, 0.5) * a;
    const v = rng.range(-0.4, 0.4) * b - bend * (u * u - a * a * 0.3);
    dot(cv, look.pigment, strength, cx + u * c - v * s, cy + u * s + v * c, look.px * rng.range(0.4, 0.7));
  }
}

/** Separable Gaussian blur of one plane (edge-clamped), in place. */
function blurPlane(p: Float32Array, S: number, sigma: number, tmp: Float32Array): void {
  const rad = Math.max(1, Math.ceil(3 * sigma));
  const k = new Float32Array(2 * rad + 1);
  let sum = 0;
  for (let i = -rad; i <= rad; i++) sum += k[i + rad] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  const clamp = (v: number) => (v < 0 ? 0 : v >= S ? S - 1 : v);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      let acc = 0;
      for (let i = -rad; i <= rad; i++) acc += k[i + rad] * p[y * S + clamp(x + i)];
      tmp[y * S + x] = acc;
    }
  }
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      let acc = 0;
      for (let i = -rad; i <= rad; i++) acc += k[i + rad] * tmp[clamp(y + i) * S + x];
      p[y * S + x] = acc;
    }
  }
}

/**
 * Render one synthetic image of class `label` (index into SYNTHETIC_CLASSES) at `size`×`size`.
 * Deterministic in `rng`'s state.
 */
export function renderSyntheticCell(rng: Rng, label: number, size: number): RgbImage {
  if (!(label >= 0 && label < SYNTHETIC_CLASSES.length))
    throw new RangeError(`synthetic class ${label} does not exist`);
  const S = size;
  const look = sampleLook(rng, S);
  const cv = new Canvas(S);

  // Plasma background and neighbouring cells (some overlap the centre cell; a few are infected).
  const plasma = rng.range(0.02, 0.06);
  for (let i = 0; i < S * S; i++) {
    cv.od[i] += plasma * 0.3;
    cv.od[S * S + i] += plasma;
    cv.od[2 * S * S + i] += plasma * 0.6;
  }
  const r = S * rng.range(0.25, 0.33);
  const cx = S / 2 + rng.range(-0.05, 0.05) * S;
  const cy = S / 2 + rng.range(-0.05, 0.05) * S;
  const neighbours = 2 + rng.int(5);
  for (let k = 0; k < neighbours; k++) {
    const t = rng.range(0, 2 * Math.PI);
    const d = r * rng.range(1.55, 2.4); // < 2r: overlapping the centre cell
    const nr = r * rng.range(0.85, 1.1);
    const nx = cx + d * Math.cos(t);
    const ny = cy + d * Math.sin(t);
    paintRbc(cv, look, rng, nx, ny, nr, rng.range(1, 1.12), rng.range(0, Math.PI));
    if (rng.uniform() < 0.06) paintRing(cv, look, rng, nx, ny, nr, rng.range(0.5, 1));
  }

  // The centre cell and its parasite.
  const strength = rng.range(0.45, 1.1); // faint to bold staining of the parasite
  const cls = SYNTHETIC_CLASSES[label];
  if (cls === 'gametocyte') {
    const angle = rng.range(0, Math.PI);
    paintRbc(cv, look, rng, cx, cy, r * 1.05, rng.range(1.25, 1.45), angle);
    paintGametocyte(cv, look, rng, cx, cy, r, angle, strength);
  } else {
    paintRbc(
      cv,
      look,
      rng,
      cx,
      cy,
      r * (cls === 'uninfected' || cls === 'ring-stage' ? 1 : rng.range(1.0, 1.12)),
      rng.range(1, 1.1),
      rng.range(0, Math.PI),
    );
    if (cls === 'ring-stage') {
      paintRing(cv, look, rng, cx, cy, r, strength);
      if (rng.uniform() < 0.15) paintRing(cv, look, rng, cx, cy, r, strength); // multiple infection
    } else if (cls === 'trophozoite') paintTrophozoite(cv, look, rng, cx, cy, r, strength);
    else if (cls === 'schizont') paintSchizont(cv, look, rng, cx, cy, r, strength);
  }

  // Distractors in every class: platelets and stain-precipitate dots, anywhere (also over the centre cell).
  const platelets = rng.int(3);
  for (let k = 0; k < platelets; k++) {
    const px = rng.range(0, S);
    const py = rng.range(0, S);
    const pr = look.px * rng.range(1.2, 2.6);
    dot(cv, look.platelet, rng.range(0.5, 0.9), px, py, pr);
  }
  const specks = rng.int(4);
  for (let k = 0; k < specks; k++)
    dot(cv, look.chromatin, rng.range(0.3, 0.9), rng.range(0, S), rng.range(0, S), look.px * rng.range(0.5, 1.0));

  // Optics: illumination × exp(−OD), blur, noise, quantise.
  const plane = S * S;
  const img = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const i = y * S + x;
        const light = look.illumination[c] * (1 + look.gradient[0] * (x / S - 0.5) + look.gradient[1] * (y / S - 0.5));
        img[c * plane + i] = light * Math.exp(-cv.od[c * plane + i]);
      }
    }
  }
  const tmp = new Float32Array(plane);
  for (let c = 0; c < 3; c++) blurPlane(img.subarray(c * plane, (c + 1) * plane), S, look.blurSigma, tmp);
  const out = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = img[c * plane + i] + look.noise * rng.normal();
      out[3 * i + c] = Math.max(0, Math.min(255, Math.round(v * 255)));
    }
  }
  return { data: out, width: S, height: S };
}

export interface SyntheticOptions {
  /** Parent folder; the set goes to `<root>/synthetic-microscopy-<N>cls-<size>px-seed<seed>`. Default data/. */
  root: string;
  /** Number of classes, 2…5 (default 3). */
  numClasses?: number;
  /** Image side in pixels (default 64). */
  size?: number;
  /** Images per class in each split (default train 200, val 50, test 50). */
  perClass?: Partial<Record<SplitName, number>>;
  seed?: number;
  /** Regenerate even if a complete set with the same parameters exists. */
  force?: boolean;
  /** Called after each written image. */
  onProgress?: (done: number, total: number) => void;
}

export interface SyntheticInfo {
  synthetic: true;
  name: string;
  generator: string;
  version: number;
  seed: number;
  size: number;
  classes: string[];
  perClass: Record<SplitName, number>;
  description: string;
}

export const SYNTHETIC_DEFAULTS = { numClasses: 3, size: 64, perClass: { train: 200, val: 50, test: 50 }, seed: 0 };

/** Folder name of a synthetic set (it always says "synthetic"). */
export function syntheticFolderName(numClasses: number, size: number, seed: number): string {
  return `synthetic-microscopy-${numClasses}cls-${size}px-seed${seed}`;
}

/** Read `dataset.json` of a folder if it declares a synthetic set. */
export function readSyntheticInfo(dir: string): SyntheticInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'dataset.json'), 'utf8')) as SyntheticInfo;
    return info.synthetic === true ? info : undefined;
  } catch {
    return undefined;
  }
}

function readme(info: SyntheticInfo): string {
  const counts = SPLIT_NAMES.map((s) => `${s} ${info.perClass[s]}`).join(', ');
  return [
    'SYNTHETIC DATA: NOT REAL MICROSCOPY',
    '',
    `This folder was generated by ${info.generator} (version ${info.version}) with seed ${info.seed}.`,
    'Every image is a procedurally rendered thin-blood-smear crop centred on one red blood cell; the label is',
    'the state of that centre cell. It exists to run the kit end to end without downloading data. Results on',
    'it say nothing about real malaria or any other medical images.',
    '',
    `Classes (${info.classes.length}): ${info.classes.join(', ')}`,
    `Images per class: ${counts}; ${info.size}x${info.size} px PNG, RGB.`,
    'Layout: {train,val,test}/<class>/<class>_<index>.png. dataset.json carries "synthetic": true.',
    '',
  ].join('\n');
}

/**
 * Write (or reuse) a synthetic set and return its folder. The set is generated into a temporary folder and
 * renamed into place when complete, so an interrupted run never leaves a half-written set.
 */
export async function writeSyntheticDataset(opts: SyntheticOptions): Promise<string> {
  const numClasses = opts.numClasses ?? SYNTHETIC_DEFAULTS.numClasses;
  const size = opts.size ?? SYNTHETIC_DEFAULTS.size;
  const seed = opts.seed ?? SYNTHETIC_DEFAULTS.seed;
  const perClass = { ...SYNTHETIC_DEFAULTS.perClass, ...opts.perClass };
  if (!(Number.isInteger(numClasses) && numClasses >= 2 && numClasses <= SYNTHETIC_CLASSES.length)) {
    throw new DataError(`synthetic numClasses must be 2…${SYNTHETIC_CLASSES.length}, got ${numClasses}`);
  }
  if (!(Number.isInteger(size) && size >= 16))
    throw new DataError(`synthetic size must be an integer ≥ 16, got ${size}`);
  const name = syntheticFolderName(numClasses, size, seed);
  const dir = path.join(opts.root, name);
  const info: SyntheticInfo = {
    synthetic: true,
    name,
    generator: 'lib/data/synthetic.ts',
    version: SYNTHETIC_VERSION,
    seed,
    size,
    classes: SYNTHETIC_CLASSES.slice(0, numClasses),
    perClass,
    description: 'Procedurally rendered thin-smear red-blood-cell crops (SYNTHETIC, not real microscopy).',
  };
  const existing = readSyntheticInfo(dir);
  if (!opts.force && existing && JSON.stringify(existing) === JSON.stringify(info)) return dir;

  const tmp = `${dir}.${process.pid}.${Date.now()}.tmp`;
  fs.mkdirSync(tmp, { recursive: true });
  try {
    const jobs: Array<{ split: SplitName; label: number; index: number }> = [];
    for (const split of SPLIT_NAMES) {
      for (let label = 0; label < numClasses; label++) {
        fs.mkdirSync(path.join(tmp, split, info.classes[label]), { recursive: true });
        for (let index = 0; index < perClass[split]; index++) jobs.push({ split, label, index });
      }
    }
    let done = 0;
    let next = 0;
    // Rendering is synchronous JS; PNG encoding runs on sharp's threads, so keep a few encodes in flight.
    const worker = async () => {
      while (next < jobs.length) {
        const { split, label, index } = jobs[next++];
        const img = renderSyntheticCell(new Rng(mixSeed(seed, 'synthetic', split, label, index)), label, size);
        const cls = info.classes[label];
        const file = path.join(tmp, split, cls, `${cls}_${String(index).padStart(5, '0')}.png`);
        const png = await sharp(img.data, { raw: { width: size, height: size, channels: 3 } })
          .png({ compressionLevel: 6 })
          .toBuffer();
        fs.writeFileSync(file, png);
        opts.onProgress?.(++done, jobs.length);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    fs.writeFileSync(path.join(tmp, 'README.txt'), readme(info));
    fs.writeFileSync(path.join(tmp, 'dataset.json'), JSON.stringify(info, null, 2) + '\n');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return dir;
}
