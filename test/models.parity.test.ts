/**
 * Parity with the official PyTorch model: the fixture `official-t-64px-2cls` (official weights moved off
 * their initial values, an NHWC input batch and the eval-mode logits PyTorch computed, see its README)
 * must be reproduced to max abs diff ≤ 1e-4 on wasm and cpu. Also: strict loading lists every bad key,
 * and export → import is lossless (the exported file holds the fixture's tensors bit for bit).
 * The webgpu check is models.parity-webgpu.test.ts.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { createModel, loadWeights, saveWeights } from '../lib/models/index';
import { readSafetensors, StateDictError, writeSafetensors } from '../lib/nn/index';

const FIXTURE = path.resolve(
  process.env.MSM_SHARED ?? path.resolve(__dirname, '../../shared'),
  'fixtures/official-t-64px-2cls',
);
const WEIGHTS = path.join(FIXTURE, 'weights.safetensors');

function readF32(file: string): Float32Array {
  const buf = fs.readFileSync(path.join(FIXTURE, file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** Official logits vs ours on the active backend; returns the max abs difference. */
function fixtureDiff(): number {
  const model = createModel('microscopic-mamba-t', { numClasses: 2 });
  loadWeights(model, WEIGHTS, { from: 'pytorch' });
  model.eval();
  const expected = readF32('logits.f32'); // [2, 2]
  const x = tf.tensor4d(readF32('input_nhwc.f32'), [2, 64, 64, 3]);
  const before = tf.memory().numTensors;
  const logits = model.forward(x);
  assert.deepEqual(logits.shape, [2, 2]);
  const got = logits.dataSync();
  logits.dispose();
  assert.equal(tf.memory().numTensors, before, 'forward leaks no tensors');
  x.dispose();
  model.dispose();
  return Math.max(...Array.from(got, (v, i) => Math.abs(v - expected[i])));
}

test('official logits reproduced on wasm (max abs diff ≤ 1e-4)', async (t) => {
  await initBackend('wasm', { quiet: true });
  const diff = fixtureDiff();
  t.diagnostic(`wasm max abs diff ${diff.toExponential(2)}`);
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
});

test('official logits reproduced on cpu (max abs diff ≤ 1e-4)', async (t) => {
  await initBackend('cpu', { quiet: true });
  const diff = fixtureDiff();
  t.diagnostic(`cpu max abs diff ${diff.toExponential(2)}`);
  assert.ok(diff <= 1e-4, `max abs diff ${diff}`);
  await initBackend('wasm', { quiet: true });
});

test('strict loading lists every missing, unexpected and mis-shaped key, with the file', async () => {
  await initBackend('wasm', { quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-weights-'));
  const { tensors } = readSafetensors(WEIGHTS);
  tensors.get('layers.0.blocks.0.pvm_layer.mamba.A_logs')!.dispose();
  tensors.delete('layers.0.blocks.0.pvm_layer.mamba.A_logs');
  tensors.set('layers.0.blocks.0.pvm_layer.extra.weight', tf.zeros([3]));
  tensors.get('head.weight')!.dispose();
  tensors.set('head.weight', tf.zeros([5, 768]));
  const bad = path.join(dir, 'bad.safetensors');
  writeSafetensors(bad, tensors);
  for (const v of tensors.values()) v.dispose();
  const model = createModel('microscopic-mamba-t', { numClasses: 2 });
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
  assert.deepEqual(error.mismatched, [{ key: 'head.weight', expected: [2, 768], got: [5, 768] }]);
  assert.match(error.message, /bad\.safetensors/);
  assert.match(error.message, /missing key: layers\.0\.blocks\.0\.pvm_layer\.mamba\.A_logs/);
  assert.match(error.message, /unexpected key: layers\.0\.blocks\.0\.pvm_layer\.extra\.weight/);
  assert.match(error.message, /head\.weight: model expects \[2, 768\], got \[5, 768\]/);
  assert.equal(tf.memory().numTensors, before, 'the file tensors are released on failure');
  assert.deepEqual(Array.from(model.stateDict().get('head.weight')!.dataSync()), head, 'nothing was assigned');
  assert.throws(() => loadWeights(model, path.join(dir, 'absent.safetensors')), /absent\.safetensors/);
  model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('export → import gives identical logits; the exported file equals the official state dict', async () => {
  await initBackend('wasm', { quiet: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-weights-'));
  const a = createModel('microscopic-mamba-t', { numClasses: 2 });
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
  const b = createModel('microscopic-mamba-t', { numClasses: 2, seed: 7 });
  loadWeights(b, out);
  const x = tf.tensor4d(readF32('input_nhwc.f32'), [2, 64, 64, 3]);
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
