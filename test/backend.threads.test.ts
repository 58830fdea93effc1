/**
 * The wasm backend on several XNNPACK threads (lib/backend/wasm-threads.ts): the count tfjs reports; the
 * threaded build's shared heap, with the kit's heap kernels bound to it; convolution work really running
 * on a second OS thread; results equal to the one-thread build within the fused-kernel tolerances (forward 1e-5, gradients 1e-4 relative)
 * (forward ≤ 1e-5, gradients ≤ 1e-4, relative to the output's scale: max |a − b| ≤ rel × max |b|) for
 * conv2d, depthwise conv, matMul and a microscopic-mamba-t training step (forward, loss and every
 * parameter's gradient); bit-identical results from two fresh starts at the same count; and the
 * MSM_THREADS / --threads parsing.
 *
 * Order: a 2-thread start (A), a 1-thread start (B), a fresh 2-thread start (C), each computing the same
 * suite; switching counts re-creates the backend, so nothing is carried over between them.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { describeBackend, initBackend, threadsFromArgv } from '../lib/backend/index';
import { heapKernels } from '../lib/backend/heap';
import { availableCores, MAX_WASM_THREADS, resolveThreads, threadedStart } from '../lib/backend/wasm-threads';
import { createModel } from '../lib/models/index';
import { backendHeapMemory } from '../lib/util/wasm-api';
import { Rng } from '../lib/util/random';
import { parseArgs } from '../scripts/lib/cli';
import { assertClose, evalGrads, GradResult, hasProc, normal, threadTicks } from './backend.helpers';

const FORWARD_REL = 1e-5;
const GRAD_REL = 1e-4;

/** max |a − b| / max |b|, as assertClose measures it (for the test's diagnostics). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): string {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return (diff / (scale || 1)).toExponential(1);
}

interface ModelStep {
  logits: Float32Array;
  loss: number;
  grads: Record<string, Float32Array>;
}
interface Suite {
  ops: Record<string, GradResult>;
  model: ModelStep;
}
interface Start {
  threads: number;
  described: string;
  reported: number;
  sharedHeap: boolean;
  heapKernels: boolean;
  multithreadFlag: boolean;
  suite: Suite;
}

const conv = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
const convStrided = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same');
const depthwise = (x: tf.Tensor, w: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
const matMul = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b);
const matMulTransposedB = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a, b, false, true);

function runOps(): Record<string, GradResult> {
  return {
    conv2d: evalGrads(conv, [normal([2, 16, 16, 24], 1), normal([3, 3, 24, 32], 2, 0.2)], [0, 1]),
    'conv2d stride 2': evalGrads(convStrided, [normal([2, 17, 17, 16], 3), normal([3, 3, 16, 24], 4, 0.2)], [0, 1]),
    'depthwise conv': evalGrads(depthwise, [normal([2, 16, 16, 32], 5), normal([3, 3, 32, 1], 6, 0.3)], [0, 1]),
    matMul: evalGrads(matMul, [normal([96, 128], 7), normal([128, 80], 8, 0.1)], [0, 1]),
    'matMul transposed b': evalGrads(matMulTransposedB, [normal([64, 96], 9), normal([72, 96], 10, 0.1)], [0, 1]),
  };
}

/** One training step's forward, loss and gradients of microscopic-mamba-t (32 px, batch 2, train mode). */
function runModel(): ModelStep {
  const model = createModel('microscopic-mamba-t', { numClasses: 3, seed: 1 });
  // tfjs names variables uniquely per process; gradients are keyed by the parameters' PyTorch names.
  const paramName = new Map(model.namedParameters().map(([name, p]) => [p.variable.name, name]));
  try {
    const x = tf.tensor4d(new Rng(11).fillNormal(2 * 32 * 32 * 3), [2, 32, 32, 3]);
    const labels = tf.oneHot(tf.tensor1d([0, 2], 'int32'), 3);
    let logits = new Float32Array();
    const { value, grads } = tf.variableGrads(() => {
      const out = model.forward(x, { training: true, rng: new Rng(5) });
      logits = Float32Array.from(out.dataSync());
      return tf.losses.softmaxCrossEntropy(labels, out) as tf.Scalar;
    }, model.trainableVariables());
    const step: ModelStep = {
      logits,
      loss: value.dataSync()[0],
      grads: Object.fromEntries(
        Object.entries(grads).map(([k, g]) => [paramName.get(k) ?? k, Float32Array.from(g.dataSync())]),
      ),
    };
    tf.dispose([x, labels, value, grads]);
    return step;
  } finally {
    model.dispose();
  }
}

async function start(threads: number): Promise<Start> {
  const info = await initBackend('wasm', { threads, quiet: true });
  const backend = tf.backend() as unknown as BackendWasm;
  const memory = backendHeapMemory(backend.wasm);
  const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  return {
    threads,
    described: describeBackend(info),
    reported: wasm.getThreadsCount(),
    sharedHeap: memory?.buffer instanceof SharedArrayBuffer,
    heapKernels: heapKernels(backend) !== undefined,
    multithreadFlag: Boolean(tf.env().get('WASM_HAS_MULTITHREAD_SUPPORT')),
    suite: { ops: runOps(), model: runModel() },
  };
}

