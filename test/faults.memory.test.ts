/**
 * Memory faults: gradient accumulation gives the full batch's gradient, the planner splits the
 * batch (or turns on checkpointing) when its estimate exceeds a lowered limit and refuses with the flags
 * that fit, a wasm trap in training or evaluation becomes one clear error, and a run with micro-batches
 * still resumes exactly.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { type ForwardContext, Linear, Module } from '../lib/nn/index';
import { makeTrainConfig } from '../lib/train/config';
import { readCheckpoint } from '../lib/train/checkpoint';
import { fit } from '../lib/train/fit';
import { readLog } from '../lib/train/logs';
import {
  HEADROOM,
  isMemoryTrap,
  linearPeak,
  memoryError,
  microBatchSizes,
  OutOfMemoryError,
  planForRun,
  planMemory,
  probeTrainStep,
  trainHeapEstimate,
  MemoryPlanError,
  type PlanInput,
  withPeakTensorBytes,
} from '../lib/train/memory';
import type { Adam } from '../lib/train/optim';
import { evaluateModel, namedTrainable, Trainer, type TrainBatch } from '../lib/train/trainer';
import type { ClassifierModel } from '../lib/models/index';
import { Rng } from '../lib/util/random';
import { TinyNet, ToySource, toyEvalBatches, toyImages } from './helpers/tiny-train';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const S = 4;
const K = 3;
const MiB = 2 ** 20;

/** x → flatten → Linear → tanh → Linear: no BatchNorm, no DropPath, so micro-batches change nothing. */
class PlainNet extends Module implements ClassifierModel {
  readonly fc: Linear;
  readonly head: Linear;
  readonly numClasses = K;
  readonly stageNames = [];
  constructor(seed: number) {
    super();
    const rng = new Rng(seed);
    this.fc = this.addModule('fc', new Linear(S * S * 3, 12, { rng }));
    this.head = this.addModule('head', new Linear(12, K, { rng }));
  }
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx))); // [b, k]
  }
  forwardFeatures(x: tf.Tensor, _ctx?: ForwardContext): tf.Tensor {
    const b = x.shape[0];
    return tf.tidy(() => tf.tanh(this.fc.forward(x.reshape([b, -1]))).reshape([b, 1, 1, 12])); // [b, 1, 1, 12]
  }
  forwardHead(f: tf.Tensor, _ctx?: ForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.head.forward(f.reshape([f.shape[0], 12])) as tf.Tensor2D); // [b, k]
  }
  checkInput(): void {}
}

/** An optimizer stand-in that records the gradients the trainer hands it (by parameter name). */
function recordingOptimizer(model: Module): { opt: Adam; grads: Map<string, Float32Array> } {
  const named = namedTrainable(model);
  const byVar = new Map(named.map(([n, v]) => [v.name, n]));
  const grads = new Map<string, Float32Array>();
  const opt = {
    variables: () => named.map(([, v]) => v),
    applyGradients: (g: Record<string, tf.Tensor>) => {
      for (const [k, t] of Object.entries(g)) grads.set(byVar.get(k) ?? k, Float32Array.from(t.dataSync()));
    },
  } as unknown as Adam;
  return { opt, grads };
}

function stepGrads(model: ClassifierModel, batch: TrainBatch, microBatch?: number) {
  const { opt, grads } = recordingOptimizer(model);
  const trainer = new Trainer(model, opt, {
    lr: 0.1,
    schedule: { stepsPerEpoch: 1, epochs: 1, warmupEpochs: 0 },
    rng: new Rng(3),
    microBatch,
  });
  const res = trainer.trainStep(batch, 0);
  return { res, grads };
}

