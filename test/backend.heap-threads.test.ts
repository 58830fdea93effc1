/**
 * The kit's heap kernels on the worker pool (lib/backend/heap-threads.ts, worker-pool.ts): conv
 * gradients as im2col/col2im + GEMM, the large-filter forward conv, the heap matMul, MaxPoolGrad, the
 * depthwise conv (forward: output rows) and its filter gradient, the fused norms / partial SiLU / Adam,
 * SS2D's cross-scan / cross-merge (whole images),
 * each split by output over the wasm backend's threads. Checked here:
 *   - bit-identical results on 1 (the one-thread build), 2 and 3 threads (3: shares of unequal size), and
 *     with MSM_HEAP_THREADS=1 on a threaded backend (which caps the heap kernels' count);
 *   - on 3 threads, values against the kernels they replace (MSM_CNN_KERNELS=off: the composites and the
 *     JS MaxPoolGrad loop, in the same process), matMul and the depthwise conv against the cpu backend;
 *     the fused norms, partial SiLU and Adam update (rows / elements split) bit-identical to 1 thread;
 *   - the pool's workers really compute (their CPU time from /proc, as test/backend.threads.test.ts);
 *   - a worker that fails is one clear error naming MSM_THREADS=1, and the next call works.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { convGemmAvailable } from '../lib/backend/conv-gemm';
import { heapThreads, MIN_WORK_PER_SHARE } from '../lib/backend/heap-threads';
import { WorkerPool, workerPool } from '../lib/backend/worker-pool';
import { fusedBatchNorm, fusedLayerNorm } from '../lib/backend/norms';
import { fusedPartialSilu } from '../lib/backend/activations';
import { fusedCrossScan } from '../lib/backend/cross-scan';
import { ADAM_KERNEL } from '../lib/backend/optimizer';
import {
  assertClose,
  evalGrads,
  type GradResult,
  gradsOn,
  hasProc,
  normal,
  type Sample,
  threadTicks,
} from './backend.helpers';

type Case = { fn: (...xs: tf.Tensor[]) => tf.Tensor; inputs: Sample[]; wrt: number[]; work: number };

const conv =
  (s: number, pad: 'same' | 'valid' | number) =>
  (x: tf.Tensor, f: tf.Tensor): tf.Tensor =>
    tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, pad);

/** Each case with the work (multiply-adds or taps) of its largest kernel call, to check that it is split. */
const CASES: Record<string, Case> = {
  'conv 3×3 stride 1': {
    fn: conv(1, 'same'),
    inputs: [normal([3, 16, 16, 32], 1), normal([3, 3, 32, 24], 2, 0.1)],
    wrt: [0, 1],
    work: 3 * 16 * 16 * 288 * 24,
  },
  'conv 3×3 stride 2, odd size': {
    fn: conv(2, 'same'),
    inputs: [normal([4, 17, 15, 20], 3), normal([3, 3, 20, 36], 4, 0.1)],
    wrt: [0, 1],
    work: 4 * 9 * 8 * 180 * 36,
  },
  'conv 3×3, batch 1 (im2col / col2im split by channels)': {
    fn: conv(1, 'same'),
    inputs: [normal([1, 48, 48, 42], 23), normal([3, 3, 42, 16], 24, 0.1)],
    wrt: [0, 1],
    work: 48 * 48 * 378, // the patch walks: the smallest calls of this case
  },
  'conv 1×1 (no im2col)': {
    fn: conv(1, 'valid'),
    inputs: [normal([5, 12, 12, 48], 5), normal([1, 1, 48, 40], 6, 0.1)],
    wrt: [0, 1],
    work: 5 * 144 * 48 * 40,
  },
  'conv 7×7 stride 2 pad 3 (stem)': {
    fn: conv(2, 3),
    inputs: [normal([3, 22, 22, 3], 7), normal([7, 7, 3, 16], 8, 0.1)],
    wrt: [0, 1],
    work: 3 * 11 * 11 * 147 * 16,
  },
  'conv with a 1.2 Mi-weight filter (forward by GEMM too)': {
    fn: conv(1, 'same'),
    inputs: [normal([2, 4, 4, 512], 9), normal([3, 3, 512, 256], 10, 0.02)],
    wrt: [0, 1],
    work: 2 * 16 * 4608 * 256,
  },
  'matMul 2-D, transposed a': {
    fn: (a, b) => tf.matMul(a, b, true, false),
    inputs: [normal([160, 200], 11), normal([160, 72], 12, 0.1)],
    wrt: [0, 1],
    work: 200 * 160 * 72,
  },
  'batched matMul, batch ≥ threads': {
    fn: (a, b) => tf.matMul(a, b),
    inputs: [normal([6, 72, 64], 13), normal([6, 64, 56], 14, 0.1)],
    wrt: [0, 1],
    work: 6 * 72 * 64 * 56,
  },
  'batched matMul, batch < threads': {
    fn: (a, b) => tf.matMul(a, b, false, true),
    inputs: [normal([2, 130, 96], 15), normal([2, 88, 96], 16, 0.1)],
    wrt: [0, 1],
    work: 2 * 130 * 96 * 88,
  },
  'depthwise conv 3×3 (filter gradient: filter rows split)': {
    fn: (x, f) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'same'),
    inputs: [normal([4, 32, 32, 32], 25), normal([3, 3, 32, 1], 26, 0.3)],
    wrt: [0, 1],
    work: 4 * 32 * 32 * 9 * 32,
  },
  'LayerNorm (fused; forward rows split)': {
    fn: (x, w, b) => fusedLayerNorm(x, w, b, 1e-5),
    inputs: [normal([2100, 384], 27), normal([384], 28), normal([384], 29)],
    wrt: [0, 1, 2],
    work: 2100 * 384,
  },
  'BatchNorm, training (fused; sums split by channels, apply passes by rows)': {
    fn: (x, w, b) => fusedBatchNorm(x, w, b, 1e-5, () => {}),
    inputs: [normal([8, 32, 32, 102], 30), normal([102], 31), normal([102], 32)],
    wrt: [0, 1, 2],
    work: 8 * 32 * 32 * 102,
  },
  'partial SiLU (fused; rows split)': {
    fn: (x) => fusedPartialSilu(x, 64),
    inputs: [normal([8192, 100], 33)],
    wrt: [0],
    work: 8192 * 100,
  },
  'cross-scan (fused; images split; its gradient is the cross-merge)': {
    fn: (x) => fusedCrossScan(x as tf.Tensor4D),
    inputs: [normal([32, 16, 16, 32], 34)],
    wrt: [0],
    work: 32 * 4 * 32 * 256,
  },
  'maxPool 3×3 stride 2': {
    fn: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 'same'),
    inputs: [normal([8, 64, 64, 16], 17)],
    wrt: [0],
    work: 8 * 32 * 32 * 16 * 9,
  },
};

