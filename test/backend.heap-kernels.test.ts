/**
 * The wasm heap kernels (lib/backend/heap.ts and the files that use it) must be bit-identical to what they replace:
 * Sum and Mean against the stock tfjs-backend-wasm kernels, the fused Adam update against the same
 * update written with tf ops. (Bit-identity is what keeps recorded training results reproducible.)
 */
import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { depthwiseFilterGradComposite } from '../lib/backend/conv-gradients';
import { collapsePermutation } from '../lib/backend/copies';
import { adamKernelAvailable } from '../lib/backend/optimizer';
import { leadingReduction } from '../lib/backend/reductions';
import { stockWasmKernel } from '../lib/backend/wasm-registry';
import { Adam } from '../lib/train/optim';
import { Rng } from '../lib/util/random';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

const bits = (t: tf.Tensor) => Array.from(new Uint32Array(new Float32Array(t.dataSync()).buffer));

function stockResult(name: string, x: tf.Tensor, attrs: tf.NamedAttrMap): tf.Tensor {
  const stock = stockWasmKernel(name);
  assert.ok(stock, `stock ${name} kept`);
  const info = stock({ inputs: { x }, backend: tf.backend(), attrs }) as tf.TensorInfo;
  return tf.engine().makeTensorFromTensorInfo(info);
}

test('leadingReduction views x as [outer, rows, cols] for one contiguous run of axes followed by kept axes', () => {
  assert.deepEqual(leadingReduction([8, 16, 16, 48], [0, 1, 2]), { outer: 1, rows: 2048, cols: 48, axes: [0, 1, 2] });
  assert.deepEqual(leadingReduction([8, 2, 2, 768], [2, 1]), { outer: 8, rows: 4, cols: 768, axes: [1, 2] });
  assert.deepEqual(leadingReduction([4, 5, 6], -2), { outer: 4, rows: 5, cols: 6, axes: [1] });
  assert.equal(leadingReduction([4, 5, 6], [2]), undefined, 'innermost: stock kernel, no transpose needed');
  assert.equal(leadingReduction([4, 5, 6], [0, 2]), undefined, 'not contiguous');
  assert.equal(leadingReduction([4, 5, 1], [0, 1]), undefined, 'only size-1 axes kept after');
});

test('Sum and Mean over leading axes are bit-identical to the stock wasm kernels', () => {
  const rng = new Rng(11);
  const cases: Array<[number[], number | number[]]> = [
    [
      [8, 16, 16, 48],
      [0, 1, 2],
    ], // bias / norm gradients at 64 px, stage 1
    [
      [8, 4, 4, 192],
      [0, 1, 2],
    ],
    [
      [8, 2, 2, 768],
      [1, 2],
    ], // outer > 1
    [
      [7, 5, 3, 37],
      [0, 1],
    ], // 37 columns: 16-, 4- and 1-column paths
    [[7, 5, 3, 37], 1],
    [[2048, 33], 0],
    [[3, 1000, 5], [1]], // long rows
    [
      [6, 2, 3],
      [-3, -2],
    ],
    [[5, 1], 0], // a single column: innermost, stock path
    [
      [4, 5, 6],
      [0, 2],
    ], // not contiguous: stock path
  ];
  for (const [shape, axis] of cases) {
    // Values of mixed magnitude, so that a different summation order would show in the last bits.
    const x = tf.tidy(() =>
      tf.mul(
        tf.tensor(rng.fillNormal(shape.reduce((a, b) => a * b, 1)), shape),
        tf.exp(tf.randomUniform(shape, -4, 4, 'float32', 5)),
      ),
    );
    for (const name of [tf.Sum, tf.Mean]) {
      for (const keepDims of [false, true]) {
        const ours = tf.engine().runKernel(name, { x }, { axis, keepDims }) as tf.Tensor;
        const ref = stockResult(name, x, { axis, keepDims });
        const what = `${name} of [${shape}] over ${JSON.stringify(axis)}, keepDims ${keepDims}`;
        assert.deepEqual(ours.shape, ref.shape, what);
        assert.deepEqual(bits(ours), bits(ref), what);
        tf.dispose([ours, ref]);
      }
    }
    x.dispose();
  }
});

