/**
 * ROC curves and the area under them (the paper's AUC), binary and multi-class one-vs-rest (OvR).
 *
 * How scikit-learn handles ties, which this file reproduces: samples are sorted by score, and the curve
 * gets ONE point per distinct score value (all tied samples cross the threshold together). The area is
 * the trapezoid rule over those points, so a tie between a positive and a negative counts as half a
 * correctly ordered pair (the Mann–Whitney U statistic with mid-ranks).
 *
 * Glossary: n samples, k classes, P / N = positive / negative count (or weight) of a one-vs-rest task,
 * tps / fps = cumulative true / false positives at each distinct threshold.
 */
import { asLabelsAndScores, type LabelsLike, type ScoreMatrix, type ScoresLike } from './inputs';

/** Points of one ROC curve, highest threshold first; `thresholds[0]` is +Infinity (the empty prediction). */
export interface RocCurve {
  fpr: number[];
  tpr: number[];
  thresholds: number[];
}

/** Sample indices sorted by descending score; ties keep sklearn's order (reversed stable argsort). */
export function descendingOrder(score: ArrayLike<number>): Int32Array {
  const order = Int32Array.from({ length: score.length }, (_, i) => i);
  order.sort((a, b) => score[b] - score[a] || b - a);
  return order;
}

/**
 * One binary task sorted once: sample order by descending score, the positive flag and the
 * "last sample of a distinct score" flag in that order. Sorting dominates the cost, so the bootstrap
 * sorts once and then only re-walks this with new weights.
 */
export interface SortedTask {
  order: Int32Array; // [n] sample index at each sorted position
  positive: Uint8Array; // [n] 1 = positive class, in sorted order
  groupEnd: Uint8Array; // [n] 1 = next sorted sample has a different score (a curve point closes here)
}

export function sortTask(isPositive: ArrayLike<number | boolean>, score: ArrayLike<number>): SortedTask {
  const order = descendingOrder(score);
  const n = order.length;
  const positive = new Uint8Array(n);
  const groupEnd = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    positive[j] = isPositive[order[j]] ? 1 : 0;
    groupEnd[j] = j === n - 1 || score[order[j + 1]] !== score[order[j]] ? 1 : 0;
  }
  return { order, positive, groupEnd };
}

/**
 * Trapezoid AUC of one binary task, walking samples in descending-score order and closing one curve
 * point per distinct score (sklearn `_binary_clf_curve` + `auc`). Optional per-sample weights are
 * repetition counts (used by the bootstrap). Returns NaN when P or N is 0: sklearn raises
 * "Only one class present in y_true" there.
 */
export function aucOfSorted(task: SortedTask, weight?: ArrayLike<number>): number {
  const { order, positive, groupEnd } = task;
  let tp = 0;
  let fp = 0;
  let tpPrev = 0;
  let fpPrev = 0;
  let area = 0; // in units of (false positives × true positives), normalised at the end
  for (let j = 0; j < order.length; j++) {
    const w = weight ? weight[order[j]] : 1;
    if (positive[j]) tp += w;
    else fp += w;
    if (groupEnd[j]) {
      area += ((fp - fpPrev) * (tp + tpPrev)) / 2; // trapezoid between consecutive distinct thresholds
      tpPrev = tp;
      fpPrev = fp;
    }
  }
  if (tp === 0 || fp === 0) return NaN;
  return area / (tp * fp);
}

/**
 * ROC curve of a binary task (sklearn `roc_curve(drop_intermediate=True)`): one point per distinct score,
 * collinear intermediate points dropped (they do not change the area), (0, 0) prepended.
 * `isPositive[i]` is 1/true for the positive class. FPR (TPR) is NaN everywhere when there are no
 * negatives (positives), as in sklearn. Difference from sklearn 1.2: the first threshold is +Infinity
 * (sklearn ≥ 1.3 does the same; 1.2 used max score + 1).
 */
export function rocCurve(isPositive: ArrayLike<number | boolean>, score: ArrayLike<number>): RocCurve {
  const n = score.length;
  if (isPositive.length !== n) throw new Error(`rocCurve: ${isPositive.length} labels but ${n} scores`);
  if (n === 0) throw new Error('rocCurve: no samples');
  checkFinite(score, 'rocCurve');
  const order = descendingOrder(score);
  // cumulative counts at the last sample of each distinct score
  let fps: number[] = [];
  let tps: number[] = [];
  let thr: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let j = 0; j < n; j++) {
    const i = order[j];
    if (isPositive[i]) tp++;
    else fp++;
    if (j === n - 1 || score[order[j + 1]] !== score[i]) {
      fps.push(fp);
      tps.push(tp);
      thr.push(score[i]);
    }
  }
  if (fps.length > 2) {
    // keep a point only where the curve bends (second difference of fps or tps non-zero), plus both ends
    const keep = fps.map(
      (_, m) =>
        m === 0 ||
        m === fps.length - 1 ||
        fps[m + 1] - 2 * fps[m] + fps[m - 1] !== 0 ||
        tps[m + 1] - 2 * tps[m] + tps[m - 1] !== 0,
    );
    fps = fps.filter((_, m) => keep[m]);
    tps = tps.filter((_, m) => keep[m]);
    thr = thr.filter((_, m) => keep[m]);
  }
  fps.unshift(0);
  tps.unshift(0);
  thr.unshift(Infinity);
  const N = fps[fps.length - 1];
  const P = tps[tps.length - 1];
  return {
    fpr: fps.map((v) => (N > 0 ? v / N : NaN)),
    tpr: tps.map((v) => (P > 0 ? v / P : NaN)),
    thresholds: thr,
  };
}