function assertClose(a: Map<string, Float32Array>, b: Map<string, Float32Array>, what: string) {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let modelScale = 0;
  for (const h of b.values()) for (const v of h) modelScale = Math.max(modelScale, Math.abs(v));
  for (const [k, g] of a) {
    const h = b.get(k)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]));
      diff = Math.max(diff, Math.abs(g[i] - h[i]));
    }
    // The repository's float tolerance: max abs diff ≤ 1e-4 × the gradient's scale, with a floor for
    // gradients that are zero in exact arithmetic (a bias right before BatchNorm) and so only rounding noise,
    // whose size follows the model's largest gradient (fused BatchNorm backward: ~7e-6 where the stock op
    // chain left ~1e-7), not the noise itself.
    const floor = Math.max(1e-2, modelScale);
    assert.ok(
      diff <= 1e-4 * Math.max(scale, floor),
      `${what} ${k}: max abs diff ${diff} at scale ${scale} (model ${modelScale})`,
    );
  }
}

test('microBatchSizes: as even as possible, never above the micro-batch, summing to the batch', () => {
  assert.deepEqual(microBatchSizes(58, 9), [9, 9, 8, 8, 8, 8, 8]);
  assert.deepEqual(microBatchSizes(7, 3), [3, 2, 2]);
  assert.deepEqual(microBatchSizes(8, 8), [8]);
  assert.deepEqual(microBatchSizes(5, 100), [5]);
  for (const [n, m] of [
    [58, 8],
    [28, 9],
    [1, 1],
    [13, 4],
  ]) {
    const s = microBatchSizes(n, m);
    assert.equal(
      s.reduce((a, b) => a + b, 0),
      n,
    );
    assert.ok(Math.max(...s) <= m && Math.max(...s) - Math.min(...s) <= 1);
  }
});

test('gradient accumulation over uneven micro-batches = the full-batch gradient (model without BatchNorm)', () => {
  const d = toyImages(7, S, K, 4);
  const batch = { x: tf.tensor4d(d.x, [7, S, S, 3]), y: tf.tensor1d(d.y, 'int32') };
  const count = tf.memory().numTensors;
  const full = stepGrads(new PlainNet(1), batch);
  const micro = stepGrads(new PlainNet(1), batch, 3); // 3 + 2 + 2
  assert.equal(tf.memory().numTensors, count + 2 * 4, 'only the two models stay (4 parameters each)');
  assert.ok(Math.abs(full.res.loss - micro.res.loss) < 1e-6, `loss ${full.res.loss} vs ${micro.res.loss}`);
  assert.equal(micro.res.correct, full.res.correct);
  assertClose(micro.grads, full.grads, 'micro-batch 3');
  tf.dispose([batch.x, batch.y]);
});

test('gradient accumulation with BatchNorm and DropPath = full batch when every micro-batch has the batch statistics', () => {
  // Four copies of the same two images: each micro-batch of 2 has exactly the full batch's BatchNorm
  // mean and variance, so only the accumulation itself is tested (DropPath draws one number per sample,
  // in sample order, in both cases).
  const d = toyImages(2, S, K, 5);
  const n = 8;
  const x = new Float32Array(n * S * S * 3);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x.set(d.x.subarray((i % 2) * S * S * 3, ((i % 2) + 1) * S * S * 3), i * S * S * 3);
    y[i] = d.y[i % 2];
  }
  const batch = { x: tf.tensor4d(x, [n, S, S, 3]), y: tf.tensor1d(y, 'int32') };
  const full = stepGrads(new TinyNet(S, K, 7), batch);
  const micro = stepGrads(new TinyNet(S, K, 7), batch, 2);
  assert.ok(Math.abs(full.res.loss - micro.res.loss) < 1e-6);
  assertClose(micro.grads, full.grads, 'BatchNorm, micro-batch 2');

  // With distinct images the BatchNorm statistics differ per micro-batch, and so do the gradients: the
  // documented difference of accumulation, not an error.
  const e = toyImages(8, S, K, 6);
  const mixed = { x: tf.tensor4d(e.x, [8, S, S, 3]), y: tf.tensor1d(e.y, 'int32') };
  const a = stepGrads(new TinyNet(S, K, 7), mixed);
  const b = stepGrads(new TinyNet(S, K, 7), mixed, 2);
  const ga = a.grads.get('fc1.weight')!;
  const gb = b.grads.get('fc1.weight')!;
  assert.ok(
    ga.some((v, i) => Math.abs(v - gb[i]) > 1e-4),
    'per-micro-batch BatchNorm statistics change the gradient',
  );
  tf.dispose([batch.x, batch.y, mixed.x, mixed.y]);
});

