/**
 * Label-based classification metrics: overall accuracy (the paper's OA), confusion matrix,
 * precision / recall / F1 (per class, macro, weighted), balanced accuracy, and top-k accuracy.
 *
 * Each mirrors the scikit-learn function named in its doc (the official code calls sklearn in
 * train.py L154–167 and test.py L81–97) and is checked against sklearn 1.2 values in
 * test/metrics.sklearn.test.ts.
 *
 * Glossary: n samples, k classes, yTrue/yPred Int32Array [n], C confusion matrix [k][k]
 * (rows = true class, columns = predicted class).
 */
import { asLabels, asLabelsAndScores, numClassesOf, type LabelsLike, type ScoresLike } from './inputs';

/** Overall accuracy: fraction of samples whose predicted label equals the true one (sklearn `accuracy_score`). */
export function accuracy(yTrue: LabelsLike, yPred: LabelsLike): number {
  const t = asLabels(yTrue, 'yTrue');
  const p = asLabels(yPred, 'yPred');
  checkSameLength(t, p);
  let hits = 0;
  for (let i = 0; i < t.length; i++) if (t[i] === p[i]) hits++;
  return hits / t.length;
}

/** C[i][j] = number of samples of true class i predicted as j (sklearn `confusion_matrix(labels=range(k))`). */
export function confusionMatrix(yTrue: LabelsLike, yPred: LabelsLike, numClasses?: number): number[][] {
  const t = asLabels(yTrue, 'yTrue', numClasses);
  const p = asLabels(yPred, 'yPred', numClasses);
  checkSameLength(t, p);
  const k = numClasses ?? numClassesOf(t, p);
  const C = Array.from({ length: k }, () => new Array<number>(k).fill(0)); // [k][k]
  for (let i = 0; i < t.length; i++) C[t[i]][p[i]]++;
  return C;
}

/** One metric in three views. */
export interface Averaged {
  perClass: number[]; // [k]
  /** Unweighted mean over the classes that occur in yTrue or yPred (sklearn's default label set). */
  macro: number;
  /** Mean weighted by each class's true support (the official recipe's `average='weighted'`). */
  weighted: number;
}

export interface PrecisionRecallF1 {
  precision: Averaged;
  recall: Averaged;
  f1: Averaged;
  /** Number of true samples per class [k]. */
  support: number[];
}

/**
 * Precision, recall and F1 per class with macro and weighted averages, as sklearn's
 * `precision_recall_fscore_support(zero_division=0)`:
 * - an undefined ratio (no predictions of a class → precision; no true samples → recall) is 0,
 *   which is also what sklearn's default `zero_division="warn"` returns after its warning;
 * - per-class values cover all k classes (`labels=range(k)`), while the macro mean covers the classes
 *   present in yTrue or yPred, which is what a plain `f1_score(y, p, average='macro')` call uses;
 * - the weighted mean weights by true support, so classes absent from yTrue do not count.
 */
export function precisionRecallF1(yTrue: LabelsLike, yPred: LabelsLike, numClasses?: number): PrecisionRecallF1 {
  const C = confusionMatrix(yTrue, yPred, numClasses);
  const k = C.length;
  const tp = C.map((row, i) => row[i]); // [k]
  const support = C.map((row) => row.reduce((a, b) => a + b, 0)); // true count per class [k]
  const predicted = C[0].map((_, j) => C.reduce((a, row) => a + row[j], 0)); // predicted count per class [k]
  const div = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const precision = tp.map((v, c) => div(v, predicted[c]));
  const recall = tp.map((v, c) => div(v, support[c]));
  // F1 = harmonic mean of precision and recall; 0 when both are 0 (sklearn zero_division=0).
  const f1 = precision.map((p, c) => div(2 * p * recall[c], p + recall[c]));
  const present = Array.from({ length: k }, (_, c) => support[c] > 0 || predicted[c] > 0);
  const total = support.reduce((a, b) => a + b, 0);
  const average = (v: number[]): Averaged => {
    let macroSum = 0;
    let macroN = 0;
    let weighted = 0;
    for (let c = 0; c < k; c++) {
      if (present[c]) {
        macroSum += v[c];
        macroN++;
      }
      weighted += (v[c] * support[c]) / total;
    }
    return { perClass: v, macro: macroSum / macroN, weighted };
  };
  return { precision: average(precision), recall: average(recall), f1: average(f1), support };
}

/**
 * Mean recall over the classes present in yTrue (sklearn `balanced_accuracy_score`; classes that are
 * only predicted have undefined recall and are dropped, as sklearn does after its warning).
 */
export function balancedAccuracy(yTrue: LabelsLike, yPred: LabelsLike, numClasses?: number): number {
  const C = confusionMatrix(yTrue, yPred, numClasses);
  let sum = 0;
  let classes = 0;
  for (let c = 0; c < C.length; c++) {
    const support = C[c].reduce((a, b) => a + b, 0);
    if (support === 0) continue;
    sum += C[c][c] / support;
    classes++;
  }
  return sum / classes;
}

/**
 * Fraction of samples whose true class is among the k highest scores (sklearn `top_k_accuracy_score`
 * with `labels=range(numClasses)`). Ties are broken as sklearn does: among equal scores the class with
 * the HIGHER index ranks first, so `topKAccuracy(y, p, 1)` can differ from `accuracy(y, argmax)`
 * (lowest index wins) on exactly tied rows.
 */
export function topKAccuracy(yTrue: LabelsLike, probs: ScoresLike, topK: number): number {
  const { y, s } = asLabelsAndScores(yTrue, probs);
  if (!Number.isInteger(topK) || topK < 1) throw new Error(`topKAccuracy: k = ${topK} must be a positive integer`);
  let hits = 0;
  for (let i = 0; i < s.n; i++) {
    const row = i * s.k;
    const own = s.data[row + y[i]];
    // rank of the true class = number of classes placed before it
    let before = 0;
    for (let c = 0; c < s.k; c++) {
      const v = s.data[row + c];
      if (v > own || (v === own && c > y[i])) before++;
    }
    if (before < topK) hits++;
  }
  return hits / s.n;
}

function checkSameLength(t: Int32Array, p: Int32Array): void {
  if (t.length !== p.length) throw new Error(`yTrue has ${t.length} labels but yPred has ${p.length}`);
  if (t.length === 0) throw new Error('no samples: yTrue is empty');
}
