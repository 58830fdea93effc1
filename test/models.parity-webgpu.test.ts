/**
 * Parity with the official PyTorch logits on the webgpu backend (≤ 1e-3). On a CPU-only machine webgpu
 * runs on Mesa llvmpipe: about a minute here (most of it compiling shaders), so it has its own file.
 * Skip it with MSM_TEST_WEBGPU=0; it is also skipped, with the reason, when no WebGPU adapter exists.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { createModel, loadWeights } from '../lib/models/index';

const FIXTURE = path.resolve(
  process.env.MSM_SHARED ?? path.resolve(__dirname, '../../shared'),
  'fixtures/official-t-64px-2cls',
);

function readF32(file: string): Float32Array {
  const buf = fs.readFileSync(path.join(FIXTURE, file));
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

test('official logits reproduced on webgpu (max abs diff ≤ 1e-3)', async (t) => {
  if (process.env.MSM_TEST_WEBGPU === '0') {
    t.skip('MSM_TEST_WEBGPU=0');
    return;
  }
  try {
    await initBackend('webgpu', { quiet: true });
  } catch (e) {
    t.skip(`webgpu unavailable: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const model = createModel('microscopic-mamba-t', { numClasses: 2 });
  loadWeights(model, path.join(FIXTURE, 'weights.safetensors'));
  model.eval();
  const x = tf.tensor4d(readF32('input_nhwc.f32'), [2, 64, 64, 3]);
  const logits = model.forward(x);
  const got = await logits.data();
  const expected = readF32('logits.f32');
  const diff = Math.max(...Array.from(got, (v, i) => Math.abs(v - expected[i])));
  t.diagnostic(`webgpu max abs diff ${diff.toExponential(2)}`);
  assert.ok(diff <= 1e-3, `max abs diff ${diff}`);
  tf.dispose([x, logits]);
  model.dispose();
});
