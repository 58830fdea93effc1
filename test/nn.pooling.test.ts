/**
 * lib/nn pooling layers and Dropout against PyTorch's definitions, written out as plain loops here:
 * MaxPool2d (padding never wins, floor output size), AvgPool2d (count_include_pad both ways),
 * AdaptiveAvgPool2d (PyTorch's floor/ceil bins, overlapping when the size does not divide), each on wasm
 * and cpu, with gradients; the MACs each reports (ptflops: numel(input); Dropout: none); Dropout's
 * train/eval behaviour and seeding.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { AdaptiveAvgPool2d, AvgPool2d, countMacsWhile, Dropout, Layer, MaxPool2d } from '../lib/nn/index';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

type Window = (o: number, n: number) => [number, number]; // output index → [start, end) rows/cols, unclipped

/** Reference pooling over NHWC `x` with PyTorch's window rule; `reduce` gets the in-image values and the window size. */
function refPool(
  x: Float32Array,
  [b, h, w, c]: number[],
  [oh, ow]: number[],
  rows: Window,
  cols: Window,
  reduce: (vals: number[], windowSize: number) => number,
): Float32Array {
  const out = new Float32Array(b * oh * ow * c);
  for (let n = 0; n < b; n++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++)
        for (let ch = 0; ch < c; ch++) {
          const [r0, r1] = rows(i, h);
          const [c0, c1] = cols(j, w);
          const vals: number[] = [];
          for (let y = Math.max(r0, 0); y < Math.min(r1, h); y++)
            for (let z = Math.max(c0, 0); z < Math.min(c1, w); z++) vals.push(x[((n * h + y) * w + z) * c + ch]);
          out[((n * oh + i) * ow + j) * c + ch] = reduce(vals, (r1 - r0) * (c1 - c0));
        }
  return out;
}

const strided =
  (k: number, s: number, p: number): Window =>
  (o) => [o * s - p, o * s - p + k];
const outSize = (n: number, k: number, s: number, p: number) => Math.floor((n + 2 * p - k) / s) + 1;
const max = (v: number[]) => Math.max(...v);
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Forward on the active backend, and that a gradient flows back to the input. */
function run(layer: Layer, x: Float32Array, shape: number[]): { y: Float32Array; yShape: number[]; gradSum: number } {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, shape as [number, number, number, number]);
    const y = layer.forward(xt);
    const g = tf.grad((z: tf.Tensor) => tf.sum(layer.forward(z)))(xt);
    return { y: y.dataSync() as Float32Array, yShape: y.shape, gradSum: tf.sum(g).dataSync()[0] };
  });
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`pooling layers match PyTorch's definitions on ${backend}`, async () => {
    await initBackend(backend, { quiet: true });
    try {
      // Mostly negative values: a padded zero would win a max if padding were zeros.
      const shape = [2, 7, 6, 3];
      const x = new Rng(1).fillNormal(2 * 7 * 6 * 3, -2, 1);
      const [b, h, w, c] = shape;

      // nn.MaxPool2d(3, 2, 1), ResNet's stem pool: odd and even sides.
      {
        const { y, yShape, gradSum } = run(new MaxPool2d(3, { stride: 2, padding: 1 }), x, shape);
        const o = [outSize(h, 3, 2, 1), outSize(w, 3, 2, 1)];
        assert.deepEqual(yShape, [b, ...o, c]);
        assert.ok(maxDiff(y, refPool(x, shape, o, strided(3, 2, 1), strided(3, 2, 1), max)) === 0, 'MaxPool2d(3,2,1)');
        assert.equal(gradSum, b * o[0] * o[1] * c, 'each output sends its gradient to one input');
      }
      // nn.MaxPool2d(2) (stride = kernel) with a floor: 7 → 3.
      {
        const { y, yShape } = run(new MaxPool2d(2), x, shape);
        assert.deepEqual(yShape, [b, 3, 3, c]);
        assert.equal(maxDiff(y, refPool(x, shape, [3, 3], strided(2, 2, 0), strided(2, 2, 0), max)), 0);
      }
      // nn.AvgPool2d(3, 2, 1): count_include_pad=True divides by 9 everywhere; False by the cells inside.
      for (const countIncludePad of [true, false]) {
        const { y, yShape, gradSum } = run(new AvgPool2d(3, { stride: 2, padding: 1, countIncludePad }), x, shape);
        const o = [outSize(h, 3, 2, 1), outSize(w, 3, 2, 1)];
        assert.deepEqual(yShape, [b, ...o, c]);
        const want = refPool(x, shape, o, strided(3, 2, 1), strided(3, 2, 1), (v, size) =>
          countIncludePad ? sum(v) / size : sum(v) / v.length,
        );
        assert.ok(maxDiff(y, want) < 1e-6, `AvgPool2d countIncludePad=${countIncludePad}: ${maxDiff(y, want)}`);
        assert.ok(Number.isFinite(gradSum));
      }
      // nn.AdaptiveAvgPool2d: global, dividing (6 → 3), and non-dividing (7 → 3, 6 → 4: overlapping bins).
      for (const [oh, ow] of [
        [1, 1],
        [7, 3],
        [3, 4],
      ]) {
        const { y, yShape, gradSum } = run(new AdaptiveAvgPool2d([oh, ow]), x, shape);
        assert.deepEqual(yShape, [b, oh, ow, c]);
        const rule =
          (out: number): Window =>
          (i, n) => [Math.floor((i * n) / out), Math.ceil(((i + 1) * n) / out)];
        const want = refPool(x, shape, [oh, ow], rule(oh), rule(ow), (v) => sum(v) / v.length);
        assert.ok(maxDiff(y, want) < 1e-6, `AdaptiveAvgPool2d(${oh}, ${ow})`);
        assert.ok(Math.abs(gradSum - b * oh * ow * c) < 1e-3, 'each output averages weights summing to 1');
      }
    } finally {
      await initBackend('wasm', { quiet: true });
    }
  });
}

