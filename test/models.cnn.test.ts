/**
 * The CNN baselines of the zoo (docs/architecture.md §Baselines): resnet18 (+ stem 'cifar'), convnext-atto,
 * convnext-tiny, mobileone-s0 (+ reparameterize).
 *
 *   parity        each fixture of scripts/fixtures/make-cnn-fixtures.py (reference PyTorch at reduced
 *                 width, perturbed weights) reproduced on wasm and cpu to max |Δlogit| ≤ 1e-4 (or 20× the
 *                 reference's own float32-vs-float64 spread, at most 2e-3, where that is larger)
 *   train step    one training-mode step on each fixture (train_step.json): logits, BatchNorm running
 *                 statistics after it and per-parameter gradient statistics equal PyTorch's (BN batch
 *                 statistics, momentum updates and autodiff through every branch)
 * counts full-size parameter counts at 2 and 1000 classes = the table in docs/architecture.md §Baselines, exactly
 *   reparam       MobileOne's inference form = its training form in eval mode (≤ 1e-4), full size and reduced
 *   gradients     every trainable parameter gets a non-zero gradient (reduced sizes, training mode)
 *   MACs          the MAC walk at 224 px = ptflops' module-hook rules applied to the reference definitions
 *                 (make-cnn-fixtures.py --macs), for the training and the fused form
 *   contract      forwardHead(forwardFeatures(x)) = forward(x); stage taps in `stageNames` order; no leaks;
 *                 options are validated; dropRate / dropPathRate act in training only
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { type ClassifierModel, createModel, listModels, loadWeights, type ModelOptions } from '../lib/models/index';
import { MobileOne } from '../lib/models/mobileone/index';
import { Conv2d, countMacsWhile, countParameters, toTorchLayout } from '../lib/nn/index';
import { Rng } from '../lib/util/random';
import { PARITY_DIR, parityDiff, readParityMeta } from './parity.helpers';

function readF32(file: string): Float32Array {
  const buf = fs.readFileSync(file);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const FIXTURES = [
  'resnet18-reduced',
  'resnet18-cifar-reduced',
  'convnext-atto-reduced',
  'mobileone-s0-reduced',
  'mobileone-s0-reduced-reparam',
  'mobileone-s0-reduced-se',
];

/** The kit model a fixture was made for (meta.json `kit_model`, `kit_options`). */
function fixtureModel(name: string): ClassifierModel {
  const meta = readParityMeta(path.join(PARITY_DIR, name));
  return createModel(meta.kit_model as string, meta.kit_options as ModelOptions);
}

function tolerance(spread: number): number {
  return Math.max(1e-4, Math.min(20 * spread, 2e-3));
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`parity with the reference definitions on ${backend}`, async (t) => {
    await initBackend(backend, { quiet: true });
    try {
      for (const name of FIXTURES) {
        const model = fixtureModel(name);
        const { diff, meta } = parityDiff(model, path.join(PARITY_DIR, name));
        assert.equal(countParameters(model).total, meta.params_total, `${name}: parameter count`);
        model.dispose();
        const tol = tolerance(meta.logits_f64_max_abs_diff);
        t.diagnostic(
          `${name}: max |Δlogit| ${diff.toExponential(2)} (tolerance ${tol.toExponential(0)}, ` +
            `reference f32-vs-f64 spread ${meta.logits_f64_max_abs_diff.toExponential(2)})`,
        );
        assert.ok(diff <= tol, `${name} on ${backend}: max |Δlogit| ${diff} > ${tol}`);
      }
    } finally {
      await initBackend('wasm', { quiet: true });
    }
  });
}

interface TrainStep {
  probe: number[][];
  logits: number[];
  /** [Σ v, Σ |v|, Σ v_i·cos(i)] of each running statistic after the step, PyTorch layout. */
  running_after: Record<string, [number, number, number]>;
  /** The same three numbers of each parameter's gradient of sum(logits · probe). */
  grad_stats: Record<string, [number, number, number]>;
  /** How far float64 moves the gradient statistics (measured like statsDiff): the float32 spread. */
  grad_stats_f64_spread: number;
  logits_f64_max_abs_diff: number;
}

