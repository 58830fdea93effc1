/**
 * The zoo's RepViT and SwiftFormer ports (docs/architecture.md §Baselines): parity with the official definitions on
 * reduced-width fixtures (scripts/fixtures/make-hybrid-fixtures.py) on wasm and cpu, full-size parameter counts equal
 * to the table in docs/architecture.md §Baselines, RepViT's fused inference form equal to its training form, the
 * features/head split, gradients to every trainable parameter, and the MACs reported by BatchNorm1d and LayerScale.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { countParams, createModel, loadWeights, type ClassifierModel, type ModelOptions } from '../lib/models/index';
import { RepViT } from '../lib/models/repvit/index';
import { BatchNorm1d, countMacsWhile, layerScale } from '../lib/nn/index';
import { Rng } from '../lib/util/random';
import { PARITY_DIR, parityDiff, readParityMeta } from './parity.helpers';

const FIXTURES = ['repvit-m1.0-small', 'repvit-m1.0-small-fused', 'swiftformer-xs-small', 'swiftformer-s-small'];

interface KitMeta {
  model: string;
  options: ModelOptions;
  fused?: boolean;
}

/** The kit model a fixture was made for (its meta.json names registry name and options). */
function modelFor(fixture: string): ClassifierModel {
  const kit = readParityMeta(path.join(PARITY_DIR, fixture)).kit as KitMeta;
  return createModel(kit.model, kit.fused ? { ...kit.options, fused: true } : kit.options);
}

function inputOf(fixture: string, seed = 5): tf.Tensor4D {
  const [b, h, w, c] = readParityMeta(path.join(PARITY_DIR, fixture)).input_shape_nhwc;
  return tf.tensor4d(new Rng(seed).fillNormal(b * h * w * c), [b, h, w, c]);
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

/**
 * Tolerance (docs/contributing.md §Parity fixtures): 1e-4, or 20× the reference's own float32-vs-float64 spread where
 * that is larger (≤ 2e-3).
 */
function tolerance(spread: number): number {
  return Math.min(2e-3, Math.max(1e-4, 20 * spread));
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`parity with the official definitions on ${backend} (reduced-width fixtures)`, async (t) => {
    await initBackend(backend, { quiet: true });
    try {
      for (const fixture of FIXTURES) {
        const model = modelFor(fixture);
        const before = tf.memory().numTensors;
        const { diff, meta } = parityDiff(model, path.join(PARITY_DIR, fixture));
        assert.equal(tf.memory().numTensors, before, `${fixture}: parity run leaks no tensors`);
        const tol = tolerance(meta.logits_f64_max_abs_diff);
        t.diagnostic(
          `${fixture} (${meta.params_total} params): max |Δlogit| ${diff.toExponential(2)} on ${backend}; ` +
            `reference f32-vs-f64 spread ${meta.logits_f64_max_abs_diff.toExponential(2)}; tolerance ${tol}`,
        );
        assert.equal(countParams(model).total, meta.params_total, `${fixture}: parameter count`);
        assert.ok(diff <= tol, `${fixture}: max abs logit diff ${diff} > ${tol} on ${backend}`);
        model.dispose();
      }
    } finally {
      await initBackend('wasm', { quiet: true });
    }
  });
}

test('full-size parameter counts equal docs/architecture.md §Baselines (2 and 1000 classes; RepViT fused too)', async (t) => {
  await initBackend('wasm', { quiet: true });
  const table: Array<[string, number, number]> = [
    ['repvit-m1.0', 6_404_798, 6_852_900],
    ['swiftformer-xs', 3_033_802, 3_254_360],
    ['swiftformer-s', 5_642_578, 5_867_128],
  ];
  for (const [name, at2, at1000] of table) {
    for (const [classes, expected] of [
      [2, at2],
      [1000, at1000],
    ]) {
      const model = createModel(name, { numClasses: classes });
      assert.equal(countParams(model).total, expected, `${name} @${classes}`);
      if (name === 'repvit-m1.0' && classes === 1000) {
        // The reference's fused model (every fuse() applied, make-hybrid-fixtures.py prints it): 6,810,312.
        const fused = (model as RepViT).fusedForInference();
        t.diagnostic(`repvit-m1.0 fused @1000: ${countParams(fused).total}`);
        assert.equal(countParams(fused).total, 6_810_312);
        fused.dispose();
      }
      model.dispose();
    }
  }
});

