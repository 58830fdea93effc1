/**
 * Every baseline of the zoo trains: one epoch on real malaria cells lowers its training loss.
 *
 * Data: a fixed subset of ../shared/data/nih-malaria-cells-128 (team-only; the test skips without it):
 * 256 training images, 128 per class (every k-th file of each class in the folder's order), resized to
 * 32 px (64 px for a model whose input rules refuse 32) and normalised with the subset's channel
 * statistics. Training: the kit's Trainer (the step `npm run train` runs), Adam, batch 16 in a seeded
 * shuffled order, so 16 steps, with the cpu recipe's schedule shape as in its first epoch: a linear warm-up,
 * here to 3e-4 (from scratch on 16 steps, a peak of 1e-3 or no warm-up makes the first Adam steps overshoot
 * for ResNet-18, MobileOne, ConvNeXt-T and ViT: the loss is then higher after the epoch than before).
 * Mamba-family baselines warm up to 1e-4 instead, the learning rate MedMamba's own training script uses
 * (Adam 1e-4): at 3e-4 medmamba-t's loss over the subset rises (0.937 → 0.963), at 1e-4 it falls (→ 0.453).
 * The model is at its registry defaults (full size) with numClasses 2 and imageSize = the size, as
 * `npm run train --recipe cpu` builds it, with dropPathRate 0.
 * Check: the mean cross-entropy over the 256 images (class-mixed chunks of 64, batch statistics, BatchNorm
 * state restored) is lower after the epoch than before it, and every step's loss is finite. The subset
 * keeps the file within ~5 minutes on two cores for the ten baselines.
 *
 * Models: every registered model outside the microscopic-mamba family (its own training tests are
 * test/models.train.test.ts and test/train.*.test.ts), or the comma-separated names in MSM_ZOO_TRAIN
 * (e.g. MSM_ZOO_TRAIN=microscopic-mamba-t as a smoke check of the test itself).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { openDataset } from '../lib/data/dataset';
import { decodeImage } from '../lib/data/decode';
import { sharedDataDir } from '../lib/data/paths';
import { resizeBilinear } from '../lib/data/resample';
import { type ClassifierModel, createModel, listModels, modelMeta } from '../lib/models/index';
import { crossEntropy } from '../lib/train/loss';
import { createOptimizer } from '../lib/train/optim';
import { namedTrainable, Trainer, type TrainBatch } from '../lib/train/trainer';
import { Rng } from '../lib/util/random';

const TRAIN_IMAGES = 256;
const BATCH = 16;
const LR = 3e-4;
/** Peak learning rate by family where the reference trains with a lower one (see the header). */
const FAMILY_LR: Record<string, number> = { mamba: 1e-4 };
/**
 * Models trained here at 64 px although they accept 32: MobileOne-s0 at 32 px (1×1 maps in its last two stages)
 * has an ill-conditioned gradient at initialisation — wasm and cpu float32 gradients differ by up to 50 % on some
 * of its tensors, with the old kernels as with the fused ones — so whether 16 warm-up steps lower its loss
 * depended on rounding (0.791 → 0.738 with one set of kernels, → 0.798 with another; at 1e-4 or 1e-3 just as
 * mixed). At 64 px both sets lowered it (0.750 → 0.729 / 0.724).
 */
const TEST_SIZE: Record<string, number> = { 'mobileone-s0': 64 };

const shared = sharedDataDir();
const MALARIA = shared ? path.join(shared, 'nih-malaria-cells-128') : undefined;
const noData = MALARIA && fs.existsSync(MALARIA) ? undefined : '../shared/data/nih-malaria-cells-128 is absent';

const requested = process.env.MSM_ZOO_TRAIN?.split(',').filter(Boolean);
const MODELS = requested ?? listModels().flatMap((m) => (m.family === 'microscopic-mamba' ? [] : [m.name]));
const noModels = MODELS.length === 0 ? 'no baseline is registered (MSM_ZOO_TRAIN=NAME selects one)' : undefined;

let tmp: string;
/** The subset's files and labels, in a fixed order. */
let subset: Array<{ path: string; label: number }> = [];
/** Decoded, resized and normalised subset per size: x [n, s, s, 3] (float32, NHWC), labels [n]. */
const bySize = new Map<number, { x: Float32Array; y: Int32Array }>();