function stats(v: ArrayLike<number>): [number, number, number] {
  let sum = 0;
  let abs = 0;
  let cos = 0;
  for (let i = 0; i < v.length; i++) {
    sum += v[i];
    abs += Math.abs(v[i]);
    cos += v[i] * Math.cos(i);
  }
  return [sum, abs, cos];
}

/**
 * Largest |ours − reference| of the three statistics, relative to max(the reference's Σ|v|, `floor`).
 * The floor matters for gradients that are float32 noise by nature: a depthwise 1×1 conv followed by a
 * training-mode BatchNorm (MobileOne's scale branch) is scale-invariant per channel, so its true weight
 * gradient is 0 and both frameworks return rounding residue (Σ|g| ~1e-3 against ~1e3 for the stem).
 */
function statsDiff(ours: [number, number, number], ref: [number, number, number], floor = 1e-6): number {
  return Math.max(...ours.map((o, i) => Math.abs(o - ref[i]))) / Math.max(ref[1], floor);
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`one training-mode step equals the reference's on ${backend} (logits, running statistics, gradients)`, async (t) => {
    await initBackend(backend, { quiet: true });
    try {
      for (const name of FIXTURES) {
        const dir = path.join(PARITY_DIR, name);
        const file = path.join(dir, 'train_step.json');
        if (!fs.existsSync(file)) continue; // the reparam fixture: the reference's fused weights are detached
        const ref = JSON.parse(fs.readFileSync(file, 'utf8')) as TrainStep;
        const meta = readParityMeta(dir);
        const model = fixtureModel(name);
        loadWeights(model, path.join(dir, 'weights.safetensors'), { from: 'pytorch' });
        model.train();
        const named = model.namedParameters().filter(([, p]) => p.trainable && !p.dead);
        const before = tf.memory().numTensors;
        let logits: Float32Array = new Float32Array();
        const x = tf.tensor4d(readF32(path.join(dir, 'input_nhwc.f32')), meta.input_shape_nhwc);
        const probe = tf.tensor2d(ref.probe);
        const { value, grads } = tf.variableGrads(
          () => {
            const y = model.forward(x, { training: true });
            logits = y.dataSync() as Float32Array;
            return tf.sum(tf.mul(y, probe)) as tf.Scalar;
          },
          named.map(([, p]) => p.variable),
        );
        const dLogits = Math.max(...Array.from(logits, (v, i) => Math.abs(v - ref.logits[i])));
        // Gradients smaller than 1e-4 of the model's largest (by Σ|g|) are compared at that scale.
        const gradFloor = 1e-4 * Math.max(...Object.values(ref.grad_stats).map((v) => v[1]));
        let dGrad = 0;
        for (const [key, p] of named) {
          const g = tf.tidy(() => toTorchLayout(grads[p.variable.name], p.layout, p.torchShape).dataSync());
          dGrad = Math.max(dGrad, statsDiff(stats(g), ref.grad_stats[key], gradFloor));
        }
        let dRunning = 0;
        for (const [key, b] of model.namedBuffers()) {
          if (ref.running_after[key])
            dRunning = Math.max(dRunning, statsDiff(stats(b.dataSync()), ref.running_after[key]));
        }
        assert.deepEqual(
          Object.keys(ref.grad_stats).sort(),
          named.map(([k]) => k).sort(),
          `${name}: the same trainable parameters`,
        );
        tf.dispose([value, x, probe, ...Object.values(grads)]);
        assert.equal(tf.memory().numTensors, before, `${name}: the step leaks no tensors`);
        model.dispose();
        t.diagnostic(
          `${name}: logits ${dLogits.toExponential(2)}, gradient stats ${dGrad.toExponential(2)} (relative, floor ` +
            `${gradFloor.toExponential(1)}; reference f32-vs-f64 ${ref.grad_stats_f64_spread.toExponential(2)}), ` +
            `running stats ${dRunning.toExponential(2)} (relative)`,
        );
        const tolLogits = tolerance(ref.logits_f64_max_abs_diff);
        const tolGrad = tolerance(ref.grad_stats_f64_spread);
        assert.ok(dLogits <= tolLogits, `${name}: training-mode logits differ by ${dLogits} > ${tolLogits}`);
        assert.ok(dGrad <= tolGrad, `${name}: gradient statistics differ by ${dGrad} > ${tolGrad} (relative)`);
        assert.ok(dRunning <= 1e-5, `${name}: running statistics differ by ${dRunning} (relative)`);
      }
    } finally {
      await initBackend('wasm', { quiet: true });
    }
  });
}

