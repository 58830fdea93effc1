/**
 * Optimizer, loss and clipping against float64 re-computations of the PyTorch formulas
 * (torch.optim.Adam / AdamW, nn.CrossEntropyLoss(label_smoothing), clip_grad_norm_), plus exact
 * state save/restore of the optimizer.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { Adam } from '../lib/train/optim';
import { clipByGlobalNorm, crossEntropy, globalNorm } from '../lib/train/loss';
import { BestTracker, EarlyStopping } from '../lib/train/early-stopping';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

/** torch.optim.Adam/AdamW step for one flat parameter, in float64. */
function refAdam(
  p: number[],
  grads: number[][],
  lrs: number[],
  o: { b1: number; b2: number; eps: number; wd: number; decoupled: boolean },
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = p.slice();
  grads.forEach((g0, s) => {
    const t = s + 1;
    const lr = lrs[s];
    for (let i = 0; i < x.length; i++) {
      let g = g0[i];
      if (o.wd && !o.decoupled) g += o.wd * x[i];
      if (o.wd && o.decoupled) x[i] *= 1 - lr * o.wd;
      m[i] = o.b1 * m[i] + (1 - o.b1) * g;
      v[i] = o.b2 * v[i] + (1 - o.b2) * g * g;
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - o.b2 ** t) + o.eps;
      x[i] -= (lr / (1 - o.b1 ** t)) * (m[i] / denom);
    }
  });
  return x;
}

for (const [kind, wd] of [
  ['adam', 0],
  ['adam', 0.05],
  ['adamw', 0.05],
] as const) {
  test(`${kind} (weight decay ${wd}) matches the PyTorch update rule over 6 steps with a changing lr`, () => {
    const rng = new Rng(3);
    const p0 = Array.from(rng.fillNormal(12));
    const grads = Array.from({ length: 6 }, () => Array.from(rng.fillNormal(12, 0, 0.5)));
    const lrs = [1e-3, 5e-3, 1e-2, 1e-2, 3e-3, 1e-4];
    const variable = tf.variable(tf.tensor(p0, [3, 4]));
    const opt = new Adam([['w', variable]], { lr: 1e-2, kind, weightDecay: wd, eps: 1e-8 });
    const before = tf.memory().numTensors;
    grads.forEach((g, s) => {
      const gt = tf.tensor(g, [3, 4]);
      opt.applyGradients({ [variable.name]: gt }, lrs[s]);
      gt.dispose();
    });
    assert.equal(tf.memory().numTensors, before, 'no tensors leak from applyGradients');
    const want = refAdam(p0, grads, lrs, { b1: 0.9, b2: 0.999, eps: 1e-8, wd, decoupled: kind === 'adamw' });
    const got = Array.from(variable.dataSync());
    for (let i = 0; i < want.length; i++)
      assert.ok(Math.abs(got[i] - want[i]) < 2e-6, `param ${i}: ${got[i]} vs ${want[i]}`);
    assert.equal(opt.step, 6);
    opt.dispose();
    variable.dispose();
  });
}

test('Adam state saved mid-run and restored into a fresh optimizer continues bit for bit', () => {
  const rng = new Rng(9);
  const init = rng.fillNormal(20);
  const grads = Array.from({ length: 5 }, () => rng.fillNormal(20));
  const run = (restoreAt?: number) => {
    let v = tf.variable(tf.tensor(init, [4, 5]));
    let opt = new Adam([['layer.weight', v]], { lr: 1e-2 });
    for (let s = 0; s < grads.length; s++) {
      if (s === restoreAt) {
        const { meta, tensors } = opt.getState();
        const saved = new Map([...tensors].map(([k, t]) => [k, t.clone()]));
        const weights = v.clone();
        opt.dispose();
        v.dispose();
        v = tf.variable(weights);
        weights.dispose();
        opt = new Adam([['layer.weight', v]], { lr: 1e-2 });
        opt.setState(JSON.parse(JSON.stringify(meta)), saved);
        for (const t of saved.values()) t.dispose();
      }
      const g = tf.tensor(grads[s], [4, 5]);
      opt.applyGradients({ [v.name]: g }, 1e-2);
      g.dispose();
    }
    const out = Array.from(v.dataSync());
    opt.dispose();
    v.dispose();
    return out;
  };
  assert.deepEqual(run(3), run());
});

