/**
 * Microscopic-Mamba's structure without running it: parameter counts (docs/architecture.md §Parameters and MACs,
 * exact), state-dict names and PyTorch shapes (against the official state_dict() recorded in the in-repo parity
 * fixture's meta.json, and in the team's full-size fixture when present), MAC counts (ptflops convention and the full
 * count), the DropPath schedule, channel-shuffle order (docs/architecture.md §Channel shuffle), initialisation
 * (docs/architecture.md §Initialisation), configuration and registry errors.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  channelShuffle,
  channelShufflePermutation,
  countMacs,
  countParams,
  createModel,
  listModels,
  MicroscopicMamba,
  MicroscopicMambaBlock,
  resolveConfig,
} from '../lib/models/index';
import { Conv2d, Linear } from '../lib/nn/index';
import { fixtureOptions, MICROSCOPIC_MAMBA_FIXTURE, sharedFixture } from './parity.helpers';

const FULL = sharedFixture('official-t-64px-2cls');

before(async () => {
  await initBackend('wasm', { quiet: true });
});

function build(name: string, opts: Record<string, unknown> = {}): MicroscopicMamba {
  return createModel(name, opts) as MicroscopicMamba;
}

test('building and disposing a model leaves no tensors behind', () => {
  const before = tf.memory().numTensors;
  build('microscopic-mamba-t', { numClasses: 2 }).dispose();
  build('microscopic-mamba-t', {
    numClasses: 2,
    psffn: false,
    mifa: false,
    parallelVssm: false,
    separatePvmNorms: true,
  }).dispose();
  assert.equal(tf.memory().numTensors, before);
});

test('parameter counts equal the official model (docs/architecture.md §Parameters and MACs)', () => {
  const cases: Array<[string, number, number, number]> = [
    // name, classes, total, dead
    ['microscopic-mamba-t', 1000, 4_321_310, 525_408],
    ['microscopic-mamba-s', 1000, 4_971_714, 692_064],
    ['microscopic-mamba-b', 1000, 9_405_578, 1_525_120],
    ['microscopic-mamba-t', 2, 3_553_848, 525_408],
  ];
  for (const [name, numClasses, total, dead] of cases) {
    const m = build(name, { numClasses });
    const c = countParams(m);
    assert.equal(c.total, total, `${name} ${numClasses} classes: total`);
    assert.equal(c.trainable, total, `${name}: every parameter requires grad, as in PyTorch`);
    assert.equal(c.total - c.used, dead, `${name}: dead parameters (PVMLayer.proj + SS2D.out_proj)`);
    // BatchNorm running_mean + running_var: the spec's 18,570 for t also counts 42 num_batches_tracked.
    if (name === 'microscopic-mamba-t') assert.equal(c.buffers, 18_570 - 42);
    m.dispose();
  }
});

test('parameter breakdown of t with a 2-class head (docs/architecture.md §Parameters and MACs table)', () => {
  const m = build('microscopic-mamba-t', { numClasses: 2 });
  const sum = (prefix: string) =>
    m.namedParameters().reduce((s, [k, p]) => (k.startsWith(prefix) ? s + p.variable.size : s), 0);
  assert.equal(sum('patch_embed.'), 43_056);
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => sum(`layers.${i}.blocks.`)),
    [32_150, 97_322, 650_404, 1_175_714],
  );
  assert.deepEqual(
    [0, 1, 2].map((i) => sum(`layers.${i}.downsample.`)),
    [74_496, 296_448, 1_182_720],
  );
  assert.equal(sum('head.'), 1_538);
  m.dispose();
});

/** Keys, PyTorch shapes and parameter count of `model` against an official state_dict() listing. */
function checkStateDict(model: MicroscopicMamba, metaFile: string): void {
  const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8')) as {
    state_keys: Record<string, number[]>;
    params_total: number;
  };
  const official = Object.entries(meta.state_keys).filter(([k]) => !k.endsWith('num_batches_tracked'));
  const sd = model.stateDict({ layout: 'pytorch' });
  assert.deepEqual([...sd.keys()].sort(), official.map(([k]) => k).sort());
  for (const [key, shape] of official) assert.deepEqual(sd.get(key)!.shape, shape, key);
  // Same order within each module as PyTorch: parameters, then buffers, per module in registration order.
  const params = new Set(model.namedParameters().map(([k]) => k));
  assert.deepEqual(
    [...sd.keys()].filter((k) => params.has(k)),
    official.map(([k]) => k).filter((k) => params.has(k)),
  );
  assert.equal(countParams(model).total, meta.params_total);
  for (const t of sd.values()) t.dispose();
  model.dispose();
}

