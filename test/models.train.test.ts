/**
 * Training behaviour of Microscopic-Mamba on wasm: one Adam step lowers the loss; BatchNorm's running
 * statistics follow PyTorch's update (momentum 0.1, unbiased batch variance) in train mode and stay put
 * in eval mode; DropPath is the identity in eval mode and drops whole samples with probability p (scaling
 * the rest by 1/(1−p)) in train mode; every ablation / fix combination builds and runs forward and
 * backward with a gradient for every used parameter; nothing leaks across passes and steps.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { channelShuffle, Conv2dBN, createModel, loadWeights, MicroscopicMamba, PSFFN } from '../lib/models/index';
import { BatchNorm2d, DropPath, silu } from '../lib/nn/index';
import { Rng } from '../lib/util/random';
import { fixtureOptions, MICROSCOPIC_MAMBA_FIXTURE } from './parity.helpers';

/** Official weights moved off their initial values (in-repo parity fixture, dims 32-64, depths 1-2). */
const FIXTURE = MICROSCOPIC_MAMBA_FIXTURE;
const FIXTURE_OPTIONS = fixtureOptions(FIXTURE);

before(async () => {
  await initBackend('wasm', { quiet: true });
});

/** A small configuration with every module kind (one block per stage, narrow stages): fast to train. */
const SMALL = { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256] };

function randomBatch(b: number, h: number, w: number, seed: number): tf.Tensor4D {
  return tf.tensor4d(new Rng(seed).fillNormal(b * h * w * 3), [b, h, w, 3]);
}

function crossEntropy(model: MicroscopicMamba, x: tf.Tensor, labels: tf.Tensor, seed: number): tf.Scalar {
  const logits = model.forward(x, { training: true, rng: new Rng(seed) });
  return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
}

test('one Adam step on a batch lowers the loss; every used parameter gets a gradient', () => {
  const model = createModel('microscopic-mamba-t', { numClasses: 3, seed: 1 }) as MicroscopicMamba;
  const x = randomBatch(4, 32, 32, 11);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1], 'int32'), 3);
  const loss0 = tf.tidy(() => crossEntropy(model, x, labels, 5).dataSync()[0]);
  const optimizer = tf.train.adam(1e-3);
  const vars = model.trainableVariables();
  const { value, grads } = tf.variableGrads(() => crossEntropy(model, x, labels, 5), vars);
  assert.ok(Math.abs(value.dataSync()[0] - loss0) < 1e-5, 'same loss inside the tape');
  assert.deepEqual(Object.keys(grads).sort(), vars.map((v) => v.name).sort(), 'a gradient for every used parameter');
  for (const [name, g] of Object.entries(grads))
    assert.ok(tf.all(tf.isFinite(g)).dataSync()[0], `finite gradient ${name}`);
  optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
  tf.dispose([value, grads]);
  const loss1 = tf.tidy(() => crossEntropy(model, x, labels, 5).dataSync()[0]);
  assert.ok(loss1 < loss0, `loss ${loss0} → ${loss1}`);
  optimizer.dispose();
  tf.dispose([x, labels]);
  model.dispose();
});