test('Adam.setState names the missing or mis-shaped moment', () => {
  const v = tf.variable(tf.zeros([2, 2]));
  const opt = new Adam([['head.weight', v]], { lr: 1e-3 });
  const { meta } = opt.getState();
  const wrong = new Map<string, tf.Tensor>([['exp_avg.head.weight', tf.zeros([4])]]);
  assert.throws(
    () => opt.setState(meta, wrong, 'ckpt.safetensors'),
    /ckpt\.safetensors[\s\S]*exp_avg\.head\.weight has shape \[4\][\s\S]*missing exp_avg_sq\.head\.weight/,
  );
  assert.throws(() => opt.setState({ ...meta, kind: 'adamw' }, wrong), /saved optimizer is 'adamw'/);
  for (const t of wrong.values()) t.dispose();
  opt.dispose();
  v.dispose();
});

test('cross-entropy with and without label smoothing matches the float64 formula', () => {
  const rng = new Rng(4);
  const b = 5;
  const k = 3;
  const logits = Array.from(rng.fillNormal(b * k, 0, 3));
  const y = [0, 2, 1, 1, 0];
  for (const eps of [0, 0.1]) {
    let want = 0;
    for (let i = 0; i < b; i++) {
      const row = logits.slice(i * k, i * k + k);
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, z) => s + Math.exp(z - mx), 0));
      const nll = lse - row[y[i]];
      const meanNll = row.reduce((s, z) => s + (lse - z), 0) / k;
      want += (1 - eps) * nll + eps * meanNll;
    }
    want /= b;
    const got = tf.tidy(() => crossEntropy(tf.tensor(logits, [b, k]), tf.tensor1d(y, 'int32'), eps).dataSync()[0]);
    assert.ok(Math.abs(got - want) < 1e-5, `ε=${eps}: ${got} vs ${want}`);
  }
  assert.throws(() => tf.tidy(() => crossEntropy(tf.zeros([2, 3]), tf.zeros([3], 'int32'))), /labels must be \[2\]/);
});

test('global-norm clipping matches clip_grad_norm_ (scale maxNorm/(norm+1e-6) only when above)', () => {
  const a = [3, 4];
  const c = [12];
  const norm = 13; // √(9 + 16 + 144)
  const grads = { a: tf.tensor(a), c: tf.tensor(c) };
  assert.ok(Math.abs(globalNorm(grads) - norm) < 1e-5);
  const { grads: clipped, norm: n } = clipByGlobalNorm(grads, 1);
  assert.ok(Math.abs(n - norm) < 1e-5);
  const coef = 1 / (norm + 1e-6);
  assert.ok(Math.abs(clipped.a.dataSync()[1] - 4 * coef) < 1e-7);
  assert.ok(Math.abs(clipped.c.dataSync()[0] - 12 * coef) < 1e-7);
  const kept = clipByGlobalNorm(clipped, 5); // already below 5: unchanged, same tensors
  assert.equal(kept.grads.a, clipped.a);
  tf.dispose([...Object.values(clipped)]);
});

test('best tracker is strict; early stopping allows ties (official rules) and stops after patience', () => {
  const best = new BestTracker('val_acc');
  assert.deepEqual(
    [0.5, 0.6, 0.6, 0.55, 0.7].map((v, e) => best.update(v, e)),
    [true, true, false, false, true],
  );
  assert.equal(best.state.bestEpoch, 4);
  const stop = new EarlyStopping('val_loss', 2);
  const seq = [1.0, 0.9, 0.9, 0.95, 1.2];
  const flags = seq.map((v, e) => {
    stop.update(v, e);
    return stop.shouldStop;
  });
  // 0.9 == best counts as no worse (official: score < best + δ is bad); 0.95 and 1.2 are the 2 bad epochs.
  assert.deepEqual(flags, [false, false, false, false, true]);
  assert.equal(stop.state.bestEpoch, 2);
  const restored = new EarlyStopping('val_loss', 2);
  restored.restore(JSON.parse(JSON.stringify(stop.state)));
  assert.ok(restored.shouldStop);
  assert.throws(() => new EarlyStopping('val_acc', 2).restore(stop.state), /tracks 'val_loss'/);
});
