/**
 * The fused kernels — LayerNorm (also gated by SiLU(z)) and BatchNorm (lib/backend/norms.ts), SiLU on all
 * or the first p channels, the exact GELU and ReLU (lib/backend/activations.ts), lib/nn Conv2d's bias inside
 * its depthwise conv or matMul — against the unfused tf ops they replace on wasm (MSM_FUSED_KERNELS=0):
 * forward ≤ 1e-5 and gradients ≤ 1e-4 of the reference's scale,
 * BatchNorm's running statistics, several shapes including odd channel counts (the SIMD kernels' scalar
 * tails), bit-identical repeats, no leaked tensors.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import {
  GELU_GRAD_KERNEL,
  GELU_KERNEL,
  PARTIAL_SILU_GRAD_KERNEL,
  RELU_GRAD_KERNEL,
  RELU_KERNEL,
} from '../lib/backend/activations';
import {
  BATCH_NORM_INFERENCE_KERNEL,
  BATCH_NORM_KERNEL,
  fusedNormsAvailable,
  LAYER_NORM_GATE_KERNEL,
  LAYER_NORM_KERNEL,
} from '../lib/backend/norms';
import {
  BatchNorm2d,
  Conv2d,
  gelu,
  LayerNorm,
  layerNormSiluGate,
  ReLU,
  silu,
  siluFirstChannels,
} from '../lib/nn/index';
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

/** Runs f with the fused kernels on (true) or the tf ops (false). */

const randn = (rng: Rng, shape: number[], scale = 1, shift = 0) =>
  tf.tensor(
    rng.fillNormal(shape.reduce((a, b) => a * b, 1)).map((v) => v * scale + shift),
    shape,
  );

interface Run {
  y: Float32Array;
  grads: Float32Array[];
  kernels: string[];
}

/** y = norm(x) and the gradients of Σ y·r w.r.t. x, weight and bias (r a fixed random upstream gradient). */
async function run(layer: LayerNorm | BatchNorm2d, x: tf.Tensor, r: tf.Tensor, fused: boolean): Promise<Run> {
  let out: Run | undefined;
  const profile = await tf.profile(() =>
    withFused(fused, () => {
      const y = tf.tidy(() => layer.forward(x, { training: true }));
      const { grads } = tf.tidy(() => {
        const loss = () => tf.sum(tf.mul(layer.forward(x, { training: true }), r)) as tf.Scalar;
        const g = tf.variableGrads(loss, [layer.weight, layer.bias]);
        const gx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(layer.forward(xi, { training: true }), r)))(x);
        return { grads: [gx, g.grads[layer.weight.name], g.grads[layer.bias.name]] };
      });
      out = { y: y.dataSync() as Float32Array, grads: grads.map((g) => g.dataSync() as Float32Array), kernels: [] };
      tf.dispose([y, ...grads]);
    }),
  );
  out!.kernels = profile.kernelNames;
  return out!;
}

function params(layer: LayerNorm | BatchNorm2d, rng: Rng, c: number) {
  layer.weight.assign(randn(rng, [c], 0.5, 1) as tf.Tensor1D);
  layer.bias.assign(randn(rng, [c], 0.5) as tf.Tensor1D);
}

const LN_SHAPES = [
  [2, 5, 7], // odd channel count: scalar tail only
  [3, 4, 4, 24],
  [1, 3, 3, 13], // vectors + tail
  [2, 9, 96],
  [8, 16, 16, 48], // a microscopic-mamba-t stage-1 map at 64 px
];
const BN_SHAPES = [
  [2, 5, 5, 7],
  [4, 3, 3, 24],
  [8, 2, 2, 13],
  [6, 10], // BatchNorm1d's rank 2
  [8, 32, 32, 24], // the stem at 64 px
];

