/**
 * The model contract (lib/models/contract.ts), checked for every registered model (`listModels()`):
 *
 *   full size   countParams at 1000 classes = meta.referenceParams; forward at meta.defaultSize → [1, 1000]
 *   reduced     (meta.reducedConfig, or the default options at the smallest allowed size; batch 2, 3 classes)
 *               forward shape; forwardHead(forwardFeatures(x)) = forward(x); every stageNames entry is tapped
 *               once, in order, with a [b, h, w, C] map (ViT: [b, T, D] tokens), the last one shaped like the
 *               features, and the model continues with what the tap returns; checkInput rejects bad shapes;
 *               countMacs runs and its kinds add up
 *   gradients   a training-mode loss has a finite gradient for every trainable, used parameter
 *   weights     saveWeights → loadWeights(…, { from: 'pytorch' }) into a model built with another seed is
 *               bit-exact (every parameter and buffer) and gives identical logits
 *   options     the shared options are accepted, unknown ones rejected with the accepted list
 *   fused       models with `fusedForInference` give the same eval logits in the fused form (≤ 1e-4)
 *
 * Every check also asserts that no tensor outlives it. The full-size checks build each model at its
 * reference size once; everything else runs at the reduced configuration so the file stays within a few
 * minutes on two cores.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  type ClassifierModel,
  countMacs,
  countParams,
  createModel,
  type InputRule,
  listModels,
  loadWeights,
  type ModelOptions,
  saveWeights,
  SHARED_OPTION_NAMES,
} from '../lib/models/index';
import { BatchNorm2d, Conv2d, GELU, LayerNorm, Linear, Module, ReLU, SiLU } from '../lib/nn/index';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const MODELS = listModels();
const CLASSES = 3;
const BATCH = 2;

/** The smallest square side the input rules allow (at least 32). */
function smallestSize(rule: InputRule): number {
  if (rule.fixedSize) return rule.fixedSize;
  const m = rule.multipleOf ?? 1;
  return Math.ceil(Math.max(rule.minSize ?? 32, 32) / m) * m;
}

function reduced(meta: (typeof MODELS)[number]): { options: ModelOptions; size: number } {
  return meta.reducedConfig ?? { options: {}, size: smallestSize(meta.input) };
}

function images(b: number, s: number, seed: number): tf.Tensor4D {
  return tf.tensor4d(new Rng(seed).fillNormal(b * s * s * 3), [b, s, s, 3]);
}

/** Run `fn` and check that it leaves the tensor count where it found it. */
async function noLeaks(what: string, fn: () => void | Promise<void>): Promise<void> {
  const before = tf.memory().numTensors;
  await fn();
  assert.equal(tf.memory().numTensors, before, `${what}: tensors leaked`);
}

/** Move every parameter and buffer off its initial value (BN γ = 0, running stats 0/1, LayerScale 1e-6 ...). */
function perturb(model: ClassifierModel, seed: number): void {
  const rng = new Rng(seed);
  const vars = [...model.namedParameters().map(([, p]) => p.variable), ...model.namedBuffers().map(([, b]) => b)];
  for (const v of vars) {
    if (v.dtype !== 'float32') continue;
    tf.tidy(() => {
      const noise = tf.tensor(rng.fillNormal(v.size, 0, 0.05), v.shape);
      // Keep variances positive (running_var): |v + noise| + 0.5 for buffers named like one.
      v.assign(v.name.includes('running_var') ? tf.add(tf.abs(tf.add(v, noise)), 0.5) : tf.add(v, noise));
    });
  }
}

const maxAbsDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

test('the registry lists models with complete metadata', () => {
  assert.ok(MODELS.length >= 3, 'at least the three Microscopic-Mamba variants');
  for (const m of MODELS) {
    assert.ok(m.description && m.source, `${m.name}: description and source`);
    assert.ok(['cnn', 'vit', 'hybrid', 'mamba', 'microscopic-mamba'].includes(m.family), `${m.name}: family`);
    assert.ok(Number.isInteger(m.referenceParams) && m.referenceParams! > 0, `${m.name}: referenceParams`);
    const r = reduced(m);
    assert.ok(Number.isInteger(r.size) && r.size > 0, `${m.name}: reduced size`);
  }
});

/** A toy model built from lib/nn leaf layers, one of them run four times. */
class FourCalls extends Module {
  readonly conv = this.addModule('conv', new Conv2d(3, 8, 3, { stride: 2, padding: 1 }));
  readonly bn = this.addModule('bn', new BatchNorm2d(8));
  readonly acts = [
    this.addModule('relu', new ReLU()),
    this.addModule('gelu', new GELU()),
    this.addModule('silu', new SiLU()),
  ];
  readonly norm = this.addModule('norm', new LayerNorm(8));
  readonly fc = this.addModule('fc', new Linear(8, 8));
  forward(x: tf.Tensor): tf.Tensor {
    let y = this.bn.forward(this.conv.forward(x)); // [1, 16, 16, 8]
    for (const a of this.acts) y = a.forward(y);
    y = this.norm.forward(y);
    for (let i = 0; i < 4; i++) y = this.fc.forward(y); // the same Linear, four calls
    return y;
  }
}

