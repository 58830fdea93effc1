/**
 * The input-size view of a study (lib/study/size-effect.ts, figures.ts `sizeEffectFigure`, results.md §Input
 * size) on hand-made results: which arms pair up, the paired gain by hand, ranks per size, the order.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  resultsMarkdown,
  sizeEffectFigure,
  sizeEffects,
  sizeFreeName,
  summarize,
  type ArmResult,
  type StudyResults,
} from '../lib/study/index';

/** An arm with OA per seed (the other metrics equal to it; they do not enter the size view). */
function arm(label: string, model: string, family: string, imageSize: number, oa: Record<number, number>): ArmResult {
  const seeds = Object.keys(oa).map(Number);
  const values = seeds.map((s) => oa[s]);
  const summary = summarize(values, [0, 1]);
  return {
    label,
    model,
    family,
    imageSize,
    seeds,
    missingSeeds: [],
    metrics: { accuracy: summary, auc: summary, f1: summary, balancedAccuracy: summary },
    perSeed: seeds.map((seed) => ({
      seed,
      accuracy: oa[seed],
      auc: oa[seed],
      f1: oa[seed],
      balancedAccuracy: oa[seed],
      wallSeconds: 60,
    })),
    params: 1000,
    macs: null,
    wallSeconds: summarize(seeds.map(() => 60)),
  };
}

const results: StudyResults = {
  study: 'sizes',
  dataset: null,
  recipe: 'cpu',
  seeds: [0, 1],
  reference: 'a 32px',
  cells: { total: 7, finished: 7 },
  machines: [],
  arms: [
    arm('a 32px', 'a', 'cnn', 32, { 0: 0.8, 1: 0.84 }),
    arm('b 32px', 'b', 'vit', 32, { 0: 0.9, 1: 0.9 }), // one size only: not in the size view
    arm('c 32px', 'c', 'mamba', 32, { 0: 0.95 }),
    arm('a 64px', 'a', 'cnn', 64, { 0: 0.9, 1: 0.92 }),
    arm('c 64px', 'c', 'mamba', 64, { 0: 0.7, 1: 0.72 }),
  ],
  paired: [],
  bootstrap: { samples: 10, seed: 0 },
};

test('size names: the label without a trailing size', () => {
  assert.equal(sizeFreeName('microscopic-mamba-t 64px'), 'microscopic-mamba-t');
  assert.equal(sizeFreeName('resnet18-cifar-stem 32 px'), 'resnet18-cifar-stem');
  assert.equal(sizeFreeName('w/o MIFA'), 'w/o MIFA');
});

test('size effects by hand: pairs, paired gain over common seeds, ranks per size, order by the largest size', () => {
  const effects = sizeEffects(results);
  assert.deepEqual(
    effects.map((e) => [e.name, e.sizes]),
    [
      ['a', [32, 64]],
      ['c', [32, 64]],
    ],
    'b ran at one size only; a (91 % at 64 px) before c (71 %)',
  );
  const [a, c] = effects;
  // a: differences 0.90 − 0.80 = 0.10 and 0.92 − 0.84 = 0.08: mean 0.09, sd 0.0141421,
  // half width t(0.975, 1) · sd / √2 = 12.706205 · 0.01 = 0.127062 → [−0.037062, 0.217062], contains 0.
  assert.deepEqual(a.gain!.seeds, [0, 1]);
  assert.ok(Math.abs(a.gain!.summary.mean - 0.09) < 1e-12);
  assert.ok(Math.abs(a.gain!.summary.low! + 0.037062) < 1e-6);
  assert.ok(Math.abs(a.gain!.summary.high! - 0.217062) < 1e-6);
  assert.equal(a.gain!.containsZero, true);
  // c: only seed 0 ran at both sizes: one difference, 0.70 − 0.95 = −0.25, no interval.
  assert.deepEqual(c.gain!.seeds, [0]);
  assert.ok(Math.abs(c.gain!.summary.mean + 0.25) < 1e-12);
  assert.equal(c.gain!.summary.low, null);
  // Ranks among all arms at a size: at 32 px c (95 %) 1, b (90 %) 2, a (82 %) 3; at 64 px a 1, c 2.
  assert.deepEqual(a.rank, [3, 1]);
  assert.deepEqual(c.rank, [1, 2]);
  assert.deepEqual(
    a.accuracy.map((v) => Math.round(v! * 100) / 100),
    [0.82, 0.91],
  );
});

test('size effects in results.md and as a figure', () => {
  const md = resultsMarkdown(results);
  assert.match(md, /## Input size/);
  assert.match(md, /\| a \| cnn \| 82\.00 \(3\) \| 91\.00 \(1\) \| \+9\.00 \[−3\.71, \+21\.71\] ° \| 0, 1 \|/);
  assert.match(md, /\| c \| mamba \| 95\.00 \(1\) \| 71\.00 \(2\) \| −25\.00 ° \| 0 \|/);
  const fig = sizeEffectFigure(results);
  const at32 = fig.data.find((t) => t.name === '32 px, mean')!;
  assert.deepEqual(at32.y, ['a', 'c']);
  assert.deepEqual(
    (at32.x as number[]).map((v) => Math.round(v * 100) / 100),
    [82, 95],
  );
  const seeds64 = fig.data.find((t) => t.name === '64 px, one seed')!;
  assert.deepEqual(seeds64.y, ['a', 'a', 'c', 'c']);
  assert.deepEqual(
    (seeds64.x as number[]).map((v) => Math.round(v * 100) / 100),
    [90, 92, 70, 72],
  );
  assert.equal(fig.data.filter((t) => t.mode === 'lines').length, 2, 'one line per model');
  // A study without a model at two sizes: no section, an empty figure.
  const single: StudyResults = { ...results, arms: results.arms.slice(0, 3) };
  assert.doesNotMatch(resultsMarkdown(single), /## Input size/);
  assert.equal(sizeEffectFigure(single).data.length, 0);
});