test('Sum of int32 (stock path) and reductions of empty tensors (0, or NaN for a mean; stock returns uninitialised memory)', () => {
  const xi = tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], 'int32');
  assert.deepEqual(Array.from(tf.sum(xi, [0, 1]).dataSync()), [16, 20]);
  const e = tf.zeros([0, 3]);
  assert.deepEqual(Array.from(tf.sum(e, 0).dataSync()), [0, 0, 0]);
  assert.deepEqual(Array.from(tf.sum(tf.zeros([3, 0]), 1).dataSync()), [0, 0, 0], 'innermost');
  const m = tf.mean(tf.ones([2, 0, 3]), [0, 1]);
  assert.deepEqual(m.shape, [3]);
  assert.ok(Array.from(m.dataSync()).every(Number.isNaN), 'a mean of nothing is NaN');
  tf.dispose([xi, e]);
});

for (const [kind, wd] of [
  ['adam', 0],
  ['adam', 0.05],
  ['adamw', 0.05],
] as const) {
  test(`fused Adam kernel (${kind}, weight decay ${wd}) is bit-identical to the tf-op update over 5 steps`, () => {
    assert.ok(adamKernelAvailable(), 'the fused kernel runs on wasm');
    const rng = new Rng(21);
    const shapes = [[1], [3], [4], [17], [33, 24], [3, 3, 1, 48]];
    const make = () =>
      shapes.map((s, i) => tf.variable(tf.tensor(new Rng(100 + i).fillNormal(s.reduce((a, b) => a * b, 1)), s)));
    const fusedVars = make();
    const opsVars = make();
    const named = (vs: tf.Variable[]) => vs.map((v, i): [string, tf.Variable] => [`p${i}`, v]);
    const fused = new Adam(named(fusedVars), { lr: 1e-3, kind, weightDecay: wd });
    const ops = new Adam(named(opsVars), { lr: 1e-3, kind, weightDecay: wd, fusedKernel: false });
    const before = tf.memory().numTensors;
    for (let step = 0; step < 5; step++) {
      const gs = shapes.map((s) =>
        rng.fillNormal(
          s.reduce((a, b) => a * b, 1),
          0,
          step === 2 ? 1e-3 : 1,
        ),
      );
      const gradsFor = (vs: tf.Variable[]) =>
        Object.fromEntries(vs.map((v, i) => [v.name, tf.tensor(gs[i], shapes[i])]));
      const gf = gradsFor(fusedVars);
      const go = gradsFor(opsVars);
      const lr = [1e-3, 5e-3, 1e-2, 3e-4, 2e-3][step];
      fused.applyGradients(gf, lr);
      ops.applyGradients(go, lr);
      tf.dispose([...Object.values(gf), ...Object.values(go)]);
      fusedVars.forEach((v, i) => assert.deepEqual(bits(v), bits(opsVars[i]), `step ${step + 1}, parameter ${i}`));
    }
    const a = fused.getState().tensors;
    const b = ops.getState().tensors;
    for (const [name, t] of a) assert.deepEqual(bits(t), bits(b.get(name)!), name);
    assert.equal(tf.memory().numTensors, before, 'no tensor leaked by the fused update');
    tf.dispose([...fusedVars, ...opsVars]);
  });
}

test('the fused Adam kernel rejects moments of another size', () => {
  const p = tf.zeros([4]);
  const bad = tf.zeros([5]);
  assert.throws(
    () =>
      tf
        .engine()
        .runKernel(
          'MsmAdamUpdate',
          { param: p, grad: p, m: bad, v: p },
          { beta1: 0.9, beta2: 0.999, sqrtBc2: 1, eps: 1e-8, stepSize: 1e-3, l2: 0, decay: 1 },
        ),
    /must be float32 of one shape/,
  );
  tf.dispose([p, bad]);
});