let A: Start;
let B: Start;
let C: Start;
/** During convolutions on 2 threads: CPU ticks of the main thread and of the busiest pthread worker. */
let split: { main: number; pthread: number } | undefined;

before(async () => {
  const threadsBefore = hasProc ? new Set(threadTicks().keys()) : new Set<string>();
  A = await start(2);
  if (hasProc) {
    // Threads that appeared with the threaded build: its pthread workers (the other threads of the
    // process, V8's and libuv's, existed before).
    const pthreads = [...threadTicks().keys()].filter((tid) => !threadsBefore.has(tid));
    const x = tf.tensor4d(new Rng(21).fillNormal(8 * 32 * 32 * 64), [8, 32, 32, 64]);
    const w = tf.tensor4d(new Rng(22).fillNormal(3 * 3 * 64 * 64, 0, 0.05), [3, 3, 64, 64]);
    conv(x, w).dispose(); // warm-up (XNNPACK packs the filter)
    const t0 = threadTicks();
    for (let i = 0; i < 24; i++) tf.tidy(() => conv(x, w).dataSync());
    const t1 = threadTicks();
    const used = (tid: string) => (t1.get(tid) ?? 0) - (t0.get(tid) ?? 0);
    split = { main: used(String(process.pid)), pthread: Math.max(0, ...pthreads.map(used)) };
    tf.dispose([x, w]);
  }
  B = await start(1);
  C = await start(2);
});

describe('thread count', () => {
  test('2 threads: tfjs and describeBackend report 2, the heap is shared and the heap kernels are bound to it', () => {
    assert.equal(A.reported, 2, 'getThreadsCount() of tfjs-backend-wasm');
    assert.match(A.described, /^backend: wasm \(argument; simd=true, threads=2\)/);
    assert.equal(A.multithreadFlag, true);
    assert.equal(A.sharedHeap, true, 'the threaded build runs on a SharedArrayBuffer heap');
    assert.equal(A.heapKernels, true, "the kit's heap kernels instantiate on the shared heap");
  });

  test('1 thread: the plain SIMD build as tfjs starts it in Node (unshared heap, flag off)', () => {
    assert.equal(B.reported, 1);
    assert.match(B.described, /threads=1\)/);
    assert.equal(B.multithreadFlag, false);
    assert.equal(B.sharedHeap, false);
    assert.equal(B.heapKernels, true);
  });

  test('convolutions on 2 threads run on a pthread worker too, not only on the main thread', (t) => {
    if (!split) return t.skip('needs Linux /proc/self/task');
    // A pool thread XNNPACK never hands work to sleeps in a futex wait and accrues no CPU time. (The
    // main thread's share is no measure of the split: it busy-waits for the worker, Emscripten's main
    // thread cannot block, so on a loaded machine its ticks are mostly waiting.)
    t.diagnostic(`CPU ticks during 24 convs: main thread ${split.main}, busiest pthread worker ${split.pthread}`);
    assert.ok(
      split.pthread >= 5,
      `the pthread worker used ${split.pthread} ticks (10 ms each): XNNPACK did not use it`,
    );
  });
});

describe('2 threads agree with 1 thread', () => {
  for (const name of ['conv2d', 'conv2d stride 2', 'depthwise conv', 'matMul', 'matMul transposed b']) {
    test(`${name}: forward ≤ ${FORWARD_REL}, gradients ≤ ${GRAD_REL} relative`, (t) => {
      const [two, one] = [A.suite.ops[name], B.suite.ops[name]];
      t.diagnostic(
        `relative differences: forward ${relDiff(two.y, one.y)}, gradients ${two.grads.map((g, i) => relDiff(g, one.grads[i])).join(', ')}`,
      );
      assert.deepEqual(two.yShape, one.yShape);
      assertClose(two.y, one.y, `${name} forward`, FORWARD_REL);
      two.grads.forEach((g, i) => assertClose(g, one.grads[i], `${name} gradient ${i}`, GRAD_REL));
    });
  }

  test(`microscopic-mamba-t training step: logits and loss ≤ ${FORWARD_REL}, every gradient ≤ ${GRAD_REL} relative`, (t) => {
    const [two, one] = [A.suite.model, B.suite.model];
    const worst = Math.max(...Object.entries(one.grads).map(([k, g]) => Number(relDiff(two.grads[k], g))));
    t.diagnostic(`relative differences: logits ${relDiff(two.logits, one.logits)}, largest of the gradients ${worst}`);
    assertClose(two.logits, one.logits, 'logits', FORWARD_REL);
    assertClose([two.loss], [one.loss], 'loss', FORWARD_REL);
    assert.deepEqual(Object.keys(two.grads).sort(), Object.keys(one.grads).sort());
    assert.ok(Object.keys(one.grads).length > 50, 'gradients of the whole model');
    for (const [k, g] of Object.entries(one.grads)) assertClose(two.grads[k], g, `gradient ${k}`, GRAD_REL);
  });
});

