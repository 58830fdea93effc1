/**
 * SS2D's fused cross-scan / cross-merge (lib/backend/cross-scan.ts) and the cross-scan SSM built on them
 * (lib/ops/selective-scan/index.ts `crossScanSSM`) against the tf ops they replace on wasm: the kernels
 * against `crossScanReference` / `crossMergeReference` (both modes, square and non-square maps, values
 * and gradients), the whole crossScanSSM against MSM_FUSED_KERNELS=0 (forward ≤ 1e-5, every gradient
 * ≤ 1e-4 of the reference's scale), bit-identical repeats, the switch, and no leaked tensors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  CROSS_MERGE_KERNEL,
  CROSS_SCAN_KERNEL,
  crossMergeReference,
  crossScanAvailable,
  crossScanReference,
  fusedCrossMerge,
  fusedCrossScan,
} from '../lib/backend/cross-scan';
import { crossScanSSM } from '../lib/ops/selective-scan/index';
import { Rng } from '../lib/util/random';
import { assertClose, assertNoLeak, withFused } from './backend.helpers';

const saved = process.env.MSM_FUSED_KERNELS;
before(async () => {
  await initBackend('wasm', { quiet: true });
});
after(() => {
  if (saved === undefined) delete process.env.MSM_FUSED_KERNELS;
  else process.env.MSM_FUSED_KERNELS = saved;
});

const randn = (rng: Rng, shape: number[], scale = 1, shift = 0) =>
  tf.tensor(
    rng.fillNormal(shape.reduce((a, b) => a * b, 1)).map((v) => v * scale + shift),
    shape,
  );

/** f(x) and the gradient of Σ f(x)·r, as arrays. */
function valueAndGrad(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, r: tf.Tensor): Float32Array[] {
  return tf
    .tidy(() => [f(x), tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(f(xi), r)))(x)])
    .map((t) => {
      const v = t.dataSync() as Float32Array;
      t.dispose();
      return v;
    });
}

const MAPS: Array<[number, number, number, number]> = [
  [2, 3, 5, 8], // h ≠ w, sizes not multiples of 4 (the SIMD transposes' ragged edges)
  [3, 4, 4, 6],
  [32, 16, 16, 24], // microscopic-mamba-t stage 1 at 64 px (b·G = 32)
  [4, 1, 7, 5], // one row
];

describe('cross-scan / cross-merge: fused kernels vs tf ops on wasm', () => {
  test('the kernels run only when enabled', () => {
    const x = tf.zeros([1, 2, 2, 4]);
    assert.equal(
      withFused(true, () => crossScanAvailable(x)),
      true,
    );
    assert.equal(
      withFused(false, () => crossScanAvailable(x)),
      false,
    );
    x.dispose();
  });

  for (const [b, h, w, c] of MAPS) {
    for (const blocks of [false, true]) {
      test(`crossScan${blocks ? ' (blocks)' : ''} [${b}, ${h}, ${w}, ${blocks ? 4 * c : c}]: exact copy, gradient = merge`, () => {
        const rng = new Rng(b * 100 + h * 10 + w);
        const C = blocks ? 4 * c : c;
        const x = randn(rng, [b, h, w, C]);
        const r = randn(rng, [b, 4, c, h * w]);
        const fused = valueAndGrad((xi) => fusedCrossScan(xi as tf.Tensor4D, blocks), x, r);
        const ref = valueAndGrad((xi) => crossScanReference(xi as tf.Tensor4D, blocks), x, r);
        assert.deepEqual(fused[0], ref[0], 'forward is the same copy');
        assertClose(fused[1], ref[1], 'dx', 1e-6);
        tf.dispose([x, r]);
      });
    }
    test(`crossMerge [${b}, 4, ${c}, ${h * w}] → [${b}, ${h}, ${w}, ${c}]`, () => {
      const rng = new Rng(b * 7 + c);
      const y = randn(rng, [b, 4, c, h * w]);
      const r = randn(rng, [b, h, w, c]);
      const fused = valueAndGrad((yi) => fusedCrossMerge(yi as tf.Tensor4D, h, w), y, r);
      const ref = valueAndGrad((yi) => crossMergeReference(yi as tf.Tensor4D, h, w), y, r);
      assert.deepEqual(fused[0], ref[0], 'forward adds in the same order (bit for bit)');
      assert.deepEqual(fused[1], ref[1], 'the gradient is an exact copy');
      tf.dispose([y, r]);
    });
  }
});