test('RepViT: fused inference form equals the training form in eval mode (≤ 1e-4)', async (t) => {
  await initBackend('wasm', { quiet: true });
  const fixture = 'repvit-m1.0-small';
  const model = modelFor(fixture) as RepViT;
  loadWeights(model, path.join(PARITY_DIR, fixture, 'weights.safetensors'), { from: 'pytorch' });
  model.eval();
  const tensorsBefore = tf.memory().numTensors;
  const fused = model.fusedForInference();
  assert.equal(fused.training, false, 'the fused model comes in eval mode');
  assert.equal(
    tf.memory().numTensors - tensorsBefore,
    fused.namedParameters().length + fused.namedBuffers().length,
    'fusing allocates only the fused model',
  );
  // Keys are the reference's fused state dict (make-hybrid-fixtures.py saved it beside).
  const fusedKeys = Object.keys(readParityMeta(path.join(PARITY_DIR, `${fixture}-fused`)).state_keys as object).sort();
  assert.deepEqual([...fused.stateDict().keys()].sort(), fusedKeys);
  const x = inputOf(fixture);
  const a = model.forward(x, { training: false });
  const b = fused.forward(x, { training: false });
  const diff = maxAbsDiff(a, b);
  t.diagnostic(
    `fused vs training form: max |Δlogit| ${diff.toExponential(2)} (logit scale ${tf.tidy(() => tf.max(tf.abs(a)).dataSync()[0]).toFixed(3)})`,
  );
  assert.ok(diff <= 1e-4, `fused vs training ${diff}`);
  assert.throws(() => fused.fusedForInference(), /already in its fused inference form/);
  tf.dispose([x, a, b]);
  // The training model is unchanged by fusing.
  const x2 = inputOf(fixture, 6);
  const again = model.forward(x2, { training: false });
  const c = fused.forward(x2, { training: false });
  assert.ok(maxAbsDiff(again, c) <= 1e-4);
  tf.dispose([x2, again, c]);
  fused.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore, 'fuse + forward + dispose leaks nothing');
  model.dispose();
});

test('features/head split equals forward; stage taps see every stage', async () => {
  await initBackend('wasm', { quiet: true });
  for (const fixture of FIXTURES) {
    const model = modelFor(fixture);
    loadWeights(model, path.join(PARITY_DIR, fixture, 'weights.safetensors'), { from: 'pytorch' });
    model.eval();
    const x = inputOf(fixture);
    const seen: string[] = [];
    const whole = model.forward(x, { training: false, tap: (name, t) => (seen.push(name), t) });
    assert.deepEqual(seen, [...model.stageNames], `${fixture}: taps in forward order`);
    const split = tf.tidy(() => model.forwardHead(model.forwardFeatures(x, { training: false }), { training: false }));
    assert.equal(maxAbsDiff(whole, split), 0, `${fixture}: forwardHead(forwardFeatures(x)) = forward(x)`);
    const features = model.forwardFeatures(x, { training: false });
    assert.equal(features.rank, 4, `${fixture}: features are an NHWC map`);
    tf.dispose([x, whole, split, features]);
    model.dispose();
  }
});

test('gradients reach every trainable parameter (small models, training mode)', async () => {
  await initBackend('wasm', { quiet: true });
  // Fixture weights, so RepViT's zero-initialised BN γ does not block its channel mixers' gradients.
  for (const fixture of ['repvit-m1.0-small', 'swiftformer-xs-small', 'swiftformer-s-small']) {
    const model = modelFor(fixture);
    loadWeights(model, path.join(PARITY_DIR, fixture, 'weights.safetensors'), { from: 'pytorch' });
    model.train();
    const x = inputOf(fixture);
    const labels = tf.oneHot(tf.tensor1d([0, 2], 'int32'), model.numClasses);
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(labels, model.forward(x, { training: true, rng: new Rng(1) })) as tf.Scalar,
      model.trainableVariables(),
    );
    const names = new Map(model.namedParameters().map(([name, p]) => [p.variable.name, name]));
    const dead: string[] = [];
    for (const v of model.trainableVariables()) {
      const g = grads[v.name];
      if (!g || tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) === 0) dead.push(names.get(v.name) ?? v.name);
    }
    assert.deepEqual(dead, [], `${fixture}: parameters without gradient`);
    assert.ok(Number.isFinite(value.dataSync()[0]));
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, `${fixture}: a training step leaks no tensors`);
    tf.dispose([x, labels]);
    model.dispose();
  }
});

test('RepViT with dropPathRate drops channel mixers per sample in training only; fused form keeps eval outputs', async () => {
  await initBackend('wasm', { quiet: true });
  const kit = readParityMeta(path.join(PARITY_DIR, 'repvit-m1.0-small')).kit as KitMeta;
  const model = createModel('repvit-m1.0', { ...kit.options, dropPathRate: 0.5 }) as RepViT;
  // Fixture weights: at initialisation every channel mixer outputs 0 (its last BN γ = 0, β = 0), so dropping it would change nothing.
  loadWeights(model, path.join(PARITY_DIR, 'repvit-m1.0-small', 'weights.safetensors'), { from: 'pytorch' });
  const x = inputOf('repvit-m1.0-small');
  const a = model.forward(x, { training: true, rng: new Rng(1) });
  const b = model.forward(x, { training: true, rng: new Rng(2) });
  assert.ok(maxAbsDiff(a, b) > 0, 'different DropPath draws give different training outputs');
  model.eval();
  const e1 = model.forward(x, { training: false });
  const fused = model.fusedForInference();
  const e2 = fused.forward(x, { training: false });
  assert.ok(maxAbsDiff(e1, e2) <= 1e-4);
  tf.dispose([x, a, b, e1, e2]);
  fused.dispose();
  model.dispose();
});

