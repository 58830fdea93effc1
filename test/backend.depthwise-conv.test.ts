/**
 * The depthwise conv forward on wasm (lib/backend/depthwise-conv.ts): bit-identical to the stock
 * XNNPACK kernels for DepthwiseConv2dNative and FusedDepthwiseConv2D over filter sizes that take
 * XNNPACK's single-pass (2×2, 3×3, 5×5) and multi-pass kernels, strides, paddings, odd channel counts
 * (the scalar tail and the 4-channel blocks), bias and ReLU, on 1 and 3 heap threads; NaN propagated
 * (which also shows that the kit's kernel runs, not the stock one); and the uncovered cases (channel
 * multiplier 2, dilation, other activations) left to the stock kernels.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { heapThreads, MIN_WORK_PER_SHARE } from '../lib/backend/heap-threads';
import { stockWasmKernel } from '../lib/backend/wasm-registry';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const bits = (t: tf.Tensor | Float32Array) =>
  Array.from(new Uint32Array(new Float32Array(t instanceof Float32Array ? t : t.dataSync()).buffer));
const rng = new Rng(11);
const t = (shape: number[]) => tf.tensor(rng.fillNormal(shape.reduce((p, v) => p * v, 1)), shape);

interface Case {
  x: number[];
  k: [number, number];
  m?: number;
  strides?: number | [number, number];
  pad?: 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
  dilations?: number;
  bias?: boolean;
  activation?: 'linear' | 'relu' | 'elu';
}

const CASES: Case[] = [
  { x: [8, 16, 16, 96], k: [3, 3], bias: true }, // SS2D's conv at 64 px
  { x: [2, 8, 8, 192], k: [3, 3], bias: true, activation: 'relu' },
  { x: [2, 5, 7, 13], k: [3, 3] }, // odd channels: the scalar tail
  { x: [2, 5, 6, 23], k: [3, 3], bias: true, activation: 'relu' }, // 16-, 4- and 1-channel blocks
  { x: [2, 6, 7, 8], k: [2, 2], bias: true },
  { x: [1, 9, 9, 6], k: [5, 5], bias: true, activation: 'relu' },
  { x: [2, 9, 9, 8], k: [7, 7], bias: true }, // ConvNeXt's 7×7: multi-pass, row-major
  { x: [2, 6, 7, 5], k: [4, 4] },
  { x: [2, 6, 7, 8], k: [3, 5], bias: true },
  { x: [2, 6, 7, 8], k: [3, 1] },
  { x: [2, 6, 7, 8], k: [1, 1], bias: true },
  { x: [2, 9, 10, 12], k: [3, 3], strides: 2, bias: true },
  { x: [2, 9, 10, 12], k: [3, 3], strides: [2, 1], pad: 'valid' },
  { x: [2, 9, 10, 12], k: [5, 5], strides: 2, pad: 1, bias: true, activation: 'relu' },
  {
    x: [1, 6, 6, 4],
    k: [3, 3],
    pad: [
      [0, 0],
      [2, 0],
      [0, 1],
      [0, 0],
    ],
  },
  { x: [1, 2, 2, 4], k: [3, 3], bias: true }, // every tap of some pixels padded
  // not covered: the stock kernels run
  { x: [2, 6, 6, 4], k: [3, 3], m: 2 },
  { x: [2, 8, 8, 4], k: [3, 3], dilations: 2 },
  { x: [2, 6, 6, 4], k: [3, 3], bias: true, activation: 'elu' },
];

function inputsOf(c: Case) {
  const x = t(c.x);
  const filter = t([...c.k, c.x[3], c.m ?? 1]);
  const bias = c.bias ? t([c.x[3] * (c.m ?? 1)]) : undefined;
  return { x, filter, bias };
}

function run(c: Case, { x, filter, bias }: ReturnType<typeof inputsOf>, kernel: 'ours' | 'stock'): tf.Tensor {
  const attrs = {
    strides: c.strides ?? 1,
    pad: c.pad ?? 'same',
    dilations: c.dilations ?? 1,
    dataFormat: 'NHWC',
    activation: c.activation ?? 'linear',
  };
  const fused = c.bias || c.activation;
  const name = fused ? 'FusedDepthwiseConv2D' : 'DepthwiseConv2dNative';
  const inputs = fused ? { x, filter, bias } : { x, filter };
  let out: tf.Tensor;
  if (kernel === 'ours')
    out = tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  else {
    const stock = stockWasmKernel(name);
    assert.ok(stock, `stock ${name} kept`);
    out = tf.engine().makeTensorFromTensorInfo(stock({ inputs, backend: tf.backend(), attrs }) as tf.TensorInfo);
  }
  return out;
}

function compareWithStock(cases: Case[]) {
  for (const c of cases) {
    const inputs = inputsOf(c);
    const ours = run(c, inputs, 'ours');
    const ref = run(c, inputs, 'stock');
    const what = JSON.stringify(c);
    assert.deepEqual(ours.shape, ref.shape, what);
    assert.deepEqual(bits(ours), bits(ref), what);
    tf.dispose([ours, ref, ...Object.values(inputs).filter((v) => v !== undefined)]);
  }
}

test('depthwise conv: bit-identical to the stock XNNPACK kernels', () => compareWithStock(CASES));

test('depthwise conv on 3 heap threads (output rows split): still the stock kernels bit for bit', async () => {
  await initBackend('wasm', { threads: 3, quiet: true });
  try {
    assert.equal(heapThreads(), 3);
    const big = CASES.filter((c) => c.x.reduce((p, v) => p * v, 1) * c.k[0] * c.k[1] >= 3 * MIN_WORK_PER_SHARE);
    assert.ok(big.length >= 1, 'a case large enough to be split over 3 shares');
    compareWithStock(CASES);
  } finally {
    await initBackend('wasm', { quiet: true });
  }
});

test('depthwise conv: a NaN input stays NaN (the stock clamp turns it into −∞, or 0 after ReLU)', () => {
  const x = tf.tensor4d([NaN, 1, 2, 3, 4, 5, 6, 7], [1, 2, 1, 4]);
  const filter = tf.tensor4d([1, 1, 1, -1], [1, 1, 4, 1]);
  const plain = tf.depthwiseConv2d(x, filter, 1, 'same');
  const relu = tf.fused.depthwiseConv2d({ x, filter, strides: 1, pad: 'same', activation: 'relu' });
  assert.deepEqual(Array.from(plain.dataSync()), [NaN, 1, 2, -3, 4, 5, 6, -7]);
  assert.deepEqual(Array.from(relu.dataSync()), [NaN, 1, 2, 0, 4, 5, 6, 0]);
  const stock = stockWasmKernel('DepthwiseConv2dNative')!;
  const ref = stock({ inputs: { x, filter }, backend: tf.backend(), attrs: { strides: 1, pad: 'same', dilations: 1 } });
  const refT = tf.engine().makeTensorFromTensorInfo(ref as tf.TensorInfo);
  assert.equal(refT.dataSync()[0], -Infinity, 'the stock behaviour this replaces');
  tf.dispose([x, filter, plain, relu, refT]);
});
