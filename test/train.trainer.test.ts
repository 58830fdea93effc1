/**
 * The training step and the loop on a tiny lib/nn classifier: the step equals a hand-assembled
 * reference (tf.grads + the PyTorch Adam rule + the official schedule), no tensors leak, one seed gives
 * identical runs, a non-finite loss stops without touching the weights, and an in-process stop/resume at a
 * mid-epoch checkpoint reproduces the uninterrupted run exactly (logs, history, weights).
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { Adam } from '../lib/train/optim';
import { crossEntropy } from '../lib/train/loss';
import { lrFactor } from '../lib/train/schedule';
import { namedTrainable, NonFiniteLossError, Trainer } from '../lib/train/trainer';
import { fit, runRngs } from '../lib/train/fit';
import { makeTrainConfig } from '../lib/train/config';
import { readCheckpoint } from '../lib/train/checkpoint';
import { readLog } from '../lib/train/logs';
import { Rng } from '../lib/util/random';
import { TinyNet, ToySource, toyEvalBatches, toyImages } from './helpers/tiny-train';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const S = 4; // image size
const K = 3; // classes

function batchOf(n: number, seed: number) {
  const d = toyImages(n, S, K, seed);
  return { x: tf.tensor4d(d.x, [n, S, S, 3]), y: tf.tensor1d(d.y, 'int32') };
}

test('trainStep = tf.grads of the cross-entropy + PyTorch Adam at the scheduled lr, with label smoothing', () => {
  const schedule = { stepsPerEpoch: 4, epochs: 3, warmupEpochs: 1 };
  const a = new TinyNet(S, K, 1);
  const b = new TinyNet(S, K, 1);
  const optA = new Adam(namedTrainable(a), { lr: 0.01 });
  const trainer = new Trainer(a, optA, { lr: 0.01, schedule, labelSmoothing: 0.1, rng: new Rng(5) });
  const batch = batchOf(6, 2);
  const step = 2;
  const res = trainer.trainStep(batch, step);
  assert.equal(res.lr, 0.01 * lrFactor(step, schedule));

  // Reference: same forward (same DropPath draws), explicit gradients, Adam from a fresh state.
  const varsB = namedTrainable(b).map(([, v]) => v);
  const rngB = new Rng(5);
  const { value, grads } = tf.variableGrads(
    () => crossEntropy(b.forward(batch.x, { training: true, rng: rngB }), batch.y, 0.1),
    varsB,
  );
  assert.ok(Math.abs(value.dataSync()[0] - res.loss) < 1e-6, 'same loss');
  const optB = new Adam(namedTrainable(b), { lr: 0.01 });
  optB.applyGradients(grads, res.lr);
  tf.dispose([value, ...Object.values(grads)]);
  const sa = a.stateDict();
  for (const [key, t] of b.stateDict()) {
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(t, sa.get(key)!))).dataSync()[0]);
    assert.ok(d < 1e-7, `${key} differs by ${d}`); // BatchNorm running stats updated once in both
  }
  tf.dispose([batch.x, batch.y]);
  for (const x of [optA, optB, a, b]) x.dispose();
});

test('train steps leak no tensors, and one seed gives identical losses and weights', () => {
  const run = () => {
    const model = new TinyNet(S, K, 3);
    const opt = new Adam(namedTrainable(model), { lr: 0.01 });
    const trainer = new Trainer(model, opt, {
      lr: 0.01,
      schedule: { stepsPerEpoch: 5, epochs: 2, warmupEpochs: 1 },
      clipGradNorm: 1,
      rng: runRngs(7).dropPath,
    });
    const losses: number[] = [];
    let count = -1;
    for (let s = 0; s < 6; s++) {
      const batch = batchOf(8, 100 + s);
      losses.push(trainer.trainStep(batch, s).loss);
      tf.dispose([batch.x, batch.y]);
      if (s === 0) count = tf.memory().numTensors;
      else assert.equal(tf.memory().numTensors, count, `tensor count changed at step ${s}`);
    }
    const w = Array.from(model.head.weight.dataSync());
    opt.dispose();
    model.dispose();
    return { losses, w };
  };
  const r1 = run();
  const r2 = run();
  assert.deepEqual(r1, r2);
  assert.ok(r1.losses.every(Number.isFinite));
});

test('a non-finite loss throws NonFiniteLossError naming epoch/batch/step and leaves the weights untouched', () => {
  const model = new TinyNet(S, K, 4);
  const opt = new Adam(namedTrainable(model), { lr: 0.01 });
  const trainer = new Trainer(model, opt, {
    lr: 0.01,
    schedule: { stepsPerEpoch: 5, epochs: 2, warmupEpochs: 0 },
    rng: new Rng(1),
  });
  model.head.bias!.assign(tf.tensor1d([NaN, 0, 0]));
  const before = model.stateDict({ layout: 'pytorch' });
  const count = tf.memory().numTensors;
  const batch = batchOf(4, 9);
  assert.throws(
    () => trainer.trainStep(batch, 6, { epoch: 1, batch: 1 }),
    (e: unknown) =>
      e instanceof NonFiniteLossError && /loss is NaN at epoch 2, batch 2 \(optimizer step 7\)/.test(e.message),
  );
  tf.dispose([batch.x, batch.y]);
  assert.equal(tf.memory().numTensors, count, 'no tensors leak on the error path');
  assert.equal(opt.step, 0);
  for (const [key, t] of model.stateDict({ layout: 'pytorch' })) {
    if (key.startsWith('bn.running')) continue; // the forward pass ran in training mode
    assert.deepEqual(Array.from(t.dataSync()), Array.from(before.get(key)!.dataSync()), key);
    t.dispose();
  }
  for (const t of before.values()) t.dispose();
  opt.dispose();
  model.dispose();
});

function tmpRun(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `msm-train-${tag}-`));
}

async function fitToy(runDir: string, over: Parameters<typeof makeTrainConfig>[0] = {}, resume = false) {
  const config = makeTrainConfig({
    epochs: 3,
    warmupEpochs: 1,
    batchSize: 8,
    lr: 0.02,
    seed: 11,
    patience: 0,
    ckptEvery: 2,
    ...over,
  });
  const trainData = toyImages(44, S, K, 1); // 6 batches per epoch, the last one partial (4)
  const valData = toyImages(21, S, K, 2);
  const model = new TinyNet(S, K, config.seed);
  const result = await fit({
    runDir,
    config,
    model,
    modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
    train: new ToySource(trainData, S, config.batchSize, config.seed),
    val: () => toyEvalBatches(valData, S, 16),
    resume: resume ? readCheckpoint(runDir) : undefined,
    progress: { mode: 'off' },
  });
  const weights = Array.from(model.head.weight.dataSync());
  model.dispose();
  return { result, weights };
}

const stripTimes = (lines: object[]) =>
  lines.map((l) => {
    const { time: _t, seconds: _s, images_per_s: _i, ...rest } = l as Record<string, unknown>;
    return rest;
  });

test('fit: stopping at a mid-epoch checkpoint and resuming reproduces the uninterrupted run', async () => {
  const full = tmpRun('full');
  const split = tmpRun('split');
  const count = tf.memory().numTensors;
  const a = await fitToy(full);
  assert.equal(tf.memory().numTensors, count, 'fit leaks no tensors');
  assert.equal(a.result.status, 'finished');
  assert.equal(a.result.history.length, 3);

  const first = await fitToy(split, { maxSteps: 9 }); // stops inside epoch 2 (after batch 3 of 6)
  assert.equal(first.result.status, 'max-steps');
  const ck = readCheckpoint(split)!;
  assert.deepEqual(ck.position, { epoch: 1, batch: 3, step: 9 });
  assert.ok(ck.epochSums.seen === 24);
  const b = await fitToy(split, {}, true);

  assert.deepEqual(b.weights, a.weights);
  const noSeconds = (h: object[]) => h.map((r) => ({ ...r, seconds: 0 }));
  assert.deepEqual(noSeconds(b.result.history), noSeconds(a.result.history));
  const logA = readLog(path.join(full, 'log.jsonl')).filter((l) => l.type !== 'event');
  const logB = readLog(path.join(split, 'log.jsonl')).filter((l) => l.type !== 'event');
  assert.deepEqual(stripTimes(logB), stripTimes(logA));
  assert.equal(logA.filter((l) => l.type === 'step').length, 18);
  const csv = fs.readFileSync(path.join(split, 'epochs.csv'), 'utf8').trim().split('\n');
  assert.equal(csv.length, 4, 'header + 3 epochs');
  assert.ok(fs.existsSync(path.join(split, 'checkpoints', 'best.safetensors')));
  // Only the step files last.json points to are kept.
  const files = fs.readdirSync(path.join(split, 'checkpoints')).filter((f) => f.startsWith('step-'));
  assert.deepEqual(files.sort(), [readCheckpoint(split)!.weights, readCheckpoint(split)!.optimizerFile].sort());
});

test('fit: early stopping watches its own metric, the best checkpoint another, both logged', async () => {
  const dir = tmpRun('es');
  // With min-delta 10 no later epoch can improve val loss by enough, so patience 2 stops after epoch 3.
  const { result } = await fitToy(dir, {
    epochs: 8,
    patience: 2,
    minDelta: 10,
    earlyStopMetric: 'val_loss',
    bestMetric: 'val_acc',
  });
  assert.equal(result.status, 'early-stopped');
  assert.deepEqual(
    result.history.map((r) => r.early_stop_bad_epochs),
    [0, 1, 2],
  );
  assert.equal(result.earlyStop.epoch, 0);
  assert.equal(readCheckpoint(dir)!.status, 'early-stopped');
  const bestEpochs = result.history.filter((r) => r.best).map((r) => r.epoch);
  assert.equal(bestEpochs[bestEpochs.length - 1], result.best.epoch);
  const bestAcc = Math.max(...result.history.map((r) => r.val_acc));
  assert.equal(result.best.value, bestAcc);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoints', 'best.json'), 'utf8'));
  assert.equal(json.metric, 'val_acc');
  assert.equal(json.epoch, result.best.epoch);
});

test('fit: a NaN loss mid-run stops with a clear error, logs it, and keeps the last good checkpoint', async () => {
  const dir = tmpRun('nan');
  const config = makeTrainConfig({
    epochs: 3,
    warmupEpochs: 1,
    batchSize: 8,
    lr: 0.02,
    seed: 11,
    patience: 0,
    ckptEvery: 2,
  });
  const trainData = toyImages(44, S, K, 1);
  const source = new ToySource(trainData, S, 8, 11);
  const poisoned: typeof source = Object.create(source);
  // Batch 3 of epoch 2 (optimizer step 10) carries a NaN pixel.
  poisoned.batches = function* (epoch: number, start: number) {
    let b = start;
    for (const batch of source.batches(epoch, start)) {
      if (epoch === 1 && b === 3) {
        const x = batch.x;
        batch.x = tf.tidy(() => tf.mul(x, tf.scalar(NaN)) as tf.Tensor4D);
        x.dispose();
      }
      b++;
      yield batch;
    }
  };
  const model = new TinyNet(S, K, 11);
  const count = tf.memory().numTensors;
  await assert.rejects(
    fit({
      runDir: dir,
      config,
      model,
      modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
      train: poisoned,
      val: () => toyEvalBatches(toyImages(9, S, K, 2), S, 16),
      progress: { mode: 'off' },
    }),
    (e: unknown) =>
      e instanceof NonFiniteLossError && /epoch 2, batch 4 \(optimizer step 10\)/.test((e as Error).message),
  );
  assert.equal(tf.memory().numTensors, count, 'nothing leaks when fit fails');
  model.dispose();
  const ck = readCheckpoint(dir)!;
  assert.deepEqual(ck.position, { epoch: 1, batch: 2, step: 8 }, 'the last checkpoint before the bad step');
  const events = readLog(path.join(dir, 'log.jsonl')).filter((l) => l.type === 'event');
  assert.ok(events.some((l) => (l as { event: string }).event === 'diverged'));
});