test('fixtures stay within the CNN group budget (≤ 600 KB)', () => {
  let bytes = 0;
  for (const name of FIXTURES) {
    const dir = path.join(PARITY_DIR, name);
    for (const f of fs.readdirSync(dir)) bytes += fs.statSync(path.join(dir, f)).size;
  }
  assert.ok(bytes <= 600 * 1024, `CNN fixtures take ${bytes} bytes`);
});

test('full-size parameter counts equal docs/architecture.md §Baselines (2 and 1000 classes)', () => {
  const table: Array<[string, ModelOptions, number, number, number?, number?]> = [
    ['resnet18', {}, 11_177_538, 11_689_512],
    ['resnet18', { stem: 'cifar' }, 11_169_858, 11_681_832], // docs/architecture.md §Baselines: the official resnet.py's counts
    ['convnext-atto', {}, 3_375_162, 3_695_520],
    ['convnext-tiny', {}, 27_821_666, 28_589_128],
    ['mobileone-s0', {}, 4_270_322, 5_293_272, 1_055_554, 2_078_504],
  ];
  for (const [name, opts, at2, at1000, fused2, fused1000] of table) {
    for (const [numClasses, want, wantFused] of [
      [2, at2, fused2],
      [1000, at1000, fused1000],
    ] as const) {
      const model = createModel(name, { ...opts, numClasses });
      assert.equal(countParameters(model).total, want, `${name} ${JSON.stringify(opts)} @${numClasses}`);
      if (numClasses === 1000 && Object.keys(opts).length === 0) {
        const { referenceParams } = listModelsMeta(name);
        assert.equal(referenceParams, want, `${name}: meta.referenceParams`);
      }
      if (wantFused !== undefined) {
        const fused = (model as MobileOne).reparameterize();
        assert.equal(countParameters(fused).total, wantFused, `${name} reparameterized @${numClasses}`);
        fused.dispose();
      }
      model.dispose();
    }
  }
});

/** The registry's public listing, as `params --list` sees it. */
function listModelsMeta(name: string): { referenceParams?: number } {
  const entry = listModels().find((m) => m.name === name);
  assert.ok(entry, `${name} is registered`);
  return entry;
}

/** Do lib/nn's leaf layers report MACs (zoo-core's reports in Conv2d, Linear, BatchNorm2d, ...)? */
function leafLayersReportMacs(): boolean {
  const conv = new Conv2d(1, 1, 1);
  const x = tf.zeros([1, 1, 1, 1]);
  let reported = false;
  countMacsWhile(
    () => (reported = true),
    () => conv.forward(x).dispose(),
  );
  tf.dispose(x);
  conv.dispose();
  return reported;
}

