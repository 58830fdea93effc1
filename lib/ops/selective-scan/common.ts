/**
 * Shared pieces of the selective-scan implementations: argument types, shape checks and the
 * CUDA-style softplus (docs/architecture.md §Selective scan).
 *
 * Shape glossary of the code in this folder (mamba_ssm's names; in docs/architecture.md §Glossary's symbols
 * d = K·E, g = K, e = E, l = L, n = N):
 *   b  batch (sequences)            d  channels (= g·e)          l  sequence length
 *   n  state size (d_state, 16)     g  groups of channels sharing one B, C (SS2D: the 4 directions)
 *   e  channels per group (d / g)
 */
import * as tf from '@tensorflow/tfjs';

/** The inputs of one selective scan, as in mamba_ssm's `selective_scan_ref` (channels-first). */
export interface ScanArgs {
  /** [b, d, l] input sequence. */
  u: tf.Tensor3D;
  /** [b, d, l] step-size pre-activation δ (softplus is applied inside, after adding deltaBias). */
  delta: tf.Tensor3D;
  /** [d, n] state matrix (diagonal per channel; ≤ 0 in the model: A = −exp(A_log)). */
  A: tf.Tensor2D;
  /** [b, g, n, l] input projection per group, or [b, n, l] for one group. */
  B: tf.Tensor;
  /** [b, g, n, l] output projection per group, or [b, n, l] for one group. */
  C: tf.Tensor;
  /** [d] skip connection (optional). */
  D?: tf.Tensor1D;
  /** [d] bias added to δ before the softplus (optional). */
  deltaBias?: tf.Tensor1D;
}

/** Sizes of one scan, checked against each other. */
export interface ScanDims {
  b: number;
  d: number;
  l: number;
  n: number;
  g: number;
  e: number;
}

function shapeStr(t: tf.Tensor): string {
  return `[${t.shape.join(', ')}]`;
}

/**
 * Validates the shapes of a scan call and returns its sizes. `where` names the caller in errors, e.g.
 * "selectiveScan: B has shape [2, 3, 5] but u is [2, 8, 5] (expected [b, n, l] or [b, g, n, l] with l = 5)".
 */
export function checkScanArgs(a: ScanArgs, where: string): ScanDims {
  const fail = (msg: string): never => {
    throw new Error(`${where}: ${msg}`);
  };
  if (a.u.rank !== 3) fail(`u must be [b, d, l], got ${shapeStr(a.u)}`);
  const [b, d, l] = a.u.shape;
  if (a.delta.rank !== 3 || a.delta.shape.some((s, i) => s !== a.u.shape[i])) {
    fail(`delta must have the shape of u ${shapeStr(a.u)}, got ${shapeStr(a.delta)}`);
  }
  if (a.A.rank !== 2 || a.A.shape[0] !== d) fail(`A must be [d, n] with d = ${d}, got ${shapeStr(a.A)}`);
  const n = a.A.shape[1];
  const groupsOf = (name: 'B' | 'C', t: tf.Tensor): number => {
    const ok4 = t.rank === 4 && t.shape[0] === b && t.shape[2] === n && t.shape[3] === l;
    const ok3 = t.rank === 3 && t.shape[0] === b && t.shape[1] === n && t.shape[2] === l;
    if (!ok3 && !ok4) {
      fail(`${name} has shape ${shapeStr(t)}; expected [b, n, l] or [b, g, n, l] with b = ${b}, n = ${n}, l = ${l}`);
    }
    return ok4 ? (t.shape[1] as number) : 1;
  };
  const g = groupsOf('B', a.B);
  const gC = groupsOf('C', a.C);
  if (g !== gC) fail(`B has ${g} group(s) but C has ${gC}`);
  if (d % g !== 0) fail(`channels d = ${d} are not divisible by the ${g} groups of B and C`);
  for (const [name, t] of [
    ['D', a.D],
    ['deltaBias', a.deltaBias],
  ] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== d)) fail(`${name} must be [d] with d = ${d}, got ${shapeStr(t)}`);
  }
  for (const [name, t] of Object.entries(a)) {
    if (t instanceof tf.Tensor && t.dtype !== 'float32') fail(`${name} must be float32, got ${t.dtype}`);
  }
  return { b, d, l, n, g, e: d / g };
}

/** B or C as [b, g, n, l] (a [b, n, l] tensor is one group); one already in that shape as it is (no Reshape call). */
export function asGroups(t: tf.Tensor, dims: ScanDims): tf.Tensor4D {
  return asShape(t, [dims.b, dims.g, dims.n, dims.l]) as tf.Tensor4D;
}

/**
 * t reshaped to `shape`, or t itself when it has that shape already: a reshape is a kernel call, and under
 * a gradient tape also a saved copy and a backward reshape.
 */
export function asShape(t: tf.Tensor, shape: number[]): tf.Tensor {
  return tf.util.arraysEqual(t.shape, shape) ? t : t.reshape(shape);
}

/** Threshold above which softplus(x) is taken to be x (mamba_ssm CUDA kernel and torch.nn.functional.softplus). */
export const SOFTPLUS_THRESHOLD = 20;

/**
 * Δ = softplus(x) with softplus(x) = x for x > 20, as the CUDA kernel (`x <= 20 ? log1p(exp(x)) : x`)
 * and `selective_scan_ref` (torch softplus, threshold 20) do; docs/architecture.md §Selective scan. Differentiable: the
 * gradient is sigmoid(x) below the threshold and exactly 1 above it.
 */
export function softplusThresholded<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    // The mask comes from Step (whose gradient is zero) rather than Greater (which has no gradient in tfjs).
    const above = tf.cast(tf.step(tf.sub(x, SOFTPLUS_THRESHOLD)), 'bool'); // true where x > 20
    return tf.where(above, x, tf.softplus(x)) as T;
  });
}

/**
 * tf.unstack along axis 0 that also works for a length-1 axis under autograd: tfjs' Unpack gradient
 * calls stack(dy), but a single-output kernel receives dy as one tensor, not an array, and throws.
 */
export function unstack0(x: tf.Tensor): tf.Tensor[] {
  return x.shape[0] === 1 ? [x.reshape(x.shape.slice(1))] : tf.unstack(x);
}
