/**
 * The ViT and MedMamba baselines (docs/architecture.md §Baselines): vit-tiny, medmamba-t, medmamba-s.
 *
 * - parity: the official definitions (baseline_other/Transformer/Vit.py, baseline_other/mamba/medmamba.py)
 *   at reduced size, fixtures written by scripts/fixtures/make-vit-mamba-fixtures.py, reproduced on wasm
 *   and cpu to ≤ 1e-4 (or 20× the reference's own float32-vs-float64 spread where that is larger, ≤ 2e-3);
 * - full-size parameter counts at 2 and 1000 classes equal the table in docs/architecture.md §Baselines (and
 * ModelMeta.referenceParams);
 * - gradients reach every trainable parameter (small sizes, training mode);
 * - forwardHead(forwardFeatures(x)) equals forward(x); stage taps; input and option errors;
 * - attention reports its q·kᵀ and attn·v MACs as 'extra'.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { countParameters, countMacsWhile } from '../lib/nn/index';
import { createModel, listModels, type ClassifierModel, type ModelOptions } from '../lib/models/index';
import { Rng } from '../lib/util/random';
import { parityDiff, PARITY_DIR, readParityMeta } from './parity.helpers';

/** fixture folder → the registry name that builds it. */
const FIXTURES: Record<string, string> = {
  'vit-tiny-r32p8': 'vit-tiny',
  'vit-tiny-mean-h1': 'vit-tiny',
  'medmamba-t-r8': 'medmamba-t',
};

/** Small configurations for the gradient and split checks (every block type and branch present). */
const SMALL: Array<{ name: string; opts: ModelOptions; size: [number, number] }> = [
  {
    name: 'vit-tiny',
    opts: { imageSize: 16, patchSize: 4, dim: 16, depth: 2, heads: 2, dimHead: 8, mlpDim: 32 },
    size: [16, 16],
  },
  {
    name: 'vit-tiny',
    opts: { imageSize: 8, patchSize: 4, dim: 8, depth: 1, heads: 1, dimHead: 8, mlpDim: 16, pool: 'mean' },
    size: [8, 8],
  },
  { name: 'medmamba-t', opts: { dims: [8, 16], depths: [1, 1], dState: 4 }, size: [32, 32] },
  { name: 'medmamba-s', opts: { dims: [8, 16, 32, 64], depths: [1, 1, 1, 1], dState: 2 }, size: [32, 64] },
];

function input(b: number, h: number, w: number, seed = 1): tf.Tensor4D {
  return tf.tensor4d(new Rng(seed).fillNormal(b * h * w * 3), [b, h, w, 3]);
}

function fixtureModel(dir: string): ClassifierModel {
  const meta = readParityMeta(path.join(PARITY_DIR, dir));
  return createModel(FIXTURES[dir], { ...(meta.config as ModelOptions), dropPathRate: 0 });
}

for (const backend of ['wasm', 'cpu'] as const) {
  for (const dir of Object.keys(FIXTURES)) {
    test(`${dir}: the official logits reproduced on ${backend}`, async (t) => {
      await initBackend(backend, { quiet: true });
      const model = fixtureModel(dir);
      const before = tf.memory().numTensors;
      const { diff, meta } = parityDiff(model, path.join(PARITY_DIR, dir));
      assert.equal(tf.memory().numTensors, before, 'parity forward leaks no tensors');
      assert.equal(countParameters(model).total, meta.params_total, 'parameter count equals the reference');
      const tolerance = Math.max(1e-4, Math.min(20 * meta.logits_f64_max_abs_diff, 2e-3));
      t.diagnostic(
        `${backend} max |Δlogit| ${diff.toExponential(2)} (reference float64 spread ` +
          `${meta.logits_f64_max_abs_diff.toExponential(2)}, tolerance ${tolerance.toExponential(1)})`,
      );
      assert.ok(diff <= tolerance, `${dir} on ${backend}: max abs logit diff ${diff} > ${tolerance}`);
      model.dispose();
      await initBackend('wasm', { quiet: true });
    });
  }
}

