/**
 * crossScanSSM (SS2D's four-direction scan, docs/architecture.md §Cross-scan) against a plain per-direction loop
 * written here from the spec: four direction orders, per-direction x_proj / dt_proj, one reference scan per direction,
 * and the merge y0 + flip(y2) + T(y1) + T(flip(y3)). Forward and the gradients for x and all five parameters, every
 * implementation, on a non-square map (so a swapped h/w cannot pass).
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { CrossScanParams, crossScanSSM, ScanImpl, selectiveScanReference } from '../lib/ops/selective-scan/index';
import { Rng } from '../lib/util/random';
import { assertClose, assertNoLeak } from './ops.scan-helpers';

const [b, h, w, E, N, R] = [2, 3, 4, 5, 4, 2];
const K = 4;
const L = h * w;

/** docs/architecture.md §Cross-scan, one direction at a time. x: [b, h, w, E] -> y: [b, h, w, E]. */
function perDirectionLoop(x: tf.Tensor4D, p: CrossScanParams): tf.Tensor4D {
  return tf.tidy(() => {
    const xc = tf.transpose(x, [0, 3, 1, 2]); // [b, E, h, w]
    const rowMajor = xc.reshape([b, E, L]); // l = i·w + j
    const colMajor = tf.transpose(xc, [0, 1, 3, 2]).reshape([b, E, L]); // transpose H↔W, then flatten
    const xs = [rowMajor, colMajor, tf.reverse(rowMajor, 2), tf.reverse(colMajor, 2)];
    const A = tf.neg(tf.exp(p.ALogs)); // [4E, N]
    const ys: tf.Tensor[] = [];
    for (let k = 0; k < K; k++) {
      const Wx = tf.squeeze(tf.slice(p.xProjWeight, [k, 0, 0], [1, R + 2 * N, E]), [0]); // [R+2N, E]
      const Wdt = tf.squeeze(tf.slice(p.dtProjsWeight, [k, 0, 0], [1, E, R]), [0]); // [E, R]
      const perBatch = tf.unstack(xs[k]).map((xb) => {
        const dbl = tf.matMul(Wx, xb); // x_dbl_k = W_x[k] · u_k   [R+2N, L]
        const [dt, Bk, Ck] = tf.split(dbl, [R, N, N], 0);
        return { delta: tf.matMul(Wdt, dt), B: Bk, C: Ck }; // δ_k = W_dt[k] · dt_k
      });
      ys.push(
        selectiveScanReference({
          u: xs[k] as tf.Tensor3D,
          delta: tf.stack(perBatch.map((q) => q.delta)) as tf.Tensor3D,
          A: tf.slice(A, [k * E, 0], [E, N]) as tf.Tensor2D,
          B: tf.stack(perBatch.map((q) => q.B)),
          C: tf.stack(perBatch.map((q) => q.C)),
          D: tf.slice(p.Ds, [k * E], [E]) as tf.Tensor1D,
          deltaBias: tf.squeeze(tf.slice(p.dtProjsBias, [k, 0], [1, E]), [0]) as tf.Tensor1D,
        }),
      ); // [b, E, L]
    }
    // T: view a column-major sequence as (W, H), transpose to (H, W), flatten.
    const T = (y: tf.Tensor) => tf.transpose(y.reshape([b, E, w, h]), [0, 1, 3, 2]).reshape([b, E, L]);
    const y = tf.addN([ys[0], tf.reverse(ys[2], 2), T(ys[1]), T(tf.reverse(ys[3], 2))]); // [b, E, L]
    return tf.transpose(y.reshape([b, E, h, w]), [0, 2, 3, 1]) as tf.Tensor4D;
  });
}

function makeInputs(seed: number) {
  const rng = new Rng(seed);
  return {
    x: rng.fillNormal(b * h * w * E),
    xProjWeight: rng.fillNormal(K * (R + 2 * N) * E, 0, 0.5),
    dtProjsWeight: rng.fillNormal(K * E * R, 0, 0.5),
    dtProjsBias: rng.fillNormal(K * E, -1, 0.5),
    ALogs: Float32Array.from({ length: K * E * N }, (_, i) => Math.log((i % N) + 1)), // S4D-real init
    Ds: rng.fillNormal(K * E, 1, 0.1),
    r: rng.fillNormal(b * h * w * E),
  };
}
type Inputs = ReturnType<typeof makeInputs>;
const NAMES = ['x', 'xProjWeight', 'dtProjsWeight', 'dtProjsBias', 'ALogs', 'Ds'] as const;
const SHAPES: Record<(typeof NAMES)[number], number[]> = {
  x: [b, h, w, E],
  xProjWeight: [K, R + 2 * N, E],
  dtProjsWeight: [K, E, R],
  dtProjsBias: [K, E],
  ALogs: [K * E, N],
  Ds: [K * E],
};

