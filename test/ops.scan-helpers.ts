/**
 * Helpers for the selective-scan tests (test/ops.*.test.ts): seeded scan inputs, the tolerance rule
 * (max abs error <= 1e-4 x output scale), forward + all gradients of one implementation as plain
 * arrays (read asynchronously, so webgpu works too), and an independent float64 scan for finite
 * differences.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { ScanImpl, selectiveScan } from '../lib/ops/selective-scan/index';
import { Rng } from '../lib/util/random';

/** One test case: sizes and how the inputs are drawn. */
export interface ScanCase {
  name: string;
  b: number;
  g: number;
  e: number;
  l: number;
  n: number;
  /** mean of the δ pre-activations (25 puts them above the softplus threshold of 20) */
  deltaMean?: number;
  /** A = −exp(N(0,1)) by default; 'wide' = −(1..n)·2 (fast decays: Δ·A ≪ −88 per chunk) */
  A?: 'random' | 'wide';
  bias?: boolean;
  D?: boolean;
  /** pass B and C as [b, n, l] (one group) */
  threeD?: boolean;
  seed?: number;
}

/** Raw arrays of a case (shapes as in ScanArgs). */
export interface ScanData {
  c: ScanCase;
  d: number;
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D?: Float32Array;
  bias?: Float32Array;
  /** weights r of the loss L = Σ y ⊙ r */
  r: Float32Array;
}

export function makeScanData(c: ScanCase): ScanData {
  const rng = new Rng(c.seed ?? 7);
  const d = c.g * c.e;
  const A =
    c.A === 'wide'
      ? Float32Array.from({ length: d * c.n }, (_, i) => -2 * ((i % c.n) + 1))
      : Float32Array.from(rng.fillNormal(d * c.n), (v) => -Math.exp(v));
  return {
    c,
    d,
    u: rng.fillNormal(c.b * d * c.l),
    delta: rng.fillNormal(c.b * d * c.l, c.deltaMean ?? 0, 1),
    A,
    B: rng.fillNormal(c.b * c.g * c.n * c.l),
    C: rng.fillNormal(c.b * c.g * c.n * c.l),
    D: c.D === false ? undefined : rng.fillNormal(d),
    bias: c.bias === false ? undefined : rng.fillNormal(d, 0, 0.5),
    r: rng.fillNormal(c.b * d * c.l),
  };
}

/** Names of the differentiable inputs present in a case, in a fixed order. */
export function inputNames(s: ScanData): string[] {
  return ['u', 'delta', 'A', 'B', 'C', ...(s.D ? ['D'] : []), ...(s.bias ? ['deltaBias'] : [])];
}

function tensorsOf(s: ScanData): Record<string, tf.Tensor> {
  const { b, g, n, l } = s.c;
  const bc = s.c.threeD ? [b, n, l] : [b, g, n, l];
  const t: Record<string, tf.Tensor> = {
    u: tf.tensor3d(s.u, [b, s.d, l]),
    delta: tf.tensor3d(s.delta, [b, s.d, l]),
    A: tf.tensor2d(s.A, [s.d, n]),
    B: tf.tensor(s.B, bc),
    C: tf.tensor(s.C, bc),
  };
  if (s.D) t.D = tf.tensor1d(s.D);
  if (s.bias) t.deltaBias = tf.tensor1d(s.bias);
  return t;
}

export interface ScanResult {
  y: Float32Array;
  /** gradients of L = Σ y ⊙ r, by input name */
  grads: Record<string, Float32Array>;
}