describe('fused kernels match the tf ops on wasm', () => {
  test('the kernels run only when enabled', () => {
    const x = tf.zeros([2, 4]);
    assert.equal(
      withFused(true, () => fusedNormsAvailable(x)),
      true,
    );
    assert.equal(
      withFused(false, () => fusedNormsAvailable(x)),
      false,
    );
    assert.equal(fusedNormsAvailable(tf.zeros([2, 4], 'int32')), false);
    x.dispose();
  });

  for (const shape of LN_SHAPES) {
    test(`LayerNorm [${shape}]`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.length * 100 + c);
      const layer = new LayerNorm(c);
      params(layer, rng, c);
      const x = randn(rng, shape, 2, 0.7);
      const r = randn(rng, shape);
      const fused = await run(layer, x, r, true);
      const ref = await run(layer, x, r, false);
      assert.ok(fused.kernels.includes(LAYER_NORM_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(LAYER_NORM_KERNEL), 'reference run does not');
      assertClose(fused.y, ref.y, 'forward', 1e-5);
      ['x', 'weight', 'bias'].forEach((name, i) => assertClose(fused.grads[i], ref.grads[i], `d${name}`, 1e-4));
      const again = await run(layer, x, r, true);
      assert.deepEqual(again.y, fused.y, 'forward repeats bit for bit');
      again.grads.forEach((g, i) => assert.deepEqual(g, fused.grads[i], `gradient ${i} repeats bit for bit`));
      tf.dispose([x, r]);
    });
  }

  for (const shape of BN_SHAPES) {
    test(`BatchNorm (training) [${shape}]`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.length * 1000 + c);
      const x = randn(rng, shape, 1.5, -0.4);
      const r = randn(rng, shape);
      const make = () => {
        const layer = new BatchNorm2d(c);
        params(layer, new Rng(7), c);
        return layer;
      };
      const [lf, lr] = [make(), make()];
      const fused = await run(lf, x, r, true);
      const ref = await run(lr, x, r, false);
      assert.ok(fused.kernels.includes(BATCH_NORM_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(BATCH_NORM_KERNEL), 'reference run does not');
      assertClose(fused.y, ref.y, 'forward', 1e-5);
      ['x', 'weight', 'bias'].forEach((name, i) => assertClose(fused.grads[i], ref.grads[i], `d${name}`, 1e-4));
      // running statistics after the same number of training forwards
      assertClose(lf.runningMean.dataSync(), lr.runningMean.dataSync(), 'running mean', 1e-5);
      assertClose(lf.runningVar.dataSync(), lr.runningVar.dataSync(), 'running var', 1e-5);
      const again = await run(make(), x, r, true);
      assert.deepEqual(again.y, fused.y, 'forward repeats bit for bit');
      again.grads.forEach((g, i) => assert.deepEqual(g, fused.grads[i], `gradient ${i} repeats bit for bit`));
      tf.dispose([x, r]);
    });
  }

  for (const shape of [BN_SHAPES[0], BN_SHAPES[2], BN_SHAPES[3]]) {
    test(`BatchNorm (eval, running statistics) [${shape}] and its gradient`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.length * 77 + c);
      const layer = new BatchNorm2d(c);
      params(layer, rng, c);
      layer.runningMean.assign(randn(rng, [c], 0.3) as tf.Tensor1D);
      layer.runningVar.assign(tf.abs(randn(rng, [c], 0.5, 1)) as tf.Tensor1D);
      const x = randn(rng, shape, 1.5, -0.4);
      const r = randn(rng, shape);
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            const loss = (xi: tf.Tensor) => tf.sum(tf.mul(layer.forward(xi, { training: false }), r)) as tf.Scalar;
            out = tf.tidy(() => {
              const y = layer.forward(x, { training: false });
              const dx = tf.grad(loss)(x);
              const g = tf.variableGrads(() => loss(x), [layer.weight, layer.bias]).grads;
              return [y, dx, g[layer.weight.name], g[layer.bias.name]].map((t) => t.dataSync() as Float32Array);
            });
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(BATCH_NORM_INFERENCE_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(BATCH_NORM_INFERENCE_KERNEL), 'reference run does not');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      ['x', 'weight', 'bias'].forEach((name, i) => assertClose(fused.out[i + 1], ref.out[i + 1], `d${name}`, 1e-4));
      const again = await once(true);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, r]);
    });
  }

  const SILU_CASES: Array<[number[], number]> = [
    [[2, 5, 7], 7], // plain SiLU, odd channel count
    [[2, 5, 7], 3], // partial, odd split
    [[3, 4, 4, 24], 6], // PSFFN's p = d/4 with d = 24: p not a multiple of 4
    [[8, 16, 16, 48], 12],
    [[2, 3, 10], 0], // nothing filtered: identity
  ];
  for (const [shape, p] of SILU_CASES) {
    test(`SiLU on the first ${p} of ${shape[shape.length - 1]} channels [${shape}]`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.length * 10 + p);
      const x = randn(rng, shape, 3);
      const r = randn(rng, shape);
      const op = (xi: tf.Tensor) => (p === c ? silu(xi) : siluFirstChannels(xi, p));
      const once = async (fused: boolean) => {
        let y: Float32Array | undefined;
        let dx: Float32Array | undefined;
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            y = tf.tidy(() => op(x).dataSync() as Float32Array);
            dx = tf.tidy(
              () =>
                tf
                  .grad((xi: tf.Tensor) => tf.sum(tf.mul(op(xi), r)))(x)
                  .dataSync() as Float32Array,
            );
          }),
        );
        return { y: y!, dx: dx!, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(PARTIAL_SILU_GRAD_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(PARTIAL_SILU_GRAD_KERNEL), 'reference run does not');
      assertClose(fused.y, ref.y, 'forward', 1e-5);
      assertClose(fused.dx, ref.dx, 'dx', 1e-4);
      const again = await once(true);
      assert.deepEqual(again.y, fused.y, 'forward repeats bit for bit');
      assert.deepEqual(again.dx, fused.dx, 'dx repeats bit for bit');
      tf.dispose([x, r]);
    });
  }

  for (const shape of [
    [2, 3, 7], // odd channel count
    [32, 16, 16, 24], // SS2D's out_norm at stage 1, 64 px (b·G = 32)
  ]) {
    test(`LayerNorm ⊙ SiLU(z) [${shape}]: values and the gradients of x, z, weight, bias`, async () => {
      const c = shape[shape.length - 1];
      const rng = new Rng(shape.length * 3 + c);
      const norm = new LayerNorm(c);
      params(norm, rng, c);
      const [x, z, r] = [randn(rng, shape, 2, 0.3), randn(rng, shape, 3), randn(rng, shape)];
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() => {
              const f = (a: tf.Tensor, b: tf.Tensor) => layerNormSiluGate(norm, a, b);
              const dxz = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(a, b), r)))([x, z]);
              const loss = () => tf.sum(tf.mul(f(x, z), r)) as tf.Scalar;
              const g = tf.variableGrads(loss, [norm.weight, norm.bias]).grads;
              return [f(x, z), ...dxz, g[norm.weight.name], g[norm.bias.name]].map((t) => t.dataSync() as Float32Array);
            });
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(LAYER_NORM_GATE_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(LAYER_NORM_GATE_KERNEL), 'reference run does not');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      ['x', 'z', 'weight', 'bias'].forEach((name, i) =>
        assertClose(fused.out[i + 1], ref.out[i + 1], `d${name}`, 1e-4),
      );
      const again = await once(true);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, z, r]);
    });
  }

  const CONV_CASES: Array<[string, () => Conv2d, number[]]> = [
    ['depthwise 3×3', () => new Conv2d(24, 24, 3, { padding: 1, groups: 24, rng: new Rng(1) }), [8, 16, 16, 24]],
    [
      'depthwise 3×3, multiplier 2',
      () => new Conv2d(6, 12, 3, { padding: 1, groups: 6, rng: new Rng(2) }),
      [2, 5, 5, 6],
    ],
    [
      'depthwise 3×3, stride 2',
      () => new Conv2d(6, 6, 3, { padding: 1, stride: 2, groups: 6, rng: new Rng(3) }),
      [2, 7, 7, 6],
    ],
    ['pointwise (a matMul)', () => new Conv2d(48, 24, 1, { rng: new Rng(4) }), [8, 16, 16, 48]],
  ];
  for (const [what, make, shape] of CONV_CASES) {
    test(`Conv2d ${what} with the bias inside the kernel [${shape}]`, async () => {
      const conv = make();
      const rng = new Rng(shape[3]);
      const x = randn(rng, shape);
      const r = tf.tidy(() => randn(rng, conv.forward(x).shape));
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() => {
              const loss = () => tf.sum(tf.mul(conv.forward(x), r)) as tf.Scalar;
              const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(conv.forward(xi), r)))(x);
              const g = tf.variableGrads(loss, [conv.weight, conv.bias!]).grads;
              return [conv.forward(x), dx, g[conv.weight.name], g[conv.bias!.name]].map(
                (t) => t.dataSync() as Float32Array,
              );
            });
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      const kernel = conv.depthwise ? 'FusedDepthwiseConv2D' : '_FusedMatMul';
      assert.ok(fused.kernels.includes(kernel), `fused run uses ${kernel}`);
      assert.ok(!ref.kernels.includes(kernel), 'reference run does not');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      ['x', 'weight', 'bias'].forEach((name, i) => assertClose(fused.out[i + 1], ref.out[i + 1], `d${name}`, 1e-4));
      const again = await once(true);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, r]);
    });
  }

  for (const shape of [[7], [2, 5, 7], [8, 16, 16, 48]]) {
    test(`ReLU [${shape}]`, async () => {
      const rng = new Rng(shape.length * 17 + shape[0]);
      const x = randn(rng, shape);
      const r = randn(rng, shape);
      const relu = new ReLU();
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() =>
              [relu.forward(x), tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(relu.forward(xi), r)))(x)].map(
                (t) => t.dataSync() as Float32Array,
              ),
            );
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(RELU_GRAD_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(RELU_KERNEL), 'reference run does not');
      // the same values (max and a select are exact; only a zero's sign may differ)
      const values = (a: Float32Array) => Array.from(a, (v) => v + 0); // −0 + 0 = +0
      assert.deepEqual(values(fused.out[0]), values(ref.out[0]), 'forward');
      assert.deepEqual(values(fused.out[1]), values(ref.out[1]), 'dx');
      tf.dispose([x, r]);
    });
  }

  const GELU_SHAPES = [
    [7], // the scalar tail only
    [2, 5, 7],
    [8, 32, 32, 48], // the Microscopic-Mamba stem's GELU at 64 px
  ];
  for (const shape of GELU_SHAPES) {
    test(`GELU [${shape}]`, async () => {
      const rng = new Rng(shape.length * 31 + shape[0]);
      const x = randn(rng, shape, 3);
      const r = randn(rng, shape);
      const once = async (fused: boolean) => {
        let out: Float32Array[] = [];
        const profile = await tf.profile(() =>
          withFused(fused, () => {
            out = tf.tidy(() =>
              [gelu(x), tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(gelu(xi), r)))(x)].map(
                (t) => t.dataSync() as Float32Array,
              ),
            );
          }),
        );
        return { out, kernels: profile.kernelNames };
      };
      const fused = await once(true);
      const ref = await once(false);
      assert.ok(fused.kernels.includes(GELU_GRAD_KERNEL), 'fused run uses the kernel');
      assert.ok(!ref.kernels.includes(GELU_KERNEL), 'reference run does not');
      assertClose(fused.out[0], ref.out[0], 'forward', 1e-5);
      assertClose(fused.out[1], ref.out[1], 'dx', 1e-4);
      const again = await once(true);
      again.out.forEach((v, i) => assert.deepEqual(v, fused.out[i], `output ${i} repeats bit for bit`));
      tf.dispose([x, r]);
    });
  }

  test('no tensors leak (forward and backward)', async () => {
    const rng = new Rng(3);
    const ln = new LayerNorm(12);
    const bn = new BatchNorm2d(12);
    const x = randn(rng, [2, 3, 3, 12]);
    process.env.MSM_FUSED_KERNELS = '1';
    await assertNoLeak('LayerNorm', () =>
      tf.tidy(() =>
        tf
          .grad((xi: tf.Tensor) => tf.sum(ln.forward(xi)))(x)
          .dataSync(),
      ),
    );
    await assertNoLeak('BatchNorm', () =>
      tf.tidy(() =>
        tf
          .grad((xi: tf.Tensor) => tf.sum(tf.square(bn.forward(xi, { training: true }))))(x)
          .dataSync(),
      ),
    );
    await assertNoLeak('GELU', () =>
      tf.tidy(() =>
        tf
          .grad((xi: tf.Tensor) => tf.sum(tf.square(gelu(xi))))(x)
          .dataSync(),
      ),
    );
    await assertNoLeak('SiLU', () =>
      tf.tidy(() =>
        tf
          .grad((xi: tf.Tensor) => tf.sum(tf.square(siluFirstChannels(xi, 5))))(x)
          .dataSync(),
      ),
    );
    x.dispose();
  });
});
