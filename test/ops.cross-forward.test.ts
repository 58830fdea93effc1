/**
 * SS2D's inference kernel (MsmCrossScanForward: lib/ops/selective-scan/index.ts `crossScanSSMInference`,
 * wasm-simd-kernels.ts `xfwd`) against the training path it replaces while no gradient tape records
 * (cross-scan → dt_proj → scan → cross-merge as separate kernels): bit-identical outputs for maps that are
 * not square, dt ranks 1–6, padded state sizes, several checkpoint chunks, and 1, 2 and 3 scan threads —
 * so an eval forward, `predict` and a training run's evaluation give the same numbers either way. The
 * whole model too: microscopic-mamba-t's eval logits with and without the kernel.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { createModel } from '../lib/models/index';
import { CrossScanParams, crossScanSSM } from '../lib/ops/selective-scan/index';
import { Rng } from '../lib/util/random';
import { assertNoLeak, firstBitDifference } from './ops.scan-helpers';

interface Case {
  name: string;
  b: number;
  h: number;
  w: number;
  e: number;
  r: number;
  n: number;
}
const CASES: Case[] = [
  { name: 'stage 1 of microscopic-mamba-t at 64 px (16×16, E=24, R=1)', b: 8, h: 16, w: 16, e: 24, r: 1, n: 16 },
  { name: '3×5 map, R=2, odd E', b: 3, h: 3, w: 5, e: 5, r: 2, n: 16 },
  { name: '16×20 map (several checkpoint chunks), R=3, n=5 (padded)', b: 5, h: 16, w: 20, e: 8, r: 3, n: 5 },
  { name: '7×2 map, R=6, n=8, one row', b: 1, h: 7, w: 2, e: 4, r: 6, n: 8 },
  { name: '1×1 map (the last stage at 32 px), R=24', b: 4, h: 1, w: 1, e: 12, r: 24, n: 16 },
];

function inputs(c: Case, seed: number) {
  const rng = new Rng(seed);
  const t = (shape: number[], mean: number, sd: number) =>
    tf.tensor(
      rng.fillNormal(
        shape.reduce((a, s) => a * s, 1),
        mean,
        sd,
      ),
      shape,
    );
  const x = t([c.b, c.h, c.w, c.e], 0, 1) as tf.Tensor4D;
  const p: CrossScanParams = {
    xProjWeight: t([4, c.r + 2 * c.n, c.e], 0, 0.4),
    dtProjsWeight: t([4, c.e, c.r], 0, 0.5),
    dtProjsBias: t([4, c.e], -1, 1),
    ALogs: t([4 * c.e, c.n], 0.5, 0.5),
    Ds: t([4 * c.e], 1, 0.3),
  };
  return { x, p };
}

/** The training path's y: the same call with a gradient tape recording. */
function trainingPath(x: tf.Tensor4D, p: CrossScanParams): Float32Array {
  let y: tf.Tensor | undefined;
  tf.grad((xi: tf.Tensor) => {
    y = tf.keep(crossScanSSM(xi as tf.Tensor4D, p));
    return y.sum();
  })(x).dispose();
  const out = y!.dataSync() as Float32Array;
  y!.dispose();
  return out;
}

const saved = { threads: process.env.MSM_SCAN_THREADS, cross: process.env.MSM_CROSS_FORWARD };
const restore = (k: string, v: string | undefined) => (v === undefined ? delete process.env[k] : (process.env[k] = v));
before(async () => {
  await initBackend('wasm', { quiet: true });
});
after(() => {
  restore('MSM_SCAN_THREADS', saved.threads);
  restore('MSM_CROSS_FORWARD', saved.cross);
});

describe('SS2D inference kernel: bit-identical to the training path', () => {
  CASES.forEach((c, ci) => {
    test(c.name, async () => {
      const { x, p } = inputs(c, 100 + ci);
      const prof = await tf.profile(() => crossScanSSM(x, p));
      assert.ok(prof.kernelNames.includes('MsmCrossScanForward'), `kernels run: ${prof.kernelNames.join(', ')}`);
      assert.ok(!prof.kernelNames.includes('MsmSelectiveScan'), 'the separate scan ran too');
      const want = trainingPath(x, p);
      for (const threads of ['1', '2', '3']) {
        process.env.MSM_SCAN_THREADS = threads;
        const got = tf.tidy(() => crossScanSSM(x, p).dataSync() as Float32Array);
        const i = firstBitDifference(got, want);
        assert.equal(i, -1, `${threads} thread(s): element ${i} is ${got[i]}, the training path gives ${want[i]}`);
      }
      delete process.env.MSM_SCAN_THREADS;
      tf.dispose([x, ...Object.values(p)]);
    });
  });

  test('MSM_CROSS_FORWARD=0 keeps the training path; NaN in the map propagates', async () => {
    const c = CASES[1];
    const { x, p } = inputs(c, 7);
    process.env.MSM_CROSS_FORWARD = '0';
    const prof = await tf.profile(() => crossScanSSM(x, p));
    assert.ok(!prof.kernelNames.includes('MsmCrossScanForward'));
    delete process.env.MSM_CROSS_FORWARD;
    const bad = tf.tidy(() => {
      const v = x.dataSync().slice();
      v[0] = NaN;
      return crossScanSSM(tf.tensor(v, x.shape) as tf.Tensor4D, p).dataSync();
    });
    assert.ok(Number.isNaN(bad[0]), 'a NaN input gave a number');
    tf.dispose([x, ...Object.values(p)]);
  });

  test('no tensor leaks', async () => {
    const { x, p } = inputs(CASES[1], 8);
    await assertNoLeak('crossScanSSM (inference kernel)', async () => tf.tidy(() => crossScanSSM(x, p).dataSync()));
    tf.dispose([x, ...Object.values(p)]);
  });

  test('microscopic-mamba-t: eval logits identical with and without the kernel', () => {
    const model = createModel('microscopic-mamba-t', { numClasses: 3, imageSize: 32, seed: 5 });
    model.eval();
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 9);
    const logits = () => tf.tidy(() => model.forward(x, { training: false }).dataSync() as Float32Array);
    const fast = logits();
    process.env.MSM_CROSS_FORWARD = '0';
    const slow = logits();
    delete process.env.MSM_CROSS_FORWARD;
    assert.equal(firstBitDifference(fast, slow), -1, `logits ${fast} vs ${slow}`);
    model.dispose();
    x.dispose();
  });
});