/** The depthwise filter gradient in float64, straight from its definition. */
function refDepthwiseFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  k: number,
  m: number,
  s: number,
  pt: number,
  pl: number,
) {
  const [b, h, w, c] = x.shape;
  const [, ho, wo] = dy.shape;
  const xv = x.dataSync();
  const dv = dy.dataSync();
  const out = new Float64Array(k * k * c * m);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++)
      for (let o = 0; o < c * m; o++) {
        let sum = 0;
        for (let bb = 0; bb < b; bb++)
          for (let p = 0; p < ho; p++)
            for (let q = 0; q < wo; q++) {
              const r = i + p * s - pt;
              const col = j + q * s - pl;
              if (r < 0 || r >= h || col < 0 || col >= w) continue;
              sum += xv[((bb * h + r) * w + col) * c + Math.floor(o / m)] * dv[((bb * ho + p) * wo + q) * c * m + o];
            }
        out[(i * k + j) * c * m + o] = sum;
      }
  return out;
}

test('depthwise filter gradient: bit-identical to the composite kernel it replaces, and to the definition', () => {
  const rng = new Rng(31);
  // [b, h, w, c], filter size, multiplier, stride, pad: the model's 3×3 'same' convs and odd cases
  const cases: Array<[number[], number, number, number, 'same' | 'valid' | number]> = [
    [[8, 16, 16, 48], 3, 1, 1, 'same'],
    [[32, 4, 4, 96], 3, 1, 1, 1],
    [[8, 8, 8, 24], 3, 2, 1, 'same'], // multiplier 2 (MIFA's shared conv)
    [[3, 8, 8, 21], 5, 1, 1, 'valid'], // 21 channels: 16-, 4- and 1-channel paths
    [[1, 6, 6, 4], 3, 1, 1, 'same'], // b = 1
    [[2, 9, 7, 21], 3, 1, 2, 'same'], // stride 2, sizes not multiples of it
    // small maps: 4, 9 and 25 gradient taps are the composite's own (XNNPACK unipass), the rest ours
    ...[1, 2, 3, 4, 5, 6, 8].map((s): [number[], number, number, number, 'same'] => [[4, s, s, 20], 3, 1, 1, 'same']),
    [[4, 3, 4, 20], 3, 1, 1, 'same'],
  ];
  for (const [shape, k, m, stride, pad] of cases) {
    const [b, h, w, c] = shape;
    const what = `x [${shape}], ${k}×${k}×${m}, stride ${stride}, pad ${pad}`;
    const x = tf.tensor4d(rng.fillNormal(b * h * w * c), shape as [number, number, number, number]);
    const probe = tf.depthwiseConv2d(x, tf.zeros([k, k, c, m]) as tf.Tensor4D, stride, pad);
    const dy = tf.tensor(rng.fillNormal(probe.size), probe.shape) as tf.Tensor4D;
    const attrs = { strides: stride, pad, filterShape: [k, k, c, m], dilations: 1 } as unknown as tf.NamedAttrMap;
    const ours = tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, attrs) as tf.Tensor;
    assert.deepEqual(ours.shape, [k, k, c, m], what);
    const info = tf.backend_util.computeConv2DInfo(x.shape, [k, k, c, m], stride, 1, pad, undefined, true);
    const ref = refDepthwiseFilterGrad(x, dy, k, m, stride, info.padInfo.top, info.padInfo.left);
    const got = ours.dataSync();
    const scale = Math.max(...ref.map(Math.abs));
    ref.forEach((r, idx) =>
      assert.ok(Math.abs(got[idx] - r) <= 1e-5 * scale, `${what}: element ${idx}: ${got[idx]} vs ${r}`),
    );
    const composite = depthwiseFilterGradComposite({
      inputs: { x, dy },
      backend: tf.backend(),
      attrs,
    }) as tf.TensorInfo;
    const c0 = tf.engine().makeTensorFromTensorInfo(composite);
    assert.deepEqual(bits(ours), bits(c0), what);
    c0.dispose();
    tf.dispose([x, probe, dy, ours]);
  }
});