test('state-dict keys, order and PyTorch shapes equal the official state_dict() (in-repo fixture)', () => {
  const m = build('microscopic-mamba-t', fixtureOptions(MICROSCOPIC_MAMBA_FIXTURE));
  checkStateDict(m, path.join(MICROSCOPIC_MAMBA_FIXTURE, 'meta.json'));
});

test(
  'state-dict keys, order and PyTorch shapes equal the official state_dict() (full-size t)',
  { skip: FULL.skip },
  () => {
    checkStateDict(build('microscopic-mamba-t', { numClasses: 2 }), path.join(FULL.dir, 'meta.json'));
  },
);

test('MACs at 224²: the paper convention reproduces 0.64 / 0.76 G; full adds x_proj, dt_proj and the scan', () => {
  const expected: Record<string, { paper: number; proj: number; scan: number; published: number }> = {
    // docs/architecture.md §Parameters and MACs: module count, x_proj+dt_proj einsums, 9·L·E·N·K scan, paper GMACs
    'microscopic-mamba-t': { paper: 0.6445, proj: 0.184, scan: 0.737, published: 0.64 },
    'microscopic-mamba-s': { paper: 0.7616, proj: 0.23, scan: 0.91, published: 0.76 },
    'microscopic-mamba-b': { paper: 1.5088, proj: 0.379, scan: 1.445, published: 1.59 },
  };
  for (const [name, e] of Object.entries(expected)) {
    const m = build(name);
    const r = countMacs(m, 224);
    const g = (v: number) => v / 1e9;
    assert.equal(Number(g(r.paper).toFixed(4)), e.paper, `${name} paper ${g(r.paper)}`);
    assert.equal(Number(g(r.xProj + r.dtProj).toFixed(3)), e.proj, `${name} x_proj+dt_proj`);
    assert.equal(Number(g(r.scan).toFixed(e.scan >= 1 ? 3 : 3)), e.scan, `${name} scan`);
    assert.equal(r.full, r.paper + r.xProj + r.dtProj + r.scan);
    if (name !== 'microscopic-mamba-b') {
      assert.ok(Math.abs(g(r.paper) / e.published - 1) < 0.01, `${name}: within 1 % of the paper's ${e.published} G`);
    }
    const byKind = Object.values(r.byKind).reduce((a, b) => a + b, 0);
    assert.equal(byKind, r.paper);
    m.dispose();
  }
  // t at 224: the exact integer of the ptflops-style walk (conv, linear, norms, module activations, pool).
  const t = build('microscopic-mamba-t');
  assert.equal(countMacs(t, 224).paper, 644_537_512);
  // Convolutions and norms scale with the pixel count; the head's Linear does not.
  const r64 = countMacs(t, 64);
  const r224 = countMacs(t, 224);
  assert.ok(Math.abs(r64.byKind.Conv2d / r224.byKind.Conv2d - (64 / 224) ** 2) < 1e-9);
  assert.throws(() => countMacs(t, 48), /multiple of 32/);
  t.dispose();
});

test('MAC walk follows the structure: replacing PSFFN by out_proj changes exactly those layers', () => {
  const a = build('microscopic-mamba-t');
  const b = build('microscopic-mamba-t', { psffn: false });
  const ra = countMacs(a, 224);
  const rb = countMacs(b, 224);
  // Per SS2D call (4 per block) at stage i: PSFFN = conv_0 (e→d, bias) + SiLU + conv_1 (dw 3×3 on p, bias) + SiLU;
  // out_proj = Linear(e→d, no bias).
  const depths = [2, 2, 4, 2];
  let psffn = 0;
  let outProj = 0;
  [96, 192, 384, 768].forEach((dim, i) => {
    const l = (56 >> i) ** 2;
    const d = dim / 8;
    const e = 2 * d;
    const p = Math.floor(d / 4);
    const calls = 4 * depths[i];
    psffn += calls * (l * (e * d + d) + l * d + l * (9 * p + p) + l * p);
    outProj += calls * l * e * d;
  });
  assert.equal(ra.paper - rb.paper, psffn - outProj);
  assert.equal(ra.scan, rb.scan);
  a.dispose();
  b.dispose();
});

test('DropPath schedule: linspace(0, 0.1, sum(depths)) over the blocks in order', () => {
  const m = build('microscopic-mamba-t', { numClasses: 2 });
  const rates = m
    .namedModules()
    .filter(([, mod]) => mod instanceof MicroscopicMambaBlock)
    .map(([, mod]) => (mod as MicroscopicMambaBlock).drop_path.dropProb);
  assert.equal(rates.length, 10);
  rates.forEach((r, i) => assert.ok(Math.abs(r - (0.1 * i) / 9) < 1e-12, `block ${i}: ${r}`));
  m.dispose();
});

