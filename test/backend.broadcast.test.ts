/**
 * Add, Multiply and Sub with a broadcast operand on wasm (lib/backend/broadcast.ts): the plan that views
 * the operands as [O, M, I] and [O, 1, I], and bit-identical results to the stock kernels for every
 * covered pattern (bias, per-channel and per-sample scales, scalars, either operand broadcast, odd sizes
 * for the scalar tails), with the uncovered patterns and other dtypes left to the stock kernels.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { broadcastPlan } from '../lib/backend/broadcast';
import { stockWasmKernel } from '../lib/backend/wasm-registry';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const bits = (t: tf.Tensor) => Array.from(new Uint32Array(new Float32Array(t.dataSync()).buffer));

test('broadcastPlan views the full operand as [O, M, I] when the other is [O, 1, I]', () => {
  assert.deepEqual(broadcastPlan([8, 16, 16, 96], [96]), { O: 1, M: 2048, I: 96 }); // a bias
  assert.deepEqual(broadcastPlan([8, 16, 16, 96], [8, 1, 1, 96]), { O: 8, M: 256, I: 96 }); // ECA's scale
  assert.deepEqual(broadcastPlan([8, 16, 16, 96], []), { O: 1, M: 8 * 16 * 16 * 96, I: 1 }); // a scalar
  assert.deepEqual(broadcastPlan([8, 16, 16, 96], [1]), { O: 1, M: 8 * 16 * 16 * 96, I: 1 });
  assert.deepEqual(broadcastPlan([6, 5, 1], [6, 1, 1]), { O: 6, M: 5, I: 1 });
  assert.equal(broadcastPlan([4, 5], [4, 5]), undefined, 'same shapes: the stock kernel is fast');
  assert.equal(broadcastPlan([4, 5, 6], [1, 5, 1]), undefined, 'a kept axis between broadcast ones');
  assert.equal(broadcastPlan([4, 1], [1, 5]), undefined, 'both operands broadcast');
  assert.equal(broadcastPlan([5], [2, 5]), undefined, 'the other operand is larger');
});

test('broadcast Add, Multiply and Sub are bit-identical to the stock wasm kernels', () => {
  const rng = new Rng(5);
  const t = (shape: number[]) => tf.tensor(rng.fillNormal(shape.reduce((p, v) => p * v, 1)), shape);
  // [a shape, b shape]: either operand broadcast, vectors and scalar tails (I = 1, 3, 7, 96), rank 1..5
  const cases: Array<[number[], number[]]> = [
    [[8, 16, 16, 96], [96]],
    [[96], [8, 16, 16, 96]],
    [
      [8, 16, 16, 96],
      [8, 1, 1, 96],
    ],
    [[2, 3, 3, 7], [7]],
    [
      [3, 5, 3],
      [3, 1, 3],
    ],
    [
      [1, 1, 1, 3],
      [4, 2, 2, 3],
    ],
    [[9, 13], []],
    [[], [9, 13]],
    [[9, 13], [1]],
    [
      [6, 5, 1],
      [6, 1, 1],
    ],
    [
      [2, 4, 6, 8, 3],
      [2, 1, 1, 1, 3],
    ],
    [
      [4, 5, 6],
      [1, 5, 1],
    ], // not covered: stock
    [
      [4, 1],
      [1, 5],
    ], // not covered: stock
    [
      [4, 5],
      [4, 5],
    ], // same shapes: stock
  ];
  const kernels: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
    [tf.Add, tf.add],
    [tf.Multiply, tf.mul],
    [tf.Sub, tf.sub],
  ];
  for (const [aShape, bShape] of cases) {
    const [a, b] = [t(aShape), t(bShape)];
    for (const [name, op] of kernels) {
      const ours = op(a, b);
      const stock = stockWasmKernel(name);
      assert.ok(stock, `stock ${name} kept`);
      const ref = tf
        .engine()
        .makeTensorFromTensorInfo(stock({ inputs: { a, b }, backend: tf.backend(), attrs: {} }) as tf.TensorInfo);
      const what = `${name} [${aShape}] with [${bShape}]`;
      assert.deepEqual(ours.shape, ref.shape, what);
      assert.deepEqual(bits(ours), bits(ref), what);
      tf.dispose([ours, ref]);
    }
    tf.dispose([a, b]);
  }
});

test('int32 operands keep the stock kernels', () => {
  const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
  const b = tf.tensor1d([10, 20, 30], 'int32');
  assert.deepEqual(Array.from(tf.add(a, b).dataSync()), [11, 22, 33, 14, 25, 36]);
  assert.deepEqual(Array.from(tf.sub(b, a).dataSync()), [9, 18, 27, 6, 15, 24]);
  assert.equal(tf.mul(a, b).dtype, 'int32');
  tf.dispose([a, b]);
});
