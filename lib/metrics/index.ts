/**
 * Classification metrics for the kit, checked against scikit-learn (test/metrics.sklearn.test.ts):
 * OA, ROC AUC (binary / one-vs-rest macro and weighted) and ROC curves, precision / recall / F1,
 * balanced accuracy, confusion matrix, top-k accuracy, bootstrap confidence intervals, and
 * `classificationReport`, which bundles them into one plain JSON object (what `evaluate` writes).
 *
 * Inputs are plain arrays: labels Int32Array / number[] [n]; probabilities Float32Array [n*k] row-major
 * or number[][] [n][k]. No tfjs is needed.
 *
 * Glossary: n samples, k classes.
 */
import { bootstrapCI, type BootstrapOptions } from './bootstrap';
import { balancedAccuracy, confusionMatrix, precisionRecallF1, topKAccuracy, type Averaged } from './classification';
import { argmaxRows, asLabelsAndScores, type LabelsLike, type ScoresLike } from './inputs';
import { rocAuc } from './roc';

export * from './inputs';
export * from './classification';
export * from './roc';
export * from './bootstrap';

export interface ClassificationReportOptions {
  /** Names of the k classes (default "0", "1", ...). */
  classNames?: string[];
  /** Which top-k accuracies to add (default 2, 3 and 5, those below k). */
  topK?: number[];
  /** Bootstrap intervals for OA and AUC (default 1000 resamples, 95 %, seed 0); false to skip. */
  bootstrap?: BootstrapOptions | false;
}

/** One class's row of the report. A null is a metric that is undefined for this data. */
export interface ClassRow {
  class: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
  auc: number | null;
}

/** Everything `classificationReport` returns; plain JSON (undefined values are null). */
export interface ClassificationReport {
  n: number;
  numClasses: number;
  classNames: string[];
  /** Overall accuracy of argmax predictions (the paper's OA). */
  accuracy: number;
  balancedAccuracy: number;
  auc: {
    /** Binary AUC for k = 2, weighted one-vs-rest otherwise (the paper's AUC). */
    headline: number | null;
    binary?: number | null;
    macro: number | null;
    weighted: number | null;
    perClass: (number | null)[];
    undefinedClasses: number[];
  };
  precision: Averaged;
  recall: Averaged;
  f1: Averaged;
  support: number[];
  /** Rows = true class, columns = predicted class. */
  confusionMatrix: number[][];
  /** e.g. { "3": 0.97 } for top-3 accuracy. */
  topK: Record<string, number>;
  ci?: {
    level: number;
    resamples: number;
    seed: number;
    accuracy: { low: number; high: number };
    auc: { low: number | null; high: number | null; skipped: number };
  };
  perClass: ClassRow[];
}

const orNull = (v: number): number | null => (Number.isNaN(v) ? null : v);

/**
 * All metrics of a k-class prediction in one JSON-ready object (official test.py L81–97 reports OA,
 * weighted precision / recall / F1 and AUC; the rest is what reviewers ask for).
 */
export function classificationReport(
  yTrue: LabelsLike,
  probs: ScoresLike,
  options: ClassificationReportOptions = {},
): ClassificationReport {
  const { y, s } = asLabelsAndScores(yTrue, probs);
  const k = s.k;
  const classNames = options.classNames ?? Array.from({ length: k }, (_, c) => String(c));
  if (classNames.length !== k) {
    throw new Error(`classificationReport: ${classNames.length} classNames for ${k} probability columns`);
  }
  const pred = argmaxRows(s); // [n]
  const prf = precisionRecallF1(y, pred, k);
  const auc = rocAuc(y, s.data); // flat [n*k]; k is recovered from n
  const topK: Record<string, number> = {};
  for (const t of options.topK ?? [2, 3, 5].filter((t) => t < k)) topK[String(t)] = topKAccuracy(y, s.data, t);
  let hits = 0;
  for (let i = 0; i < s.n; i++) if (pred[i] === y[i]) hits++;

  const report: ClassificationReport = {
    n: s.n,
    numClasses: k,
    classNames,
    accuracy: hits / s.n,
    balancedAccuracy: balancedAccuracy(y, pred, k),
    auc: {
      headline: orNull(auc.headline),
      macro: orNull(auc.macro),
      weighted: orNull(auc.weighted),
      perClass: auc.perClass.map(orNull),
      undefinedClasses: auc.undefinedClasses,
    },
    precision: prf.precision,
    recall: prf.recall,
    f1: prf.f1,
    support: prf.support,
    confusionMatrix: confusionMatrix(y, pred, k),
    topK,
    perClass: classNames.map((name, c) => ({
      class: name,
      precision: prf.precision.perClass[c],
      recall: prf.recall.perClass[c],
      f1: prf.f1.perClass[c],
      support: prf.support[c],
      auc: orNull(auc.perClass[c]),
    })),
  };
  if (auc.binary !== undefined) report.auc.binary = orNull(auc.binary);
  if (options.bootstrap !== false) {
    const b = options.bootstrap ?? {};
    const ci = bootstrapCI(y, s.data, b);
    report.ci = {
      level: ci.accuracy.level,
      resamples: b.samples ?? 1000,
      seed: b.seed ?? 0,
      accuracy: { low: ci.accuracy.low, high: ci.accuracy.high },
      auc: { low: orNull(ci.auc.low), high: orNull(ci.auc.high), skipped: ci.auc.skipped },
    };
  }
  return report;
}