test('pooling layers report numel(input) MACs (ptflops); Dropout reports none', () => {
  const x = tf.zeros([2, 8, 8, 4]);
  const seen: Array<[string, number]> = [];
  countMacsWhile(
    (kind, macs) => seen.push([kind, macs]),
    () => {
      for (const layer of [new MaxPool2d(3, { stride: 2, padding: 1 }), new AvgPool2d(2), new AdaptiveAvgPool2d(1)]) {
        layer.forward(x).dispose();
      }
      new Dropout(0.5).forward(x, { training: true, rng: new Rng(0) }).dispose();
    },
  );
  assert.deepEqual(seen, [
    ['MaxPool2d', 512],
    ['AvgPool2d', 512],
    ['AdaptiveAvgPool2d', 512],
  ]);
  x.dispose();
});

test('Dropout: identity in eval and at p = 0; in training zeros ≈ p and scales survivors by 1/(1−p); seeded', () => {
  const x = tf.ones([4, 50, 50]);
  const drop = new Dropout(0.3);
  const before = tf.memory().numTensors;
  assert.equal(drop.forward(x, { training: false }), x, 'eval: the same tensor');
  assert.equal(new Dropout(0).forward(x, { training: true }), x, 'p = 0: the same tensor');
  const y = drop.forward(x, { training: true, rng: new Rng(4) });
  const v = y.dataSync();
  const zeros = v.filter((e) => e === 0).length / v.length;
  assert.ok(Math.abs(zeros - 0.3) < 0.02, `zero fraction ${zeros}`);
  assert.ok(
    v.every((e) => e === 0 || Math.abs(e - 1 / 0.7) < 1e-6),
    'survivors are scaled by 1/(1−p)',
  );
  const again = drop.forward(x, { training: true, rng: new Rng(4) });
  assert.deepEqual(Array.from(again.dataSync()), Array.from(v), 'same rng seed, same mask');
  const other = drop.forward(x, { training: true, rng: new Rng(5) });
  assert.notDeepEqual(Array.from(other.dataSync()), Array.from(v), 'another seed, another mask');
  tf.dispose([y, again, other]);
  assert.equal(tf.memory().numTensors, before, 'no leaks');
  assert.throws(() => new Dropout(1), /Dropout: p must be in \[0, 1\)/);
  x.dispose();
});

test('pooling options are validated', () => {
  assert.throws(
    () => new MaxPool2d(3, { padding: 2 }),
    /MaxPool2d: padding must be an integer in \[0, kernelSize\/2\]/,
  );
  assert.throws(() => new AvgPool2d(0), /AvgPool2d: kernelSize must be ≥ 1/);
  assert.throws(() => new AdaptiveAvgPool2d(0), /AdaptiveAvgPool2d: outputSize must be positive integers/);
  const x = tf.zeros([2, 3]);
  assert.throws(() => new MaxPool2d(2).forward(x), /MaxPool2d: expected an NHWC map/);
  x.dispose();
});