describe('determinism at a fixed thread count', () => {
  test('two fresh 2-thread starts give bit-identical results', () => {
    const same = (a: ArrayLike<number>, b: ArrayLike<number>, label: string) =>
      assert.deepEqual(Array.from(a), Array.from(b), `${label} differs between two 2-thread runs`);
    for (const [name, r] of Object.entries(A.suite.ops)) {
      same(r.y, C.suite.ops[name].y, `${name} forward`);
      r.grads.forEach((g, i) => same(g, C.suite.ops[name].grads[i], `${name} gradient ${i}`));
    }
    same(A.suite.model.logits, C.suite.model.logits, 'logits');
    assert.equal(A.suite.model.loss, C.suite.model.loss);
    for (const [k, g] of Object.entries(A.suite.model.grads)) same(g, C.suite.model.grads[k], `gradient ${k}`);
  });
});

describe('MSM_THREADS and --threads', () => {
  const withEnv = <T>(value: string | undefined, f: () => T): T => {
    const saved = process.env.MSM_THREADS;
    if (value === undefined) delete process.env.MSM_THREADS;
    else process.env.MSM_THREADS = value;
    try {
      return f();
    } finally {
      if (saved === undefined) delete process.env.MSM_THREADS;
      else process.env.MSM_THREADS = saved;
    }
  };

  test('argument > MSM_THREADS > all cores, at most 8', () => {
    withEnv('3', () => {
      assert.deepEqual(resolveThreads(2), { threads: 2, source: 'argument' });
      assert.deepEqual(resolveThreads(), { threads: 3, source: 'MSM_THREADS' });
    });
    withEnv(undefined, () => {
      assert.deepEqual(resolveThreads(), {
        threads: Math.min(availableCores(), MAX_WASM_THREADS),
        source: 'default',
        ...(availableCores() > MAX_WASM_THREADS ? { capped: availableCores() } : {}),
      });
    });
    assert.deepEqual(resolveThreads(16), { threads: MAX_WASM_THREADS, source: 'argument', capped: 16 });
  });

  test('a bad count is a one-line error naming the flag or variable', () => {
    for (const bad of ['0', '-2', '1.5', 'all']) {
      withEnv(bad, () =>
        assert.throws(() => resolveThreads(), /^Error: MSM_THREADS must be a whole number of threads ≥ 1/),
      );
    }
    assert.throws(() => resolveThreads(0), /--threads must be a whole number/);
    assert.throws(() => threadsFromArgv(['--threads', 'x']), /--threads must be a whole number .*got 'x'/);
  });

  test("--threads from argv (lib/backend threadsFromArgv and the scripts' shared flags)", () => {
    assert.equal(threadsFromArgv(['--backend', 'wasm', '--threads', '4']), 4);
    assert.equal(threadsFromArgv(['--threads=1']), 1);
    assert.equal(threadsFromArgv(['--epochs', '3']), undefined);
    withEnv(undefined, () => {
      const spec = { command: 'test', summary: 'test', flags: [] };
      const parsed = parseArgs(['--threads', '3', '--backend', 'wasm'], spec);
      assert.equal(process.env.MSM_THREADS, '3', '--threads sets MSM_THREADS');
      assert.ok(!parsed.given.has('threads'), 'a process setting, not a config key');
      assert.equal(parsed.values.backend, 'wasm');
      assert.throws(() => parseArgs(['--threads', '0'], spec), /--threads needs a whole number ≥ 1/);
    });
  });
});

describe('a threaded start that fails', () => {
  const saved = { ...threadedStart };
  const restore = () => Object.assign(threadedStart, saved);
  const oneThreadWorks = async () => {
    const info = await initBackend('wasm', { threads: 1, quiet: true });
    assert.equal(info.details.threads, 1);
    const y = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync());
    assert.deepEqual(Array.from(y), [3, 3, 3, 3]);
  };

  test('a pthread worker that throws: one clear error naming the way out, then the one-thread build starts', async () => {
    threadedStart.bootstrap = "throw new Error('bootstrap broken on purpose')";
    try {
      await assert.rejects(
        initBackend('wasm', { threads: 3, quiet: true }),
        /^Error: the threaded wasm backend \(3 threads\) did not start: a pthread worker failed: bootstrap broken on purpose; run with MSM_THREADS=1/,
      );
    } finally {
      restore();
    }
    await oneThreadWorks();
  });

  test('workers that never start: reported after the start timeout, not waited for', async () => {
    threadedStart.bootstrap = '/* ends at once: never loads the module */';
    threadedStart.timeoutMs = 3000;
    try {
      await assert.rejects(
        initBackend('wasm', { threads: 2, quiet: true }),
        /did not start: not ready after 3 s; run with MSM_THREADS=1/,
      );
    } finally {
      restore();
    }
    await oneThreadWorks();
  });
});
