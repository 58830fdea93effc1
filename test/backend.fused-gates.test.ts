/**
 * MIFA's fused cross gate and ECA (lib/backend/gates.ts) against the tf ops they replace on wasm: the
 * reference functions `crossGateReference`, `ecaReference`, and the MIFA module with MSM_FUSED_KERNELS=0 —
 * forward ≤ 1e-5 and every gradient ≤ 1e-4 of the reference's scale, both local-gate variants, several
 * channel counts, bit-identical
 * repeats, the unfused path whenever the kernel cannot or must not run (switch off, c not a multiple of 8,
 * an inner tap that sees the gate maps), and no leaked tensors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  CROSS_GATE_GRAD_KERNEL,
  CROSS_GATE_KERNEL,
  crossGateAvailable,
  crossGateReference,
  ECA_GRAD_KERNEL,
  ECA_KERNEL,
  ecaReference,
  fusedCrossGate,
  fusedEca,
} from '../lib/backend/gates';
import { MIFA } from '../lib/models/microscopic-mamba/mifa';
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

const randn = (rng: Rng, shape: number[], scale = 1) =>
  tf.tensor(
    rng.fillNormal(shape.reduce((a, b) => a * b, 1)).map((v) => v * scale),
    shape,
  );

type Gate = typeof fusedCrossGate;

/** y = gate(wl, wg, l, g) and the gradients of Σ y·r w.r.t. the four inputs; the kernels that ran. */
async function runGate(gate: Gate, inputs: tf.Tensor[], r: tf.Tensor, plainLocalGate: boolean) {
  let out: Float32Array[] = [];
  const profile = await tf.profile(() => {
    out = tf.tidy(() => {
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => gate(a, b, c, d, { plainLocalGate });
      const y = f(inputs[0], inputs[1], inputs[2], inputs[3]);
      const grads = tf.grads((a, b, c, d) => tf.sum(tf.mul(f(a, b, c, d), r)))(inputs);
      return [y, ...grads].map((t) => t.dataSync() as Float32Array);
    });
  });
  return { out, kernels: profile.kernelNames };
}

const GATE_CASES: Array<[number[], boolean]> = [
  [[2, 3, 3, 8], false], // the smallest c: one block of 4 groups, straddling the two halves
  [[8, 16, 16, 48], false], // microscopic-mamba-t stage 1 at 64 px
  [[3, 5, 24], true], // plain local gate (quirk Q5's fix), rank 3
  [[2, 2, 2, 384], false], // stage 4
];

