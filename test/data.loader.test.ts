/**
 * The loader on a small synthetic set: batch shapes and dtypes, normalisation (the train split, unaugmented,
 * has mean 0 and std 1 per channel exactly, because the statistics cover exactly those pixels), determinism
 * given (seed, epoch), exact mid-epoch resume, random access to batches, class-balanced sampling on an
 * imbalanced copy, and no tensor leaks.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { openDataset, type PreparedDataset } from '../lib/data/dataset';
import type { Batch, DataLoader } from '../lib/data/loader';

let tmp: string;
let data: PreparedDataset;

before(async () => {
  await initBackend('cpu', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-loader-'));
  const ds = await openDataset({
    kind: 'synthetic',
    root: tmp,
    numClasses: 3,
    size: 32,
    perClass: { train: 10, val: 4, test: 3 },
    seed: 5,
    cacheDir: path.join(tmp, 'cache'),
  });
  data = await ds.prepare({ size: 24, progress: false });
});
after(() => {
  data.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function collect(loader: DataLoader, epoch: number, startBatch = 0) {
  const out: Array<{ x: Float32Array; y: number[]; indices: number[]; batch: number }> = [];
  for await (const b of loader.epoch(epoch, { startBatch })) {
    out.push({ x: b.x.dataSync() as Float32Array, y: Array.from(b.y), indices: Array.from(b.indices), batch: b.batch });
    b.dispose();
  }
  return out;
}

test('batches: NHWC float32 x, Int32Array y, indices, one-hot helper', async () => {
  const loader = data.loader('train', { batchSize: 8, seed: 1 });
  assert.equal(loader.length, 30);
  assert.equal(loader.numBatches, 4);
  const before = tf.memory().numTensors;
  const sizes: number[] = [];
  for await (const b of loader.epoch(0)) {
    assert.equal(b.x.dtype, 'float32');
    assert.deepEqual(b.x.shape.slice(1), [24, 24, 3]);
    assert.ok(b.y instanceof Int32Array);
    sizes.push(b.y.length);
    b.indices.forEach((i, k) => assert.equal(b.y[k], data.labels('train')[i]));
    const oh = b.oneHot();
    assert.deepEqual(oh.shape, [b.y.length, 3]);
    assert.deepEqual(Array.from(tf.tidy(() => oh.argMax(-1).dataSync())), Array.from(b.y));
    tf.dispose([oh, b.labels()]);
    b.dispose();
  }
  assert.deepEqual(sizes, [8, 8, 8, 6]);
  assert.equal(data.loader('train', { batchSize: 8, dropLast: true }).numBatches, 3);
  assert.equal(tf.memory().numTensors, before);
});

test('eval loader: sample order, cached pixels normalised with the train statistics', async () => {
  const loader = data.loader('val', { batchSize: 5 });
  const batches = await collect(loader, 0);
  assert.deepEqual(
    batches.flatMap((b) => b.indices),
    Array.from({ length: 12 }, (_, i) => i),
  );
  const { mean, std } = data.stats;
  const img = await data.image('val', 7);
  const x = batches[1].x; // sample 7 = second item of batch 1
  const per = 24 * 24 * 3;
  for (const p of [0, 100, 1000, per - 1]) {
    const c = p % 3;
    assert.ok(Math.abs(x[per * 2 + p] - (img.data[p] / 255 - mean[c]) / std[c]) < 1e-5);
  }
});

test('normalised train split without augmentation has per-channel mean 0 and std 1', async () => {
  const loader = data.loader('train', { batchSize: 7, augment: false, shuffle: false });
  const sum = [0, 0, 0];
  const sq = [0, 0, 0];
  let n = 0;
  for (const b of await collect(loader, 0)) {
    for (let i = 0; i < b.x.length; i++) {
      sum[i % 3] += b.x[i];
      sq[i % 3] += b.x[i] * b.x[i];
    }
    n += b.x.length / 3;
  }
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(sum[c] / n) < 1e-4, `mean ${sum[c] / n}`);
    assert.ok(Math.abs(Math.sqrt(sq[c] / n) - 1) < 1e-4, `std ${Math.sqrt(sq[c] / n)}`);
  }
});

test('deterministic given (seed, epoch); epochs and seeds differ; augmentation is on for train', async () => {
  const a = await collect(data.loader('train', { batchSize: 8, seed: 9 }), 2);
  const b = await collect(data.loader('train', { batchSize: 8, seed: 9, prefetch: 0 }), 2);
  assert.deepEqual(a, b);
  const otherEpoch = await collect(data.loader('train', { batchSize: 8, seed: 9 }), 3);
  assert.notDeepEqual(otherEpoch[0].indices, a[0].indices);
  const otherSeed = await collect(data.loader('train', { batchSize: 8, seed: 10 }), 2);
  assert.notDeepEqual(otherSeed[0].indices, a[0].indices);
  // Same order without augmentation gives different pixels: RandomResizedCrop is applied by default.
  const plain = await collect(data.loader('train', { batchSize: 8, seed: 9, augment: false }), 2);
  assert.deepEqual(plain[0].indices, a[0].indices);
  assert.notDeepEqual(plain[0].x, a[0].x);
});

test('resume mid-epoch reproduces the uninterrupted run exactly; batch(e, b) is random access', async () => {
  const opts = { batchSize: 4, seed: 3, augment: { randomResizedCrop: true, hflip: true, rotate90: true } };
  const full = await collect(data.loader('train', opts), 1);
  const resumed = await collect(data.loader('train', opts), 1, 5);
  assert.deepEqual(resumed, full.slice(5));
  const loader = data.loader('train', opts);
  const b6: Batch = await loader.batch(1, 6);
  assert.deepEqual(b6.x.dataSync(), full[6].x);
  b6.dispose();
  assert.deepEqual(loader.after({ epoch: 1, batch: 6 }), { epoch: 1, batch: 7 });
  assert.deepEqual(loader.after({ epoch: 1, batch: loader.numBatches - 1 }), { epoch: 2, batch: 0 });
  // Stopping early leaves no tensors behind (prefetched batches are host memory only).
  const before = tf.memory().numTensors;
  for await (const b of loader.epoch(0)) {
    b.dispose();
    break;
  }
  assert.equal(tf.memory().numTensors, before);
});

test('class-balanced sampling evens out an imbalanced split', async () => {
  // Imbalanced copy: keep 10 / 3 / 1 training images of the three classes.
  const src = path.join(tmp, 'synthetic-microscopy-3cls-32px-seed5');
  const root = path.join(tmp, 'imbalanced');
  fs.cpSync(src, root, { recursive: true });
  const keep = [10, 3, 1];
  ['uninfected', 'ring-stage', 'trophozoite'].forEach((cls, k) => {
    const d = path.join(root, 'train', cls);
    fs.readdirSync(d)
      .sort()
      .slice(keep[k])
      .forEach((f) => fs.rmSync(path.join(d, f)));
  });
  const ds = await openDataset({ kind: 'folder', root, cacheDir: path.join(tmp, 'cache') });
  assert.equal(ds.info.synthetic, true);
  const p = await ds.prepare({ size: 16, progress: false });
  const plain = p.loader('train', { batchSize: 14 });
  assert.deepEqual(plain.classCounts(), [10, 3, 1]);
  assert.match(plain.report(), /trophozoite\s+1\s+7\.1%/);
  const balanced = p.loader('train', { batchSize: 50, balanced: true, samplesPerEpoch: 3000, seed: 1, augment: false });
  const seen = [0, 0, 0];
  for (const i of balanced.order(0)) seen[p.labels('train')[i]]++;
  // Each class has probability 1/3: with 3000 draws, ±4.5 sd is ±116.
  seen.forEach((n) => assert.ok(Math.abs(n - 1000) < 116, `class draws ${seen}`));
  assert.deepEqual(balanced.order(0), balanced.order(0));
  assert.notDeepEqual(balanced.order(0), balanced.order(1));
  p.close();
});
