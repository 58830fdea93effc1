/**
 * The study statistics (lib/study/stats.ts) against hand-computed examples: the t interval over seeds,
 * paired per-seed differences, the paired image bootstrap, the Pareto front.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  containsZero,
  METRIC_RANGE,
  pairedBootstrap,
  predictionMetric,
  summarize,
  tQuantile975,
} from '../lib/study/stats';
import { paretoFront, placeLabels } from '../lib/study/figures';

const close = (a: number | null, b: number, tol = 1e-6, what = '') =>
  assert.ok(a !== null && Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('summary over seeds: mean, sample sd and the 95 % t interval, by hand', () => {
  // OA of an arm and of the reference on seeds 0, 1, 2; per-seed differences d = 0.02, 0.01, 0.04.
  const arm = [0.9, 0.92, 0.94];
  const ref = [0.88, 0.91, 0.9];
  const d = arm.map((a, i) => a - ref[i]);
  const s = summarize(d);
  // mean = 0.07 / 3 = 0.023333; deviations −0.003333, −0.013333, 0.016667;
  // sd = sqrt((1.1111e-5 + 1.77778e-4 + 2.77778e-4) / 2) = sqrt(2.33333e-4) = 0.0152753;
  // half width = t(0.975, 2) · sd / √3 = 4.302653 · 0.0152753 / 1.7320508 = 0.0379462.
  close(s.mean, 0.0233333, 1e-6, 'mean');
  close(s.sd, 0.0152753, 1e-6, 'sd');
  close(s.low, 0.0233333 - 0.0379462, 1e-6, 'low');
  close(s.high, 0.0233333 + 0.0379462, 1e-6, 'high');
  assert.equal(containsZero(s.low, s.high), true, 'the interval [−0.0146, 0.0613] contains 0');
  // Three seeds of the arm alone: mean 0.92, sd 0.02, half width 4.302653 · 0.02 / √3 = 0.0496828.
  const a = summarize(arm);
  close(a.mean, 0.92, 1e-9, 'arm mean');
  close(a.sd, 0.02, 1e-9, 'arm sd');
  close(a.high, 0.92 + 0.0496828, 1e-6, 'arm high');
  // Clipped to the metric's range: seeds 0.96 and 0.99 give 0.975 ± 12.706205 · 0.0212132 / √2 = 0.975 ± 0.190593,
  // i.e. [0.784407, 1.165593] unclipped; an accuracy cannot pass 1, so high is 1 and low is unchanged.
  const c = summarize([0.96, 0.99], METRIC_RANGE);
  close(c.low, 0.975 - 0.190593, 1e-6, 'clipped low');
  assert.equal(c.high, 1, 'clipped high');
  close(summarize([0.96, 0.99]).high, 0.975 + 0.190593, 1e-6, 'unclipped high');
  // One seed: no spread, no interval (and an unknown interval counts as containing 0).
  assert.deepEqual(summarize([0.5]), { n: 1, mean: 0.5, sd: null, low: null, high: null });
  assert.equal(containsZero(null, null), true);
  assert.equal(tQuantile975(1), 12.706205);
  assert.equal(tQuantile975(100), 1.959964);
});

test('prediction metrics: OA, balanced accuracy and weighted F1 by hand', () => {
  const y = Int32Array.from([0, 0, 0, 1]);
  const p = Int32Array.from([0, 0, 1, 1]);
  assert.equal(predictionMetric('accuracy', y, p, 2), 0.75);
  // recall class 0 = 2/3, class 1 = 1 → balanced (2/3 + 1) / 2 = 5/6.
  close(predictionMetric('balancedAccuracy', y, p, 2), 5 / 6, 1e-12, 'balanced');
  // F1 class 0: P = 1, R = 2/3 → 0.8; class 1: P = 1/2, R = 1 → 2/3; weighted (3·0.8 + 1·2/3) / 4 = 0.766667.
  close(predictionMetric('f1', y, p, 2), (3 * 0.8 + 2 / 3) / 4, 1e-12, 'f1');
});

test('paired bootstrap over test images: hand-computed cases', () => {
  const y = Int32Array.from([0, 1, 0, 1]);
  // Identical predictions: every resample gives a difference of exactly 0.
  const same = pairedBootstrap('accuracy', y, 2, [Int32Array.from([0, 1, 1, 1])], [Int32Array.from([0, 1, 1, 1])]);
  assert.deepEqual([same.estimate, same.low, same.high], [0, 0, 0]);
  // The arm is right on every image, the reference on none: the difference is 1 on every resample.
  const all = pairedBootstrap('accuracy', y, 2, [Int32Array.from([0, 1, 0, 1])], [Int32Array.from([1, 0, 1, 0])]);
  assert.deepEqual([all.estimate, all.low, all.high], [1, 1, 1]);
  assert.equal(containsZero(all.low, all.high), false);
  // Both right on images 0–2; only the arm on image 3. A resample's difference is k/4, k = copies of
  // image 3 ~ Binomial(4, 1/4): P(k = 0) = 0.316 > 2.5 % so the low end is 0; P(k ≤ 2) = 0.949 < 97.5 %
  // ≤ P(k ≤ 3) = 0.996 so the high end is 3/4. The interval [0, 0.75] contains 0.
  const arm = Int32Array.from([0, 1, 0, 1]);
  const ref = Int32Array.from([0, 1, 0, 0]);
  const one = pairedBootstrap('accuracy', y, 2, [arm], [ref], { samples: 4000, seed: 1 });
  assert.equal(one.estimate, 0.25);
  assert.equal(one.low, 0);
  assert.equal(one.high, 0.75);
  assert.equal(containsZero(one.low, one.high), true);
  // Two seeds: the estimate is the mean over seeds of the full-set differences ((0.25 + 1) / 2).
  const two = pairedBootstrap('accuracy', y, 2, [arm, arm], [ref, Int32Array.from([1, 0, 1, 0])]);
  assert.equal(two.estimate, 0.625);
  // The same seed gives the same resamples.
  assert.deepEqual(
    pairedBootstrap('f1', y, 2, [arm], [ref], { seed: 3 }),
    pairedBootstrap('f1', y, 2, [arm], [ref], { seed: 3 }),
  );
  assert.throws(() => pairedBootstrap('accuracy', y, 2, [arm], []), /1 arm and 0 reference/);
  assert.throws(() => pairedBootstrap('accuracy', y, 2, [arm.subarray(1)], [ref]), /3 predictions for 4 test labels/);
});

test('Pareto front: cheaper-or-equal and at-least-as-accurate points dominate', () => {
  const pts = [
    { x: 1, y: 0.8 },
    { x: 2, y: 0.9 },
    { x: 3, y: 0.85 }, // dominated by (2, 0.9)
    { x: 4, y: 0.95 },
    { x: 4, y: 0.9 }, // dominated by (4, 0.95)
  ];
  assert.deepEqual(paretoFront(pts), [0, 1, 3]);
});

test('label placement: crowded points get different sides, edge labels stay inside', () => {
  // two sizes of one model (same parameter count, close accuracies) and a point far away
  const pts = [
    { x: 1e6, y: 80, text: 'a' },
    { x: 4.2e6, y: 95.1, text: 'microscopic-mamba-t 64px' },
    { x: 4.2e6, y: 94.6, text: 'microscopic-mamba-t 32px' },
    { x: 3e7, y: 70, text: 'convnext-tiny 64px' },
  ];
  const pos = placeLabels(pts);
  assert.notEqual(pos[1], pos[2]);
  assert.equal(pos[1], 'top center', 'the higher one keeps the top');
  assert.ok(
    !pos[3].endsWith('right') && pos[3] !== 'top center',
    `the rightmost label keeps off the legend: ${pos[3]}`,
  );
  // the leftmost point's label never goes left (the figure's edge would cut it)
  const left = placeLabels([
    { x: 1e6, y: 90, text: 'a long label for the leftmost point' },
    { x: 1e6, y: 90.2, text: 'another long label, same place' },
    { x: 1e6, y: 89.8, text: 'and a third one' },
    { x: 1e8, y: 50, text: 'far' },
  ]);
  assert.ok(!left.slice(0, 3).includes('middle left'), left.join(', '));
  assert.equal(new Set(left.slice(0, 3)).size, 3, 'three crowded labels, three sides');
});