test('dropRate: dropout on the pooled features in training only (both families)', async () => {
  await initBackend('wasm', { quiet: true });
  for (const fixture of ['repvit-m1.0-small', 'swiftformer-xs-small']) {
    const kit = readParityMeta(path.join(PARITY_DIR, fixture)).kit as KitMeta;
    const plain = createModel(kit.model, kit.options);
    const dropped = createModel(kit.model, { ...kit.options, dropRate: 0.5 });
    for (const m of [plain, dropped])
      loadWeights(m, path.join(PARITY_DIR, fixture, 'weights.safetensors'), { from: 'pytorch' });
    const x = inputOf(fixture);
    const evalDiff = tf.tidy(() =>
      maxAbsDiff(plain.forward(x, { training: false }), dropped.forward(x, { training: false })),
    );
    assert.equal(evalDiff, 0, `${fixture}: dropout is the identity in eval mode`);
    plain.eval(); // BN in eval for both, so only the dropout differs in the training-mode pass below
    dropped.eval();
    const ctx = { training: true, rng: new Rng(3) };
    const trainDiff = tf.tidy(() =>
      maxAbsDiff(
        plain.forwardHead(plain.forwardFeatures(x, { training: false }), { training: false }),
        dropped.forwardHead(dropped.forwardFeatures(x, { training: false }), ctx),
      ),
    );
    assert.ok(trainDiff > 0, `${fixture}: dropout changes training-mode logits`);
    x.dispose();
    plain.dispose();
    dropped.dispose();
  }
});

test('BatchNorm1d: PyTorch training statistics and MACs (numel·2); LayerScale reports extra MACs', async () => {
  await initBackend('wasm', { quiet: true });
  const bn = new BatchNorm1d(3);
  const values = [1, 2, 3, 3, 2, 0, 5, 8, -1, -1, 0, 2]; // [4, 3]
  const x = tf.tensor2d(values, [4, 3]);
  const reports: Array<[string, number, string]> = [];
  const y = countMacsWhile(
    (kind, macs, cat) => reports.push([kind, macs, cat]),
    () => bn.forward(x, { training: true }),
  );
  assert.deepEqual(reports, [['BatchNorm1d', 24, 'paper']]);
  const col = (j: number) => [0, 1, 2, 3].map((i) => values[i * 3 + j]);
  const mean = [0, 1, 2].map((j) => col(j).reduce((s, v) => s + v, 0) / 4);
  const varB = [0, 1, 2].map((j) => col(j).reduce((s, v) => s + (v - mean[j]) ** 2, 0) / 4);
  const yv = y.arraySync() as number[][];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 3; j++)
      assert.ok(Math.abs(yv[i][j] - (values[i * 3 + j] - mean[j]) / Math.sqrt(varB[j] + 1e-5)) < 1e-5);
  }
  const rm = bn.runningMean.arraySync() as number[];
  const rv = bn.runningVar.arraySync() as number[];
  for (let j = 0; j < 3; j++) {
    assert.ok(Math.abs(rm[j] - 0.1 * mean[j]) < 1e-6, 'running_mean = 0.9·0 + 0.1·mean');
    assert.ok(Math.abs(rv[j] - (0.9 + 0.1 * ((varB[j] * 4) / 3))) < 1e-5, 'running_var from the unbiased variance');
  }
  assert.throws(() => bn.forward(tf.zeros([1, 3]), { training: true }), /more than 1 value per channel/);
  assert.throws(() => bn.forward(tf.zeros([2, 4])), /expected \[b, 3\]/);
  const gamma = tf.tensor1d([1, 2, 3]);
  const scaled = countMacsWhile(
    (kind, macs, cat) => reports.push([kind, macs, cat]),
    () => layerScale(tf.ones([2, 2, 2, 3]), gamma),
  );
  assert.deepEqual(reports[1], ['LayerScale', 24, 'extra']);
  assert.deepEqual(Array.from(scaled.dataSync().slice(0, 3)), [1, 2, 3]);
  tf.dispose([x, y, gamma, scaled]);
  bn.dispose();
});

test('model-specific options are validated with one clear error', () => {
  assert.throws(() => createModel('repvit-m1.0', { cfgs: [[3, 2, 16, 1, 0, 3]] }), /cfgs\[0\].*stride|1\|2/);
  assert.throws(() => createModel('repvit-m1.0', { cfgs: [] }), /option cfgs must be a non-empty array/);
  assert.throws(() => createModel('repvit-m1.0', { fused: 'yes' }), /option fused must be true or false/);
  assert.throws(
    () => createModel('swiftformer-xs', { layers: [1, 1, 1, 1], embedDims: [8, 16, 24] }),
    /embedDims must be 4 positive integers/,
  );
  assert.throws(() => createModel('swiftformer-s', { layers: [1, 0, 1, 1] }), /option layers must be/);
  assert.throws(() => createModel('swiftformer-s', { vitNum: 0 }), /option vitNum must be/);
});
