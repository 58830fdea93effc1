/**
 * Shared helpers for the backend tests: seeded inputs, gradients evaluated on a chosen backend as plain
 * arrays (so wasm and cpu results can be compared), the tolerance rule of docs/platform.md §Bit-identity policy (max
 * abs diff <= 1e-4 x output scale) and a directional finite-difference check.
 */
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { Rng } from '../lib/util/random';

export type BackendUnderTest = 'wasm' | 'cpu';

/** Initialise cpu and wasm once (this registers the gradient fixes and wasm kernels), end on wasm. */
export async function setupBackends(): Promise<void> {
  await initBackend('cpu', { quiet: true });
  await initBackend('wasm', { quiet: true });
}

export interface Sample {
  shape: number[];
  values: Float32Array | Int32Array;
  dtype: 'float32' | 'int32';
}

export function normal(shape: number[], seed: number, scale = 1): Sample {
  const n = shape.reduce((p, v) => p * v, 1);
  return { shape, values: new Rng(seed).fillNormal(n, 0, scale), dtype: 'float32' };
}

export function ints(shape: number[], values: number[]): Sample {
  return { shape, values: Int32Array.from(values), dtype: 'int32' };
}

export interface GradResult {
  y: Float32Array;
  yShape: number[];
  /** d/dx_k sum(f(x) * r) for every k in `wrt`, with r ~ N(0, 1) seeded from `seed`. */
  grads: Float32Array[];
  gradShapes: number[][];
}

/** Forward and gradients of L = sum(f(xs) * r) on the *current* backend. */
export function evalGrads(
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: Sample[],
  wrt: number[],
  seed = 99,
): GradResult {
  let out: GradResult | undefined;
  tf.tidy(() => {
    const xs = inputs.map((s) => tf.tensor(s.values, s.shape, s.dtype));
    const y = fn(...xs);
    const r = tf.tensor(new Rng(seed).fillNormal(y.size), y.shape);
    const loss = (...ds: tf.Tensor[]) => {
      const all = xs.slice();
      wrt.forEach((k, i) => (all[k] = ds[i]));
      return tf.sum(tf.mul(fn(...all), r)) as tf.Scalar;
    };
    const g = tf.grads(loss)(wrt.map((k) => xs[k]));
    out = {
      y: Float32Array.from(y.dataSync()),
      yShape: y.shape,
      grads: g.map((t) => Float32Array.from(t.dataSync())),
      gradShapes: g.map((t) => t.shape),
    };
  });
  return out as GradResult;
}

/** The same on a named backend. */
export async function gradsOn(
  backend: BackendUnderTest,
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: Sample[],
  wrt: number[],
  seed = 99,
): Promise<GradResult> {
  await tf.setBackend(backend);
  return evalGrads(fn, inputs, wrt, seed);
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Issue 2's rule: max |actual - expected| <= rel x max|expected| (scale 1 when expected is all zero). */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string, rel = 1e-4): void {
  assert.equal(actual.length, expected.length, `${label}: ${actual.length} values, expected ${expected.length}`);
  const scale = maxAbs(expected) || 1;
  const diff = maxAbsDiff(actual, expected);
  assert.ok(
    diff <= rel * scale,
    `${label}: max abs diff ${diff.toExponential(3)} > ${rel} x scale ${scale.toExponential(3)}`,
  );
  for (let i = 0; i < actual.length; i++) assert.ok(Number.isFinite(actual[i]), `${label}: non-finite value at ${i}`);
}

/** Compare forward and every gradient of a wasm run against a cpu run. */
export function assertSameGrads(wasm: GradResult, cpu: GradResult, label: string, rel = 1e-4): void {
  assert.deepEqual(wasm.yShape, cpu.yShape, `${label}: output shape`);
  assertClose(wasm.y, cpu.y, `${label} forward`, rel);
  assert.equal(wasm.grads.length, cpu.grads.length);
  wasm.grads.forEach((g, i) => {
    assert.deepEqual(wasm.gradShapes[i], cpu.gradShapes[i], `${label}: shape of gradient ${i}`);
    assertClose(g, cpu.grads[i], `${label} gradient ${i}`, rel);
  });
}

/**
 * Directional finite difference on the current backend: (L(x + eps v) - L(x - eps v)) / 2eps against
 * <grad L, v>, with v ~ N(0, 1) on every differentiated input. Tolerance is relative to sum |g| |v| (the
 * size the directional derivative would have without cancellation), since float32 central differences
 * are only good to ~1e-3 of that.
 */
export function assertFiniteDifference(
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: Sample[],
  wrt: number[],
  label: string,
  opts: { eps?: number; rel?: number; seed?: number } = {},
): void {
  const eps = opts.eps ?? 1e-2;
  const rel = opts.rel ?? 2e-2;
  const seed = opts.seed ?? 99;
  const g = evalGrads(fn, inputs, wrt, seed);
  const dirs = wrt.map((k, i) => new Rng(1000 + i).fillNormal(inputs[k].values.length));
  const shifted = (sign: number): number => {
    let v = 0;
    tf.tidy(() => {
      const xs = inputs.map((s, k) => {
        const at = wrt.indexOf(k);
        if (at < 0) return tf.tensor(s.values, s.shape, s.dtype);
        const vals = Float32Array.from(s.values, (x, i) => x + sign * eps * dirs[at][i]);
        return tf.tensor(vals, s.shape, 'float32');
      });
      const y = fn(...xs);
      const r = tf.tensor(new Rng(seed).fillNormal(y.size), y.shape);
      v = tf.sum(tf.mul(y, r)).dataSync()[0];
    });
    return v;
  };
  const fd = (shifted(1) - shifted(-1)) / (2 * eps);
  let analytic = 0;
  let size = 0;
  g.grads.forEach((gr, i) => {
    for (let j = 0; j < gr.length; j++) {
      analytic += gr[j] * dirs[i][j];
      size += Math.abs(gr[j] * dirs[i][j]);
    }
  });
  assert.ok(
    Math.abs(fd - analytic) <= rel * size + 1e-4,
    `${label}: finite difference ${fd.toExponential(4)} vs analytic ${analytic.toExponential(4)} (scale ${size.toExponential(3)})`,
  );
}

/** Run `f` and assert it leaves no tensors behind. */
export async function assertNoLeak(label: string, f: () => unknown | Promise<unknown>): Promise<void> {
  const before = tf.memory().numTensors;
  await f();
  assert.equal(tf.memory().numTensors, before, `${label}: tensor leak`);
}

/** Runs `f` with the fused kernels on or off (MSM_FUSED_KERNELS, lib/backend/fused.ts), restoring the variable after. */
export function withFused<T>(on: boolean, f: () => T): T {
  const before = process.env.MSM_FUSED_KERNELS;
  process.env.MSM_FUSED_KERNELS = on ? '1' : '0';
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env.MSM_FUSED_KERNELS;
    else process.env.MSM_FUSED_KERNELS = before;
  }
}

// ---- OS threads and their CPU time (Linux /proc) ----

const PROC_TASKS = '/proc/self/task';
export const hasProc = fs.existsSync(PROC_TASKS);

/** CPU clock ticks (user + system) of each thread of this process. */
export function threadTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const tid of fs.readdirSync(PROC_TASKS)) {
    try {
      const stat = fs.readFileSync(`${PROC_TASKS}/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
      ticks.set(tid, Number(fields[11]) + Number(fields[12])); // utime, stime
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return ticks;
}
