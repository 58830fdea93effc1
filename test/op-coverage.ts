/**
 * Every differentiable op the kit uses, as a table: op name -> small inputs -> function. The test
 * test/backend.op-gradients.test.ts walks it and checks, on wasm, that each gradient exists and matches
 * the cpu backend (and, for smooth ops, a finite difference). When model code starts using a new op,
 * add a row here: that is how it gets a wasm gradient check.
 *
 * Shapes follow the model's layouts (docs/architecture.md): activations NHWC [b, h, w, c], tokens [b, l, d],
 * conv filters [kh, kw, in, out], depthwise filters [kh, kw, c, mult], logits [b, classes].
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/util/random';

export interface OpInput {
  shape: number[];
  /**
   * normal (default): N(0, 1); positive: 0.5 + |N(0, 1)| (log, sqrt, divisors, variances);
   * int: int32 in [0, max) (indices, labels); mask: 0/1 float32.
   */
  kind?: 'normal' | 'positive' | 'int' | 'mask';
  max?: number;
  /** Not differentiated (int and mask inputs never are). */
  constant?: boolean;
}

export interface OpGradientCase {
  /** Shown in test output; unique. */
  name: string;
  /** The tfjs kernels the op runs through (forward), for the coverage check. */
  kernels: string[];
  inputs: OpInput[];
  /** The op: any differentiable function of the inputs (they arrive in `inputs` order). */
  fn: (...xs: tf.Tensor[]) => tf.Tensor;
  /** False for ops with kinks (relu, max, clip, ...): no finite-difference check. Default true. */
  smooth?: boolean;
}

const n = (...shape: number[]): OpInput => ({ shape });
const pos = (...shape: number[]): OpInput => ({ shape, kind: 'positive' });
const ints = (max: number, ...shape: number[]): OpInput => ({ shape, kind: 'int', max, constant: true });
const mask = (...shape: number[]): OpInput => ({ shape, kind: 'mask', constant: true });

const t4 = (x: tf.Tensor) => x as tf.Tensor4D;
/** GELU, exact erf form (docs/architecture.md §Macro structure; lib/nn). */
const gelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
/** LayerNorm over the last axis, eps 1e-5 (docs/architecture.md §Parallel VSSM). */
const layerNorm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
};
/** Channel shuffle (docs/architecture.md §Channel shuffle): [.., c] -> [.., g, c/g] -> swap -> [.., c]. */
const shuffle = (x: tf.Tensor, groups: number) => {
  const s = x.shape;
  const c = s[s.length - 1];
  const r = tf.reshape(x, [...s.slice(0, -1), groups, c / groups]);
  const perm = r.shape.map((_, i) => i);
  [perm[perm.length - 2], perm[perm.length - 1]] = [perm[perm.length - 1], perm[perm.length - 2]];
  return tf.reshape(tf.transpose(r, perm), s);
};
const pad1: [[0, 0], [1, 1], [1, 1], [0, 0]] = [
  [0, 0],
  [1, 1],
  [1, 1],
  [0, 0],
];