test('BatchNorm running statistics follow PyTorch in train mode and stay put in eval mode', () => {
  // Official weights: non-trivial running statistics to start from.
  const model = createModel('microscopic-mamba-t', FIXTURE_OPTIONS) as MicroscopicMamba;
  loadWeights(model, path.join(FIXTURE, 'weights.safetensors'));
  const reference = createModel('microscopic-mamba-t', FIXTURE_OPTIONS) as MicroscopicMamba;
  loadWeights(reference, path.join(FIXTURE, 'weights.safetensors'));
  const bns = new Map(model.namedModules().filter(([, m]) => m instanceof BatchNorm2d) as Array<[string, BatchNorm2d]>);
  const stem = bns.get('patch_embed.0.bn')!;
  const branch = bns.get('layers.0.blocks.0.Conv_branch.0')!;
  const x = randomBatch(2, 64, 64, 3);

  // The inputs these two BatchNorms see in a train-mode forward pass, computed by the reference copy.
  const stemIn = (reference.patch_embed.at(0) as Conv2dBN).c.forward(x); // the stem's first conv
  const stemOut = reference.patch_embed.forward(x, { training: true });
  const branchIn = tf.split(stemOut, 2, 3)[0]; // the conv branch gets the first half of the channels

  /** PyTorch: running ← (1 − 0.1)·running + 0.1·batch statistic, the variance unbiased (n / (n − 1)). */
  const expected = (input: tf.Tensor, bn: BatchNorm2d) => {
    const c = bn.numFeatures;
    const v = input.dataSync();
    const n = v.length / c;
    const mean = new Float64Array(c);
    const sq = new Float64Array(c);
    for (let i = 0; i < v.length; i++) mean[i % c] += v[i] / n;
    for (let i = 0; i < v.length; i++) sq[i % c] += (v[i] - mean[i % c]) ** 2;
    const rm = bn.runningMean.dataSync();
    const rv = bn.runningVar.dataSync();
    return {
      mean: Array.from(rm, (r, j) => 0.9 * r + 0.1 * mean[j]),
      variance: Array.from(rv, (r, j) => 0.9 * r + 0.1 * (sq[j] / (n - 1))),
    };
  };
  const want = [expected(stemIn, stem), expected(branchIn, branch)];

  // Eval mode: no update.
  const frozen = [...bns.values()].map((bn) => Array.from(bn.runningVar.dataSync()));
  model.eval();
  model.forward(x).dispose();
  assert.deepEqual(
    [...bns.values()].map((bn) => Array.from(bn.runningVar.dataSync())),
    frozen,
  );

  // Train mode (by the module flag this time): one momentum update.
  model.train();
  model.forward(x, { training: true, rng: new Rng(0) }).dispose();
  [stem, branch].forEach((bn, i) => {
    const gotMean = bn.runningMean.dataSync();
    const gotVar = bn.runningVar.dataSync();
    want[i].mean.forEach((m, j) =>
      assert.ok(Math.abs(gotMean[j] - m) < 1e-5, `running_mean[${j}] ${gotMean[j]} vs ${m}`),
    );
    want[i].variance.forEach((v, j) =>
      assert.ok(Math.abs(gotVar[j] - v) < 1e-4 * Math.max(1, v), `running_var[${j}] ${gotVar[j]} vs ${v}`),
    );
  });
  tf.dispose([x, stemIn, stemOut, branchIn]);
  model.dispose();
  reference.dispose();
});

test('DropPath: identity in eval mode; in train mode drops whole samples with probability p, scales the rest', () => {
  const model = createModel('microscopic-mamba-t', { numClasses: 2 }) as MicroscopicMamba;
  const last = model.namedModules().find(([k]) => k === 'layers.3.blocks.1.drop_path')![1] as DropPath;
  assert.ok(Math.abs(last.dropProb - 0.1) < 1e-12);
  tf.tidy(() => {
    const n = 4000;
    const x = tf.ones([n, 2, 2, 3]);
    assert.equal(last.forward(x, { training: false }), x, 'eval mode returns its input');
    const y = last
      .forward(x, { training: true, rng: new Rng(9) })
      .reshape([n, 12])
      .arraySync() as number[][];
    let dropped = 0;
    for (const row of y) {
      const first = row[0];
      assert.ok(
        row.every((v) => v === first),
        'a whole sample is kept or dropped',
      );
      if (first === 0) dropped++;
      else assert.ok(Math.abs(first - 1 / 0.9) < 1e-6, `kept samples are scaled by 1/(1−p): ${first}`);
    }
    // Binomial(4000, 0.1): sd 19, so ±80 is > 4 sd.
    assert.ok(Math.abs(dropped - 400) < 80, `dropped ${dropped} of ${n}`);
  });
  // In the model: train mode with the same rng is reproducible, eval mode ignores the rng.
  const x = randomBatch(2, 32, 32, 4);
  const run = (training: boolean, seed: number) =>
    tf.tidy(() => Array.from(model.forward(x, { training, rng: new Rng(seed) }).dataSync()));
  assert.deepEqual(run(true, 1), run(true, 1));
  assert.deepEqual(run(false, 1), run(false, 2));
  x.dispose();
  model.dispose();
});

test('every ablation and fix combination builds and runs forward and backward', () => {
  const switches = ['psffn', 'mifa', 'parallelVssm', 'eca'] as const;
  const fixes = {
    fixPsffnTranspose: true,
    blockResidual: true,
    dropDeadParams: true,
    separatePvmNorms: true,
    fixMifaGate: true,
  };
  const labels = tf.oneHot(tf.tensor1d([0, 1], 'int32'), 2);
  for (let mask = 0; mask < 16; mask++) {
    for (const fixed of [false, true]) {
      const opts: Record<string, unknown> = { ...SMALL, numClasses: 2, ...(fixed ? fixes : {}) };
      switches.forEach((s, i) => (opts[s] = (mask & (1 << i)) === 0));
      const label = JSON.stringify(opts);
      const model = createModel('microscopic-mamba-t', opts) as MicroscopicMamba;
      // With the transpose fixed, non-square inputs work.
      const x = fixed ? randomBatch(2, 32, 64, mask) : randomBatch(2, 32, 32, mask);
      const vars = model.trainableVariables();
      const { value, grads } = tf.variableGrads(
        () =>
          tf.losses.softmaxCrossEntropy(labels, model.forward(x, { training: true, rng: new Rng(mask) })) as tf.Scalar,
        vars,
      );
      assert.ok(Number.isFinite(value.dataSync()[0]), label);
      assert.deepEqual(
        Object.keys(grads).sort(),
        vars.map((v) => v.name).sort(),
        `${label}: a gradient for every used parameter`,
      );
      const eval_ = tf.tidy(() => model.forward(x, { training: false }));
      assert.deepEqual(eval_.shape, [2, 2], label);
      tf.dispose([value, grads, eval_, x]);
      model.dispose();
    }
  }
  labels.dispose();
});