/** Elements of the Adam case (element ranges split): one step, AdamW's decoupled decay on. */
const ADAM_SIZE = 300_001;

/** The fused Adam update of a parameter as a GradResult: y = the new parameter, grads = the new m and v. */
function adamStep(): GradResult {
  const t = (seed: number, scale: number, abs = false) => {
    const v = normal([ADAM_SIZE], seed, scale).values as Float32Array;
    return tf.tensor1d(abs ? v.map(Math.abs) : v);
  };
  const inputs = { param: t(40, 1), grad: t(41, 0.1), m: t(42, 0.01), v: t(43, 1e-4, true) };
  const attrs = {
    beta1: 0.9,
    beta2: 0.999,
    sqrtBc2: Math.sqrt(1 - 0.999 ** 3),
    eps: 1e-8,
    stepSize: 1e-3 / (1 - 0.9 ** 3),
    l2: 0,
    decay: 1 - 1e-3 * 0.05,
  };
  const outs = tf.engine().runKernel(ADAM_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  const [p, m, v] = outs.map((o) => Float32Array.from(o.dataSync()));
  tf.dispose([...outs, ...Object.values(inputs)]);
  return { y: p, yShape: [ADAM_SIZE], grads: [m, v], gradShapes: [[ADAM_SIZE], [ADAM_SIZE]] };
}

const runAll = (): Record<string, GradResult> => ({
  ...Object.fromEntries(Object.entries(CASES).map(([k, c]) => [k, evalGrads(c.fn, c.inputs, c.wrt)])),
  'Adam update (fused; element ranges split)': adamStep(),
});

const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer)) === 0;

