/**
 * The selective scan on wasm: every implementation (chunked, fused with the SIMD and the plain-JS
 * engine) against the sequential reference, forward and all seven gradients, over shapes that hit the
 * edge cases (L = 1, L not a multiple of any chunk length, N = 1, δ above the softplus threshold, fast
 * decays, with and without D and b_Δ, one and four groups, B/C as [b, n, l]); gradients against float64
 * finite differences; thread counts; the wasm kernel fixes; no tensor leaks.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { hasFusedScan, resolveScanImpl, selectiveScan } from '../lib/ops/selective-scan/index';
import { stockWasmKernel } from '../lib/backend/wasm-registry';
import { jsEngine, setScanEngine } from '../lib/ops/selective-scan/fused-cpu';
import { simdScanEngine } from '../lib/ops/selective-scan/wasm-simd';
import {
  assertClose,
  assertNoLeak,
  assertSameScan,
  finiteDifferenceGrads,
  makeScanData,
  runScan,
  ScanCase,
} from './ops.scan-helpers';

const CASES: ScanCase[] = [
  { name: 'L=1', b: 2, g: 1, e: 3, l: 1, n: 4 },
  { name: 'g=4, odd n, L=37', b: 2, g: 4, e: 3, l: 37, n: 5, seed: 2 },
  {
    name: 'N=1, L=130 (2 checkpoint chunks + 2), B/C as [b,n,l]',
    b: 1,
    g: 1,
    e: 2,
    l: 130,
    n: 1,
    threeD: true,
    seed: 3,
  },
  {
    name: 'δ > 20, fast decays, no D, no bias',
    b: 2,
    g: 4,
    e: 2,
    l: 70,
    n: 16,
    deltaMean: 25,
    A: 'wide',
    D: false,
    bias: false,
    seed: 4,
  },
  { name: 'n=16, g=4, L=65, bias but no D', b: 3, g: 4, e: 4, l: 65, n: 16, D: false, seed: 5 },
];

before(async () => {
  await initBackend('wasm', { quiet: true });
});
after(() => setScanEngine(undefined));

describe('selective scan on wasm: implementations vs reference', () => {
  test('auto picks the fused kernel on wasm', () => {
    assert.ok(hasFusedScan('wasm'));
    assert.equal(resolveScanImpl('auto'), 'fused');
    assert.ok(simdScanEngine(), 'WebAssembly SIMD engine should be available on Node 20');
  });

  for (const c of CASES) {
    test(c.name, async () => {
      const s = makeScanData(c);
      const ref = await runScan(s, 'reference');
      assertSameScan(await runScan(s, 'chunked'), ref, `${c.name} chunked`);
      setScanEngine(simdScanEngine());
      assertSameScan(await runScan(s, 'fused'), ref, `${c.name} fused (simd)`);
      setScanEngine(jsEngine);
      assertSameScan(await runScan(s, 'fused'), ref, `${c.name} fused (js)`);
      setScanEngine(undefined);
    });
  }

  test('every implementation stays finite where a log-space scan would overflow', async () => {
    // Δ ≈ 25, A down to −32: Σ Δ·A over one chunk is about −10⁴, exp of its negative is +inf in float32.
    const s = makeScanData({ name: 'overflow', b: 1, g: 1, e: 2, l: 40, n: 16, deltaMean: 25, A: 'wide' });
    for (const impl of ['reference', 'chunked', 'fused'] as const) {
      const r = await runScan(s, impl);
      for (const a of [r.y, ...Object.values(r.grads)]) assert.ok(a.every(Number.isFinite), `${impl}: non-finite`);
    }
  });
});

describe('gradients against float64 finite differences', () => {
  const small: ScanCase[] = [
    { name: 'b1 g2 e1 l6 n3', b: 1, g: 2, e: 1, l: 6, n: 3, seed: 11 },
    { name: 'b2 g1 e2 l5 n2, δ around the threshold', b: 2, g: 1, e: 2, l: 5, n: 2, deltaMean: 19.5, seed: 12 },
  ];
  for (const c of small) {
    test(c.name, async () => {
      const s = makeScanData(c);
      const fd = finiteDifferenceGrads(s);
      for (const impl of ['reference', 'chunked', 'fused'] as const) {
        const r = await runScan(s, impl);
        for (const k of Object.keys(fd)) assertClose(r.grads[k], fd[k], `${c.name} ${impl} ∂${k}`, 1e-4);
      }
    });
  }
});

describe('fused kernel details', () => {
  test('1 and 3 threads give the same results', async () => {
    const s = makeScanData({ name: 'threads', b: 5, g: 2, e: 4, l: 50, n: 8, seed: 21 });
    const saved = process.env.MSM_SCAN_THREADS;
    try {
      process.env.MSM_SCAN_THREADS = '1';
      const one = await runScan(s, 'fused');
      process.env.MSM_SCAN_THREADS = '3';
      const three = await runScan(s, 'fused');
      assertSameScan(three, one, 'threads 3 vs 1', 1e-6);
    } finally {
      if (saved === undefined) delete process.env.MSM_SCAN_THREADS;
      else process.env.MSM_SCAN_THREADS = saved;
    }
  });

  test('n above the SIMD kernels (40) falls back to the JS engine and still matches', async () => {
    const s = makeScanData({ name: 'n40', b: 1, g: 1, e: 2, l: 9, n: 40, seed: 22 });
    assertSameScan(await runScan(s, 'fused'), await runScan(s, 'reference'), 'n=40 fused');
  });

  test('no tensor leaks (forward, gradients, all implementations)', async () => {
    const s = makeScanData({ name: 'leak', b: 1, g: 2, e: 2, l: 7, n: 4, seed: 23 });
    for (const impl of ['reference', 'chunked', 'fused'] as const) await assertNoLeak(impl, () => runScan(s, impl));
  });

  test('shape errors name the argument', () => {
    tf.tidy(() => {
      const u = tf.zeros([1, 4, 5]) as tf.Tensor3D;
      const A = tf.zeros([4, 3]) as tf.Tensor2D;
      const bc = tf.zeros([1, 3, 3, 5]);
      assert.throws(() => selectiveScan({ u, delta: u, A, B: bc, C: bc }), /divisible by the 3 groups/);
      assert.throws(
        () => selectiveScan({ u, delta: u, A, B: tf.zeros([1, 3, 6]), C: tf.zeros([1, 3, 5]) }),
        /B has shape \[1, 3, 6\]/,
      );
      assert.throws(
        () => selectiveScan({ u, delta: u, A: tf.zeros([5, 3]) as tf.Tensor2D, B: u, C: u }),
        /A must be \[d, n\]/,
      );
    });
  });
});

describe('wasm Slice / Unpack / SplitV / Identity / Cast / Reverse / Concat / Pack / Tile / Transpose replacements (lib/backend/copies.ts)', () => {
  test('match the cpu backend on strided and contiguous blocks', async () => {
    const x = Float32Array.from({ length: 3 * 4 * 5 * 2 }, (_, i) => i * 0.5 - 7);
    const long = Float32Array.from({ length: 2 * 3 * 70 }, (_, i) => Math.sin(i));
    const ops = (t: tf.Tensor): tf.Tensor[] => [
      tf.slice(t, [1, 0, 2, 0], [2, 4, 3, 2]),
      tf.slice(t, [0, 1, 0, 1], [3, 2, 5, 1]),
      tf.slice(t, [2, 3, 4, 1], [1, 1, 1, 1]),
      ...tf.unstack(t, 1),
      ...tf.unstack(t, 3),
      ...tf.split(t, [1, 3, 1], 2),
      ...tf.split(t, 3, 0),
      tf.reverse(t, 0),
      tf.reverse(t, 1),
      tf.reverse(t, -1),
      tf.reverse(t, [1, 2]), // two axes: the stock kernel
      tf.reverse(t.cast('int32'), 2),
      tf.concat([t, t.mul(2)], 0),
      tf.concat([tf.slice(t, [0, 0, 0, 0], [3, 4, 5, 1]), t, tf.slice(t, [0, 0, 0, 1], [3, 4, 5, 1])], 3),
      tf.concat([t.cast('int32'), t.cast('int32')], 2),
      // bool (1-byte) data: the JS copy path instead of the SIMD heap copy
      tf.reverse(tf.greater(t, 0), 1).cast('float32'),
      tf.slice(tf.greater(t, 0), [1, 1, 0, 0], [2, 2, 5, 1]).cast('float32'),
      tf.concat([tf.greater(t, 0), tf.less(t, 1)], 1).cast('float32'),
      tf.transpose(t, [3, 2, 1, 0]),
      tf.transpose(t, [0, 2, 1, 3]),
      tf.transpose(t, [1, 0, 2, 3]),
      tf.transpose(t, [0, 1, 2, 3]),
      tf.transpose(t.reshape([3, 4, 1, 5, 2]), [2, 4, 0, 3, 1]),
      tf.transpose(t.cast('int32'), [2, 0, 3, 1]),
      tf.transpose(t, [0, 1, 3, 2]), // batched 2-D transposes (4×4 register blocks + ragged edges)
      tf.transpose(t, [1, 0, 3, 2]),
      tf.transpose(t.reshape([12, 10]), [1, 0]),
      tf.transpose(t.reshape([3, 1, 4, 10]), [2, 1, 0, 3]), // size-1 axis dropped, runs of 10
      tf.transpose(tf.greater(t, 0), [0, 2, 1, 3]).cast('float32'), // 1-byte data: the stock kernel
      tf.sum(t, [0, 1, 2]),
      tf.sum(t, 3),
      tf.sum(t, [1, 2], true),
      tf.sum(t, [0, 2]), // not contiguous: the stock kernel
      tf.stack([t, t.mul(2), t.add(1)], 0),
      tf.stack([t, t.mul(2)], 2),
      tf.stack([t, t.mul(2)], -1),
      tf.stack([t.cast('int32'), t.cast('int32')], 1).cast('float32'),
      tf.stack([tf.greater(t, 0), tf.less(t, 1)], 3).cast('float32'),
      tf.cast(t, 'float32'), // same dtype: shared data
      tf.cast(tf.cast(t, 'int32'), 'int32').cast('float32'),
      tf.tile(t, [2, 1, 3, 1]),
      tf.tile(t, [1, 1, 1, 3]),
      tf.tile(t.reshape([120]), [3]),
      tf.tile(t.cast('int32'), [1, 2, 1, 2]).cast('float32'),
      tf.tile(tf.greater(t, 0), [2, 1, 1, 2]).cast('float32'),
      tf.broadcastTo(tf.sum(t, [1, 2], true), [3, 4, 5, 2]), // the gradients of Sum and Mean
      tf.broadcastTo(tf.mean(t, 3, true), [3, 4, 5, 2]),
      tf.broadcastTo(tf.sum(t, 3, true), [3, 4, 5, 11]), // innermost fill: vectors + tail
      tf.broadcastTo(tf.sum(t, [0, 3], true), [3, 4, 5, 6]),
      tf.broadcastTo(tf.reshape(tf.range(0, 2), [1, 1, 1, 2]), [3, 4, 5, 2]),
    ];
    const longOps = (t: tf.Tensor): tf.Tensor[] => [
      tf.reverse(t, 1),
      tf.reverse(t, 0),
      ...tf.split(t, [10, 60], 2),
      tf.concat([t, t], 2),
      tf.transpose(t, [2, 0, 1]),
      tf.transpose(t.reshape([6, 70]), [1, 0]),
      tf.transpose(t.reshape([2, 3, 7, 10]), [0, 1, 3, 2]),
    ];
    const collect = async (backend: string) => {
      await tf.setBackend(backend);
      const outs = tf.tidy(() => [...ops(tf.tensor4d(x, [3, 4, 5, 2])), ...longOps(tf.tensor3d(long, [2, 3, 70]))]);
      const vals = await Promise.all(outs.map(async (o) => ({ shape: o.shape, v: Array.from(await o.data()) })));
      tf.dispose(outs);
      return vals;
    };
    await initBackend('cpu', { quiet: true });
    const want = await collect('cpu');
    await initBackend('wasm', { quiet: true });
    const got = await collect('wasm');
    assert.deepEqual(got, want);
  });

  test('Concat is bit-identical to the stock wasm kernel it replaces', async () => {
    await initBackend('wasm', { quiet: true });
    const stock = stockWasmKernel(tf.Concat);
    assert.ok(stock, 'stock Concat kept');
    const x = tf.tensor3d(
      Float32Array.from({ length: 37 * 53 * 11 }, (_, i) => Math.sin(i * 1.7)),
      [37, 53, 11],
    );
    const y = tf.mul(x, 3);
    for (const axis of [0, 1, 2]) {
      const ours = tf.concat([x, y, x], axis);
      const info = stock({
        inputs: [x, y, x] as unknown as tf.NamedTensorInfoMap,
        backend: tf.backend(),
        attrs: { axis },
      });
      const ref = tf.engine().makeTensorFromTensorInfo(info as tf.TensorInfo);
      assert.deepEqual(ours.shape, ref.shape);
      assert.deepEqual(Array.from(await ours.data()), Array.from(await ref.data()), `axis ${axis}`);
      tf.dispose([ours, ref]);
    }
    tf.dispose([x, y]);
  });

  test('Identity shares data: a clone outlives its source, memory is freed with the last reference', async () => {
    await initBackend('wasm', { quiet: true });
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const ids = backend.numDataIds();
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.clone(a);
    assert.equal(backend.numDataIds(), ids + 1, 'the clone should not allocate');
    a.dispose();
    assert.deepEqual(Array.from(await b.data()), [1, 2, 3]);
    b.dispose();
    assert.equal(backend.numDataIds(), ids);
  });
});