/** y and the gradients of Σ y ⊙ r w.r.t. x and the five parameters. */
async function evaluate(inp: Inputs, f: (x: tf.Tensor4D, p: CrossScanParams) => tf.Tensor4D) {
  const outs = tf.tidy(() => {
    const ts = NAMES.map((k) => tf.tensor(inp[k], SHAPES[k]));
    const call = (v: tf.Tensor[]) =>
      f(v[0] as tf.Tensor4D, {
        xProjWeight: v[1],
        dtProjsWeight: v[2],
        dtProjsBias: v[3],
        ALogs: v[4],
        Ds: v[5],
      });
    const r = tf.tensor(inp.r, SHAPES.x);
    const grads = tf.grads((...v: tf.Tensor[]) => tf.sum(tf.mul(call(v), r)) as tf.Scalar)(ts);
    return [call(ts), ...grads];
  });
  const vals = await Promise.all(outs.map((t) => t.data()));
  tf.dispose(outs);
  return vals as Float32Array[];
}

before(async () => {
  await initBackend('wasm', { quiet: true });
});

describe('crossScanSSM', () => {
  const inp = makeInputs(41);
  let want: Float32Array[];
  before(async () => {
    want = await evaluate(inp, perDirectionLoop);
  });
  for (const impl of ['reference', 'chunked', 'fused'] as ScanImpl[]) {
    test(`${impl} matches the per-direction loop (forward + 6 gradients)`, async () => {
      const got = await evaluate(inp, (x, p) => crossScanSSM(x, p, { impl }));
      assertClose(got[0], want[0], `${impl} y`);
      NAMES.forEach((k, i) => assertClose(got[i + 1], want[i + 1], `${impl} ∂${k}`));
    });
  }

  test('fused without a gradient tape (the inference kernel) matches the per-direction loop', async () => {
    const args = NAMES.map((k) => tf.tensor(inp[k], SHAPES[k]));
    const run = () =>
      crossScanSSM(args[0] as tf.Tensor4D, {
        xProjWeight: args[1],
        dtProjsWeight: args[2],
        dtProjsBias: args[3],
        ALogs: args[4],
        Ds: args[5],
      });
    const prof = await tf.profile(() => run());
    assert.ok(prof.kernelNames.includes('MsmCrossScanForward'), `kernels run: ${prof.kernelNames.join(', ')}`);
    const y = run();
    assertClose(await y.data(), want[0], 'inference y');
    tf.dispose([y, ...args]);
  });

  test('the four directions really differ (a merge that ignored one would fail)', async () => {
    // Zeroing one direction's x_proj changes y: every direction contributes.
    const base = await evaluate(inp, (x, p) => crossScanSSM(x, p));
    for (let k = 0; k < K; k++) {
      const cut = { ...inp, xProjWeight: Float32Array.from(inp.xProjWeight) };
      cut.xProjWeight.fill(0, k * (R + 2 * N) * E, (k + 1) * (R + 2 * N) * E);
      const y = (await evaluate(cut, (x, p) => crossScanSSM(x, p)))[0];
      assert.ok(
        y.some((v, i) => Math.abs(v - base[0][i]) > 1e-3),
        `direction ${k} has no effect`,
      );
    }
  });

  test('no tensor leaks', async () => {
    await assertNoLeak('crossScanSSM', () => evaluate(inp, (x, p) => crossScanSSM(x, p)));
  });

  test('shape errors name the parameter', () => {
    tf.tidy(() => {
      const x = tf.zeros([1, 2, 2, E]) as tf.Tensor4D;
      const p: CrossScanParams = {
        xProjWeight: tf.zeros([K, R + 2 * N, E]),
        dtProjsWeight: tf.zeros([K, E, R]),
        dtProjsBias: tf.zeros([K, E]),
        ALogs: tf.zeros([K * E, N]),
        Ds: tf.zeros([K * E + 1]),
      };
      assert.throws(() => crossScanSSM(x, p), /crossScanSSM: Ds must be \[20\]/);
      assert.throws(() => crossScanSSM(x, { ...p, xProjWeight: tf.zeros([K, R + 2 * N, E + 1]) }), /xProjWeight/);
    });
  });
});
