/**
 * The `psffnRatio` ablation switch (PSFFN's partial ratio, official p_rate = 1/4; the paper's Fig. 4 sweeps
 * 1/12, 1/6, 1/4, 1/2, 1) and the parameter counts of the ablation variants a study trains.
 *
 * Official counts: the official `VSSM` (zs1314/Microscopic-Mamba 8df9997, microscopicmamba.py) built with
 * torch 1.13 on CPU, imported as scripts/fixtures/make-microscopic-mamba-fixtures.py does, with
 * `PSFFN.__init__`'s p_rate replaced by each ratio: sum(p.numel() for p in model.parameters()), 1000 classes.
 * The `mifa: false` / `parallelVssm: false` totals are docs/architecture.md §Ablations' official counts.
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { countParams, createModel, resolveConfig, type MicroscopicMamba } from '../lib/models/index';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const OFFICIAL_BY_RATIO: Array<[number, number, number]> = [
  // ratio, t total, s total (1000 classes)
  [1 / 12, 4_320_550, 4_970_634],
  [1 / 6, 4_320_930, 4_971_174],
  [1 / 4, 4_321_310, 4_971_714],
  [1 / 2, 4_322_450, 4_973_334],
  [1, 4_324_730, 4_976_574],
];

test('psffnRatio: parameter counts equal the official VSSM with that p_rate (t and s, 1000 classes)', () => {
  for (const [ratio, t, s] of OFFICIAL_BY_RATIO) {
    for (const [name, expected] of [
      ['microscopic-mamba-t', t],
      ['microscopic-mamba-s', s],
    ] as const) {
      const m = createModel(name, { numClasses: 1000, psffnRatio: ratio }) as MicroscopicMamba;
      assert.equal(countParams(m).total, expected, `${name} psffnRatio ${ratio}`);
      m.dispose();
    }
  }
});

test('psffnRatio defaults to the official 1/4 and is checked', () => {
  assert.equal(resolveConfig({}).psffnRatio, 0.25);
  assert.throws(() => resolveConfig({ psffnRatio: 0 }), /psffnRatio must be in \(0, 1\]/);
  assert.throws(() => resolveConfig({ psffnRatio: 1.5 }), /psffnRatio must be in \(0, 1\]/);
});

test('psffnRatio 1 and 1/12 run forward (every channel filtered; one channel in 12)', () => {
  for (const ratio of [1, 1 / 12]) {
    const m = createModel('microscopic-mamba-t', {
      numClasses: 3,
      psffnRatio: ratio,
      depths: [1, 1, 1, 1],
    }) as MicroscopicMamba;
    const before = tf.memory().numTensors;
    const y = tf.tidy(() => m.forward(tf.randomUniform([1, 32, 32, 3])));
    assert.deepEqual(y.shape, [1, 3]);
    assert.ok(Array.from(y.dataSync()).every(Number.isFinite));
    y.dispose();
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  }
});

test('the ablation variants have the official parameter counts (docs/architecture.md §Ablations)', () => {
  const count = (opts: Record<string, unknown>) => {
    const m = createModel('microscopic-mamba-t', { numClasses: 1000, ...opts }) as MicroscopicMamba;
    const n = countParams(m).total;
    m.dispose();
    return n;
  };
  assert.equal(count({ mifa: false }), 4_299_422);
  assert.equal(count({ parallelVssm: false }), 8_832_530);
});
