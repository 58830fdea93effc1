/**
 * Bootstrap confidence intervals for OA and AUC (percentile method; Efron & Tibshirani 1993, ch. 13).
 *
 * The test set is resampled with replacement B times; the metric is recomputed on every resample, and
 * the interval is the (α/2, 1−α/2) percentiles of those B values. A resample is drawn as a vector of
 * repetition counts, so each AUC is a weighted walk over orders sorted once (O(n·k) per resample).
 * Draws come from the kit's seeded `Rng`, so one seed gives one interval on every machine.
 *
 * Glossary: n samples, k classes, B resamples, counts Int32Array [n] (times each sample was drawn).
 */
import { Rng } from '../util/random';
import { argmaxRows, asLabelsAndScores, type LabelsLike, type ScoresLike } from './inputs';
import { checkRowsSumToOne, ovrAuc, prepareOvr, type RocAuc } from './roc';

export interface ConfidenceInterval {
  /** The metric on the full set. */
  estimate: number;
  low: number;
  high: number;
  /** Coverage, e.g. 0.95. */
  level: number;
  /** Resamples that gave a defined value. */
  samples: number;
  /** Resamples dropped because the metric was undefined there (e.g. AUC of a one-class resample). */
  skipped: number;
}

export interface BootstrapOptions {
  /** Number of resamples B (default 1000). */
  samples?: number;
  /** Interval coverage (default 0.95). */
  level?: number;
  /** Seed of the resampling stream (default 0). */
  seed?: number;
  /** Which AUC: 'headline' (binary for k = 2, weighted OvR otherwise; default), 'macro' or 'weighted'. */
  aucAverage?: 'headline' | 'macro' | 'weighted';
}

/**
 * The q-th quantile (q in [0, 1]) of ascending-sorted values with linear interpolation between order
 * statistics, numpy's default `percentile(..., method='linear')`.
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const m = sorted.length;
  if (m === 0) return NaN;
  const h = (m - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, m - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** Percentile interval of `values` (any order; NaNs are dropped and counted as skipped). */
export function percentileInterval(values: ArrayLike<number>, level: number, estimate: number): ConfidenceInterval {
  const kept = Float64Array.from(Array.from(values).filter((v) => !Number.isNaN(v))).sort();
  const alpha = 1 - level;
  return {
    estimate,
    low: quantileSorted(kept, alpha / 2),
    high: quantileSorted(kept, 1 - alpha / 2),
    level,
    samples: kept.length,
    skipped: values.length - kept.length,
  };
}

function pickAuc(r: RocAuc, which: BootstrapOptions['aucAverage']): number {
  return which === 'macro' ? r.macro : which === 'weighted' ? r.weighted : r.headline;
}

/** Bootstrap percentile intervals of overall accuracy (argmax predictions) and ROC AUC. */
export function bootstrapCI(
  yTrue: LabelsLike,
  probs: ScoresLike,
  options: BootstrapOptions = {},
): { accuracy: ConfidenceInterval; auc: ConfidenceInterval } {
  const { samples = 1000, level = 0.95, seed = 0, aucAverage = 'headline' } = options;
  if (!Number.isInteger(samples) || samples < 1) throw new Error(`bootstrapCI: samples = ${samples} must be >= 1`);
  if (!(level > 0 && level < 1)) throw new Error(`bootstrapCI: level = ${level} must lie in (0, 1)`);
  const { y, s } = asLabelsAndScores(yTrue, probs);
  if (s.k > 2) checkRowsSumToOne(s);
  const n = s.n;
  const pred = argmaxRows(s);
  const correct = Uint8Array.from(y, (v, i) => (v === pred[i] ? 1 : 0)); // [n]
  const tasks = prepareOvr(y, s);

  const rng = new Rng(seed);
  const counts = new Int32Array(n); // [n]
  const accs = new Float64Array(samples); // [B]
  const aucs = new Float64Array(samples); // [B]
  for (let b = 0; b < samples; b++) {
    counts.fill(0);
    for (let j = 0; j < n; j++) counts[rng.int(n)]++;
    let hits = 0;
    for (let i = 0; i < n; i++) hits += counts[i] * correct[i];
    accs[b] = hits / n;
    aucs[b] = pickAuc(ovrAuc(tasks, counts), aucAverage);
  }
  let hitsAll = 0;
  for (let i = 0; i < n; i++) hitsAll += correct[i];
  return {
    accuracy: percentileInterval(accs, level, hitsAll / n),
    auc: percentileInterval(aucs, level, pickAuc(ovrAuc(tasks), aucAverage)),
  };
}