test('evaluation in chunks gives the same probabilities, loss and accuracy as whole batches', async () => {
  const model = new TinyNet(S, K, 2);
  const data = toyImages(13, S, K, 8);
  const whole = await evaluateModel(model, toyEvalBatches(data, S, 13));
  const chunked = await evaluateModel(model, toyEvalBatches(data, S, 13), undefined, { microBatch: 4 });
  assert.equal(chunked.accuracy, whole.accuracy);
  assert.ok(Math.abs(chunked.loss - whole.loss) < 1e-6);
  assert.deepEqual(chunked.labels, whole.labels);
  for (let i = 0; i < whole.probs.length; i++) assert.ok(Math.abs(chunked.probs[i] - whole.probs[i]) < 1e-6);
  model.dispose();
});

/** A plan input shaped like the measured 224-px Microscopic-Mamba-t (benchmarks/memory.md), scaled down. */
function planInput(over: Partial<PlanInput> = {}): PlanInput {
  return {
    batchSize: 58,
    evalBatchSize: 64,
    imageSize: 224,
    paramBytes: 14 * MiB,
    modelBytes: 14 * MiB,
    probe: {
      imageSize: 224,
      train: { fixed: 20 * MiB, perImage: 1800 * MiB },
      trainCheckpointed: { fixed: 20 * MiB, perImage: 512 * MiB },
      forward: { fixed: 10 * MiB, perImage: 110 * MiB },
    },
    limit: { bytes: 4095 * MiB, what: 'the wasm heap maximum (4.00 GiB)' },
    microBatch: 0,
    evalMicroBatch: 0,
    checkpointing: 'auto',
    ...over,
  };
}

test('planner: the full batch when it fits, micro-batches with checkpointing when not, within the budget', () => {
  const roomy = planMemory(planInput({ limit: { bytes: 1e15, what: 'test' } }));
  assert.equal(roomy.microBatch, 58);
  assert.equal(roomy.microSteps, 1);
  assert.equal(roomy.checkpointing, 'off');
  assert.equal(roomy.evalMicroBatch, 64);

  const p = planMemory(planInput());
  assert.equal(p.checkpointing, 'on', 'checkpointing lets a larger micro-batch fit');
  assert.ok(p.microBatch > 1 && p.microBatch < 58, `micro-batch ${p.microBatch}`);
  assert.equal(p.microSteps, microBatchSizes(58, p.microBatch).length);
  assert.ok(p.trainEstimate <= p.budget && p.fullBatchEstimate > p.budget);
  assert.ok(p.evalMicroBatch < 64 && p.evalEstimate <= p.budget);
  assert.match(p.reason, /gradient accumulation over \d+ micro-batches/);
  assert.match(p.reason, /BatchNorm/);
  assert.match(p.reason, /activation checkpointing/);

  // A (test-)lowered limit: smaller micro-batches, same rule.
  const low = planMemory(planInput({ limit: { bytes: 1024 * MiB, what: '--memory-limit-mb 1024' } }));
  assert.ok(low.microBatch < p.microBatch);
  assert.ok(low.trainEstimate <= low.budget);

  // Checkpointing off: micro-batches alone.
  const off = planMemory(planInput({ checkpointing: 'off' }));
  assert.equal(off.checkpointing, 'off');
  assert.ok(off.microBatch >= 1 && off.microBatch < p.microBatch);
});