test('full-size parameter counts equal docs/architecture.md §Baselines (training form, dead parameters included)', async () => {
  await initBackend('wasm', { quiet: true });
  const cases: Array<[string, ModelOptions, number]> = [
    ['vit-tiny', { numClasses: 2 }, 5_519_810],
    ['vit-tiny', { numClasses: 1000 }, 5_712_424],
    ['vit-tiny', { numClasses: 2, imageSize: 32, patchSize: 4 }, 5_354_786],
    ['vit-tiny', { numClasses: 1000, imageSize: 32, patchSize: 4 }, 5_547_400],
    ['medmamba-t', { numClasses: 2 }, 14_454_146],
    ['medmamba-t', { numClasses: 1000 }, 15_221_608],
    ['medmamba-s', { numClasses: 2 }, 18_622_082],
    ['medmamba-s', { numClasses: 1000 }, 19_389_544],
  ];
  for (const [name, opts, expected] of cases) {
    const model = createModel(name, opts);
    const count = countParameters(model);
    assert.equal(count.total, expected, `${name} ${JSON.stringify(opts)}`);
    assert.equal(count.used, count.total, `${name}: no dead parameters`);
    model.dispose();
  }
  const listed = new Map(listModels().map((m) => [m.name, m]));
  assert.equal(listed.get('vit-tiny')?.referenceParams, 5_712_424);
  assert.equal(listed.get('medmamba-t')?.referenceParams, 15_221_608);
  assert.equal(listed.get('medmamba-s')?.referenceParams, 19_389_544);
  assert.equal(listed.get('vit-tiny')?.family, 'vit');
  assert.equal(listed.get('medmamba-t')?.family, 'mamba');
});

test('the state-dict keys are the reference names', async () => {
  await initBackend('wasm', { quiet: true });
  for (const dir of Object.keys(FIXTURES)) {
    const model = fixtureModel(dir);
    const meta = readParityMeta(path.join(PARITY_DIR, dir));
    const ours = [...model.stateDict({ layout: 'tfjs' }).keys()].sort();
    assert.deepEqual(ours, Object.keys(meta.state_keys as Record<string, number[]>).sort(), dir);
    model.dispose();
  }
});

test('gradients reach every trainable parameter (small sizes, training mode)', async () => {
  await initBackend('wasm', { quiet: true });
  for (const { name, opts, size } of SMALL) {
    const model = createModel(name, { ...opts, numClasses: 3, dropPathRate: 0 });
    model.train();
    const x = input(2, size[0], size[1]);
    const named = model.namedParameters().filter(([, p]) => p.trainable && !p.dead);
    const { grads, value } = tf.variableGrads(
      () => {
        const logits = model.forward(x, { training: true, rng: new Rng(0) });
        return tf.sum(tf.mul(logits, tf.tensor2d([1, -2, 0.5, 0.3, 1.5, -1], [2, 3]))) as tf.Scalar;
      },
      named.map(([, p]) => p.variable),
    );
    const missing = named.filter(([, p]) => {
      const g = grads[p.variable.name];
      return !g || tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) === 0;
    });
    assert.deepEqual(
      missing.map(([n]) => n),
      [],
      `${name} ${JSON.stringify(opts)}: parameters without gradient`,
    );
    assert.ok(Number.isFinite(value.dataSync()[0]));
    tf.dispose([value, x, ...Object.values(grads)]);
    model.dispose();
  }
});

