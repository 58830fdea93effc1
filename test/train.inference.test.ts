/**
 * The inference set-up of evaluate/predict (lib/train/evaluate.ts `prepareInference`, lib/train/memory.ts
 * `planInferenceBatch`): the largest batch under the memory limit, the cap, a clear error when one image does
 * not fit, and the swap to the inference form (the training form disposed, logits kept).
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { createModel } from '../lib/models/index';
import { prepareInference, type LoadedModel } from '../lib/train/evaluate';
import { inferenceHeapEstimate, linearPeak, planInferenceBatch, probeForward } from '../lib/train/memory';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const SMALL = { widths: [4, 8, 8, 8], depths: [1, 1, 1, 1], numClasses: 3 };
const SIZE = 64;

test('planInferenceBatch: the largest batch under the limit, the cap, and a clear error when nothing fits', () => {
  const model = createModel('resnet18', SMALL);
  try {
    const line = linearPeak(probeForward(model, SIZE, 1), probeForward(model, SIZE, 2));
    const modelBytes =
      model.namedParameters().reduce((s, [, p]) => s + p.variable.size * 4, 0) +
      model.namedBuffers().reduce((s, [, b]) => s + b.size * 4, 0);
    const roomy = planInferenceBatch(model, SIZE, 'wasm', { max: 64 });
    assert.equal(roomy.batch, 64, 'the wasm heap holds 64 small images: the cap');
    assert.match(roomy.reason, /most asked for \(64\)/);
    // A limit at which, by the probe's line, about 10 images fit under the 10 % headroom (the planner probes
    // again, so allow a few images either way), and a larger one that fits more.
    const at = (m: number) => inferenceHeapEstimate(modelBytes, SIZE, line, m);
    const limitMb = Math.ceil(at(10) / 0.9 / 2 ** 20);
    const tight = planInferenceBatch(model, SIZE, 'wasm', { max: 256, memoryLimitMb: limitMb });
    assert.ok(tight.batch >= 2 && tight.batch <= 30, `batch ${tight.batch} near 10 at ${limitMb} MiB`);
    assert.ok(tight.estimate <= limitMb * 2 ** 20 * 0.9, 'the chosen batch stays under the budget');
    const looser = planInferenceBatch(model, SIZE, 'wasm', { max: 256, memoryLimitMb: 2 * limitMb });
    assert.ok(looser.batch > tight.batch, `twice the memory, a larger batch (${looser.batch} > ${tight.batch})`);
    assert.throws(
      () => planInferenceBatch(model, SIZE, 'wasm', { memoryLimitMb: 1 }),
      /out of memory before inference: one 64-px image needs/,
    );
    assert.equal(planInferenceBatch(model, SIZE, 'webgpu', { fallback: 48 }).batch, 48, 'no known limit: the fallback');
  } finally {
    model.dispose();
  }
});

test('prepareInference: the inference form replaces the training form (same logits), batch as given or planned', () => {
  const before = tf.memory().numTensors;
  const training = createModel('resnet18', SMALL);
  training.eval();
  const x = tf.tensor4d(new Rng(1).fillNormal(2 * SIZE * SIZE * 3), [2, SIZE, SIZE, 3]);
  const want = training.forward(x, { training: false });
  const loaded: LoadedModel = {
    model: training,
    modelName: 'resnet18',
    classes: ['a', 'b', 'c'],
    imageSize: SIZE,
    normalization: { mean: [0, 0, 0], std: [1, 1, 1], source: 'none' },
    weights: 'in memory',
  };
  const given = prepareInference(loaded, { batchSize: 5 });
  try {
    assert.equal(given.folded, true);
    assert.equal(given.batch, 5);
    assert.match(given.reason, /inference form \(BatchNorm folded\); batch 5 \(--batch-size\)/);
    assert.notEqual(loaded.model, training, 'the loaded model is now the inference form');
    assert.equal(loaded.model.isInferenceForm, true);
    assert.throws(
      () => training.stateDict().get('bn1.weight')!.dataSync(),
      /disposed/,
      'the training form is disposed',
    );
    const got = loaded.model.forward(x, { training: false });
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(got, want))).dataSync()[0] / tf.max(tf.abs(want)).dataSync()[0]);
    assert.ok(d <= 1e-5, `relative |Δ| = ${d}`);
    got.dispose();
    const planned = prepareInference(loaded, { maxBatch: 7 }); // already an inference form: not folded again
    assert.equal(planned.folded, false);
    assert.equal(planned.batch, 7);
    assert.equal(loaded.inference, planned);
  } finally {
    loaded.model.dispose();
    tf.dispose([x, want]);
  }
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});