test('planner: refuses with the estimate, the limit and the flags that fit', () => {
  assert.throws(
    () => planMemory(planInput({ microBatch: 32, checkpointing: 'on' })),
    (e: unknown) =>
      e instanceof MemoryPlanError &&
      /out of memory before training: a training step \(batch 58, --micro-batch 32, --checkpointing on\) needs ~[\d.]+ GiB at 224 px, more than the wasm heap maximum \(4\.00 GiB\)/.test(
        e.message,
      ) &&
      /Flags that fit: --micro-batch \d+ --checkpointing on( --eval-micro-batch \d+)? /.test(e.message),
  );
  assert.throws(
    () => planMemory(planInput({ limit: { bytes: 200 * MiB, what: '--memory-limit-mb 200' } })),
    (e: unknown) =>
      e instanceof MemoryPlanError &&
      /smaller --image-size/.test(e.message) &&
      /more than --memory-limit-mb 200 \(plans stay under 180 MiB\)/.test(e.message),
  );
});

test('probe: peaks are linear in the batch, and planForRun on a lowered limit picks micro-batches', () => {
  const model = new TinyNet(8, 2, 1);
  const p1 = probeTrainStep(model, 8, 1);
  const p2 = probeTrainStep(model, 8, 2);
  const p4 = probeTrainStep(model, 8, 4);
  const line = linearPeak(p1, p2);
  assert.ok(line.perImage > 0);
  assert.ok(
    Math.abs(line.fixed + 4 * line.perImage - p4) <= 0.02 * p4,
    `peak(4) ${p4} vs line ${JSON.stringify(line)}`,
  );
  model.dispose();

  // The real planner on this backend, with a limit so low that only micro-batches fit.
  const count = tf.memory().numTensors;
  const make = () => new TinyNet(8, 2, 1);
  const opts = { batchSize: 64, evalBatchSize: 64, imageSize: 8, microBatch: 0, evalMicroBatch: 0 };
  const free = planForRun({ ...opts, checkpointing: 'off', memoryLimitMb: 4096 }, 'wasm', make);
  assert.equal(free.microBatch, 64);
  // A limit (as --memory-limit-mb) at which, by the probe's own line, micro-batches of 16 just fit.
  const limitMb = trainHeapEstimate(free.input!, free.probe!.train, 16, 4) / (1 - HEADROOM) / MiB;
  const tight = planForRun({ ...opts, checkpointing: 'off', memoryLimitMb: limitMb }, 'wasm', make);
  assert.equal(tight.microBatch, 16);
  assert.equal(tight.microSteps, 4);
  assert.match(tight.reason, /gradient accumulation over 4 micro-batches of 16 images/);
  assert.ok(tight.trainEstimate <= tight.budget);
  assert.equal(tf.memory().numTensors, count, 'the probe leaks nothing');
});

test('withPeakTensorBytes restores the engine counter and sees a transient allocation', () => {
  const before = tf.memory().numBytes;
  const { peak } = withPeakTensorBytes(() => {
    const t = tf.zeros([1000]);
    t.dispose();
  });
  assert.equal(peak, 4000);
  assert.equal(tf.memory().numBytes, before);
  const t = tf.ones([10]);
  assert.equal(tf.memory().numBytes, before + 40, 'the counter still counts after the watch');
  t.dispose();
});

