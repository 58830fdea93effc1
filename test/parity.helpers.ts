/**
 * Reading parity fixtures (written by scripts/fixtures/fixture_io.py): a reference PyTorch model's
 * weights, an NHWC input batch and the eval-mode logits PyTorch computed for it.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { sharedRootPath } from '../lib/data/paths';
import { loadWeights, type ClassifierModel, type ModelOptions } from '../lib/models/index';

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

/**
 * The official Microscopic-Mamba (`VSSM`) at reduced width and depth (dims 32-64, depths 1-2, 2 classes,
 * 64 px, batch 2), written by scripts/fixtures/make-microscopic-mamba-fixtures.py. Build the kit's model
 * for it with `createModel('microscopic-mamba-t', fixtureOptions(MICROSCOPIC_MAMBA_FIXTURE))`.
 */
export const MICROSCOPIC_MAMBA_FIXTURE = path.join(PARITY_DIR, 'microscopic-mamba-dims32-64');

/**
 * The team's full-size fixture `name` in the shared folder (`../shared/fixtures/<name>`, or under
 * MSM_SHARED), with a one-line skip reason when it is absent (a clone does not have it).
 */
export function sharedFixture(name: string): { dir: string; skip: string | false } {
  const dir = path.join(sharedRootPath(), 'fixtures', name);
  const present = fs.existsSync(path.join(dir, 'weights.safetensors'));
  return { dir, skip: present ? false : `extra full-size check: shared fixture ${dir} is absent` };
}

/** Float32 little-endian file as a Float32Array. */
export function readF32(file: string): Float32Array {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function readParityMeta(dir: string): ParityMeta {
  return JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as ParityMeta;
}

/** NHWC input shape; the team's older shared fixture records only `batch` and `size`. */
export function inputShape(meta: ParityMeta): [number, number, number, number] {
  if (meta.input_shape_nhwc) return meta.input_shape_nhwc;
  const { batch, size } = meta as { batch?: number; size?: number };
  if (!batch || !size) throw new Error('parity fixture meta.json: no input_shape_nhwc (nor batch and size)');
  return [batch, size, size, 3];
}

/** The model options a fixture was built with (meta.json `config`, e.g. numClasses, dims, depths, dState). */
export function fixtureOptions(dir: string): ModelOptions {
  const { config } = readParityMeta(dir);
  if (!config || typeof config !== 'object') throw new Error(`${dir}/meta.json: no 'config' object`);
  return config as ModelOptions;
}

/** Load the fixture's weights into `model` (PyTorch layouts and names) and run it in eval mode on its input. */
function runFixture(
  model: ClassifierModel,
  dir: string,
): { logits: tf.Tensor; expected: Float32Array; meta: ParityMeta } {
  const meta = readParityMeta(dir);
  loadWeights(model, path.join(dir, 'weights.safetensors'), { from: 'pytorch' });
  model.eval();
  const expected = readF32(path.join(dir, 'logits.f32'));
  const logits = tf.tidy(() => {
    const x = tf.tensor4d(readF32(path.join(dir, 'input_nhwc.f32')), inputShape(meta));
    return model.forward(x, { training: false });
  });
  return { logits, expected, meta };
}

function maxAbsDiff(dir: string, got: ArrayLike<number>, expected: Float32Array): number {
  if (got.length !== expected.length) {
    throw new Error(`${dir}: logits have ${got.length} values, the fixture ${expected.length}`);
  }
  let diff = 0;
  for (let i = 0; i < got.length; i++) diff = Math.max(diff, Math.abs(got[i] - expected[i]));
  return diff;
}

/**
 * Load the fixture's weights into `model` (PyTorch layouts and names), run it in eval mode on the
 * fixture's input and return the max abs logit difference (and the fixture's meta). No tensor leaks.
 */
export function parityDiff(model: ClassifierModel, dir: string): { diff: number; meta: ParityMeta } {
  const { logits, expected, meta } = runFixture(model, dir);
  const got = logits.dataSync();
  logits.dispose();
  return { diff: maxAbsDiff(dir, got, expected), meta };
}

/** parityDiff for backends that read back asynchronously only (webgpu on Node). */
export async function parityDiffAsync(
  model: ClassifierModel,
  dir: string,
): Promise<{ diff: number; meta: ParityMeta }> {
  const { logits, expected, meta } = runFixture(model, dir);
  const got = await logits.data();
  logits.dispose();
  return { diff: maxAbsDiff(dir, got, expected), meta };
}