describe('MIFA cross gate: fused kernel vs tf ops on wasm', () => {
  test('the kernel runs only when enabled and the shapes fit', () => {
    const [a, b] = [tf.zeros([2, 3, 16]), tf.zeros([2, 3, 12])];
    assert.equal(
      withFused(true, () => crossGateAvailable(a, a, a, a)),
      true,
    );
    assert.equal(
      withFused(false, () => crossGateAvailable(a, a, a, a)),
      false,
    );
    assert.equal(
      withFused(true, () => crossGateAvailable(b, b, b, b)),
      false,
      'c = 12 is not a multiple of 8',
    );
    tf.dispose([a, b]);
  });

  for (const [shape, plain] of GATE_CASES) {
    test(`crossGate [${shape}]${plain ? ' (plain local gate)' : ''}`, async () => {
      const rng = new Rng(shape[shape.length - 1] + (plain ? 1 : 0));
      const c = shape[shape.length - 1];
      // conv outputs at a few units of scale (both gates' tails), branch inputs at unit scale
      const inputs = [randn(rng, shape, 3), randn(rng, shape, 3), randn(rng, shape), randn(rng, shape)];
      const r = randn(rng, [...shape.slice(0, -1), 2 * c]);
      const fused = await runGate(fusedCrossGate, inputs, r, plain);
      const ref = await runGate(crossGateReference, inputs, r, plain);
      assert.ok(fused.kernels.includes(CROSS_GATE_KERNEL), 'fused run uses the kernel');
      assert.ok(fused.kernels.includes(CROSS_GATE_GRAD_KERNEL), 'and its gradient kernel');
      assert.ok(!ref.kernels.includes(CROSS_GATE_KERNEL), 'reference run does not');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      ['wl', 'wg', 'l', 'g'].forEach((name, i) => assertClose(fused.out[i + 1], ref.out[i + 1], `d${name}`, 1e-4));
      const again = await runGate(fusedCrossGate, inputs, r, plain);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([...inputs, r]);
    });
  }

  for (const shape of [
    [2, 3, 3, 7], // odd channel count: the heap loops' scalar tails
    [8, 16, 16, 96], // stage 1 at 64 px
    [4, 2, 2, 768], // stage 4
  ]) {
    test(`ECA [${shape}]: fused vs tf ops, values and the gradients of x and w`, async () => {
      const rng = new Rng(shape[3]);
      const x = randn(rng, shape);
      const w = randn(rng, [shape[3]], 2);
      const r = randn(rng, shape);
      const once = async (eca: (x: tf.Tensor, w: tf.Tensor) => tf.Tensor) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() => {
          out = tf.tidy(() => {
            const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(eca(a, b), r)))([x, w]);
            return [eca(x, w), ...grads].map((t) => t.dataSync() as Float32Array);
          });
        });
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(fusedEca);
      const ref = await once(ecaReference);
      assert.ok(fused.kernels.includes(ECA_KERNEL) && fused.kernels.includes(ECA_GRAD_KERNEL));
      assert.ok(!ref.kernels.includes(ECA_KERNEL));
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      assertClose(fused.out[1], ref.out[1], 'dx', 1e-4);
      assertClose(fused.out[2], ref.out[2], 'dw', 1e-4);
      const again = await once(fusedEca);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, w, r]);
    });
  }

  for (const eca of [true, false]) {
    test(`MIFA module${eca ? ' with ECA' : ''}: fused vs MSM_FUSED_KERNELS=0, values and gradients`, async () => {
      const c = 16;
      const mifa = new MIFA(c, { rng: new Rng(5), eca, plainLocalGate: false });
      const rng = new Rng(9);
      const [l, g] = [randn(rng, [2, 4, 4, c]), randn(rng, [2, 4, 4, c])];
      const r = randn(rng, [2, 4, 4, 2 * c]);
      const params = mifa.namedParameters().map(([, p]) => p.variable);
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() => {
              const loss = () => tf.sum(tf.mul(mifa.forward(l, g), r)) as tf.Scalar;
              const y = mifa.forward(l, g);
              const dInputs = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(mifa.forward(a, b), r)))([l, g]);
              const dParams = tf.variableGrads(loss, params).grads;
              return [y, ...dInputs, ...params.map((p) => dParams[p.name])].map((t) => t.dataSync() as Float32Array);
            });
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(CROSS_GATE_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(CROSS_GATE_KERNEL), 'reference run does not');
      assert.equal(fused.kernels.includes(ECA_KERNEL), eca, 'and the fused ECA where there is one');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      fused.out.slice(1).forEach((v, i) => assertClose(v, ref.out[i + 1], `gradient ${i}`, 1e-4));
      tf.dispose([l, g, r]);
    });
  }

  test('an inner tap on the gate maps keeps the tf ops (it sees and may replace them)', async () => {
    const mifa = new MIFA(8, { rng: new Rng(1), eca: true, plainLocalGate: false });
    const [l, g] = [tf.ones([1, 2, 2, 8]), tf.ones([1, 2, 2, 8])];
    const seen: string[] = [];
    const profile = await tf.profile(() =>
      withFused(true, () =>
        tf
          .tidy(() =>
            mifa.forward(l, g, {
              training: false,
              tapInner: (name, t) => {
                seen.push(name);
                return t;
              },
            }),
          )
          .dispose(),
      ),
    );
    assert.deepEqual(seen, ['MIFA.gate_local', 'MIFA.gate_global']);
    assert.ok(!profile.kernelNames.includes(CROSS_GATE_KERNEL));
    tf.dispose([l, g]);
  });

  test('no tensors leak (forward and backward)', async () => {
    const rng = new Rng(3);
    const inputs = [0, 1, 2, 3].map(() => randn(rng, [2, 3, 3, 16]));
    await withFused(true, () =>
      assertNoLeak('crossGate', () =>
        tf.tidy(() =>
          tf
            .grads((a, b, c, d) => tf.sum(tf.square(fusedCrossGate(a, b, c, d, { plainLocalGate: false }))))(inputs)
            .map((t) => t.dataSync()),
        ),
      ),
    );
    tf.dispose(inputs);
  });
});