export const OP_GRADIENT_CASES: OpGradientCase[] = [
  // --- elementwise, unary ---------------------------------------------------------------------
  { name: 'erf', kernels: ['Erf'], inputs: [n(3, 4)], fn: (x) => tf.erf(x) },
  { name: 'gelu (exact erf)', kernels: ['Erf', 'Multiply', 'Add'], inputs: [n(3, 4)], fn: gelu },
  { name: 'softplus', kernels: ['Softplus'], inputs: [n(3, 4)], fn: (x) => tf.softplus(tf.mul(x, 3)) },
  { name: 'sigmoid', kernels: ['Sigmoid'], inputs: [n(3, 4)], fn: (x) => tf.sigmoid(x) },
  { name: 'silu', kernels: ['Sigmoid', 'Multiply'], inputs: [n(3, 4)], fn: (x) => tf.mul(x, tf.sigmoid(x)) },
  { name: 'exp', kernels: ['Exp'], inputs: [n(3, 4)], fn: (x) => tf.exp(x) },
  { name: 'log', kernels: ['Log'], inputs: [pos(3, 4)], fn: (x) => tf.log(x) },
  { name: 'log1p', kernels: ['Log1p'], inputs: [pos(3, 4)], fn: (x) => tf.log1p(x) },
  { name: 'relu', kernels: ['Relu'], inputs: [n(3, 4)], fn: (x) => tf.relu(x), smooth: false },
  { name: 'sqrt', kernels: ['Sqrt'], inputs: [pos(3, 4)], fn: (x) => tf.sqrt(x) },
  { name: 'rsqrt', kernels: ['Rsqrt'], inputs: [pos(3, 4)], fn: (x) => tf.rsqrt(x) },
  { name: 'square', kernels: ['Square'], inputs: [n(3, 4)], fn: (x) => tf.square(x) },
  { name: 'tanh', kernels: ['Tanh'], inputs: [n(3, 4)], fn: (x) => tf.tanh(x) },
  { name: 'neg', kernels: ['Neg'], inputs: [n(3, 4)], fn: (x) => tf.neg(x) },
  { name: 'abs', kernels: ['Abs'], inputs: [n(3, 4)], fn: (x) => tf.abs(x), smooth: false },
  { name: 'reciprocal', kernels: ['Reciprocal'], inputs: [pos(3, 4)], fn: (x) => tf.reciprocal(x) },
  { name: 'pow (x^1.5)', kernels: ['Pow'], inputs: [pos(3, 4)], fn: (x) => tf.pow(x, 1.5) },
  {
    name: 'clipByValue',
    kernels: ['ClipByValue'],
    inputs: [n(3, 4)],
    fn: (x) => tf.clipByValue(x, -0.5, 0.5),
    smooth: false,
  },
  // --- elementwise, binary (with broadcasting) ------------------------------------------------
  { name: 'add broadcast', kernels: ['Add'], inputs: [n(3, 4), n(4)], fn: (a, b) => tf.add(a, b) },
  { name: 'sub broadcast', kernels: ['Sub'], inputs: [n(2, 3, 4), n(3, 1)], fn: (a, b) => tf.sub(a, b) },
  { name: 'mul broadcast', kernels: ['Multiply'], inputs: [n(3, 4), n(3, 1)], fn: (a, b) => tf.mul(a, b) },
  { name: 'div broadcast', kernels: ['RealDiv'], inputs: [n(3, 4), pos(4)], fn: (a, b) => tf.div(a, b) },
  {
    name: 'squaredDifference',
    kernels: ['SquaredDifference'],
    inputs: [n(3, 4), n(4)],
    fn: (a, b) => tf.squaredDifference(a, b),
  },
  { name: 'maximum broadcast', kernels: ['Maximum'], inputs: [n(3, 4), n(3, 1)], fn: tf.maximum, smooth: false },
  { name: 'minimum broadcast', kernels: ['Minimum'], inputs: [n(3, 4), n(4)], fn: tf.minimum, smooth: false },
  { name: 'addN', kernels: ['AddN'], inputs: [n(3, 4), n(3, 4), n(3, 4)], fn: (a, b, c) => tf.addN([a, b, c]) },
  {
    name: 'select (where) with a constant mask',
    kernels: ['Select'],
    inputs: [mask(3, 4), n(3, 4), n(3, 4)],
    fn: (m, a, b) => tf.where(tf.cast(m, 'bool'), a, b),
  },
  {
    name: 'DropPath-style mask scaling',
    kernels: ['Multiply', 'RealDiv'],
    inputs: [n(4, 2, 2, 3), mask(4, 1, 1, 1)],
    fn: (x, m) => tf.div(tf.mul(x, m), 0.9),
  },
  // --- reductions -------------------------------------------------------------------------------
  { name: 'sum axis 1 keepDims', kernels: ['Sum'], inputs: [n(2, 3, 4)], fn: (x) => tf.sum(x, 1, true) },
  { name: 'mean over h, w (GAP)', kernels: ['Mean'], inputs: [n(2, 3, 3, 4)], fn: (x) => tf.mean(x, [1, 2]) },
  { name: 'max last axis', kernels: ['Max'], inputs: [n(3, 5)], fn: (x) => tf.max(x, -1), smooth: false },
  { name: 'min axis 0', kernels: ['Min'], inputs: [n(3, 5)], fn: (x) => tf.min(x, 0), smooth: false },
  { name: 'logSumExp', kernels: ['Max', 'Exp', 'Sum', 'Log'], inputs: [n(3, 5)], fn: (x) => tf.logSumExp(x, -1) },
  {
    name: 'moments (variance)',
    kernels: ['Mean', 'Sub', 'Square'],
    inputs: [n(2, 3, 3, 4)],
    fn: (x) => tf.moments(x, [0, 1, 2]).variance,
  },
  // --- softmax and losses -------------------------------------------------------------------------
  { name: 'softmax', kernels: ['Softmax'], inputs: [n(3, 5)], fn: (x) => tf.softmax(x) },
  { name: 'logSoftmax', kernels: ['Max', 'Sub', 'Exp', 'Sum', 'Log'], inputs: [n(3, 5)], fn: (x) => tf.logSoftmax(x) },
  {
    name: 'softmax cross-entropy (constant one-hot labels)',
    kernels: ['OneHot', 'Max', 'Exp', 'Sum', 'Log', 'Multiply', 'Mean'],
    inputs: [n(4, 5), ints(5, 4)],
    fn: (logits, labels) => tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(labels, 5), tf.logSoftmax(logits)), -1))),
  },
  {
    name: 'tf.losses.softmaxCrossEntropy with label smoothing',
    kernels: ['Max', 'Exp', 'Sum', 'Log', 'Multiply', 'RealDiv'],
    inputs: [n(4, 5), ints(5, 4)],
    fn: (logits, labels) => tf.losses.softmaxCrossEntropy(tf.oneHot(labels, 5), logits, undefined, 0.1),
  },
  {
    name: 'NLL through gather (no one-hot)',
    kernels: ['Max', 'Exp', 'Sum', 'Log', 'GatherV2', 'Mean'],
    inputs: [n(4, 5), ints(5, 4)],
    fn: (logits, labels) => {
      const rows = tf.mul(tf.range(0, 4, 1, 'int32'), tf.scalar(5, 'int32'));
      const flat = tf.reshape(tf.logSoftmax(logits), [-1]);
      return tf.neg(tf.mean(tf.gather(flat, tf.add(rows, labels))));
    },
  },
  // --- shapes and indexing ----------------------------------------------------------------------
  { name: 'reshape', kernels: ['Reshape'], inputs: [n(2, 3, 4)], fn: (x) => tf.reshape(x, [6, 4]) },
  { name: 'transpose', kernels: ['Transpose'], inputs: [n(2, 3, 4, 5)], fn: (x) => tf.transpose(x, [0, 2, 1, 3]) },
  {
    name: 'channel shuffle (groups c/2)',
    kernels: ['Reshape', 'Transpose'],
    inputs: [n(2, 2, 2, 8)],
    fn: (x) => shuffle(x, 4),
  },
  { name: 'slice', kernels: ['Slice'], inputs: [n(4, 5, 3)], fn: (x) => tf.slice(x, [1, 0, 1], [2, 4, 2]) },
  {
    name: 'stridedSlice 2x2 phases (PatchMerging)',
    kernels: ['StridedSlice'],
    inputs: [n(2, 4, 4, 3)],
    fn: (x) => tf.stridedSlice(x, [0, 1, 0, 0], [2, 4, 4, 3], [1, 2, 2, 1]),
  },
  {
    name: 'concat last axis',
    kernels: ['Concat'],
    inputs: [n(2, 3, 2), n(2, 3, 4)],
    fn: (a, b) => tf.concat([a, b], -1),
  },
  {
    name: 'split into chunks',
    kernels: ['SplitV'],
    inputs: [n(2, 3, 8)],
    fn: (x) => {
      const [a, b] = tf.split(x, [2, 6], -1);
      return tf.concat([tf.mul(a, 2), tf.exp(b)], -1);
    },
  },
  {
    name: 'stack / unstack',
    kernels: ['Pack', 'Unpack'],
    inputs: [n(3, 4)],
    fn: (x) =>
      tf.stack(
        tf.unstack(x).map((r, i) => tf.mul(r, i + 1)),
        1,
      ),
  },
  { name: 'pad (constant)', kernels: ['PadV2'], inputs: [n(2, 3, 3, 2)], fn: (x) => tf.pad(x, pad1) },
  {
    name: 'mirrorPad (reflect)',
    kernels: ['MirrorPad'],
    inputs: [n(1, 4, 4, 2)],
    fn: (x) => tf.mirrorPad(x, pad1, 'reflect'),
  },
  {
    name: 'mirrorPad (symmetric, uneven)',
    kernels: ['MirrorPad'],
    inputs: [n(2, 4, 3)],
    fn: (x) =>
      tf.mirrorPad(
        x,
        [
          [1, 0],
          [2, 3],
          [0, 2],
        ],
        'symmetric',
      ),
  },
  { name: 'reverse (scan direction flip)', kernels: ['Reverse'], inputs: [n(2, 5, 3)], fn: (x) => tf.reverse(x, 1) },
  { name: 'tile', kernels: ['Tile'], inputs: [n(2, 3)], fn: (x) => tf.tile(x, [2, 3]) },
  {
    name: 'expandDims / squeeze',
    kernels: ['ExpandDims', 'Reshape'],
    inputs: [n(3, 4)],
    fn: (x) => tf.squeeze(tf.mul(tf.expandDims(x, 1), tf.expandDims(x, 2)), []),
  },
  {
    name: 'broadcastTo',
    kernels: ['Tile'],
    inputs: [n(1, 3, 1)],
    fn: (x) => tf.broadcastTo(x, [2, 3, 4]),
  },
  {
    name: 'gather axis 1 (duplicates)',
    kernels: ['GatherV2'],
    inputs: [n(2, 5, 3), ints(5, 7)],
    fn: (x, i) => tf.gather(x, i, 1),
  },
  { name: 'cumsum axis 1', kernels: ['Cumsum'], inputs: [n(2, 6, 3)], fn: (x) => tf.cumsum(x, 1) },
  {
    name: 'cumsum axis -1 exclusive reverse',
    kernels: ['Cumsum'],
    inputs: [n(2, 3, 6)],
    fn: (x) => tf.cumsum(x, -1, true, true),
  },
  {
    name: 'log-space scan chunk: exp(cumsum(delta * A)) * cumsum(u)',
    kernels: ['Cumsum', 'Exp', 'Multiply', 'Softplus'],
    inputs: [n(2, 6, 3), n(3), n(2, 6, 3)],
    fn: (delta, a, u) => {
      const dA = tf.mul(tf.softplus(delta), tf.neg(tf.exp(a))); // [b, l, e] negative
      return tf.mul(tf.exp(tf.cumsum(dA, 1)), tf.cumsum(u, 1));
    },
  },
  // --- matrix products --------------------------------------------------------------------------
  { name: 'matMul 2-D', kernels: ['BatchMatMul'], inputs: [n(5, 4), n(4, 3)], fn: (a, b) => tf.matMul(a, b) },
  {
    name: 'matMul 2-D transposeA transposeB',
    kernels: ['BatchMatMul'],
    inputs: [n(4, 5), n(3, 4)],
    fn: (a, b) => tf.matMul(a, b, true, true),
  },
  {
    name: 'matMul tokens [b, l, d] @ weight [d, e]',
    kernels: ['BatchMatMul'],
    inputs: [n(2, 6, 4), n(4, 3)],
    fn: (a, b) => tf.matMul(a, b),
  },
  {
    name: 'matMul per-direction weights [k, r, e] @ [k, e, l]',
    kernels: ['BatchMatMul'],
    inputs: [n(4, 3, 5), n(4, 5, 6)],
    fn: (a, b) => tf.matMul(a, b),
  },
  {
    name: 'matMul broadcast [1, m, k] @ [b, k, n], transposeB',
    kernels: ['BatchMatMul'],
    inputs: [n(1, 3, 5), n(4, 2, 5)],
    fn: (a, b) => tf.matMul(a, b, false, true),
  },
  {
    name: 'matMul [b, l, d] @ [d, e], large enough for the wasm rewrite',
    kernels: ['BatchMatMul'],
    inputs: [n(2, 40, 32), n(32, 48)],
    fn: (a, b) => tf.matMul(a, b),
  },
  {
    name: 'matMul transposeA transposeB, large enough for the wasm rewrite',
    kernels: ['BatchMatMul'],
    inputs: [n(2, 32, 40), n(48, 32)],
    fn: (a, b) => tf.matMul(a, b, true, true),
  },
  {
    name: 'fused matMul + bias + relu',
    kernels: ['_FusedMatMul'],
    inputs: [n(6, 4), n(4, 3), n(3)],
    fn: (a, b, bias) => tf.fused.matMul({ a, b, bias, activation: 'relu' }),
    smooth: false,
  },
  {
    // (a broadcast b fails upstream: fused matMul's own customGrad does not reduce it; use tf.matMul)
    name: 'fused matMul transposeB + bias, equal batches',
    kernels: ['_FusedMatMul'],
    inputs: [n(2, 40, 32), n(2, 48, 32), n(48)],
    fn: (a, b, bias) => tf.fused.matMul({ a, b, bias, transposeB: true }),
  },
  // --- convolutions -----------------------------------------------------------------------------
  {
    name: 'conv2d 3x3 stride 2 pad 1 (stem)',
    kernels: ['Conv2D'],
    inputs: [n(2, 8, 8, 3), n(3, 3, 3, 4)],
    fn: (x, f) => tf.conv2d(t4(x), t4(f), 2, pad1),
  },
  {
    name: 'conv2d 3x3 stride 1 same',
    kernels: ['Conv2D'],
    inputs: [n(2, 5, 5, 3), n(3, 3, 3, 4)],
    fn: (x, f) => tf.conv2d(t4(x), t4(f), 1, 'same'),
  },
  {
    name: 'conv2d 1x1 (pointwise)',
    kernels: ['Conv2D'],
    inputs: [n(2, 4, 4, 6), n(1, 1, 6, 3)],
    fn: (x, f) => tf.conv2d(t4(x), t4(f), 1, 'valid'),
  },
  {
    name: 'fused conv2d + bias + relu',
    kernels: ['FusedConv2D'],
    inputs: [n(2, 6, 6, 3), n(3, 3, 3, 4), n(4)],
    fn: (x, f, bias) => tf.fused.conv2d({ x: t4(x), filter: t4(f), strides: 2, pad: 'same', bias, activation: 'relu' }),
    smooth: false,
  },
  {
    name: 'depthwise 3x3 multiplier 1 same',
    kernels: ['DepthwiseConv2dNative'],
    inputs: [n(2, 5, 5, 4), n(3, 3, 4, 1)],
    fn: (x, f) => tf.depthwiseConv2d(t4(x), t4(f), 1, 'same'),
  },
  {
    name: 'depthwise 3x3 multiplier 2 pad 1',
    kernels: ['DepthwiseConv2dNative'],
    inputs: [n(2, 5, 5, 4), n(3, 3, 4, 2)],
    fn: (x, f) => tf.depthwiseConv2d(t4(x), t4(f), 1, pad1),
  },
  {
    name: 'depthwise 3x3 stride 2 valid',
    kernels: ['DepthwiseConv2dNative'],
    inputs: [n(2, 7, 7, 3), n(3, 3, 3, 2)],
    fn: (x, f) => tf.depthwiseConv2d(t4(x), t4(f), 2, 'valid'),
  },
  {
    name: 'fused depthwise + bias',
    kernels: ['FusedDepthwiseConv2D'],
    inputs: [n(2, 5, 5, 4), n(3, 3, 4, 1), n(4)],
    fn: (x, f, bias) => tf.fused.depthwiseConv2d({ x: t4(x), filter: t4(f), strides: 1, pad: 'same', bias }),
  },
  // --- normalisation, pooling, resizing -----------------------------------------------------------
  {
    name: 'batchNorm (inference form, every input)',
    kernels: ['FusedBatchNorm'],
    inputs: [n(2, 3, 3, 4), n(4), pos(4), n(4), n(4)],
    fn: (x, mean, variance, offset, scale) => tf.batchNorm(x, mean, variance, offset, scale, 1e-5),
  },
  {
    name: 'batch-norm training statistics',
    kernels: ['Mean', 'Sub', 'Square', 'Rsqrt', 'Multiply', 'Add'],
    inputs: [n(2, 3, 3, 4), n(4), n(4)],
    fn: (x, g, b) => {
      const { mean, variance } = tf.moments(x, [0, 1, 2]);
      return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
    },
  },
  {
    name: 'layerNorm (last axis, eps 1e-5)',
    kernels: ['Mean', 'Sub', 'Square', 'Rsqrt', 'Multiply', 'Add'],
    inputs: [n(2, 3, 6), n(6), n(6)],
    fn: layerNorm,
  },
  {
    name: 'avgPool 2x2 stride 2',
    kernels: ['AvgPool'],
    inputs: [n(2, 4, 4, 3)],
    fn: (x) => tf.avgPool(t4(x), 2, 2, 'valid'),
  },
  {
    name: 'maxPool 3x3 stride 2 same',
    kernels: ['MaxPool'],
    inputs: [n(2, 5, 5, 3)],
    fn: (x) => tf.maxPool(t4(x), 3, 2, 'same'),
    smooth: false,
  },
  {
    name: 'maxPool 2x2 stride 2 over mostly negative windows',
    kernels: ['MaxPool'],
    inputs: [n(2, 4, 4, 3)],
    fn: (x) => tf.maxPool(t4(tf.sub(x, 2)), 2, 2, 'valid'),
    smooth: false,
  },
  {
    name: 'resizeBilinear 4x4 -> 6x6',
    kernels: ['ResizeBilinear'],
    inputs: [n(2, 4, 4, 3)],
    fn: (x) => tf.image.resizeBilinear(t4(x), [6, 6]),
  },
];