function withCnnKernels<T>(on: boolean, f: () => T): T {
  const saved = process.env.MSM_CNN_KERNELS;
  process.env.MSM_CNN_KERNELS = on ? '' : 'off';
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.MSM_CNN_KERNELS;
    else process.env.MSM_CNN_KERNELS = saved;
  }
}

const results: Record<number, Record<string, GradResult>> = {};
const threadsSeen: Record<number, number> = {};
/** Composites / JS loop on the 3-thread backend (MSM_CNN_KERNELS=off). */
let replaced: Record<string, GradResult>;
/** During conv filter gradients on 3 threads: CPU ticks of the busiest pool worker, and the pool's size. */
let poolCpu: { busiest: number; workers: number } | undefined;

before(async () => {
  workerPool().discardWorkers(); // the workers that appear below are the pool's
  for (const threads of [1, 2, 3]) {
    await initBackend('wasm', { threads, quiet: true });
    assert.ok(convGemmAvailable(), 'im2col / GEMM kernels reachable on the wasm heap');
    threadsSeen[threads] = heapThreads();
    workerPool().discardWorkers(); // so the threads that appear during runAll are this round's pool workers
    const before = hasProc ? new Set(threadTicks().keys()) : new Set<string>();
    results[threads] = runAll();
    if (threads === 3 && hasProc) {
      const pool = [...threadTicks().keys()].filter((tid) => !before.has(tid));
      const x = tf.tensor4d(normal([8, 32, 32, 64], 21).values as Float32Array, [8, 32, 32, 64]);
      const dy = tf.tensor4d(normal([8, 32, 32, 64], 22).values as Float32Array, [8, 32, 32, 64]);
      const t0 = threadTicks();
      for (let i = 0; i < 16; i++) {
        tf.tidy(() =>
          tf
            .grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, w as tf.Tensor4D, 1, 'same'), dy)))(
              tf.zeros([3, 3, 64, 64]),
            )
            .dataSync(),
        );
      }
      const t1 = threadTicks();
      poolCpu = { busiest: Math.max(0, ...pool.map((t) => (t1.get(t) ?? 0) - (t0.get(t) ?? 0))), workers: pool.length };
      tf.dispose([x, dy]);
    }
  }
  replaced = withCnnKernels(false, runAll);
});

after(async () => {
  WorkerPool.workerSource = originalSource;
  await initBackend('wasm', { quiet: true });
});
const originalSource = WorkerPool.workerSource;

describe('thread count', () => {
  test('the heap kernels use the backend thread count: 1 on the one-thread build, else MSM_THREADS / --threads', () => {
    assert.deepEqual(threadsSeen, { 1: 1, 2: 2, 3: 3 });
  });

  test('MSM_HEAP_THREADS caps the count (read at every call); a bad value is a one-line error naming it', () => {
    const saved = process.env.MSM_HEAP_THREADS;
    try {
      process.env.MSM_HEAP_THREADS = '2';
      assert.equal(heapThreads(), 2, '3-thread backend capped at 2');
      process.env.MSM_HEAP_THREADS = '16';
      assert.equal(heapThreads(), 3, 'never above the backend count');
      process.env.MSM_HEAP_THREADS = '1';
      const c = CASES['conv 3×3 stride 1'];
      const one = evalGrads(c.fn, c.inputs, c.wrt);
      one.grads.forEach((g, i) => assert.ok(sameBits(g, results[1]['conv 3×3 stride 1'].grads[i]), `gradient ${i}`));
      for (const bad of ['0', '1.5', 'all']) {
        process.env.MSM_HEAP_THREADS = bad;
        assert.throws(() => heapThreads(), /^Error: MSM_HEAP_THREADS must be a whole number of threads ≥ 1/);
      }
    } finally {
      if (saved === undefined) delete process.env.MSM_HEAP_THREADS;
      else process.env.MSM_HEAP_THREADS = saved;
    }
  });

  test('every case has enough work to be split over 3 threads (else the comparisons below prove nothing)', () => {
    for (const [name, c] of Object.entries(CASES)) {
      assert.ok(c.work >= 3 * MIN_WORK_PER_SHARE, `${name}: ${c.work} units of work, under 3 shares`);
    }
    assert.ok(10 * ADAM_SIZE >= 3 * MIN_WORK_PER_SHARE, 'Adam: under 3 shares');
  });
});

