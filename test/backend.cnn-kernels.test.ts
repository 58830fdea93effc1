/**
 * The CNN training kernels on wasm against what they replaced (MSM_CNN_KERNELS=off in the same
 * process), the cpu backend and finite differences:
 *   Conv2DBackpropFilter / Conv2DBackpropInput as im2col/col2im + GEMM (lib/backend/conv-gemm.ts):
 *     gradients ≤ 1e-5 relative to the composites (another summation order), ≤ 1e-4 to cpu;
 *   Conv2D with a filter of ≥ 1 Mi weights the same way: ≤ 1e-5 relative to XNNPACK;
 *   MaxPoolGrad in SIMD (lib/backend/max-pool-grad-heap.ts): bit-identical to the JS loop;
 * and every one of them bit-identical when run twice (same inputs, one thread).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { convGemmAvailable } from '../lib/backend/conv-gemm';
import { maxPoolGradHeapAvailable } from '../lib/backend/max-pool-grad-heap';
import {
  assertClose,
  assertFiniteDifference,
  assertNoLeak,
  evalGrads,
  type GradResult,
  gradsOn,
  normal,
  setupBackends,
} from './backend.helpers';

before(async () => {
  await setupBackends();
  // Otherwise every comparison below would compare the fallbacks with themselves.
  assert.ok(convGemmAvailable(), 'im2col / GEMM kernels reachable on the wasm heap');
  assert.ok(maxPoolGradHeapAvailable(), 'SIMD MaxPoolGrad reachable on the wasm heap');
});
after(() => {
  delete process.env.MSM_CNN_KERNELS;
});

/** Runs `f` with the CNN kernels on (true) or set aside for the ones they replaced (false). */
function withKernels<T>(on: boolean, f: () => T): T {
  const saved = process.env.MSM_CNN_KERNELS;
  process.env.MSM_CNN_KERNELS = on ? '' : 'off';
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.MSM_CNN_KERNELS;
    else process.env.MSM_CNN_KERNELS = saved;
  }
}

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0;

function assertRepeatable(a: GradResult, b: GradResult, label: string): void {
  assert.ok(sameBits(a.y, b.y), `${label}: forward differs between two runs`);
  a.grads.forEach((g, i) => assert.ok(sameBits(g, b.grads[i]), `${label}: gradient ${i} differs between two runs`));
}

type Pad = 'same' | 'valid' | number;
/** [x shape, filter shape, stride, padding]: odd sizes, strides 1-3, 1×1 to 7×7, every padding kind. */
const CONV_CASES: Array<[number[], number[], number | [number, number], Pad]> = [
  [[2, 7, 9, 5], [3, 3, 5, 6], 1, 'same'],
  [[2, 7, 9, 5], [3, 3, 5, 6], 2, 'same'],
  [[2, 8, 8, 5], [3, 3, 5, 6], 2, 'same'],
  [[2, 7, 9, 5], [3, 2, 5, 6], 2, 'valid'], // leftover rows / cols that no window reads
  [[2, 9, 11, 3], [7, 7, 3, 8], 2, 3], // ResNet's stem: explicit padding
  [[2, 6, 6, 4], [1, 1, 4, 7], 1, 'valid'], // pointwise: no im2col copy
  [[2, 7, 7, 4], [1, 1, 4, 7], 2, 'valid'], // strided 1×1 (ResNet's downsample)
  [[2, 5, 5, 16], [3, 3, 16, 12], 1, 1],
  [[1, 4, 4, 17], [4, 4, 17, 3], 3, 'same'],
  [[2, 9, 7, 6], [3, 5, 6, 4], [2, 1], 'same'], // unequal strides and filter sides
];

const conv = (s: number | [number, number], pad: Pad) => (x: tf.Tensor, f: tf.Tensor) =>
  tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, pad);

