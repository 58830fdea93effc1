/**
 * Reading parity fixtures (written by scripts/fixtures/fixture_io.py): a reference PyTorch model's
 * weights, an NHWC input batch and the eval-mode logits PyTorch computed for it.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { loadWeights, type ClassifierModel } from '../lib/models/index';

export interface ParityMeta {
  input_shape_nhwc: [number, number, number, number];
  logits_shape: [number, number];
  params_total: number;
  /** Max |logit(float32) − logit(float64)| of the reference itself: the rounding spread. */
  logits_f64_max_abs_diff: number;
  [key: string]: unknown;
}

/** In-repo fixtures live here, one folder each. */
export const PARITY_DIR = path.resolve(__dirname, 'fixtures/parity');

function readF32(file: string): Float32Array {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function readParityMeta(dir: string): ParityMeta {
  return JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as ParityMeta;
}

/**
 * Load the fixture's weights into `model` (PyTorch layouts and names), run it in eval mode on the
 * fixture's input and return the max abs logit difference (and the fixture's meta). No tensor leaks.
 */
export function parityDiff(model: ClassifierModel, dir: string): { diff: number; meta: ParityMeta } {
  const meta = readParityMeta(dir);
  loadWeights(model, path.join(dir, 'weights.safetensors'), { from: 'pytorch' });
  model.eval();
  const expected = readF32(path.join(dir, 'logits.f32'));
  const got = tf.tidy(() => {
    const x = tf.tensor4d(readF32(path.join(dir, 'input_nhwc.f32')), meta.input_shape_nhwc);
    return model.forward(x, { training: false }).dataSync();
  });
  if (got.length !== expected.length) {
    throw new Error(`${dir}: logits have ${got.length} values, the fixture ${expected.length}`);
  }
  let diff = 0;
  for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i] - expected[i]));
  return { diff, meta };
}