test('MACs at 224 px equal ptflops’ module-hook rules on the reference definitions', (t) => {
  if (!leafLayersReportMacs()) {
    t.skip("lib/nn's Conv2d reports no MACs on this branch (zoo-core adds the leaf layers' reports)");
    return;
  }
  // scripts/fixtures/make-cnn-fixtures.py --macs (1000 classes, batch 1, 224 px).
  const table: Array<[string, ModelOptions, number, number?]> = [
    ['resnet18', {}, 1_822_177_768],
    ['convnext-atto', {}, 550_557_720],
    ['convnext-tiny', {}, 4_466_856_520],
    ['mobileone-s0', {}, 1_092_252_648, 282_738_152],
  ];
  const x = tf.zeros([1, 224, 224, 3]);
  const macsOf = (m: ClassifierModel) => {
    let paper = 0;
    countMacsWhile(
      (_kind, n, category) => (paper += category === 'paper' ? n : 0),
      () => m.forward(x, { training: false }).dispose(),
    );
    return paper;
  };
  for (const [name, opts, want, wantFused] of table) {
    const model = createModel(name, opts);
    model.eval();
    const got = macsOf(model);
    t.diagnostic(`${name}: ${got.toLocaleString('en')} MACs`);
    assert.equal(got, want, name);
    if (wantFused !== undefined) {
      const fused = (model as MobileOne).reparameterize();
      assert.equal(macsOf(fused), wantFused, `${name} reparameterized`);
      fused.dispose();
    }
    model.dispose();
  }
  x.dispose();
});

/** Eval-mode max |Δ| between a MobileOne and its reparameterized form on `x`. */
function reparamDiff(model: ClassifierModel, x: tf.Tensor): number {
  const fused = (model as MobileOne).reparameterize();
  try {
    model.eval();
    const a = model.forward(x, { training: false });
    const b = fused.forward(x, { training: false });
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
    tf.dispose([a, b]);
    return d;
  } finally {
    fused.dispose();
  }
}

/**
 * Move BatchNorm running statistics and γ, β off their initial values (so folding them is tested). γ is
 * drawn from U(0.6, 0.8): a block sums up to 6 normalised branches, so with γ ≈ 1 the eval activations of
 * the 22-block s0 grow to ~1e5 (float32 alone then moves the logits by more than 1e-4), and with γ ≈ 0.2
 * they shrink until the BN biases alone set the logits; 0.6–0.8 keeps every stage's map within O(1–30).
 */
function randomizeBatchNorms(model: ClassifierModel, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, t] of model.stateDict()) {
    const v = t as tf.Variable;
    const n = v.size;
    const set = (values: Float32Array) => v.assign(tf.tensor(values, v.shape));
    if (name.endsWith('running_var')) tf.tidy(() => set(rng.fillUniform(n, 0.5, 1.5)));
    else if (name.endsWith('running_mean')) tf.tidy(() => set(rng.fillNormal(n, 0, 0.1)));
    else if (/\.(rbr_skip|bn)\.weight$/.test(name)) tf.tidy(() => set(rng.fillUniform(n, 0.6, 0.8)));
    else if (/\.(rbr_skip|bn)\.bias$/.test(name)) tf.tidy(() => set(rng.fillNormal(n, 0, 0.1)));
  }
}

test('mobileone-s0: the reparameterized form equals the training form in eval mode (≤ 1e-4)', (t) => {
  const x = tf.tensor4d(new Rng(3).fillNormal(2 * 64 * 64 * 3), [2, 64, 64, 3]);
  const full = createModel('mobileone-s0', { numClasses: 2, seed: 1 });
  randomizeBatchNorms(full, 11);
  const before = tf.memory().numTensors;
  const dFull = reparamDiff(full, x);
  const scale = tf.tidy(() => tf.max(tf.abs(full.forward(x, { training: false }))).dataSync()[0]);
  assert.equal(tf.memory().numTensors, before, 'reparameterize + forward leak no tensors');
  full.dispose();
  t.diagnostic(`full size s0, 64 px: max |Δ| ${dFull.toExponential(2)} (max |logit| ${scale.toFixed(2)})`);
  assert.ok(dFull <= 1e-4, `full size: ${dFull}`);
  for (const name of ['mobileone-s0-reduced', 'mobileone-s0-reduced-se']) {
    const model = fixtureModel(name);
    loadWeights(model, path.join(PARITY_DIR, name, 'weights.safetensors'), { from: 'pytorch' });
    const d = reparamDiff(model, x);
    model.dispose();
    t.diagnostic(`${name} (fixture weights): max |Δ| ${d.toExponential(2)}`);
    assert.ok(d <= 1e-4, `${name}: ${d}`);
  }
  x.dispose();
});