test('Conv2D gradients as im2col + GEMM match the composites they replace (≤ 1e-5) and cpu (≤ 1e-4)', async () => {
  for (const [xs, fs, s, pad] of CONV_CASES) {
    const label = `conv2d x ${JSON.stringify(xs)} filter ${JSON.stringify(fs)} stride ${JSON.stringify(s)} pad ${pad}`;
    const inputs = [normal(xs, 1), normal(fs, 2)];
    const cpu = await gradsOn('cpu', conv(s, pad), inputs, [0, 1]);
    await tf.setBackend('wasm');
    const previous = withKernels(false, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    const ours = withKernels(true, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    const again = withKernels(true, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    ours.grads.forEach((g, i) => {
      assertClose(g, previous.grads[i], `${label}: gradient ${i} vs composite`, 1e-5);
      assertClose(g, cpu.grads[i], `${label}: gradient ${i} vs cpu`, 1e-4);
    });
    assertRepeatable(ours, again, label);
  }
});

test('Conv2D gradients pass a finite-difference check on wasm (stride 2, padded and valid)', async () => {
  await tf.setBackend('wasm');
  for (const [xs, fs, s, pad] of [CONV_CASES[1], CONV_CASES[3], CONV_CASES[6]]) {
    withKernels(true, () =>
      assertFiniteDifference(conv(s, pad), [normal(xs, 3), normal(fs, 4)], [0, 1], `conv2d fd ${JSON.stringify(xs)}`),
    );
  }
});

test('Conv2D gradient kernels leave no tensors or heap blocks behind', async () => {
  await tf.setBackend('wasm');
  const x = tf.tensor4d(normal([2, 9, 11, 3], 5).values as Float32Array, [2, 9, 11, 3]);
  const f = tf.tensor4d(normal([7, 7, 3, 8], 6).values as Float32Array, [7, 7, 3, 8]);
  const blocks = () => tf.engine().backend.numDataIds(); // scratch (patch matrices, Wᵀ) must be freed
  const before = blocks();
  await assertNoLeak('conv2d grads', () =>
    withKernels(true, () =>
      tf.tidy(() =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 3)))([x, f]),
      ),
    ).forEach((t) => t.dispose()),
  );
  assert.equal(blocks(), before, 'heap blocks left behind');
  tf.dispose([x, f]);
});

test('Conv2D with a large filter (im2col + GEMM) matches XNNPACK (≤ 1e-5) and cpu, forward and gradients', async () => {
  const cases: Array<[number[], number[], number, Pad]> = [
    [[2, 3, 5, 512], [3, 3, 512, 256], 1, 'same'], // 1.18 Mi weights
    [[2, 5, 4, 512], [3, 3, 512, 256], 2, 'valid'],
    [[3, 2, 2, 1024], [1, 1, 1024, 1024], 1, 'valid'], // pointwise: no im2col copy
  ];
  for (const [xs, fs, s, pad] of cases) {
    const label = `large conv2d x ${JSON.stringify(xs)} filter ${JSON.stringify(fs)} stride ${s} ${pad}`;
    const inputs = [normal(xs, 31), normal(fs, 32, 0.05)];
    const cpu = await gradsOn('cpu', conv(s, pad), inputs, [0, 1]);
    await tf.setBackend('wasm');
    const stock = withKernels(false, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    const ours = withKernels(true, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    const again = withKernels(true, () => evalGrads(conv(s, pad), inputs, [0, 1]));
    assertClose(ours.y, stock.y, `${label}: forward vs XNNPACK`, 1e-5);
    assertClose(ours.y, cpu.y, `${label}: forward vs cpu`, 1e-5);
    ours.grads.forEach((g, i) => assertClose(g, cpu.grads[i], `${label}: gradient ${i} vs cpu`, 1e-4));
    assertRepeatable(ours, again, label);
  }
});

test('MaxPoolGrad in SIMD is bit-identical to the JS loop, ties and all-negative windows included', async () => {
  await tf.setBackend('wasm');
  const cases: Array<[number[], number, number, Pad]> = [
    [[2, 9, 11, 6], 3, 2, 'same'],
    [[2, 9, 11, 5], 3, 2, 'valid'],
    [[1, 8, 8, 7], 2, 2, 'valid'],
    [[2, 7, 7, 9], 3, 1, 1],
    [[2, 16, 16, 8], 3, 2, 'same'],
  ];
  for (const [xs, k, s, pad] of cases) {
    const x = normal(xs, 8).values as Float32Array;
    for (let i = 0; i < x.length; i += 7) x[i] = -Math.abs(x[i]) - 1; // all-negative windows
    for (let i = 0; i < x.length; i += 5) x[i] = 0.25; // ties: the first one wins
    const pool = (t: tf.Tensor) => tf.maxPool(t as tf.Tensor4D, k, s, pad);
    const run = (on: boolean) =>
      withKernels(on, () => evalGrads(pool, [{ shape: xs, values: x, dtype: 'float32' }], [0]));
    const [previous, ours, again] = [run(false), run(true), run(true)];
    const label = `maxPool ${JSON.stringify(xs)} k${k} s${s} ${pad}`;
    assert.ok(sameBits(ours.grads[0], previous.grads[0]), `${label}: differs from the JS loop`);
    assertRepeatable(ours, again, label);
  }
});
