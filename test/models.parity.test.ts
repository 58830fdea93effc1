/**
 * Parity with the official PyTorch model. The in-repo fixture (test/fixtures/parity/microscopic-mamba-dims32-64:
 * the official `VSSM` at dims 32-64, depths 1-2, its state moved off its initial values, an NHWC input batch
 * and the eval-mode logits PyTorch computed; scripts/fixtures/make-microscopic-mamba-fixtures.py) must be
 * reproduced to max abs diff ≤ 1e-4 on wasm and cpu. The team's full-size t fixture (../shared/fixtures/
 * official-t-64px-2cls) is the same check at full size when present, and skips with its reason otherwise.
 * Also: strict loading lists every bad key, and export → import is lossless (the exported file holds the
 * fixture's tensors bit for bit). The webgpu check is models.parity-webgpu.test.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { createModel, loadWeights, saveWeights, type ModelOptions } from '../lib/models/index';
import { readSafetensors, StateDictError, writeSafetensors } from '../lib/nn/index';
import { fixtureOptions, MICROSCOPIC_MAMBA_FIXTURE, parityDiff, readF32, sharedFixture } from './parity.helpers';

const FIXTURE = MICROSCOPIC_MAMBA_FIXTURE;
const WEIGHTS = path.join(FIXTURE, 'weights.safetensors');
const OPTIONS = fixtureOptions(FIXTURE); // numClasses 2, dims [32, 64], depths [1, 2], dState 16
const FULL = sharedFixture('official-t-64px-2cls');

/** Official logits vs ours on the active backend; returns the max abs difference. No tensor leaks. */
function fixtureDiff(dir: string, options: ModelOptions): number {
  const model = createModel('microscopic-mamba-t', options);
  const before = tf.memory().numTensors;
  const { diff } = parityDiff(model, dir);
  model.dispose();
  assert.ok(tf.memory().numTensors <= before, 'forward leaks no tensors');
  return diff;
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`official logits reproduced on ${backend}, in-repo reduced fixture (max abs diff ≤ 1e-4)`, async (t) => {
    await initBackend(backend, { quiet: true });
    const diff = fixtureDiff(FIXTURE, OPTIONS);
    t.diagnostic(`${backend} max abs diff ${diff.toExponential(2)}`);
    assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
    await initBackend('wasm', { quiet: true });
  });

  test(
    `official logits reproduced on ${backend}, full-size t (max abs diff ≤ 1e-4)`,
    { skip: FULL.skip },
    async (t) => {
      await initBackend(backend, { quiet: true });
      const diff = fixtureDiff(FULL.dir, { numClasses: 2 });
      t.diagnostic(`${backend} max abs diff ${diff.toExponential(2)}`);
      assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
      await initBackend('wasm', { quiet: true });
    },
  );
}

test('strict loading lists every missing, unexpected and mis-shaped key, with the file', async () => {
  await initBackend('wasm', { quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-weights-'));
  const { tensors } = readSafetensors(WEIGHTS);
  tensors.get('layers.0.blocks.0.pvm_layer.mamba.A_logs')!.dispose();
  tensors.delete('layers.0.blocks.0.pvm_layer.mamba.A_logs');
  tensors.set('layers.0.blocks.0.pvm_layer.extra.weight', tf.zeros([3]));
  tensors.get('head.weight')!.dispose();
  tensors.set('head.weight', tf.zeros([5, 64]));
  const bad = path.join(dir, 'bad.safetensors');
  writeSafetensors(bad, tensors);
  for (const v of tensors.values()) v.dispose();
  const model = createModel('microscopic-mamba-t', OPTIONS);
  const head = Array.from(model.stateDict().get('head.weight')!.dataSync());
  const before = tf.memory().numTensors;
  let error: StateDictError | undefined;
  try {
    loadWeights(model, bad);
  } catch (e) {
    error = e as StateDictError;
  }
  assert.ok(error instanceof StateDictError, 'a StateDictError');
  assert.deepEqual(error.missing, ['layers.0.blocks.0.pvm_layer.mamba.A_logs']);
  assert.deepEqual(error.unexpected, ['layers.0.blocks.0.pvm_layer.extra.weight']);
  assert.deepEqual(error.mismatched, [{ key: 'head.weight', expected: [2, 64], got: [5, 64] }]);
  assert.match(error.message, /bad\.safetensors/);
  assert.match(error.message, /missing key: layers\.0\.blocks\.0\.pvm_layer\.mamba\.A_logs/);
  assert.match(error.message, /unexpected key: layers\.0\.blocks\.0\.pvm_layer\.extra\.weight/);
  assert.match(error.message, /head\.weight: model expects \[2, 64\], got \[5, 64\]/);
  assert.equal(tf.memory().numTensors, before, 'the file tensors are released on failure');
  assert.deepEqual(Array.from(model.stateDict().get('head.weight')!.dataSync()), head, 'nothing was assigned');
  assert.throws(() => loadWeights(model, path.join(dir, 'absent.safetensors')), /absent\.safetensors/);
  model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export → import gives identical logits; the exported file equals the official state dict', async () => {
  await initBackend('wasm', { quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-weights-'));
  const a = createModel('microscopic-mamba-t', OPTIONS);
  loadWeights(a, WEIGHTS);
  const out = path.join(dir, 'roundtrip.safetensors');
  saveWeights(a, out, { note: 'test' });
  // Bit-identical to the official tensors (the BatchNorm step counters are not kept).
  const official = readSafetensors(WEIGHTS).tensors;
  const ours = readSafetensors(out);
  assert.equal(ours.metadata.note, 'test');
  assert.deepEqual(
    [...ours.tensors.keys()].sort(),
    [...official.keys()].filter((k) => !k.endsWith('num_batches_tracked')).sort(),
  );
  for (const [k, t] of ours.tensors) {
    assert.deepEqual(t.shape, official.get(k)!.shape, k);
    assert.deepEqual(t.dataSync(), official.get(k)!.dataSync(), k);
  }
  [...official.values(), ...ours.tensors.values()].forEach((t) => t.dispose());
  // A model with other initial weights, loaded from the export, computes the same logits in both modes.
  const b = createModel('microscopic-mamba-t', { ...OPTIONS, seed: 7 });
  loadWeights(b, out);
  const x = tf.tensor4d(readF32(path.join(FIXTURE, 'input_nhwc.f32')), [2, 64, 64, 3]);
  for (const training of [false, true]) {
    const ya = a.forward(x, { training, rng: { uniform: () => 0.5 } });
    const yb = b.forward(x, { training, rng: { uniform: () => 0.5 } });
    assert.deepEqual(yb.dataSync(), ya.dataSync(), `training=${training}`);
    tf.dispose([ya, yb]);
  }
  x.dispose();
  a.dispose();
  b.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