describe('1, 2 and 3 threads give bit-identical results', () => {
  for (const name of [...Object.keys(CASES), 'Adam update (fused; element ranges split)']) {
    test(name, () => {
      for (const threads of [2, 3]) {
        const [one, many] = [results[1][name], results[threads][name]];
        assert.ok(sameBits(many.y, one.y), `${name}: forward differs between 1 and ${threads} threads`);
        many.grads.forEach((g, i) =>
          assert.ok(sameBits(g, one.grads[i]), `${name}: gradient ${i} differs between 1 and ${threads} threads`),
        );
      }
    });
  }
});

describe('on 3 threads, values match the kernels they replace', () => {
  // The fused norms, SiLU and Adam are checked against the tf ops in test/backend.fused-kernels.test.ts and
  // test/backend.heap-kernels.test.ts; here their thread split is held to bit-identity with one thread (above).
  for (const name of Object.keys(CASES).filter((k) => !k.includes('(fused'))) {
    test(name, async () => {
      const got = results[3][name];
      if (name.startsWith('maxPool')) {
        // The SIMD MaxPoolGrad is bit-identical to the JS loop it replaces (max-pool-grad-heap.ts).
        assert.ok(sameBits(got.grads[0], replaced[name].grads[0]), 'MaxPoolGrad differs from the JS loop');
      } else if (name.startsWith('conv')) {
        // Another summation order than the composites: ≤ 1e-5 relative (as test/backend.cnn-kernels.test.ts).
        assertClose(got.y, replaced[name].y, `${name} forward`, 1e-5);
        got.grads.forEach((g, i) => assertClose(g, replaced[name].grads[i], `${name} gradient ${i}`, 1e-5));
      } else {
        const c = CASES[name];
        const cpu = await gradsOn('cpu', c.fn, c.inputs, c.wrt);
        await tf.setBackend('wasm');
        assertClose(got.y, cpu.y, `${name} forward`, 1e-5);
        got.grads.forEach((g, i) => assertClose(g, cpu.grads[i], `${name} gradient ${i}`, 1e-4));
      }
    });
  }
});

describe('the worker pool', () => {
  test('its workers compute: CPU time of the pool threads during 16 conv filter gradients on 3 threads', (t) => {
    if (!poolCpu) return t.skip('needs Linux /proc/self/task');
    t.diagnostic(`pool threads ${poolCpu.workers}, busiest one used ${poolCpu.busiest} ticks`);
    assert.equal(workerPool().size, 2, 'two workers beside the calling thread');
    assert.ok(poolCpu.busiest >= 5, `the busiest pool worker used ${poolCpu.busiest} ticks (10 ms each): not used`);
  });

  test('a worker that fails to start is one clear error naming MSM_THREADS=1; the next call works', async () => {
    await initBackend('wasm', { threads: 2, quiet: true });
    const c = CASES['conv 3×3 stride 1'];
    workerPool().discardWorkers();
    WorkerPool.workerSource = `
      const { workerData } = require('worker_threads');
      const ctl = new Int32Array(workerData.ctrl);
      Atomics.store(ctl, 3, -1);
      Atomics.notify(ctl, 1);
      throw new Error('simulated start failure');`;
    // Started ahead and given time to fail: a call reports a failure it sees (until then, shares whose
    // worker never claims them run on the calling thread).
    workerPool().prestart(1);
    await new Promise((r) => setTimeout(r, 2000));
    try {
      assert.throws(
        () => evalGrads(c.fn, c.inputs, c.wrt),
        /heap kernels.*worker thread failed to start; run with MSM_THREADS=1/,
      );
    } finally {
      WorkerPool.workerSource = originalSource;
    }
    const again = evalGrads(c.fn, c.inputs, c.wrt);
    again.grads.forEach((g, i) =>
      assert.ok(sameBits(g, results[1]['conv 3×3 stride 1'].grads[i]), `gradient ${i} after recovery`),
    );
  });
});