test('channel shuffle order (docs/architecture.md §Channel shuffle)', () => {
  assert.deepEqual(channelShufflePermutation(8, 4), [0, 2, 4, 6, 1, 3, 5, 7]);
  assert.deepEqual(channelShufflePermutation(16, 4), [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]);
  tf.tidy(() => {
    const x = tf.range(0, 16).reshape([1, 1, 1, 16]);
    // groups = C/2: even channels first; MIFA's groups = C/4: 4 channels per group.
    assert.deepEqual(
      Array.from(channelShuffle(x, 8).dataSync()),
      [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15],
    );
    assert.deepEqual(Array.from(channelShuffle(x, 4).dataSync()), channelShufflePermutation(16, 4));
    // Every pixel is shuffled the same way.
    const y = tf.range(0, 2 * 3 * 8).reshape([2, 3, 1, 8]);
    const s = channelShuffle(y, 4).arraySync() as number[][][][];
    assert.deepEqual(s[1][2][0], [40, 42, 44, 46, 41, 43, 45, 47]);
  });
});

test('initialisation follows docs/architecture.md §Initialisation and is reproducible from the seed', () => {
  const m = build('microscopic-mamba-t', { numClasses: 10, seed: 3 });
  const get = (k: string) => m.stateDict().get(k)!;
  const stats = (t: tf.Tensor) => {
    const v = Array.from(t.dataSync());
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
    return { mean, std, min: v.reduce((a, b) => Math.min(a, b)), max: v.reduce((a, b) => Math.max(a, b)) };
  };
  // Linear: trunc_normal(0.02), bias 0.
  const lin = stats(get('layers.2.downsample.reduction.weight'));
  assert.ok(Math.abs(lin.std - 0.02) < 0.001 && Math.abs(lin.mean) < 0.001, JSON.stringify(lin));
  assert.deepEqual(Array.from(get('head.bias').dataSync()), new Array(10).fill(0));
  // Conv2d weight: N(0, 2/fan_out), fan_out = out·kh·kw (depthwise too); bias U(±1/√fan_in).
  for (const [, mod] of m.namedModules()) {
    if (!(mod instanceof Conv2d) || mod.weight.size < 2000) continue;
    const s = stats(mod.weight);
    const want = Math.sqrt(2 / mod.fanOut);
    assert.ok(Math.abs(s.std / want - 1) < 0.1, `conv std ${s.std} vs ${want}`);
  }
  const pw = m.namedModules().find(([k]) => k === 'layers.0.blocks.0.Conv_branch.7')![1] as Conv2d;
  const bias = stats(pw.bias!);
  assert.ok(bias.max <= 1 / Math.sqrt(96) && bias.min >= -1 / Math.sqrt(96));
  // SS2D raw parameters.
  const aLogs = get('layers.0.blocks.0.pvm_layer.mamba.A_logs').arraySync() as number[][];
  assert.equal(aLogs.length, 4 * 24);
  aLogs.forEach((row) => row.forEach((v, n) => assert.ok(Math.abs(v - Math.log(n + 1)) < 1e-6)));
  assert.ok(Array.from(get('layers.0.blocks.0.pvm_layer.mamba.Ds').dataSync()).every((v) => v === 1));
  const dtBias = Array.from(get('layers.1.blocks.1.pvm_layer.mamba.dt_projs_bias').dataSync());
  for (const v of dtBias) {
    const dt = Math.log1p(Math.exp(v)); // softplus
    assert.ok(dt >= 0.001 * (1 - 1e-5) && dt <= 0.1 * (1 + 1e-5), `softplus(dt bias) = ${dt}`);
  }
  const dtW = stats(get('layers.3.blocks.0.pvm_layer.mamba.dt_projs_weight')); // r = 6: U(±6^-0.5)
  assert.ok(dtW.max <= 6 ** -0.5 && dtW.min >= -(6 ** -0.5));
  const xW = stats(get('layers.0.blocks.0.pvm_layer.mamba.x_proj_weight')); // e = 24: U(±1/√24)
  assert.ok(xW.max <= 1 / Math.sqrt(24) && xW.min >= -1 / Math.sqrt(24));
  const eca = stats(get('layers.0.blocks.0.MIFA.attention.conv.weight'));
  assert.ok(eca.max <= 1 && eca.min >= -1 && eca.std > 0.4, 'ECA weight U(−1, 1)');
  assert.deepEqual(Array.from(get('layers.0.blocks.0.pvm_layer.skip_scale').dataSync()), [1]);
  assert.ok(Array.from(get('layers.0.blocks.0.Conv_branch.5.weight').dataSync()).every((v) => v === 1));
  assert.ok(Array.from(get('layers.0.blocks.0.Conv_branch.5.running_var').dataSync()).every((v) => v === 1));
  // Dead Linear layers are initialised like the others (they count, but never train).
  const proj = m.namedModules().find(([k]) => k === 'layers.0.blocks.0.pvm_layer.proj')![1] as Linear;
  assert.ok(Math.abs(stats(proj.weight).std - 0.02) < 0.002);
  // Same seed → identical weights; another seed → different ones.
  const again = build('microscopic-mamba-t', { numClasses: 10, seed: 3 });
  const other = build('microscopic-mamba-t', { numClasses: 10, seed: 4 });
  const w = (mod: MicroscopicMamba) =>
    Array.from(mod.stateDict().get('layers.1.blocks.0.pvm_layer.mamba.in_proj.weight')!.dataSync());
  assert.deepEqual(w(again), w(m));
  assert.notDeepEqual(w(other), w(m));
  [m, again, other].forEach((x) => x.dispose());
});

