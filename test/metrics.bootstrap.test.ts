/**
 * Bootstrap intervals: the fast count-weighted resampling in lib/metrics/bootstrap.ts must equal a naive
 * bootstrap that materialises every resample and calls the public (sklearn-checked) metrics on it, with
 * the same Rng draws; plus the normal-approximation width for a large binary set.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { accuracy, argmaxRows, asScores, bootstrapCI, quantileSorted, rocAuc } from '../lib/metrics/index';
import { Rng } from '../lib/util/random';

const DIR = path.resolve(__dirname, 'fixtures/metrics');

/** Straightforward bootstrap: copy the drawn rows, recompute the metrics, take numpy-style percentiles. */
function naiveBootstrap(y: number[], probs: number[][], B: number, level: number, seed: number) {
  const rng = new Rng(seed);
  const n = y.length;
  const accs: number[] = [];
  const aucs: number[] = [];
  let skipped = 0;
  for (let b = 0; b < B; b++) {
    const idx = Array.from({ length: n }, () => rng.int(n));
    const yb = idx.map((i) => y[i]);
    const pb = idx.map((i) => probs[i]);
    accs.push(accuracy(yb, argmaxRows(asScores(pb, n))));
    const auc = rocAuc(yb, pb).headline;
    if (Number.isNaN(auc)) skipped++;
    else aucs.push(auc);
  }
  const a = 1 - level;
  const q = (v: number[], p: number) => quantileSorted(Float64Array.from(v).sort(), p);
  return { acc: [q(accs, a / 2), q(accs, 1 - a / 2)], auc: [q(aucs, a / 2), q(aucs, 1 - a / 2)], skipped };
}

describe('bootstrapCI', () => {
  for (const name of ['binary_ties', 'three_ties', 'eight_absent_true']) {
    it(`equals a naive materialised bootstrap (${name})`, () => {
      const fx = JSON.parse(fs.readFileSync(path.join(DIR, `${name}.json`), 'utf8'));
      const B = 60;
      const ci = bootstrapCI(fx.y_true, fx.probs, { samples: B, level: 0.9, seed: 7 });
      const ref = naiveBootstrap(fx.y_true, fx.probs, B, 0.9, 7);
      assert.ok(Math.abs(ci.accuracy.low - ref.acc[0]) < 1e-12 && Math.abs(ci.accuracy.high - ref.acc[1]) < 1e-12);
      assert.ok(Math.abs(ci.auc.low - ref.auc[0]) < 1e-9, `auc low ${ci.auc.low} vs ${ref.auc[0]}`);
      assert.ok(Math.abs(ci.auc.high - ref.auc[1]) < 1e-9, `auc high ${ci.auc.high} vs ${ref.auc[1]}`);
      assert.equal(ci.auc.skipped, ref.skipped);
      assert.equal(ci.accuracy.samples, B);
      assert.equal(ci.accuracy.estimate, accuracy(fx.y_true, argmaxRows(asScores(fx.probs, fx.y_true.length))));
      assert.equal(ci.auc.estimate, rocAuc(fx.y_true, fx.probs).headline);
    });
  }

  it('skips resamples where AUC is undefined (one-class resamples of a tiny set)', () => {
    const y = [0, 1, 0, 0];
    const probs = [
      [0.9, 0.1],
      [0.2, 0.8],
      [0.6, 0.4],
      [0.7, 0.3],
    ];
    const ci = bootstrapCI(y, probs, { samples: 200, seed: 3 });
    const ref = naiveBootstrap(y, probs, 200, 0.95, 3);
    assert.ok(ci.auc.skipped > 0, 'some resamples contain only class 0');
    assert.equal(ci.auc.skipped, ref.skipped);
    assert.equal(ci.auc.samples + ci.auc.skipped, 200);
  });

  it('is deterministic per seed and changes with the seed', () => {
    const fx = JSON.parse(fs.readFileSync(path.join(DIR, 'eight.json'), 'utf8'));
    const a = bootstrapCI(fx.y_true, fx.probs, { samples: 100, seed: 11 });
    const b = bootstrapCI(fx.y_true, fx.probs, { samples: 100, seed: 11 });
    const c = bootstrapCI(fx.y_true, fx.probs, { samples: 100, seed: 12 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('OA interval width matches the normal approximation on a large set', () => {
    // n = 4000, true accuracy 0.8: 95 % width ≈ 2·1.96·sqrt(0.8·0.2/4000) = 0.0248
    const rng = new Rng(5);
    const n = 4000;
    const y: number[] = [];
    const probs: number[][] = [];
    for (let i = 0; i < n; i++) {
      const label = rng.int(2);
      const right = rng.uniform() < 0.8;
      const p1 = (label === 1) === right ? 0.5 + 0.5 * rng.uniform() + 1e-6 : 0.5 * rng.uniform();
      y.push(label);
      probs.push([1 - p1, p1]);
    }
    const ci = bootstrapCI(y, probs, { samples: 400, seed: 9 });
    const p = ci.accuracy.estimate;
    const width = 2 * 1.96 * Math.sqrt((p * (1 - p)) / n);
    const got = ci.accuracy.high - ci.accuracy.low;
    assert.ok(Math.abs(got - width) / width < 0.2, `bootstrap width ${got}, normal approximation ${width}`);
    assert.ok(ci.accuracy.low < p && p < ci.accuracy.high);
  });

  it('rejects bad options with a clear message', () => {
    assert.throws(() => bootstrapCI([0, 1], [0.4, 0.6, 0.3, 0.7], { level: 95 }), /level = 95/);
    assert.throws(() => bootstrapCI([0, 1], [0.4, 0.6, 0.3, 0.7], { samples: 0 }), /samples = 0/);
  });
});