before(async () => {
  await initBackend('wasm', { quiet: true });
  if (noData || noModels) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-zoo-train-'));
  const ds = await openDataset({ kind: 'folder', root: MALARIA!, cacheDir: tmp });
  const refs = ds.samples('train');
  const perClass = TRAIN_IMAGES / ds.info.classes.length;
  subset = ds.info.classes.flatMap((_, c) => {
    const of = refs.filter((r) => r.label === c);
    const step = Math.floor(of.length / perClass);
    return Array.from({ length: perClass }, (_, i) => ({ path: of[i * step].path, label: c }));
  });
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function imagesAt(size: number): Promise<{ x: Float32Array; y: Int32Array }> {
  const cached = bySize.get(size);
  if (cached) return cached;
  const n = subset.length;
  const x = new Float32Array(n * size * size * 3);
  for (let i = 0; i < n; i++) {
    const img = resizeBilinear(await decodeImage(subset[i].path), size, size);
    for (let j = 0; j < size * size * 3; j++) x[i * size * size * 3 + j] = img.data[j] / 255;
  }
  // Per-channel mean and std of the subset (the kit's 'dataset' normalisation, on these images).
  for (let c = 0; c < 3; c++) {
    let sum = 0;
    let sq = 0;
    for (let j = c; j < x.length; j += 3) {
      sum += x[j];
      sq += x[j] * x[j];
    }
    const count = x.length / 3;
    const mean = sum / count;
    const std = Math.sqrt(Math.max(sq / count - mean * mean, 1e-12));
    for (let j = c; j < x.length; j += 3) x[j] = (x[j] - mean) / std;
  }
  const data = { x, y: Int32Array.from(subset.map((s) => s.label)) };
  bySize.set(size, data);
  return data;
}

/** 0..n−1 in a seeded random order (Fisher–Yates). */
function shuffled(n: number, rng: Rng): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The images `idx` of a decoded subset as a batch. */
function batchOf(data: { x: Float32Array; y: Int32Array }, idx: number[], size: number): TrainBatch {
  const pixels = size * size * 3;
  const xb = new Float32Array(idx.length * pixels);
  idx.forEach((k, i) => xb.set(data.x.subarray(k * pixels, (k + 1) * pixels), i * pixels));
  return {
    x: tf.tensor4d(xb, [idx.length, size, size, 3]),
    y: tf.tensor1d(
      Int32Array.from(idx, (k) => data.y[k]),
      'int32',
    ),
  };
}

/**
 * Mean cross-entropy over the whole subset at the current weights, in shuffled (class-mixed) chunks of 64
 * with batch statistics (training mode, no dropout or drop path: the models are built with rate 0), as the
 * epoch's steps see it. BatchNorm's running statistics, which a training-mode pass updates, are restored.
 */
function subsetLoss(model: ClassifierModel, data: { x: Float32Array; y: Int32Array }, size: number): number {
  const saved = model.namedBuffers().map(([, b]) => [b, b.clone()] as const);
  const order = shuffled(data.y.length, new Rng(3));
  let sum = 0;
  for (let start = 0; start < order.length; start += 64) {
    const idx = order.slice(start, start + 64);
    sum += tf.tidy(() => {
      const { x, y } = batchOf(data, idx, size);
      return crossEntropy(model.forward(x, { training: true, rng: new Rng(0) }), y).dataSync()[0] * idx.length;
    });
  }
  for (const [b, copy] of saved) {
    b.assign(copy);
    copy.dispose();
  }
  return sum / data.y.length;
}

/** Build `name` for 32 px, or 64 px when its input rules refuse 32 (or TEST_SIZE says so). */
function buildForSmallInput(name: string): { model: ClassifierModel; size: number } {
  for (const size of TEST_SIZE[name] ? [TEST_SIZE[name]] : [32, 64]) {
    const model = createModel(name, { numClasses: 2, seed: 0, imageSize: size, dropPathRate: 0 });
    try {
      model.checkInput([BATCH, size, size, 3], 'float32');
      return { model, size };
    } catch (e) {
      model.dispose();
      if (size === 64) throw e;
    }
  }
  throw new Error('unreachable');
}

for (const name of MODELS.length ? MODELS : ['(none)']) {
  test(
    `${name}: one epoch on ${TRAIN_IMAGES} malaria cells lowers the training loss`,
    { skip: noData ?? noModels },
    async () => {
      const before = tf.memory().numTensors;
      const { model, size } = buildForSmallInput(name);
      const { x, y } = await imagesAt(size);
      const steps = TRAIN_IMAGES / BATCH;
      const lr = FAMILY_LR[modelMeta(name).family] ?? LR;
      // The cpu recipe's schedule shape, as its first epoch: a linear warm-up over this epoch (of 12).
      const optimizer = createOptimizer(namedTrainable(model), { lr });
      const trainer = new Trainer(model, optimizer, {
        lr,
        schedule: { stepsPerEpoch: steps, epochs: 12, warmupEpochs: 1 },
        rng: new Rng(1),
      });
      const order = shuffled(TRAIN_IMAGES, new Rng(2));
      const losses: number[] = [];
      const t0 = performance.now();
      let initial = NaN;
      let final = NaN;
      try {
        initial = subsetLoss(model, { x, y }, size);
        for (let s = 0; s < steps; s++) {
          const batch = batchOf({ x, y }, order.slice(s * BATCH, (s + 1) * BATCH), size);
          try {
            losses.push(trainer.trainStep(batch, s).loss);
          } finally {
            tf.dispose([batch.x, batch.y]);
          }
        }
        final = subsetLoss(model, { x, y }, size);
      } finally {
        optimizer.dispose();
        model.dispose();
      }
      const seconds = (performance.now() - t0) / 1000;
      const summary =
        `${name} at ${size} px: loss over the ${TRAIN_IMAGES} images ${initial.toFixed(3)} → ${final.toFixed(3)} ` +
        `after one epoch, ${seconds.toFixed(1)} s; step losses ${losses.map((l) => l.toFixed(3)).join(', ')}`;
      console.log(summary);
      assert.ok(
        losses.every((l) => Number.isFinite(l)),
        `non-finite loss: ${summary}`,
      );
      assert.ok(final < initial, summary);
      assert.equal(tf.memory().numTensors, before, 'tensors leaked by building, training or disposing');
    },
  );
}
