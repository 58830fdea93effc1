/**
 * Input checking shared by every metric: labels and class scores arrive as plain arrays or typed arrays
 * (no tfjs needed), are validated once, and are turned into one canonical form.
 *
 * Glossary:
 *   n  number of samples
 *   k  number of classes
 *   labels  Int32Array [n], class indices in [0, k)
 *   scores  Float64Array [n*k], row-major class probabilities (row i = sample i)
 */

/** Class labels: Int32Array (the kit's own), any typed array, or number[]. */
export type LabelsLike =
  Int32Array | Uint8Array | Uint16Array | Uint32Array | Int16Array | Int8Array | ArrayLike<number>;

/** Class probabilities: row-major flat [n*k] (Float32Array / Float64Array / number[]) or number[][] ([n][k]). */
export type ScoresLike = Float32Array | Float64Array | ArrayLike<number> | ArrayLike<ArrayLike<number>>;

/** Scores in canonical form: a row-major [n, k] matrix of float64 values. */
export interface ScoreMatrix {
  n: number;
  k: number;
  data: Float64Array; // [n*k]
}

/** Checks that `y` holds integer labels in [0, k) (k optional) and returns them as an Int32Array [n]. */
export function asLabels(y: LabelsLike, name = 'yTrue', k?: number): Int32Array {
  const n = y.length;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const v = y[i];
    if (!Number.isInteger(v) || v < 0 || (k !== undefined && v >= k)) {
      const range = k === undefined ? 'a non-negative integer' : `an integer in [0, ${k})`;
      throw new Error(`${name}[${i}] = ${v} is not a class label (expected ${range})`);
    }
    out[i] = v;
  }
  return out;
}

/**
 * Checks class scores for `n` samples and returns them as a [n, k] float64 matrix.
 * A flat array must have a length divisible by n; a nested array must have n rows of equal length.
 * NaN/Inf are rejected (scikit-learn rejects them too): they usually mean a diverged model.
 */
export function asScores(scores: ScoresLike, n: number, name = 'probs'): ScoreMatrix {
  if (n <= 0) throw new Error(`${name}: no samples (n = ${n})`);
  let k: number;
  let data: Float64Array;
  const first = (scores as ArrayLike<unknown>)[0];
  if (typeof first === 'object' && first !== null) {
    // number[][] (or array of typed-array rows): [n][k]
    const rows = scores as ArrayLike<ArrayLike<number>>;
    if (rows.length !== n) throw new Error(`${name} has ${rows.length} rows but there are ${n} labels`);
    k = rows[0].length;
    data = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      if (rows[i].length !== k) throw new Error(`${name}[${i}] has ${rows[i].length} columns, row 0 has ${k}`);
      for (let c = 0; c < k; c++) data[i * k + c] = rows[i][c];
    }
  } else {
    const flat = scores as ArrayLike<number>;
    if (flat.length % n !== 0) {
      throw new Error(
        `${name} has ${flat.length} values, not a multiple of the ${n} labels (expected [n*k] row-major)`,
      );
    }
    k = flat.length / n;
    data = Float64Array.from(flat);
  }
  if (k < 2) throw new Error(`${name} has ${k} class column(s); need k >= 2 (for binary tasks pass both columns)`);
  for (let j = 0; j < data.length; j++) {
    if (!Number.isFinite(data[j])) {
      throw new Error(`${name}[${Math.floor(j / k)}][${j % k}] = ${data[j]} is not finite`);
    }
  }
  return { n, k, data };
}

/** Labels and scores checked against each other. */
export function asLabelsAndScores(yTrue: LabelsLike, probs: ScoresLike): { y: Int32Array; s: ScoreMatrix } {
  const s = asScores(probs, yTrue.length);
  const y = asLabels(yTrue, 'yTrue', s.k);
  return { y, s };
}

/**
 * Predicted class = index of the largest score per row; on exact ties the lowest index wins
 * (numpy `argmax`, which the official test script's sklearn calls effectively see).
 */
export function argmaxRows(s: ScoreMatrix): Int32Array {
  const out = new Int32Array(s.n);
  for (let i = 0; i < s.n; i++) {
    let best = 0;
    let bestV = s.data[i * s.k];
    for (let c = 1; c < s.k; c++) {
      const v = s.data[i * s.k + c];
      if (v > bestV) {
        bestV = v;
        best = c;
      }
    }
    out[i] = best;
  }
  return out;
}

/** Number of classes implied by label arrays alone: max label + 1. */
export function numClassesOf(...ys: Int32Array[]): number {
  let m = -1;
  for (const y of ys) for (let i = 0; i < y.length; i++) if (y[i] > m) m = y[i];
  return m + 1;
}