test('mobileone-s0: reparameterize leaves the training form unchanged and names match the reference', () => {
  const model = fixtureModel('mobileone-s0-reduced');
  const before = new Map([...model.stateDict()].map(([k, v]) => [k, Array.from(v.dataSync())]));
  const fused = (model as MobileOne).reparameterize();
  for (const [k, v] of model.stateDict()) assert.deepEqual(Array.from(v.dataSync()), before.get(k), k);
  assert.equal(fused.training, false, 'the inference form comes back in eval mode');
  const meta = readParityMeta(path.join(PARITY_DIR, 'mobileone-s0-reduced-reparam'));
  const want = Object.keys(meta.state_keys as Record<string, number[]>).sort();
  assert.deepEqual([...fused.stateDict().keys()].sort(), want, 'inference-form keys = reparameterize_model keys');
  fused.dispose();
  model.dispose();
});

/** Small builds of every model (every block type present), for gradients and the contract checks. */
const SMALL: Array<[string, ModelOptions, number]> = [
  ['resnet18', { numClasses: 3, widths: [4, 8, 8, 8], depths: [2, 1, 1, 1] }, 40],
  ['resnet18', { numClasses: 3, widths: [4, 8, 8, 8], depths: [1, 1, 1, 1], stem: 'cifar' }, 16],
  ['convnext-atto', { numClasses: 3, depths: [1, 1, 2, 1], dims: [4, 8, 8, 8] }, 32],
  ['convnext-tiny', { numClasses: 3, depths: [1, 1, 1, 1], dims: [4, 4, 8, 8], dropPathRate: 0.2 }, 32],
  [
    'mobileone-s0',
    { numClasses: 3, numBlocksPerStage: [1, 2, 1, 1], widthMultipliers: [0.125, 0.125, 0.0625, 0.03125] },
    32,
  ],
  [
    'mobileone-s0',
    { numClasses: 3, numBlocksPerStage: [1, 1, 2, 1], widthMultipliers: [0.125, 0.125, 0.0625, 0.03125], useSe: true },
    32,
  ],
  [
    'mobileone-s0',
    {
      numClasses: 3,
      numBlocksPerStage: [1, 1, 1, 1],
      widthMultipliers: [0.125, 0.125, 0.0625, 0.03125],
      inferenceMode: true,
    },
    32,
  ],
];

test('gradients reach every trainable parameter (small sizes, training mode)', () => {
  for (const [name, opts, size] of SMALL) {
    const model = createModel(name, { ...opts, seed: 5 });
    const x = tf.tensor4d(new Rng(8).fillNormal(2 * size * size * 3), [2, size, size, 3]);
    const r = tf.tensor2d(new Rng(9).fillNormal(2 * 3), [2, 3]);
    const named = model.namedParameters().filter(([, p]) => p.trainable && !p.dead);
    const before = tf.memory().numTensors;
    const { grads, value } = tf.variableGrads(
      () => tf.sum(tf.mul(model.forward(x, { training: true, rng: new Rng(1) }), r)) as tf.Scalar,
      named.map(([, p]) => p.variable),
    );
    const silent = named
      .filter(([, p]) => {
        const g = grads[p.variable.name];
        return !g || tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0]) === 0;
      })
      .map(([k]) => k);
    assert.ok(Number.isFinite(value.dataSync()[0]), `${name}: finite loss`);
    tf.dispose([value, ...Object.values(grads)]);
    assert.equal(tf.memory().numTensors, before, `${name}: the gradient step leaks no tensors`);
    assert.deepEqual(silent, [], `${name} ${JSON.stringify(opts)}: parameters without gradient`);
    tf.dispose([x, r]);
    model.dispose();
  }
});