/** AUC of a binary task (sklearn `roc_auc_score(yTrue, score)`); NaN when only one class is present. */
export function binaryRocAuc(isPositive: ArrayLike<number | boolean>, score: ArrayLike<number>): number {
  if (isPositive.length !== score.length) {
    throw new Error(`binaryRocAuc: ${isPositive.length} labels but ${score.length} scores`);
  }
  checkFinite(score, 'binaryRocAuc');
  return aucOfSorted(sortTask(isPositive, score));
}

/** AUC of a k-class problem. Undefined values are NaN (see `rocAuc`). */
export interface RocAuc {
  /** One-vs-rest AUC of each class [k] (NaN for a class absent from yTrue). */
  perClass: number[];
  /** Unweighted mean of the defined per-class values (sklearn `average='macro', multi_class='ovr'`). */
  macro: number;
  /** Mean weighted by true support (sklearn `average='weighted', multi_class='ovr'`). */
  weighted: number;
  /** k = 2 only: AUC of the class-1 column, what the official train.py/test.py report. */
  binary?: number;
  /** The number the paper's tables mean: `binary` for k = 2, `weighted` OvR otherwise (official recipe). */
  headline: number;
  /** Classes whose AUC is undefined (absent from yTrue, or the only class present). */
  undefinedClasses: number[];
}

/**
 * Per-class one-vs-rest tasks sorted once, so the bootstrap can recompute AUCs under resampling
 * weights in O(n·k) without sorting again.
 */
export interface OvrTasks {
  k: number;
  tasks: SortedTask[]; // k
  labels: Int32Array; // [n]
}

export function prepareOvr(y: Int32Array, s: ScoreMatrix): OvrTasks {
  const tasks: SortedTask[] = [];
  for (let c = 0; c < s.k; c++) {
    const col = Float64Array.from({ length: s.n }, (_, i) => s.data[i * s.k + c]); // [n]
    tasks.push(
      sortTask(
        Uint8Array.from(y, (v) => (v === c ? 1 : 0)),
        col,
      ),
    );
  }
  return { k: s.k, tasks, labels: y };
}

/** One-vs-rest AUCs from prepared tasks, with optional per-sample repetition weights. */
export function ovrAuc(ovr: OvrTasks, weight?: ArrayLike<number>): RocAuc {
  const { k, labels } = ovr;
  const perClass = ovr.tasks.map((t) => aucOfSorted(t, weight)); // [k]
  const support = new Array<number>(k).fill(0); // [k] (weighted) true count per class
  for (let i = 0; i < labels.length; i++) support[labels[i]] += weight ? weight[i] : 1;
  const undefinedClasses: number[] = [];
  let macroSum = 0;
  let weightedSum = 0;
  let supportSum = 0;
  for (let c = 0; c < k; c++) {
    if (Number.isNaN(perClass[c])) {
      undefinedClasses.push(c);
      continue;
    }
    macroSum += perClass[c];
    weightedSum += perClass[c] * support[c];
    supportSum += support[c];
  }
  const defined = k - undefinedClasses.length;
  const macro = defined > 0 ? macroSum / defined : NaN;
  const weighted = supportSum > 0 ? weightedSum / supportSum : NaN;
  const result: RocAuc = { perClass, macro, weighted, headline: k === 2 ? perClass[1] : weighted, undefinedClasses };
  if (k === 2) result.binary = perClass[1];
  return result;
}

/**
 * ROC AUC of class probabilities `probs` ([n*k] row-major or [n][k]) against labels.
 *
 * For k > 2 this is sklearn's `roc_auc_score(y, probs, multi_class='ovr', average=...)`, which requires
 * rows that sum to 1 (softmax probabilities, not logits); so does this function. Where sklearn raises
 * because a class is absent from yTrue, this returns NaN for that class, averages the remaining classes
 * (the weighted mean is unaffected: the absent class has weight 0) and lists it in `undefinedClasses`.
 */
export function rocAuc(yTrue: LabelsLike, probs: ScoresLike): RocAuc {
  const { y, s } = asLabelsAndScores(yTrue, probs);
  if (s.k > 2) checkRowsSumToOne(s);
  return ovrAuc(prepareOvr(y, s));
}

/** One-vs-rest ROC curve of every class (for plotting), k × RocCurve. */
export function rocCurves(yTrue: LabelsLike, probs: ScoresLike): RocCurve[] {
  const { y, s } = asLabelsAndScores(yTrue, probs);
  const curves: RocCurve[] = [];
  for (let c = 0; c < s.k; c++) {
    const col = Float64Array.from({ length: s.n }, (_, i) => s.data[i * s.k + c]); // [n]
    curves.push(
      rocCurve(
        Uint8Array.from(y, (v) => (v === c ? 1 : 0)),
        col,
      ),
    );
  }
  return curves;
}

/** sklearn's multi-class AUC check: scores must be probabilities (rows sum to 1). */
export function checkRowsSumToOne(s: ScoreMatrix, tol = 1e-4): void {
  for (let i = 0; i < s.n; i++) {
    let sum = 0;
    for (let c = 0; c < s.k; c++) sum += s.data[i * s.k + c];
    if (Math.abs(sum - 1) > tol) {
      throw new Error(
        `probs row ${i} sums to ${sum}, not 1: multi-class ROC AUC needs class probabilities ` +
          '(apply softmax to logits first)',
      );
    }
  }
}

function checkFinite(score: ArrayLike<number>, where: string): void {
  for (let i = 0; i < score.length; i++) {
    if (!Number.isFinite(score[i])) throw new Error(`${where}: score[${i}] = ${score[i]} is not finite`);
  }
}