test('no tensor leaks across forward passes and training steps', () => {
  const model = createModel('microscopic-mamba-t', { ...SMALL, numClasses: 2 }) as MicroscopicMamba;
  const x = randomBatch(2, 32, 32, 2);
  const labels = tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2);
  const optimizer = tf.train.adam(1e-3);
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(labels, model.forward(x, { training: true, rng: new Rng(1) })) as tf.Scalar,
      model.trainableVariables(),
    );
    optimizer.applyGradients(Object.entries(grads).map(([name, tensor]) => ({ name, tensor })));
    tf.dispose([value, grads]);
  };
  step(); // creates Adam's moment variables
  const start = tf.memory().numTensors;
  for (let i = 0; i < 2; i++) {
    model.forward(x, { training: false }).dispose();
    model.forward(x, { training: true, rng: new Rng(i) }).dispose();
    step();
    assert.equal(tf.memory().numTensors, start, `after round ${i}`);
  }
  optimizer.dispose();
  tf.dispose([x, labels]);
  model.dispose();
});

test('PSFFN computed as one depthwise conv equals the official split / filter / concat, forward and backward', () => {
  for (const transposeHW of [false, true]) {
    const psffn = new PSFFN(24, 12, new Rng(3), transposeHW); // e = 24, d = 12, p = 3
    const y = randomBatch(2, 8, 8, 5).tile([1, 1, 1, 8]); // [2, 8, 8, 24]
    /** The official forward (L880–889) written out: split, conv_1 on the first p channels, concat, shuffle. */
    const official = (input: tf.Tensor) => {
      const t = silu(psffn.conv_0.forward(input));
      const [t1, t2] = tf.split(t, [3, 9], 3);
      const out = channelShuffle(tf.concat([silu(psffn.conv_1.forward(t1)), t2], 3), 6);
      return transposeHW ? tf.transpose(out, [0, 2, 1, 3]) : out;
    };
    const weights = [psffn.conv_0.weight, psffn.conv_0.bias!, psffn.conv_1.weight, psffn.conv_1.bias!];
    const probe = tf.tidy(() => tf.randomNormal([2, 8, 8, 12], 0, 1, 'float32', 1)); // a random cotangent
    const ours = tf.grads((input: tf.Tensor, ...w: tf.Tensor[]) => {
      void w;
      return tf.sum(tf.mul(psffn.forward(input), probe));
    });
    const theirs = tf.grads((input: tf.Tensor, ...w: tf.Tensor[]) => {
      void w;
      return tf.sum(tf.mul(official(input), probe));
    });
    tf.tidy(() => {
      // The fused kernels (SiLU with its own σ, conv bias inside the conv) round differently from the split
      // ops: equal within the fused kernels' forward tolerance (1e-5 relative, docs/platform.md §Bit-identity policy).
      const fwd = official(y);
      const fwdDiff = tf.max(tf.abs(tf.sub(psffn.forward(y), fwd))).dataSync()[0];
      const fwdScale = tf.max(tf.abs(fwd)).dataSync()[0];
      assert.ok(fwdDiff <= 1e-5 * Math.max(1, fwdScale), `forward differs by ${fwdDiff} (scale ${fwdScale})`);
      const ga = tf.variableGrads(
        () => tf.sum(tf.mul(psffn.forward(y), probe)) as tf.Scalar,
        weights as tf.Variable[],
      ).grads;
      const gb = tf.variableGrads(
        () => tf.sum(tf.mul(official(y), probe)) as tf.Scalar,
        weights as tf.Variable[],
      ).grads;
      for (const v of weights) {
        const diff = tf.max(tf.abs(tf.sub(ga[v.name], gb[v.name]))).dataSync()[0];
        const scale = tf.max(tf.abs(gb[v.name])).dataSync()[0];
        assert.ok(diff <= 1e-5 * Math.max(1, scale), `${v.name}: gradient differs by ${diff} (scale ${scale})`);
      }
      const [dxa] = ours([y, ...weights]);
      const [dxb] = theirs([y, ...weights]);
      assert.ok(tf.max(tf.abs(tf.sub(dxa, dxb))).dataSync()[0] <= 1e-5, 'input gradient');
    });
    tf.dispose([y, probe]);
    psffn.dispose();
  }
});