describe('crossScanSSM: fused layout vs MSM_FUSED_KERNELS=0 on wasm', () => {
  // [b, h, w, e], n, r: stage 1 of microscopic-mamba-t at 64 px, a small non-square map, stage 4 (r = 6)
  const CASES: Array<[number[], number, number]> = [
    [[2, 3, 5, 8], 16, 1],
    [[32, 16, 16, 24], 16, 1],
    [[4, 2, 2, 192], 16, 6],
  ];
  for (const [[b, h, w, e], n, r] of CASES) {
    test(`[${b}, ${h}, ${w}, ${e}], N = ${n}, R = ${r}: values and the gradients of x and every parameter`, async () => {
      const rng = new Rng(b + h + e);
      const x = randn(rng, [b, h, w, e]);
      const params = [
        randn(rng, [4, r + 2 * n, e], 0.3), // x_proj_weight
        randn(rng, [4, e, r], 0.5), // dt_projs_weight
        randn(rng, [4, e], 0.5, -4), // dt_projs_bias
        randn(rng, [4 * e, n], 0.3), // A_logs
        randn(rng, [4 * e]), // Ds
      ];
      const upstream = randn(rng, [b, h, w, e]);
      const ssm = (xi: tf.Tensor, a: tf.Tensor, dw: tf.Tensor, db: tf.Tensor, al: tf.Tensor, ds: tf.Tensor) =>
        crossScanSSM(xi as tf.Tensor4D, { xProjWeight: a, dtProjsWeight: dw, dtProjsBias: db, ALogs: al, Ds: ds });
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() => {
              const [a, dw, db, al, ds] = params;
              const y = ssm(x, a, dw, db, al, ds);
              const grads = tf.grads((...t: tf.Tensor[]) =>
                tf.sum(tf.mul(ssm(t[0], t[1], t[2], t[3], t[4], t[5]), upstream)),
              )([x, ...params]);
              return [y, ...grads].map((t) => t.dataSync() as Float32Array);
            });
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(CROSS_SCAN_KERNEL) && fused.kernels.includes(CROSS_MERGE_KERNEL));
      assert.ok(!ref.kernels.includes(CROSS_SCAN_KERNEL), 'reference run does not use the kernels');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      ['x', 'x_proj_weight', 'dt_projs_weight', 'dt_projs_bias', 'A_logs', 'Ds'].forEach((name, i) =>
        assertClose(fused.out[i + 1], ref.out[i + 1], `d${name}`, 1e-4),
      );
      const again = await once(true);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, ...params, upstream]);
    });
  }

  test('no tensors leak (forward and backward)', async () => {
    const rng = new Rng(4);
    const x = randn(rng, [2, 3, 4, 8]);
    const params = [
      randn(rng, [4, 33, 8], 0.3),
      randn(rng, [4, 8, 1], 0.5),
      randn(rng, [4, 8], 0.5, -4),
      randn(rng, [32, 16], 0.3),
      randn(rng, [32]),
    ];
    const [a, dw, db, al, ds] = params;
    await withFused(true, () =>
      assertNoLeak('crossScanSSM', () =>
        tf.tidy(() =>
          tf
            .grad((xi: tf.Tensor) =>
              tf.sum(
                tf.square(
                  crossScanSSM(xi as tf.Tensor4D, {
                    xProjWeight: a,
                    dtProjsWeight: dw,
                    dtProjsBias: db,
                    ALogs: al,
                    Ds: ds,
                  }),
                ),
              ),
            )(x)
            .dataSync(),
        ),
      ),
    );
    tf.dispose([x, ...params]);
  });
});