test('countMacs: lib/nn leaf layers report ptflops’ rules while they run; four calls count four times', () =>
  noLeaks('FourCalls', () => {
    const m = new FourCalls();
    m.train();
    const r = countMacs(m, 32);
    const positions = 16 * 16;
    assert.deepEqual(r.byKind, {
      Conv2d: positions * 9 * 3 * 8 + positions * 8, // k²·in·out per position + the bias per position
      BatchNorm2d: positions * 8 * 2, // numel ×2 (affine)
      ReLU: positions * 8,
      GELU: positions * 8,
      SiLU: positions * 8,
      LayerNorm: positions * 8 * 2,
      Linear: 4 * (positions * 8 * 8 + 8), // numel(input)·out + the bias once, per call
    });
    assert.equal(r.full, r.paper);
    assert.deepEqual(r.extra, {});
    assert.ok(m.bn.training, 'countMacs restores train mode');
    const mean = m.bn.runningMean.dataSync();
    assert.ok(
      mean.every((v) => v === 0),
      'countMacs runs in eval mode: running statistics untouched',
    );
    m.dispose();
  }));

for (const meta of MODELS) {
  const { name } = meta;
  const small = reduced(meta);

  test(`${name}: ${meta.referenceParams?.toLocaleString('en-US')} parameters at 1000 classes; forward at ${meta.defaultSize} px`, () =>
    noLeaks(name, () => {
      const model = createModel(name, { numClasses: 1000 });
      try {
        assert.equal(countParams(model).total, meta.referenceParams, `${name}: countParams().total at 1000 classes`);
        assert.equal(model.numClasses, 1000);
        model.eval();
        tf.tidy(() => {
          const y = model.forward(tf.zeros([1, meta.defaultSize, meta.defaultSize, 3]), { training: false });
          assert.deepEqual(y.shape, [1, 1000]);
          assert.ok(tf.all(tf.isFinite(y)).dataSync()[0], 'finite logits');
        });
      } finally {
        model.dispose();
      }
    }));

  test(`${name}: reduced config at ${small.size} px: shapes, features/head split, stage taps, input checks, MACs`, () =>
    noLeaks(name, () => {
      const model = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1 });
      try {
        perturb(model, 2);
        model.eval();
        tf.tidy(() => {
          const x = images(BATCH, small.size, 3);
          const y = model.forward(x, { training: false });
          assert.deepEqual(y.shape, [BATCH, CLASSES]);
          const features = model.forwardFeatures(x, { training: false });
          assert.ok(features.rank === 4 || features.rank === 3, `features rank ${features.rank}`);
          assert.equal(features.shape[0], BATCH);
          const split = model.forwardHead(features, { training: false });
          assert.equal(maxAbsDiff(split, y), 0, 'forwardHead(forwardFeatures(x)) = forward(x)');

          // Stage taps: every stage once, in order; the model continues with what the tap returns.
          const seen: Array<{ stage: string; shape: number[] }> = [];
          const tapped = model.forward(x, {
            training: false,
            tap: (stage, t) => {
              seen.push({ stage, shape: t.shape });
              return t;
            },
          });
          assert.deepEqual(
            seen.map((s) => s.stage),
            [...model.stageNames],
            'tapped stages = stageNames, in order',
          );
          assert.equal(maxAbsDiff(tapped, y), 0, 'an identity tap changes nothing');
          for (const s of seen) {
            assert.equal(s.shape[0], BATCH, `${s.stage}: batch axis`);
            assert.ok(s.shape.length === 4 || s.shape.length === 3, `${s.stage}: NHWC map or tokens`);
            if (s.shape.length === 4) {
              assert.ok(s.shape[1] <= small.size && s.shape[2] <= small.size, `${s.stage}: [${s.shape}]`);
            }
          }
          assert.deepEqual(seen[seen.length - 1].shape, features.shape, 'the last stage has the features’ shape');
          const last = model.stageNames[model.stageNames.length - 1];
          const zeroed = model.forward(x, {
            training: false,
            tap: (stage, t) => (stage === last ? tf.zerosLike(t) : t),
          });
          const rows = zeroed.arraySync() as number[][];
          rows.forEach((r, i) =>
            r.forEach((v, k) => assert.ok(Math.abs(v - rows[0][k]) < 1e-5, `zeroed last stage: row ${i} = row 0`)),
          );
        });
        assert.throws(() => model.checkInput([1, small.size, small.size, 1]), /channel|3|shape/i);
        assert.throws(() => model.checkInput([small.size, small.size, 3]));
        assert.throws(() => tf.tidy(() => model.forward(tf.zeros([1, small.size, small.size, 1]))));
        const macs = countMacs(model, small.size);
        assert.ok(macs.paper > 0 && macs.full >= macs.paper, `MACs ${JSON.stringify(macs)}`);
        assert.equal(
          Object.values(macs.byKind).reduce((a, b) => a + b, 0),
          macs.paper,
        );
        assert.equal(
          Object.values(macs.extra).reduce((a, b) => a + b, macs.paper),
          macs.full,
        );
      } finally {
        model.dispose();
      }
    }));

  test(`${name}: a training-mode loss has a finite gradient for every trainable, used parameter`, () =>
    noLeaks(name, () => {
      // No DropPath / dropout here: a dropped branch has no gradient in that step.
      const model = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1, dropPathRate: 0, dropRate: 0 });
      try {
        perturb(model, 4);
        model.train();
        const x = images(BATCH, small.size, 5);
        const weights = tf.tensor2d(new Rng(6).fillNormal(BATCH * CLASSES), [BATCH, CLASSES]);
        const vars = model.trainableVariables();
        const expected = model
          .namedParameters()
          .filter(([, p]) => p.trainable && !p.dead)
          .map(([, p]) => p.variable.name);
        assert.deepEqual(vars.map((v) => v.name).sort(), [...expected].sort());
        const { value, grads } = tf.variableGrads(
          () => tf.sum(tf.mul(model.forward(x, { training: true, rng: new Rng(7) }), weights)) as tf.Scalar,
          vars,
        );
        const names = new Map(model.namedParameters().map(([k, p]) => [p.variable.name, k]));
        const missing = vars.filter((v) => !grads[v.name]).map((v) => names.get(v.name));
        assert.deepEqual(missing, [], 'parameters without a gradient');
        for (const v of vars) {
          assert.ok(
            tf.tidy(() => tf.all(tf.isFinite(grads[v.name])).dataSync()[0]),
            `finite gradient ${names.get(v.name)}`,
          );
        }
        const norm = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))).dataSync()[0]);
        assert.ok(norm > 0, 'a non-zero gradient');
        tf.dispose([value, grads, x, weights]);
      } finally {
        model.dispose();
      }
    }));

  test(`${name}: saveWeights → loadWeights({ from: 'pytorch' }) is bit-exact`, () =>
    noLeaks(name, () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-contract-'));
      const file = path.join(dir, 'w.safetensors');
      const a = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1 });
      const b = createModel(name, { ...small.options, numClasses: CLASSES, seed: 9 });
      try {
        perturb(a, 8);
        saveWeights(a, file);
        loadWeights(b, file, { from: 'pytorch' });
        const sa = a.stateDict();
        const sb = b.stateDict();
        assert.deepEqual([...sb.keys()], [...sa.keys()], 'same keys in the same order');
        for (const [key, t] of sa) {
          const u = sb.get(key)!;
          assert.deepEqual(u.shape, t.shape, key);
          assert.deepEqual(Buffer.from(u.dataSync().buffer), Buffer.from(t.dataSync().buffer), `${key} bit-exact`);
        }
        a.eval();
        b.eval();
        tf.tidy(() => {
          const x = images(BATCH, small.size, 10);
          assert.equal(maxAbsDiff(a.forward(x, { training: false }), b.forward(x, { training: false })), 0);
        });
      } finally {
        a.dispose();
        b.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }));

  test(`${name}: shared options are accepted, unknown options rejected with the accepted list`, () =>
    noLeaks(name, () => {
      const shared = SHARED_OPTION_NAMES.join(', ');
      assert.throws(
        () => createModel(name, { ...small.options, notAnOption: 1 }),
        (e: Error) => e.message.includes('notAnOption') && e.message.includes(`Accepted: ${shared}`),
      );
      assert.throws(() => createModel(name, { ...small.options, dropPathRate: 1 }), /dropPathRate/);
      assert.throws(() => createModel(name, { ...small.options, numClasses: 0 }), /numClasses/);
      // What `--recipe cpu` and the trainer pass to any model.
      const model = createModel(name, {
        imageSize: small.size,
        ...small.options,
        numClasses: CLASSES,
        seed: 3,
        dropRate: 0.1,
        dropPathRate: 0.1,
      });
      try {
        model.checkInput([BATCH, small.size, small.size, 3], 'float32');
        tf.tidy(() => {
          const y = model.forward(images(BATCH, small.size, 11), { training: true, rng: new Rng(1) });
          assert.deepEqual(y.shape, [BATCH, CLASSES]);
        });
      } finally {
        model.dispose();
      }
    }));

  test(`${name}: fused inference form (if any) equals the training form in eval mode`, async (t) => {
    const probe = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1 });
    const hasFused = typeof probe.fusedForInference === 'function';
    probe.dispose();
    if (!hasFused) {
      t.skip(`${name} has no fusedForInference()`);
      return;
    }
    await noLeaks(name, () => {
      const model = createModel(name, { ...small.options, numClasses: CLASSES, seed: 1 });
      perturb(model, 12);
      model.eval();
      const fused = model.fusedForInference!();
      try {
        assert.ok(countParams(fused).total <= countParams(model).total, 'the fused form is not larger');
        tf.tidy(() => {
          const x = images(BATCH, small.size, 13);
          const d = maxAbsDiff(fused.forward(x, { training: false }), model.forward(x, { training: false }));
          assert.ok(d <= 1e-4, `max |fused − training form| = ${d}`);
        });
      } finally {
        fused.dispose();
        model.dispose();
      }
    });
  });
}