/** Seeded input values for a case (deterministic per seed and input position). */
export function sampleInputs(
  c: OpGradientCase,
  seed: number,
): Array<{ values: Float32Array | Int32Array; dtype: 'float32' | 'int32' }> {
  return c.inputs.map((spec, i) => {
    const rng = new Rng(seed * 1000 + i);
    const size = spec.shape.reduce((p, v) => p * v, 1);
    switch (spec.kind ?? 'normal') {
      case 'int':
        return { values: Int32Array.from({ length: size }, () => rng.int(spec.max ?? 2)), dtype: 'int32' };
      case 'mask':
        return { values: Float32Array.from({ length: size }, () => (rng.uniform() < 0.5 ? 0 : 1)), dtype: 'float32' };
      case 'positive':
        return { values: rng.fillNormal(size).map((v) => 0.5 + Math.abs(v)), dtype: 'float32' };
      default:
        return { values: rng.fillNormal(size), dtype: 'float32' };
    }
  });
}

/** Positions of the inputs a case differentiates with respect to. */
export function differentiableInputs(c: OpGradientCase): number[] {
  return c.inputs.flatMap((spec, i) => (spec.constant || spec.kind === 'int' || spec.kind === 'mask' ? [] : [i]));
}

/** The kernel names the table covers (sorted, unique). */
export function coveredKernels(): string[] {
  return [...new Set(OP_GRADIENT_CASES.flatMap((c) => c.kernels))].sort();
}
