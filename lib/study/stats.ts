/**
 * The statistics a study reports (docs: README §Studies):
 *
 *   over seeds      mean, sample sd (n − 1) and the 95 % Student-t interval  mean ± t(0.975, n−1)·sd/√n,
 *                   clipped to the values the metric can take (an accuracy stays within 0–1: with two or three
 *                   seeds t is 12.7 or 4.3, and a noisy arm's interval would otherwise pass 100 %)
 *   paired, seeds   d_s = metric(arm, seed s) − metric(reference, seed s): the same summary of the d_s
 *   paired, images  a paired bootstrap over the test images: resample the n image indices with
 *                   replacement (the same indices for both arms and every seed), recompute each metric
 *                   from the predictions, average the arm − reference difference over seeds; the 2.5 and
 *                   97.5 % percentiles of B such means are the interval (percentile method)
 *
 * A difference is marked when its interval contains 0 (not distinguishable at this level). Seeds measure
 * training noise (initialisation, order, augmentation); the image bootstrap measures test-set sampling
 * noise. Both are reported because either can dominate: few seeds give wide t intervals, a small test set
 * wide bootstrap intervals.
 */
import { balancedAccuracy, precisionRecallF1 } from '../metrics/index';
import { Rng } from '../util/random';

/** Two-sided 97.5 % quantiles of Student's t for 1–30 degrees of freedom (then the normal 1.960 is within 1.5 %). */
const T_975 = [
  12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985,
  2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658,
  2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.04523, 2.042272,
];

/** t(0.975, df); the normal quantile beyond the table. */
export function tQuantile975(df: number): number {
  if (!(Number.isInteger(df) && df >= 1)) throw new Error(`tQuantile975: degrees of freedom must be ≥ 1 (got ${df})`);
  return df <= T_975.length ? T_975[df - 1] : 1.959964;
}

/** Mean, sample sd and 95 % t interval of a few values (sd and interval null for one value). */
export interface Summary {
  n: number;
  mean: number;
  sd: number | null;
  low: number | null;
  high: number | null;
}

/** `range`: the values the quantity can take; the interval is clipped to it (default: unbounded). */
export function summarize(
  values: readonly number[],
  range: readonly [number, number] = [-Infinity, Infinity],
): Summary {
  const n = values.length;
  if (n === 0) throw new Error('summarize: no values');
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { n, mean, sd: null, low: null, high: null };
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  const half = (tQuantile975(n - 1) * sd) / Math.sqrt(n);
  return { n, mean, sd, low: Math.max(range[0], mean - half), high: Math.min(range[1], mean + half) };
}

/** A metric in [0, 1] (OA, AUC, F1, balanced accuracy) and a difference of two such metrics. */
export const METRIC_RANGE: readonly [number, number] = [0, 1];
export const DIFFERENCE_RANGE: readonly [number, number] = [-1, 1];

/** Does [low, high] contain 0? (null bounds: unknown, treated as containing it) */
export function containsZero(low: number | null, high: number | null): boolean {
  return low === null || high === null || (low <= 0 && high >= 0);
}

/** The metrics computable from predicted labels alone (what the image bootstrap resamples). */
export type PredictionMetric = 'accuracy' | 'balancedAccuracy' | 'f1';
export const PREDICTION_METRICS: readonly PredictionMetric[] = ['accuracy', 'balancedAccuracy', 'f1'];

/** OA, balanced accuracy or weighted F1 (the official test.py's average) of predictions `pred` against `y`. */
export function predictionMetric(metric: PredictionMetric, y: Int32Array, pred: Int32Array, k: number): number {
  switch (metric) {
    case 'accuracy': {
      let hits = 0;
      for (let i = 0; i < y.length; i++) if (y[i] === pred[i]) hits++;
      return hits / y.length;
    }
    case 'balancedAccuracy':
      return balancedAccuracy(y, pred, k);
    case 'f1':
      return precisionRecallF1(y, pred, k).f1.weighted;
  }
}

export interface PairedBootstrapOptions {
  /** Resamples (default 1000). */
  samples?: number;
  /** Seed of the resampling (default 0). */
  seed?: number;
}

export interface PairedBootstrap {
  /** Mean over seeds of metric(arm) − metric(reference) on the full test set. */
  estimate: number;
  low: number;
  high: number;
  samples: number;
  seed: number;
}

/**
 * Paired bootstrap over test images of the mean (over seeds) arm − reference difference of `metric`.
 * `arm[s]` and `reference[s]` are seed s's predicted labels on the same test images `labels` [n].
 */
export function pairedBootstrap(
  metric: PredictionMetric,
  labels: Int32Array,
  numClasses: number,
  arm: readonly Int32Array[],
  reference: readonly Int32Array[],
  opts: PairedBootstrapOptions = {},
): PairedBootstrap {
  const n = labels.length;
  const seeds = arm.length;
  if (seeds === 0 || seeds !== reference.length)
    throw new Error(
      `pairedBootstrap: ${seeds} arm and ${reference.length} reference prediction sets (need equal, ≥ 1)`,
    );
  for (const p of [...arm, ...reference])
    if (p.length !== n) throw new Error(`pairedBootstrap: ${p.length} predictions for ${n} test labels`);
  const samples = opts.samples ?? 1000;
  const seed = opts.seed ?? 0;
  const meanDiff = (y: Int32Array, a: readonly Int32Array[], r: readonly Int32Array[]) => {
    let sum = 0;
    for (let s = 0; s < seeds; s++)
      sum += predictionMetric(metric, y, a[s], numClasses) - predictionMetric(metric, y, r[s], numClasses);
    return sum / seeds;
  };
  const estimate = meanDiff(labels, arm, reference);
  const rng = new Rng(seed);
  const idx = new Int32Array(n);
  const yb = new Int32Array(n);
  const ab = arm.map(() => new Int32Array(n));
  const rb = reference.map(() => new Int32Array(n));
  const diffs = new Float64Array(samples);
  for (let b = 0; b < samples; b++) {
    for (let i = 0; i < n; i++) idx[i] = rng.int(n);
    for (let i = 0; i < n; i++) yb[i] = labels[idx[i]];
    for (let s = 0; s < seeds; s++) {
      for (let i = 0; i < n; i++) {
        ab[s][i] = arm[s][idx[i]];
        rb[s][i] = reference[s][idx[i]];
      }
    }
    diffs[b] = meanDiff(yb, ab, rb);
  }
  diffs.sort();
  return { estimate, low: quantile(diffs, 0.025), high: quantile(diffs, 0.975), samples, seed };
}

/** Linear-interpolated quantile of sorted values (numpy's default 'linear'). */
function quantile(sorted: Float64Array, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}