/** Forward and all gradients of one implementation on the active backend (no tensors left behind). */
export async function runScan(s: ScanData, impl: ScanImpl): Promise<ScanResult> {
  const names = inputNames(s);
  const { y, grads } = tf.tidy(() => {
    const t = tensorsOf(s);
    const r = tf.tensor(s.r, [s.c.b, s.d, s.c.l]);
    const call = (v: Record<string, tf.Tensor>) =>
      selectiveScan({
        u: v.u as tf.Tensor3D,
        delta: v.delta as tf.Tensor3D,
        A: v.A as tf.Tensor2D,
        B: v.B,
        C: v.C,
        D: v.D as tf.Tensor1D | undefined,
        deltaBias: v.deltaBias as tf.Tensor1D | undefined,
        impl,
      });
    const y = call(t);
    const g = tf.grads((...xs: tf.Tensor[]) => {
      const v = { ...t };
      names.forEach((k, i) => (v[k] = xs[i]));
      return tf.sum(tf.mul(call(v), r)) as tf.Scalar;
    })(names.map((k) => t[k]));
    return { y, grads: g };
  });
  const out: ScanResult = { y: (await y.data()) as Float32Array, grads: {} };
  for (let i = 0; i < names.length; i++) out.grads[names[i]] = (await grads[i].data()) as Float32Array;
  y.dispose();
  grads.forEach((g) => g.dispose());
  return out;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** The rule: max |actual − expected| <= rel × max |expected| (scale 1 if expected is all 0). */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, rel = 1e-4): void {
  assert.equal(actual.length, expected.length, `${label}: ${actual.length} values, expected ${expected.length}`);
  const scale = maxAbs(expected) || 1;
  let diff = 0;
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Number.isFinite(actual[i]), `${label}: non-finite value ${actual[i]} at ${i}`);
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
  }
  assert.ok(
    diff <= rel * scale,
    `${label}: max abs diff ${diff.toExponential(3)} > ${rel} × scale ${scale.toExponential(3)}`,
  );
}

/** Forward and every gradient of `got` against `want`. */
export function assertSameScan(got: ScanResult, want: ScanResult, label: string, rel = 1e-4): void {
  assertClose(got.y, want.y, `${label} y`, rel);
  assert.deepEqual(Object.keys(got.grads), Object.keys(want.grads));
  for (const k of Object.keys(want.grads)) assertClose(got.grads[k], want.grads[k], `${label} ∂${k}`, rel);
}

/**
 * The scan in float64, written independently of the library (docs/architecture.md §Selective scan), returning
 * L = Σ y ⊙ r. Central differences of it are exact to ~1e-9, so they check the float32 gradients properly.
 */
export function scanLossF64(s: ScanData, v: Record<string, Float64Array>): number {
  const { b, g, n, l } = s.c;
  const d = s.d;
  const e = d / g;
  let loss = 0;
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < d; c++) {
      const gi = Math.floor(c / e);
      const h = new Float64Array(n);
      for (let t = 0; t < l; t++) {
        const x = v.delta[(bi * d + c) * l + t] + (v.deltaBias ? v.deltaBias[c] : 0);
        const dt = x > 20 ? x : Math.log1p(Math.exp(x));
        const ut = v.u[(bi * d + c) * l + t];
        let y = v.D ? v.D[c] * ut : 0;
        for (let k = 0; k < n; k++) {
          const bc = ((bi * g + gi) * n + k) * l + t;
          h[k] = Math.exp(dt * v.A[c * n + k]) * h[k] + dt * v.B[bc] * ut;
          y += h[k] * v.C[bc];
        }
        loss += y * s.r[(bi * d + c) * l + t];
      }
    }
  }
  return loss;
}

/** ∂L/∂(every input element) by central differences of scanLossF64. */
export function finiteDifferenceGrads(s: ScanData, eps = 1e-5): Record<string, Float64Array> {
  const v: Record<string, Float64Array> = {};
  for (const k of inputNames(s)) {
    const src = (k === 'deltaBias' ? s.bias : (s as unknown as Record<string, Float32Array>)[k]) as Float32Array;
    v[k] = Float64Array.from(src);
  }
  const out: Record<string, Float64Array> = {};
  for (const k of inputNames(s)) {
    out[k] = new Float64Array(v[k].length);
    for (let i = 0; i < v[k].length; i++) {
      const x0 = v[k][i];
      v[k][i] = x0 + eps;
      const up = scanLossF64(s, v);
      v[k][i] = x0 - eps;
      const down = scanLossF64(s, v);
      v[k][i] = x0;
      out[k][i] = (up - down) / (2 * eps);
    }
  }
  return out;
}

/** Asserts that `f` leaves the tensor count unchanged. */
export async function assertNoLeak(label: string, f: () => Promise<unknown> | unknown): Promise<void> {
  const before = tf.memory().numTensors;
  await f();
  assert.equal(tf.memory().numTensors, before, `${label}: tensor leak (${before} -> ${tf.memory().numTensors})`);
}

/** Index of the first element whose bits differ (−1: none); NaN equals NaN, +0 differs from −0. */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}