test('forwardHead(forwardFeatures(x)) equals forward(x); stage taps see every stage in order', async () => {
  await initBackend('wasm', { quiet: true });
  for (const { name, opts, size } of SMALL) {
    const model = createModel(name, { ...opts, numClasses: 2 });
    model.eval();
    const x = input(2, size[0], size[1], 3);
    const seen: Array<[string, number[]]> = [];
    const ctx = { training: false, tap: (stage: string, t: tf.Tensor) => (seen.push([stage, t.shape]), t) };
    const before = tf.memory().numTensors;
    const diff = tf.tidy(() => {
      const features = model.forwardFeatures(x, ctx);
      const split = model.forwardHead(features, ctx);
      return tf.max(tf.abs(tf.sub(split, model.forward(x)))).dataSync()[0];
    });
    assert.equal(tf.memory().numTensors, before, `${name}: no tensor leaks`);
    assert.equal(diff, 0, `${name}: split differs from forward by ${diff}`);
    assert.deepEqual(
      seen.map(([s]) => s),
      [...model.stageNames],
      `${name}: taps in stageNames order`,
    );
    const last = seen[seen.length - 1][1];
    if (name === 'vit-tiny') {
      const tokens = (size[0] / (opts.patchSize as number)) ** 2 + 1;
      assert.deepEqual(last, [2, tokens, opts.dim], 'ViT taps are [b, T, D] tokens');
    } else {
      const dims = opts.dims as number[];
      const f = 4 * 2 ** (dims.length - 1);
      assert.deepEqual(last, [2, size[0] / f, size[1] / f, dims[dims.length - 1]]);
    }
    x.dispose();
    model.dispose();
  }
});

test('attention reports its q·kᵀ and attn·v MACs as extra', async () => {
  await initBackend('wasm', { quiet: true });
  const opts = { numClasses: 2, imageSize: 16, patchSize: 4, dim: 16, depth: 2, heads: 2, dimHead: 8, mlpDim: 32 };
  const model = createModel('vit-tiny', opts);
  const x = input(1, 16, 16);
  const reports: Array<[string, number, string]> = [];
  tf.tidy(() =>
    countMacsWhile(
      (kind, macs, category) => reports.push([kind, macs, category]),
      () => model.forward(x),
    ),
  );
  const attention = reports.filter(([kind]) => kind === 'attention');
  const T = 17; // 16 patches + cls
  assert.equal(attention.length, opts.depth);
  for (const [, macs, category] of attention) {
    assert.equal(category, 'extra');
    assert.equal(macs, 2 * opts.heads * T * T * opts.dimHead);
  }
  x.dispose();
  model.dispose();
});

test('input and option errors are one clear line', async () => {
  await initBackend('wasm', { quiet: true });
  const vit = createModel('vit-tiny', { numClasses: 2, imageSize: 32, patchSize: 4, depth: 1 });
  assert.throws(() => vit.checkInput([1, 64, 64, 3]), /imageSize 32/);
  assert.throws(() => vit.checkInput([1, 32, 32, 1]), /3 input channels/);
  vit.dispose();
  assert.throws(() => createModel('vit-tiny', { imageSize: 30, patchSize: 4 }), /not divisible by patchSize 4/);
  assert.throws(() => createModel('vit-tiny', { pool: 'max' }), /pool must be 'cls' or 'mean'/);
  assert.throws(() => createModel('vit-tiny', { kernel: 3 }), /unknown option\(s\) kernel.*patchSize/);
  const mm = createModel('medmamba-t', { numClasses: 2, dims: [8, 16], depths: [1, 1] });
  assert.throws(() => mm.checkInput([1, 36, 36, 3]), /multiple of 8/);
  mm.checkInput([1, 16, 48, 3]); // any aspect ratio
  mm.dispose();
  assert.throws(() => createModel('medmamba-s', { dims: [8, 24] }), /dims must be/);
});

test('medmamba useCheckpoint recomputes blocks without changing the gradients', async () => {
  await initBackend('wasm', { quiet: true });
  const opts = { numClasses: 2, dims: [8, 16], depths: [1, 1], dState: 2, dropPathRate: 0 };
  const x = input(2, 16, 16, 5);
  const gradsOf = (useCheckpoint: boolean): Float32Array[] => {
    const model = createModel('medmamba-t', { ...opts, useCheckpoint });
    const vars = model.trainableVariables();
    const { grads, value } = tf.variableGrads(
      () => tf.sum(tf.square(model.forward(x, { training: true, rng: new Rng(0) }))) as tf.Scalar,
      vars,
    );
    const out = vars.map((v) => grads[v.name].dataSync() as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
    return out;
  };
  const plain = gradsOf(false);
  const recomputed = gradsOf(true);
  let diff = 0;
  plain.forEach((g, i) => g.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - recomputed[i][j])))));
  assert.ok(diff <= 1e-6, `checkpointed gradients differ by ${diff}`);
  x.dispose();
});