test('a wasm trap becomes an error naming the backend, the step and the likely cause', async () => {
  for (const raw of [
    'RuntimeError: memory access out of bounds',
    'Aborted(). Build with -sASSERTIONS for more info.',
    'RangeError: WebAssembly.Memory.grow(): Maximum memory size exceeded',
  ]) {
    assert.ok(isMemoryTrap(new Error(raw)), raw);
  }
  assert.ok(!isMemoryTrap(new Error('model output must be logits [2, k]')));
  const plain = new Error('something else');
  assert.equal(memoryError(plain, { backend: 'wasm', where: 'x' }), plain, 'other errors pass through');

  // A model whose forward traps at its third call (training step 3) inside fit.
  class Trapping extends TinyNet {
    calls = 0;
    forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor2D {
      if (ctx?.training && ++this.calls === 3)
        throw new (
          globalThis as unknown as { WebAssembly: { RuntimeError: ErrorConstructor } }
        ).WebAssembly.RuntimeError('memory access out of bounds');
      return super.forward(x, ctx);
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-faults-mem-'));
  const config = makeTrainConfig({ epochs: 2, warmupEpochs: 0, batchSize: 4, seed: 1, patience: 0, microBatch: 4 });
  const model = new Trapping(S, K, 1);
  await assert.rejects(
    fit({
      runDir: dir,
      config,
      model,
      modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
      train: new ToySource(toyImages(16, S, K, 1), S, 4, 1),
      val: () => toyEvalBatches(toyImages(6, S, K, 2), S, 6),
      progress: { mode: 'off' },
    }),
    (e: unknown) =>
      e instanceof OutOfMemoryError &&
      /^out of memory on the wasm backend during training step 3 \(epoch 1, batch 3, 4 images\)/.test(e.message) &&
      /the 4 GiB wasm heap is full/.test(e.message) &&
      /memory access out of bounds/.test(e.message) &&
      /--micro-batch/.test(e.message) &&
      /--resume/.test(e.message),
  );
  model.dispose();
  const events = readLog(path.join(dir, 'log.jsonl')).filter((l) => l.type === 'event') as Array<{ event: string }>;
  assert.ok(events.some((l) => l.event === 'out-of-memory'));

  // ... and in validation.
  class TrapsInEval extends TinyNet {
    forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor2D {
      if (!ctx?.training) throw new Error('Aborted(). Build with -sASSERTIONS for more info.');
      return super.forward(x, ctx);
    }
  }
  const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-faults-mem-'));
  const m2 = new TrapsInEval(S, K, 1);
  await assert.rejects(
    fit({
      runDir: dir2,
      config,
      model: m2,
      modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
      train: new ToySource(toyImages(8, S, K, 1), S, 4, 1),
      val: () => toyEvalBatches(toyImages(6, S, K, 2), S, 6),
      progress: { mode: 'off' },
    }),
    (e: unknown) =>
      e instanceof OutOfMemoryError &&
      /during validation after epoch 1 \(step 2\)/.test(e.message) &&
      /Aborted\(\)/.test(e.message),
  );
  m2.dispose();
});

test('a run with micro-batches stops and resumes exactly, and is reproducible', async () => {
  const run = async (dir: string, over: Parameters<typeof makeTrainConfig>[0], resume = false) => {
    const config = makeTrainConfig({
      epochs: 2,
      warmupEpochs: 0,
      batchSize: 8,
      microBatch: 3, // 3 + 3 + 2, and 2 + 2 for the last partial batch of 4
      lr: 0.02,
      seed: 11,
      patience: 0,
      ckptEvery: 2,
      ...over,
    });
    const model = new TinyNet(S, K, config.seed);
    const result = await fit({
      runDir: dir,
      config,
      model,
      modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
      train: new ToySource(toyImages(20, S, K, 1), S, config.batchSize, config.seed),
      val: () => toyEvalBatches(toyImages(9, S, K, 2), S, 16),
      resume: resume ? readCheckpoint(dir) : undefined,
      progress: { mode: 'off' },
    });
    const weights = Array.from(model.head.weight.dataSync());
    model.dispose();
    return { result, weights };
  };
  const tmp = (t: string) => fs.mkdtempSync(path.join(os.tmpdir(), `msm-faults-mem-${t}-`));
  const full = await run(tmp('a'), {});
  const again = await run(tmp('b'), {});
  assert.deepEqual(again.weights, full.weights, 'same seed, same micro-batches: identical');
  const split = tmp('c');
  await run(split, { maxSteps: 4 });
  const resumed = await run(split, {}, true);
  assert.deepEqual(resumed.weights, full.weights, 'resumed run = uninterrupted run');
  const whole = await run(tmp('d'), { microBatch: 0 });
  assert.notDeepEqual(whole.weights, full.weights, 'BatchNorm per micro-batch: not the full-batch run');
});
