/**
 * The module system: names, state dicts in both layouts, safetensors round trips, strict loading,
 * and the layers' numerics against hand-written PyTorch semantics.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  BatchNorm2d,
  Conv2d,
  countParameters,
  DropPath,
  gelu,
  LayerNorm,
  Linear,
  Module,
  readSafetensors,
  Sequential,
  StateDictError,
  writeSafetensors,
} from '../lib/nn/index';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

class Block extends Module {
  readonly conv = this.addModule('conv', new Conv2d(4, 8, 3, { padding: 1, rng: new Rng(1) }));
  readonly dw = this.addModule('dw', new Conv2d(8, 16, 3, { padding: 1, groups: 8, rng: new Rng(2) }));
  readonly bn = this.addModule('bn', new BatchNorm2d(16));
  readonly seq = this.addModule('seq', new Sequential(new LayerNorm(16), new Linear(16, 3, { rng: new Rng(3) })));
  readonly scale = this.addParameter('skip_scale', tf.ones([1]));
  readonly unused = this.addModule('proj', new Linear(16, 16, { dead: true, rng: new Rng(4) }));
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.seq.forward(this.bn.forward(this.dw.forward(this.conv.forward(x)))).mul(this.scale));
  }
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

test('parameter and buffer names follow PyTorch dotted keys', () => {
  const m = new Block();
  const keys = [...m.stateDict().keys()];
  assert.deepEqual(keys, [
    'skip_scale',
    'conv.weight',
    'conv.bias',
    'dw.weight',
    'dw.bias',
    'bn.weight',
    'bn.bias',
    'seq.0.weight',
    'seq.0.bias',
    'seq.1.weight',
    'seq.1.bias',
    'proj.weight',
    'proj.bias',
    'bn.running_mean',
    'bn.running_var',
  ]);
  const sd = m.stateDict({ layout: 'pytorch' });
  assert.deepEqual(sd.get('conv.weight')!.shape, [8, 4, 3, 3]);
  assert.deepEqual(sd.get('dw.weight')!.shape, [16, 1, 3, 3]);
  assert.deepEqual(sd.get('seq.1.weight')!.shape, [3, 16]);
  const counts = countParameters(m);
  const expectedTotal = 1 + (8 * 4 * 9 + 8) + (16 * 9 + 16) + 32 + 32 + (48 + 3) + (256 + 16);
  assert.equal(counts.total, expectedTotal);
  assert.equal(counts.used, expectedTotal - 272);
  assert.equal(counts.buffers, 32);
  for (const t of sd.values()) t.dispose();
  m.dispose();
});

test('safetensors round trip (both layouts) gives identical tensors and outputs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-nn-'));
  const a = new Block();
  const b = new Block();
  // Make b differ, then load a's weights into it through a PyTorch-layout file.
  for (const [, p] of b.namedParameters()) p.variable.assign(tf.randomNormal(p.variable.shape));
  const sd = a.stateDict({ layout: 'pytorch' });
  const file = path.join(dir, 'w.safetensors');
  writeSafetensors(file, sd, { format: 'pytorch' });
  const loaded = readSafetensors(file);
  assert.equal(loaded.metadata.format, 'pytorch');
  for (const [k, t] of sd) assert.equal(maxAbsDiff(t, loaded.tensors.get(k)!), 0, k);
  b.loadStateDict(loaded.tensors, { layout: 'pytorch' });
  for (const [k, t] of a.stateDict()) assert.equal(maxAbsDiff(t, b.stateDict().get(k)!), 0, k);
  const x = tf.randomNormal([2, 5, 5, 4]);
  const before = tf.memory().numTensors;
  const ya = a.forward(x);
  const yb = b.forward(x);
  assert.equal(maxAbsDiff(ya, yb), 0);
  tf.dispose([ya, yb]);
  assert.equal(tf.memory().numTensors, before, 'forward leaks no tensors');
  // tfjs layout round trip too.
  const c = new Block();
  c.loadStateDict(a.stateDict());
  assert.equal(maxAbsDiff(c.stateDict().get('dw.weight')!, a.stateDict().get('dw.weight')!), 0);
  for (const t of [...sd.values(), ...loaded.tensors.values(), x]) t.dispose();
  a.dispose();
  b.dispose();
  c.dispose();
  fs.rmSync(dir, { recursive: true });
});

test('strict load lists every missing, unexpected and mis-shaped key; nothing is assigned', () => {
  const m = new Block();
  const sd = new Map(m.stateDict({ layout: 'pytorch' }));
  const before = m.stateDict().get('conv.bias')!.dataSync().slice();
  sd.get('conv.weight')!.dispose();
  sd.set('conv.weight', tf.zeros([8, 4, 5, 5]));
  sd.set('conv.bias', tf.zeros([8]));
  sd.delete('seq.0.bias');
  sd.set('head.weight', tf.zeros([2]));
  sd.set('bn.num_batches_tracked', tf.scalar(3, 'int32'));
  assert.throws(
    () => m.loadStateDict(sd, { layout: 'pytorch' }),
    (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.match(e.message, /shape mismatch for conv\.weight: model expects \[8, 4, 3, 3\], got \[8, 4, 5, 5\]/);
      assert.match(e.message, /missing key: seq\.0\.bias/);
      assert.match(e.message, /unexpected key: head\.weight/);
      assert.doesNotMatch(e.message, /num_batches_tracked/);
      return true;
    },
  );
  assert.deepEqual(m.stateDict().get('conv.bias')!.dataSync(), before, 'a failed load assigns nothing');
  for (const t of sd.values()) t.dispose();
  m.dispose();
});

test('Conv2d depthwise with channel multiplier 2 matches PyTorch grouped-conv indexing', () => {
  // PyTorch: out channel o = c·m + j uses weight[o, 0] on input channel c.
  const c = 3;
  const mult = 2;
  const conv = new Conv2d(c, c * mult, 3, { padding: 1, groups: c, rng: new Rng(7) });
  const wTorch = conv.stateDict({ layout: 'pytorch' }).get('weight')!; // [6, 1, 3, 3]
  const bias = conv.bias!.dataSync();
  const x = tf.randomNormal([1, 4, 4, c], 0, 1, 'float32', 3);
  const y = conv.forward(x).arraySync() as number[][][][];
  const xv = x.arraySync() as number[][][][];
  const wv = wTorch.arraySync() as number[][][][];
  let maxErr = 0;
  for (let o = 0; o < c * mult; o++) {
    const ci = Math.floor(o / mult);
    for (let h = 0; h < 4; h++)
      for (let w = 0; w < 4; w++) {
        let s = bias[o];
        for (let i = 0; i < 3; i++)
          for (let j = 0; j < 3; j++) {
            const hh = h + i - 1;
            const ww = w + j - 1;
            if (hh >= 0 && hh < 4 && ww >= 0 && ww < 4) s += xv[0][hh][ww][ci] * wv[o][0][i][j];
          }
        maxErr = Math.max(maxErr, Math.abs(s - y[0][h][w][o]));
      }
  }
  assert.ok(maxErr < 1e-5, `max err ${maxErr}`);
  tf.dispose([wTorch, x]);
  conv.dispose();
});

test('BatchNorm2d: batch statistics in training, PyTorch running-stat update, running stats in eval', () => {
  const bn = new BatchNorm2d(2);
  const x = tf.tensor4d([1, 10, 2, 20, 3, 30, 6, 60], [2, 2, 1, 2]);
  const y = bn.forward(x, { training: true });
  // channel 0 values 1,2,3,6: mean 3, biased var 3.5, unbiased 14/3
  const y0 = tf.tidy(() => y.slice([0, 0, 0, 0], [2, 2, 1, 1]).flatten().arraySync());
  const expected = [1, 2, 3, 6].map((v) => (v - 3) / Math.sqrt(3.5 + 1e-5));
  y0.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-5));
  const rm = bn.runningMean.dataSync();
  const rv = bn.runningVar.dataSync();
  assert.ok(Math.abs(rm[0] - 0.3) < 1e-6 && Math.abs(rm[1] - 3) < 1e-5);
  assert.ok(Math.abs(rv[0] - (0.9 + 0.1 * (14 / 3))) < 1e-5);
  bn.eval();
  const ye = bn.forward(x);
  const ye0 = ye.dataSync()[0];
  assert.ok(Math.abs(ye0 - (1 - 0.3) / Math.sqrt(rv[0] + 1e-5)) < 1e-5);
  tf.dispose([x, y, ye]);
  bn.dispose();
});

test('LayerNorm (eps 1e-5, biased variance) and exact-erf GELU', () => {
  const ln = new LayerNorm(4);
  const x = tf.tensor2d([[1, 2, 3, 10]]);
  const y = ln.forward(x).dataSync();
  const mean = 4;
  const v = (9 + 4 + 1 + 36) / 4;
  [1, 2, 3, 10].forEach((xi, i) => assert.ok(Math.abs(y[i] - (xi - mean) / Math.sqrt(v + 1e-5)) < 1e-5));
  // torch.nn.functional.gelu(torch.tensor([-1., 0.5, 2.])) = [-0.158655, 0.345731, 1.954500]
  const g = gelu(tf.tensor1d([-1, 0.5, 2])).dataSync();
  [-0.158655, 0.345731, 1.9545].forEach((e, i) => assert.ok(Math.abs(g[i] - e) < 2e-6, `${g[i]} vs ${e}`));
  tf.dispose(x);
  ln.dispose();
});

test('DropPath: identity in eval; in training whole samples are zeroed or scaled by 1/(1-p)', () => {
  const dp = new DropPath(0.25);
  const x = tf.ones([400, 2, 2, 3]);
  const ye = dp.forward(x, { training: false });
  assert.equal(ye, x);
  const yt = dp.forward(x, { training: true, rng: new Rng(5) });
  const v = yt.reshape([400, 12]).arraySync() as number[][];
  let dropped = 0;
  for (const row of v) {
    assert.ok(
      row.every((e) => e === row[0]),
      'a sample is dropped or kept as a whole',
    );
    if (row[0] === 0) dropped++;
    else assert.ok(Math.abs(row[0] - 1 / 0.75) < 1e-6);
  }
  assert.ok(dropped > 60 && dropped < 140, `dropped ${dropped} of 400 at p = 0.25`);
  tf.dispose([x, yt]);
});