test('model gradients on wasm match the cpu backend', async () => {
  const labels = () => tf.oneHot(tf.tensor1d([1, 0], 'int32'), 2);
  const gradsOn = async (backend: string) => {
    await initBackend(backend, { quiet: true });
    const model = createModel('microscopic-mamba-t', { ...SMALL, numClasses: 2, seed: 4 }) as MicroscopicMamba;
    const x = randomBatch(2, 64, 64, 8); // 64 px: the last stage's BatchNorms see 8 values per channel
    const y = labels();
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.forward(x, { training: true, rng: new Rng(3) })) as tf.Scalar,
      model.trainableVariables(),
    );
    // Variable names carry a process-wide counter: key the gradients by parameter name instead.
    const byParam = new Map(model.namedParameters().map(([k, p]) => [p.variable.name, k]));
    const out = new Map<string, Float32Array>();
    for (const [name, g] of Object.entries(grads)) out.set(byParam.get(name)!, Float32Array.from(g.dataSync()));
    const loss = value.dataSync()[0];
    tf.dispose([value, grads, x, y]);
    model.dispose();
    return { loss, grads: out };
  };
  const cpu = await gradsOn('cpu');
  const wasm = await gradsOn('wasm');
  assert.ok(Math.abs(cpu.loss - wasm.loss) < 1e-5, `loss ${cpu.loss} vs ${wasm.loss}`);
  assert.deepEqual([...wasm.grads.keys()].sort(), [...cpu.grads.keys()].sort());
  for (const [key, g] of cpu.grads) {
    const w = wasm.grads.get(key)!;
    let scale = 0;
    let diff = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]));
      diff = Math.max(diff, Math.abs(g[i] - w[i]));
    }
    // Relative to the gradient's scale; a floor for gradients that are zero in exact arithmetic (a conv bias
    // right before a BatchNorm) and so only float noise on both backends.
    assert.ok(diff <= 1e-4 * Math.max(scale, 1e-2), `${key}: max abs diff ${diff} at gradient scale ${scale}`);
  }
});

test('activation checkpointing gives the same loss, gradients and BatchNorm state with less memory kept', () => {
  const x = randomBatch(4, 64, 64, 12);
  const labels = tf.oneHot(tf.tensor1d([0, 1, 1, 0], 'int32'), 2);
  const run = (useCheckpoint: boolean) => {
    // dropPathRate 0.5 so that DropPath really drops samples, which the recomputation must replay.
    const model = createModel('microscopic-mamba-t', {
      ...SMALL,
      numClasses: 2,
      seed: 6,
      dropPathRate: 0.5,
      useCheckpoint,
    }) as MicroscopicMamba;
    let kept = 0;
    const start = tf.memory().numBytes;
    const { value, grads } = tf.variableGrads(() => {
      const logits = model.forward(x, { training: true, rng: new Rng(21) });
      kept = tf.memory().numBytes - start; // what the tape holds for the backward pass
      return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
    }, model.trainableVariables());
    const byParam = new Map(model.namedParameters().map(([k, p]) => [p.variable.name, k]));
    const out = {
      loss: value.dataSync()[0],
      kept,
      grads: new Map(Object.entries(grads).map(([n, g]) => [byParam.get(n)!, Float32Array.from(g.dataSync())])),
      buffers: model.namedBuffers().map(([k, b]) => [k, Array.from(b.dataSync())] as const),
    };
    tf.dispose([value, grads]);
    model.dispose();
    return out;
  };
  const plain = run(false);
  const before = tf.memory().numTensors;
  const ckpt = run(true);
  assert.equal(tf.memory().numTensors, before, 'no leaks');
  assert.equal(ckpt.loss, plain.loss);
  assert.ok(ckpt.kept < plain.kept / 3, `kept ${ckpt.kept} bytes vs ${plain.kept} without checkpointing`);
  assert.deepEqual([...ckpt.grads.keys()].sort(), [...plain.grads.keys()].sort());
  for (const [k, g] of plain.grads) {
    const c = ckpt.grads.get(k)!;
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < g.length; i++) {
      diff = Math.max(diff, Math.abs(g[i] - c[i]));
      scale = Math.max(scale, Math.abs(g[i]));
    }
    assert.ok(diff <= 1e-5 * Math.max(scale, 1e-2), `${k}: ${diff} (scale ${scale})`);
  }
  assert.deepEqual(ckpt.buffers, plain.buffers, 'running statistics updated once, as without checkpointing');
  tf.dispose([x, labels]);
});