test('ablations and fixes change exactly the parameters they should', () => {
  const built: MicroscopicMamba[] = [];
  const make = (opts: Record<string, unknown>) => {
    built.push(build('microscopic-mamba-t', { numClasses: 2, ...opts }));
    return built[built.length - 1];
  };
  const base = countParams(make({}));
  const noDead = countParams(make({ dropDeadParams: true }));
  assert.equal(noDead.total, base.used);
  assert.equal(noDead.used, base.used);
  // Without PSFFN, out_proj is used and PSFFN's convs are gone.
  const m = make({ psffn: false });
  assert.ok(!m.namedParameters().some(([k]) => k.includes('PSFFN')));
  assert.ok(m.namedParameters().some(([k, p]) => k.endsWith('mamba.out_proj.weight') && !p.dead));
  // One SS2D over all C/2 channels: d_model = C/2 at stage 1 → x_proj_weight [4, 3 + 32, 96].
  const single = make({ parallelVssm: false });
  assert.deepEqual(
    single.stateDict({ layout: 'tfjs' }).get('layers.0.blocks.0.pvm_layer.mamba.x_proj_weight')!.shape,
    [4, 35, 96],
  );
  const noMifa = make({ mifa: false });
  assert.ok(!noMifa.namedParameters().some(([k]) => k.includes('MIFA')));
  const noEca = make({ eca: false });
  assert.ok(!noEca.namedParameters().some(([k]) => k.includes('attention')));
  const sep = make({ separatePvmNorms: true });
  assert.equal(countParams(sep).total, base.total + 2 * (2 * 48 + 2 * 96 + 4 * 192 + 2 * 384));
  built.forEach((x) => x.dispose());
});

test('configuration, registry and input errors are clear', () => {
  assert.ok(
    ['microscopic-mamba-t', 'microscopic-mamba-s', 'microscopic-mamba-b'].every((n) =>
      listModels().some((m) => m.name === n),
    ),
  );
  assert.throws(() => createModel('microscopic-mamba-x'), /unknown model 'microscopic-mamba-x'.*microscopic-mamba-t/);
  assert.throws(
    () => createModel('microscopic-mamba-t', { nClasses: 2 }),
    /unknown option\(s\) nClasses\. Accepted: numClasses, seed, dropRate, dropPathRate, imageSize, depths/,
  );
  assert.throws(() => resolveConfig({ dims: [96, 192, 384, 700] }), /dims/);
  assert.throws(() => resolveConfig({ numClasses: 0 }), /numClasses/);
  assert.throws(() => resolveConfig({ psffn: 'yes' as unknown as boolean }), /psffn must be true or false/);
  const m = build('microscopic-mamba-t', { numClasses: 2, depths: [1, 1, 1, 1] });
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    assert.throws(() => m.forward(tf.zeros([1, 64, 64, 1])), /3 input channels.*\[1,64,64,1\]/);
    assert.throws(() => m.forward(tf.zeros([1, 48, 48, 3])), /48×48 must be a multiple of 32/);
    assert.throws(() => m.forward(tf.zeros([1, 32, 64, 3])), /not square.*fixPsffnTranspose/);
    assert.throws(() => m.forward(tf.zeros([64, 64, 3])), /NHWC/);
  });
  assert.equal(tf.memory().numTensors, before);
  m.dispose();
});