test('forwardHead(forwardFeatures(x)) equals forward(x); stages are tapped in stageNames order', () => {
  for (const [name, opts, size] of SMALL) {
    const model = createModel(name, opts);
    model.eval();
    const x = tf.tensor4d(new Rng(4).fillNormal(2 * size * size * 3), [2, size, size, 3]);
    const seen: string[] = [];
    const tap = (stage: string, t: tf.Tensor) => {
      seen.push(stage);
      assert.equal(t.rank, 4, `${name}: stage ${stage} is an NHWC map`);
      return t;
    };
    const before = tf.memory().numTensors;
    const y = model.forward(x, { training: false, tap });
    assert.equal(tf.memory().numTensors, before + 1, `${name}: forward leaks no tensors`);
    assert.deepEqual(seen, [...model.stageNames], `${name}: taps`);
    const f = model.forwardFeatures(x, { training: false });
    assert.equal(f.rank, 4, `${name}: features are a map before pooling`);
    const y2 = model.forwardHead(f, { training: false });
    assert.deepEqual(y.shape, [2, 3]);
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(y, y2))).dataSync()[0]);
    assert.ok(d <= 1e-6, `${name}: split differs by ${d}`);
    tf.dispose([x, y, f, y2]);
    model.dispose();
  }
});

test('dropRate and dropPathRate act in training only; seeded runs repeat', () => {
  const opts = { numClasses: 3, widths: [4, 8, 8, 8], depths: [1, 1, 1, 1], stem: 'cifar' };
  const plain = createModel('resnet18', { ...opts, seed: 2 });
  const noisy = createModel('resnet18', { ...opts, seed: 2, dropRate: 0.5, dropPathRate: 0.5 });
  const x = tf.tensor4d(new Rng(6).fillNormal(4 * 16 * 16 * 3), [4, 16, 16, 3]);
  const run = (m: ClassifierModel, training: boolean, seed = 1) =>
    Array.from(m.forward(x, { training, rng: new Rng(seed) }).dataSync());
  plain.eval();
  noisy.eval();
  assert.deepEqual(run(noisy, false), run(plain, false), 'eval: identical');
  assert.notDeepEqual(run(noisy, true), run(plain, true), 'training: dropout and drop path change the output');
  assert.deepEqual(run(noisy, true, 7), run(noisy, true, 7), 'same ctx.rng seed → same masks');
  x.dispose();
  plain.dispose();
  noisy.dispose();
});

test('options and inputs are validated with clear errors', () => {
  assert.throws(() => createModel('resnet18', { stem: 'tiny' }), /resnet18: option stem must be 'imagenet'.*'cifar'/);
  assert.throws(() => createModel('resnet18', { widths: [64, 128] }), /resnet18: option widths must be 4 positive/);
  assert.throws(() => createModel('convnext-atto', { kernel: 5 }), /unknown option\(s\) kernel\. Accepted: .*dims/);
  assert.throws(() => createModel('mobileone-s0', { widthMultipliers: [1, 1, 1] }), /widthMultipliers must be 4/);
  assert.throws(
    () => createModel('mobileone-s0', { widthMultipliers: [0.125, 0.125, 0.03125, 0.03125], useSe: true }),
    /MobileOne SEBlock: int\(8·0.0625\) = 0 channels/,
  );
  const m = createModel('convnext-atto', { numClasses: 2, depths: [1, 1, 1, 1], dims: [4, 4, 4, 4] });
  assert.throws(() => m.checkInput([1, 16, 16, 3]), /convnext-atto\.forward: input 16×16 is below 32×32/);
  assert.throws(() => m.checkInput([1, 32, 32, 1]), /expected 3 input channels/);
  assert.throws(() => m.checkInput([32, 32, 3]), /expected an NHWC batch/);
  m.dispose();
});