test('matrix products: the heap GEMM is bit-identical to XNNPACK (the stock 2-D kernel), transposes and batches included', () => {
  const xnnpack = stockWasmKernel(tf.BatchMatMul); // XNNPACK for plain 2-D products
  assert.ok(xnnpack, 'stock BatchMatMul kept');
  const rng = new Rng(41);
  // [batchA, batchB, m, k, n]: the model's shapes (token-major activations, weight gradients with a long
  // k, few rows times a large weight), odd sizes for every tile remainder, and k beyond one 256 block.
  const cases: Array<[number, number, number, number, number]> = [
    [1, 1, 2048, 48, 34],
    [1, 1, 33, 8192, 24],
    [1, 1, 32, 1536, 768],
    [1, 1, 7, 5, 3],
    [1, 1, 24, 8192, 1], // one and two columns (dt_proj with dt rank 1)
    [1, 1, 100, 300, 2],
    [1, 1, 13, 300, 21],
    [1, 1, 5, 800, 9],
    [1, 1, 5, 600, 9], // tiny: transposed cases stay on the stock naive loop
    [3, 1, 9, 70, 13],
    [1, 3, 6, 40, 11],
    [4, 4, 5, 33, 7],
    [128, 128, 24, 1, 256], // SS2D's batched dt_proj (few rows, k within one naive block: the GEMM)
    [6, 6, 20, 48, 300],
  ];
  for (const [batchA, batchB, m, k, n] of cases) {
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]) {
      const what = `[${batchA}]·[${m}, ${k}] @ [${batchB}]·[${k}, ${n}], transposeA ${tA}, transposeB ${tB}`;
      const a2 = Array.from({ length: batchA }, () =>
        tf.mul(tf.tensor2d(rng.fillNormal(m * k), [m, k]), 1 + rng.uniform() * 100),
      );
      const b2 = Array.from({ length: batchB }, () => tf.tensor2d(rng.fillNormal(k * n), [k, n]));
      const stored = (ts: tf.Tensor2D[], t: boolean) => tf.stack(ts.map((x) => (t ? x.transpose() : x)));
      const a = stored(a2 as tf.Tensor2D[], tA);
      const b = stored(b2, tB);
      const ours = tf.matMul(a, b, tA, tB);
      // Reference: what the stock path computes. Tiny products with a transpose or a batch stay on the
      // stock naive loop (lib/backend/matmul.ts keepOriginal: its own summation order); all else is XNNPACK
      // on each plain 2-D product.
      const direct = !tA && !tB && batchA === 1 && batchB === 1;
      const naive = !direct && Math.max(batchA, batchB) * m * k * n < 1 << 15;
      const refs: tf.Tensor[] = naive
        ? [
            tf.engine().makeTensorFromTensorInfo(
              xnnpack({
                inputs: { a, b },
                backend: tf.backend(),
                attrs: { transposeA: tA, transposeB: tB },
              }) as tf.TensorInfo,
            ),
          ]
        : Array.from({ length: Math.max(batchA, batchB) }, (_, i) => {
            const info = xnnpack({
              inputs: { a: a2[batchA === 1 ? 0 : i], b: b2[batchB === 1 ? 0 : i] },
              backend: tf.backend(),
              attrs: { transposeA: false, transposeB: false },
            });
            return tf.engine().makeTensorFromTensorInfo(info as tf.TensorInfo);
          });
      const ref: tf.Tensor = naive ? refs[0].reshape([Math.max(batchA, batchB), m, n]) : tf.stack(refs);
      assert.deepEqual(ours.shape, [Math.max(batchA, batchB), m, n], what);
      assert.deepEqual(bits(ours), bits(ref), what);
      tf.dispose([...a2, ...b2, a, b, ours, ref, ...refs]);
    }
  }
});

test('collapsePermutation drops size-1 axes and merges axes that stay adjacent', () => {
  assert.deepEqual(collapsePermutation([32, 4, 256, 24], [0, 1, 3, 2]), { shape: [128, 256, 24], perm: [0, 2, 1] });
  assert.deepEqual(collapsePermutation([32, 4, 24, 256], [1, 0, 3, 2]), {
    shape: [32, 4, 24, 256],
    perm: [1, 0, 3, 2],
  });
  assert.deepEqual(collapsePermutation([8, 16, 16, 96], [0, 3, 1, 2]), { shape: [8, 256, 96], perm: [0, 2, 1] });
  assert.deepEqual(collapsePermutation([3, 1, 4, 10], [2, 1, 0, 3]), { shape: [3, 4, 10], perm: [1, 0, 2] });
  assert.deepEqual(collapsePermutation([2, 3], [0, 1]), { shape: [6], perm: [0] });
  assert.deepEqual(collapsePermutation([1, 1], [1, 0]), { shape: [], perm: [] });
});
