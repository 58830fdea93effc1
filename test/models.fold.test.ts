/**
 * Inference forms (lib/nn/fold.ts, lib/models/inference.ts): for every registered model at its reduced
 * configuration, with every parameter and BatchNorm statistic moved off its initial value,
 *   - the inference form's eval logits equal the training form's within 1e-5 relative (max |Δ| / max |y|),
 *   - no conv → BN pair of a Sequential is left unfolded, and it has fewer BatchNorms,
 *   - the training form's parameters and buffers are bit-for-bit unchanged (it trains on),
 *   - the inference form says it is one (`isInferenceForm`) and is not folded again,
 *   - no tensor leaks.
 * Models without an inference form must have no BatchNorm at all (ConvNeXt and ViT use LayerNorm, which
 * normalises each position with its own statistics: nothing to fold), so no foldable model is missed.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { type ClassifierModel, createModel, inferenceForm, listModels } from '../lib/models/index';
import {
  BatchNorm2d,
  Conv2d,
  foldBatchNormIntoConv,
  Identity,
  Module,
  sequentialConvBatchNormPairs,
  Sequential,
} from '../lib/nn/index';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const CLASSES = 3;
const BATCH = 2;
const RELATIVE = 1e-5;

/** Move every parameter and buffer off its initial value (running_var kept positive). */
function perturb(model: Module, seed: number): void {
  const rng = new Rng(seed);
  const vars = [...model.namedParameters().map(([, p]) => p.variable), ...model.namedBuffers().map(([, b]) => b)];
  for (const v of vars) {
    tf.tidy(() => {
      const noise = tf.tensor(rng.fillNormal(v.size, 0, 0.05), v.shape);
      v.assign(v.name.includes('running_var') ? tf.add(tf.abs(tf.add(v, noise)), 0.5) : tf.add(v, noise));
    });
  }
}

function snapshot(model: Module): Map<string, Float32Array> {
  return new Map([...model.stateDict()].map(([k, t]) => [k, t.dataSync().slice() as Float32Array]));
}

function batchNorms(model: Module): number {
  return model.namedModules().filter(([, m]) => m instanceof BatchNorm2d).length;
}

/** max |a − b| / max |b|. */
function relativeDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / tf.max(tf.abs(b)).dataSync()[0]);
}

test('foldBatchNormIntoConv: dense (with and without bias) and depthwise with multiplier, ≤ 1e-5 relative', () => {
  const before = tf.memory().numTensors;
  const rng = new Rng(3);
  for (const [conv, label] of [
    [new Conv2d(4, 6, 3, { padding: 1, bias: false, rng }), 'dense 3×3, no bias'],
    [new Conv2d(4, 6, 1, { rng }), 'pointwise with bias'],
    [new Conv2d(4, 8, 3, { stride: 2, padding: 1, groups: 4, rng }), 'depthwise ×2, stride 2'],
  ] as Array<[Conv2d, string]>) {
    const bn = new BatchNorm2d(conv.outChannels);
    perturb(bn, 5);
    bn.eval();
    const folded = foldBatchNormIntoConv(conv, bn);
    tf.tidy(() => {
      const x = tf.tensor4d(new Rng(7).fillNormal(2 * 9 * 9 * 4), [2, 9, 9, 4]);
      const want = bn.forward(conv.forward(x), { training: false });
      const d = relativeDiff(folded.forward(x), want);
      assert.ok(d <= RELATIVE, `${label}: relative |folded − conv→bn| = ${d}`);
    });
    assert.ok(folded.bias, `${label}: the folded conv has a bias`);
    for (const m of [conv, bn, folded]) m.dispose();
  }
  assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
});

test('Module.replaceChild swaps the registry entry and the field (Sequential: its layer list)', () => {
  const seq = new Sequential(new Conv2d(2, 2, 1, { rng: new Rng(0) }), new BatchNorm2d(2));
  const old = seq.replaceChild('1', new Identity());
  assert.ok(old instanceof BatchNorm2d);
  assert.ok(seq.at(1) instanceof Identity, 'forward sees the new child');
  assert.deepEqual(
    seq.namedParameters().map(([k]) => k),
    ['0.weight', '0.bias'],
    'the BN parameters are gone from the state dict',
  );
  assert.throws(() => seq.replaceChild('7', new Identity()), /has no child '7'/);
  old.dispose();
  seq.dispose();
});

for (const meta of listModels()) {
  const { name } = meta;
  const small = meta.reducedConfig ?? {
    options: {},
    size: meta.input.fixedSize ?? Math.max(32, meta.input.minSize ?? 32),
  };

  test(`${name}: inference form equals the eval forward (≤ ${RELATIVE} relative), training form unchanged`, (t) => {
    const before = tf.memory().numTensors;
    const model: ClassifierModel = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1 });
    try {
      if (typeof model.fusedForInference !== 'function') {
        assert.equal(batchNorms(model), 0, `${name} has BatchNorm but no fusedForInference()`);
        const same = inferenceForm(model);
        assert.equal(same.model, model, 'without an inference form the model itself runs');
        assert.equal(same.fused, false);
        t.diagnostic(`${name}: no BatchNorm (LayerNorm only): nothing to fold`);
        return;
      }
      perturb(model, 12);
      model.eval();
      const x = tf.tensor4d(new Rng(13).fillNormal(BATCH * small.size * small.size * 3), [
        BATCH,
        small.size,
        small.size,
        3,
      ]);
      const want = model.forward(x, { training: false });
      const params = snapshot(model);
      const { model: fused, fused: isFused } = inferenceForm(model);
      try {
        assert.ok(isFused);
        assert.notEqual(fused, model, 'the inference form is a new model');
        assert.equal(fused.training, false, 'returned in eval mode');
        assert.equal(fused.isInferenceForm, true, 'the inference form says so');
        assert.equal(inferenceForm(fused).model, fused, 'an inference form is run as it is (no second fold)');
        assert.throws(() => fused.fusedForInference!(), /already/, 'and is not folded again');
        const got = fused.forward(x, { training: false });
        const d = relativeDiff(got, want);
        got.dispose();
        t.diagnostic(`${name}: relative |fused − eval forward| = ${d.toExponential(2)}`);
        assert.ok(d <= RELATIVE, `${name}: relative |fused − eval forward| = ${d}`);
        assert.deepEqual(sequentialConvBatchNormPairs(fused), [], 'no conv → BN pair of a Sequential is left');
        assert.ok(
          batchNorms(fused) < batchNorms(model),
          `fewer BatchNorms (${batchNorms(fused)} < ${batchNorms(model)})`,
        );
        // The training form: same keys, same values, bit for bit; its forward is what it was.
        const after = snapshot(model);
        assert.deepEqual([...after.keys()], [...params.keys()]);
        for (const [k, v] of params) assert.deepEqual(after.get(k), v, `${k} unchanged`);
        const again = model.forward(x, { training: false });
        assert.equal(relativeDiff(again, want), 0, 'the training form gives the same logits as before');
        again.dispose();
      } finally {
        fused.dispose();
        tf.dispose([x, want]);
      }
    } finally {
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, before, `${name}: tensors leaked`);
  });
}
