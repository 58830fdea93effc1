/**
 * The tfjs 4.22 fixes of lib/backend (gradient-fixes.ts and the wasm kernels listed in registrations.ts), each checked against an
 * independent reference: the cpu backend's own kernels (conv / depthwise backprop, segment sum, matMul),
 * plain-JS sums (cumsum, strided slice) or the same product with the broadcast made explicit (BatchMatMul).
 * Tolerance (docs/platform.md §Bit-identity policy): max abs diff <= 1e-4 x output scale.
 */
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import {
  assertClose,
  assertNoLeak,
  assertSameGrads,
  evalGrads,
  gradsOn,
  ints,
  normal,
  Sample,
  setupBackends,
} from './backend.helpers';
import { Rng } from '../lib/util/random';

type Pad = 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]];
const explicit = (t: number, b: number, l: number, r: number): Pad => [
  [0, 0],
  [t, b],
  [l, r],
  [0, 0],
];

before(async () => {
  await setupBackends();
});

describe('Conv2D gradients on wasm match the cpu kernels', () => {
  const pads: Array<[string, Pad]> = [
    ['same', 'same'],
    ['valid', 'valid'],
    ['explicit 1', explicit(1, 1, 1, 1)],
    ['explicit asym', explicit(0, 2, 2, 1)],
  ];
  const cases: Array<{ k: [number, number]; s: [number, number]; pad: [string, Pad] }> = [];
  for (const s of [1, 2]) for (const pad of pads) cases.push({ k: [3, 3], s: [s, s], pad });
  cases.push({ k: [1, 1], s: [1, 1], pad: pads[1] }); // the matMul path
  cases.push({ k: [1, 1], s: [2, 2], pad: pads[1] });
  cases.push({ k: [1, 1], s: [1, 1], pad: ['explicit', explicit(1, 0, 0, 1)] });
  cases.push({ k: [2, 2], s: [2, 2], pad: pads[1] }); // patchify
  cases.push({ k: [5, 3], s: [2, 2], pad: pads[0] });
  cases.push({ k: [3, 3], s: [1, 2], pad: pads[0] });
  for (const xShape of [
    [2, 7, 6, 3],
    [2, 8, 8, 3],
  ]) {
    for (const c of cases) {
      const label = `x ${xShape.join('x')} k ${c.k.join('x')} s ${c.s.join(',')} ${c.pad[0]}`;
      test(label, async () => {
        const inputs = [normal(xShape, 1), normal([c.k[0], c.k[1], 3, 4], 2, 0.5)];
        const fn = (x: tf.Tensor, f: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, c.s, c.pad[1]);
        const wasm = await gradsOn('wasm', fn, inputs, [0, 1]);
        const cpu = await gradsOn('cpu', fn, inputs, [0, 1]);
        assertSameGrads(wasm, cpu, label);
      });
    }
  }

  test('fused conv2d (bias + relu) gradients, stride 2 explicit', async () => {
    const inputs = [normal([2, 8, 8, 3], 3), normal([3, 3, 3, 5], 4), normal([5], 5)];
    const fn = (x: tf.Tensor, f: tf.Tensor, bias: tf.Tensor) =>
      tf.fused.conv2d({
        x: x as tf.Tensor4D,
        filter: f as tf.Tensor4D,
        strides: 2,
        pad: explicit(1, 1, 1, 1),
        bias,
        activation: 'relu',
      });
    assertSameGrads(await gradsOn('wasm', fn, inputs, [0, 1, 2]), await gradsOn('cpu', fn, inputs, [0, 1, 2]), 'fused');
  });

  test('the backprop kernels accept NCHW too', async () => {
    const x = normal([2, 3, 7, 6], 6); // NCHW
    const dy = normal([2, 4, 4, 3], 7); // NCHW output of a 3x3 stride-2 'same' conv
    const filter = normal([3, 3, 3, 4], 8);
    const attrs = { strides: [2, 2], pad: 'same', dataFormat: 'NCHW' };
    const run = async (backend: 'wasm' | 'cpu') => {
      await tf.setBackend(backend);
      return tf.tidy(() => {
        const xt = tf.tensor(x.values, x.shape);
        const dyt = tf.tensor(dy.values, dy.shape);
        const ft = tf.tensor(filter.values, filter.shape);
        const e = tf.engine();
        const dW = e.runKernel('Conv2DBackpropFilter', { x: xt, dy: dyt }, {
          ...attrs,
          filterShape: [3, 3, 3, 4],
        } as unknown as tf.NamedAttrMap);
        const dX = e.runKernel('Conv2DBackpropInput', { dy: dyt, filter: ft }, {
          ...attrs,
          inputShape: x.shape,
        } as unknown as tf.NamedAttrMap);
        return [(dW as tf.Tensor).dataSync().slice(), (dX as tf.Tensor).dataSync().slice()];
      });
    };
    const [w1, x1] = await run('wasm');
    const [w2, x2] = await run('cpu');
    assertClose(w1, w2, 'NCHW filter gradient');
    assertClose(x1, x2, 'NCHW input gradient');
  });
});

describe('DepthwiseConv2dNative gradients on wasm match the cpu kernels', () => {
  const pads: Array<[string, Pad]> = [
    ['same', 'same'],
    ['valid', 'valid'],
    ['explicit 1', explicit(1, 1, 1, 1)],
    ['explicit asym', explicit(2, 0, 0, 1)],
  ];
  for (const m of [1, 2])
    for (const s of [1, 2])
      for (const [pname, pad] of pads) {
        const label = `multiplier ${m} stride ${s} ${pname}`;
        test(label, async () => {
          const inputs = [normal([2, 7, 6, 3], 11), normal([3, 3, 3, m], 12, 0.5)];
          const fn = (x: tf.Tensor, f: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, s, pad);
          assertSameGrads(await gradsOn('wasm', fn, inputs, [0, 1]), await gradsOn('cpu', fn, inputs, [0, 1]), label);
        });
      }

  test('batch 1, 5x5 filter, stride [2, 1]', async () => {
    const inputs = [normal([1, 9, 8, 4], 13), normal([5, 5, 4, 2], 14, 0.3)];
    const fn = (x: tf.Tensor, f: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, [2, 1], 'same');
    assertSameGrads(await gradsOn('wasm', fn, inputs, [0, 1]), await gradsOn('cpu', fn, inputs, [0, 1]), '5x5');
  });

  test('fused depthwise (bias + relu) gradients', async () => {
    const inputs = [normal([2, 6, 6, 4], 15), normal([3, 3, 4, 2], 16), normal([8], 17)];
    const fn = (x: tf.Tensor, f: tf.Tensor, bias: tf.Tensor) =>
      tf.fused.depthwiseConv2d({
        x: x as tf.Tensor4D,
        filter: f as tf.Tensor4D,
        strides: 1,
        pad: 'same',
        bias,
        activation: 'relu',
      });
    assertSameGrads(await gradsOn('wasm', fn, inputs, [0, 1, 2]), await gradsOn('cpu', fn, inputs, [0, 1, 2]), 'fused');
  });

  test('no tensors leak through the composite kernels', async () => {
    await tf.setBackend('wasm');
    const inputs = [normal([2, 8, 8, 3], 18), normal([3, 3, 3, 2], 19)];
    const fn = (x: tf.Tensor, f: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, f as tf.Tensor4D, 2, 'same');
    const conv = (x: tf.Tensor, f: tf.Tensor) =>
      tf.conv2d(x as tf.Tensor4D, tf.reshape(f, [3, 3, 3, 2]) as tf.Tensor4D, 2, 'same');
    evalGrads(fn, inputs, [0, 1]); // warm-up
    await assertNoLeak('depthwise + conv gradients', () => {
      for (let i = 0; i < 3; i++) {
        evalGrads(fn, inputs, [0, 1]);
        evalGrads(conv, inputs, [0, 1]);
      }
    });
  });
});

describe('Cumsum gradient for any axis', () => {
  /** d/dx sum(cumsum(x) * r) in plain JS: x[j] feeds y[i] for j <= i (< for exclusive; reversed: >=, >). */
  function expectedCumsumGrad(shape: number[], r: Float32Array, axis: number, exclusive: boolean, reverse: boolean) {
    const strides = tf.util.computeStrides(shape).concat([1]);
    const n = shape[axis];
    const g = new Float32Array(r.length);
    for (let flat = 0; flat < r.length; flat++) {
      const pos = Math.floor(flat / strides[axis]) % n; // this element's index along the axis
      const base = flat - pos * strides[axis];
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const feeds = reverse ? (exclusive ? pos > i : pos >= i) : exclusive ? pos < i : pos <= i;
        if (feeds) acc += r[base + i * strides[axis]];
      }
      g[flat] = acc;
    }
    return g;
  }
  const shape = [3, 5, 4];
  for (const axis of [0, 1, 2, -2])
    for (const exclusive of [false, true])
      for (const reverse of [false, true]) {
        const label = `axis ${axis} exclusive ${exclusive} reverse ${reverse}`;
        test(label, async () => {
          const x = normal(shape, 21);
          const fn = (t: tf.Tensor) => tf.cumsum(t, axis, exclusive, reverse);
          const r = new Rng(99).fillNormal(60); // the seed evalGrads uses for r
          const expected = expectedCumsumGrad(shape, r, axis < 0 ? axis + 3 : axis, exclusive, reverse);
          for (const backend of ['wasm', 'cpu'] as const) {
            const got = await gradsOn(backend, fn, [x], [0]);
            assertClose(got.grads[0], expected, `${backend} ${label}`);
          }
        });
      }
});

describe('BatchMatMul gradient with a broadcast operand (tfjs#8721)', () => {
  /** Shapes as used in the forward product (before transposes are applied). */
  const cases: Array<[number[], number[]]> = [
    [
      [4, 3, 5],
      [5, 2],
    ],
    [
      [1, 3, 5],
      [4, 5, 2],
    ],
    [
      [3, 5],
      [4, 5, 2],
    ],
    [
      [4, 3, 5],
      [1, 5, 2],
    ],
    [
      [2, 3, 3, 5],
      [5, 2],
    ],
    [
      [4, 3, 5],
      [4, 5, 2],
    ],
    [
      [4, 24, 40],
      [40, 36],
    ], // above the size where the wasm kernel reorganises the product
    [
      [24, 40],
      [3, 40, 36],
    ],
    [
      [3, 24, 40],
      [3, 40, 36],
    ],
  ];
  const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
  for (const [sa, sb] of cases)
    for (const tA of [false, true])
      for (const tB of [false, true]) {
        const label = `[${sa}] @ [${sb}] transposeA ${tA} transposeB ${tB}`;
        test(label, async () => {
          const a = normal(tA ? swap(sa) : sa, 31);
          const b = normal(tB ? swap(sb) : sb, 32);
          const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(sa.slice(0, -2), sb.slice(0, -2));
          const fn = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB);
          // Reference: broadcast made explicit, so BatchMatMul sees equal batches; BroadcastTo's gradient sums.
          const explicitFn = (x: tf.Tensor, y: tf.Tensor) => {
            const full = (t: tf.Tensor) => tf.broadcastTo(t, [...outBatch, ...t.shape.slice(-2)]);
            return tf.matMul(full(x), full(y), tA, tB);
          };
          const reference = await gradsOn('cpu', explicitFn, [a, b], [0, 1]);
          for (const backend of ['wasm', 'cpu'] as const) {
            const got = await gradsOn(backend, fn, [a, b], [0, 1]);
            assertSameGrads(got, reference, `${backend} ${label}`);
          }
        });
      }
});

describe('wasm BatchMatMul / _FusedMatMul rewrite matches the cpu backend', () => {
  test('forward products for every transpose and batch layout', async () => {
    const layouts: Array<[number[], number[]]> = [
      [
        [48, 64],
        [64, 40],
      ],
      [
        [3, 48, 64],
        [64, 40],
      ],
      [
        [48, 64],
        [3, 64, 40],
      ],
      [
        [3, 48, 64],
        [3, 64, 40],
      ],
      [
        [2, 2, 48, 64],
        [1, 64, 40],
      ],
    ];
    const swap = (s: number[]) => [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]];
    for (const [sa, sb] of layouts)
      for (const tA of [false, true])
        for (const tB of [false, true]) {
          const a = normal(tA ? swap(sa) : sa, 41);
          const b = normal(tB ? swap(sb) : sb, 42);
          const fn = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, tA, tB);
          const w = await gradsOn('wasm', fn, [a, b], [0, 1]);
          const c = await gradsOn('cpu', fn, [a, b], [0, 1]);
          assertSameGrads(w, c, `[${sa}] @ [${sb}] tA ${tA} tB ${tB}`);
        }
  });

  test('fused matMul with bias and relu, transposed and batched', async () => {
    const cases: Array<{ a: number[]; b: number[]; bias: number[]; tA: boolean; tB: boolean }> = [
      { a: [64, 48], b: [40, 64], bias: [40], tA: true, tB: true },
      { a: [48, 64], b: [40, 64], bias: [40], tA: false, tB: true },
      { a: [3, 48, 64], b: [64, 40], bias: [40], tA: false, tB: false },
      { a: [3, 48, 64], b: [3, 40, 64], bias: [40], tA: false, tB: true }, // equal batches: stock kernel
    ];
    for (const c of cases) {
      const inputs: Sample[] = [normal(c.a, 43), normal(c.b, 44), normal(c.bias, 45)];
      const fn = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) =>
        tf.fused.matMul({ a, b, transposeA: c.tA, transposeB: c.tB, bias, activation: 'relu' });
      const wasm = await gradsOn('wasm', fn, inputs, [0, 1, 2]);
      const cpu = await gradsOn('cpu', fn, inputs, [0, 1, 2]);
      assertSameGrads(wasm, cpu, `fused ${JSON.stringify(c)}`);
    }
  });
});

describe('gather gradient on wasm (UnsortedSegmentSum kernel)', () => {
  test('UnsortedSegmentSum kernel: dropped ids, rank-2 ids, int32 values', async () => {
    /** out[s, j] = sum of x[i, j] over i with ids[i] = s; out-of-range ids are dropped (TF semantics). */
    const reference = (x: Sample, ids: Sample, numSegments: number) => {
      const inner = x.values.length / ids.values.length;
      const out = new Array<number>(numSegments * inner).fill(0);
      ids.values.forEach((s, i) => {
        if (s < 0 || s >= numSegments) return;
        for (let j = 0; j < inner; j++) out[s * inner + j] += x.values[i * inner + j];
      });
      return out;
    };
    const run = async (backend: 'wasm' | 'cpu', x: Sample, ids: Sample, numSegments: number) => {
      await tf.setBackend(backend);
      return tf.tidy(() =>
        tf
          .unsortedSegmentSum(
            tf.tensor(x.values, x.shape, x.dtype),
            tf.tensor(ids.values, ids.shape, 'int32') as unknown as tf.Tensor1D, // rank-2 ids are allowed too
            numSegments,
          )
          .dataSync()
          .slice(),
      );
    };
    const xs: Array<[Sample, Sample, number]> = [
      [normal([6, 4], 51), ints([6], [0, 2, 2, -1, 5, 1]), 4],
      [normal([2, 3, 4], 52), ints([2, 3], [1, 0, 1, 2, 2, 0]), 3],
      [ints([5, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), ints([5], [1, 1, 0, 3, 1]), 4],
    ];
    for (const [x, ids, n] of xs) {
      const expected = reference(x, ids, n);
      const w = await run('wasm', x, ids, n);
      assertClose(w, expected, `wasm segment sum x ${x.shape} ids ${ids.shape}`, 1e-6);
      if (ids.shape.length === 1) {
        // (the cpu kernel itself rejects rank-2 ids)
        assertClose(await run('cpu', x, ids, n), expected, `cpu segment sum x ${x.shape}`, 1e-6);
      }
    }
  });

  const gathers: Array<{ x: number[]; idx: number[]; idxShape: number[]; axis: number }> = [
    { x: [5, 3], idx: [4, 0, 4, 2, 1, 4], idxShape: [6], axis: 0 },
    { x: [2, 5, 3], idx: [1, 1, 3, 0], idxShape: [2, 2], axis: 1 },
    { x: [2, 5, 3], idx: [2, 0, 2], idxShape: [3], axis: -1 },
  ];
  for (const g of gathers) {
    test(`gather x [${g.x}] indices [${g.idxShape}] axis ${g.axis}`, async () => {
      const inputs = [normal(g.x, 53), ints(g.idxShape, g.idx)];
      const fn = (x: tf.Tensor, i: tf.Tensor) => tf.gather(x, i, g.axis);
      assertSameGrads(await gradsOn('wasm', fn, inputs, [0]), await gradsOn('cpu', fn, inputs, [0]), 'gather');
    });
  }
});

describe('StridedSlice gradient (none upstream)', () => {
  const specs: Array<{
    name: string;
    begin: number[];
    end: number[];
    strides: number[];
    masks?: [number, number, number, number, number];
  }> = [
    { name: 'phases [::, ::2, 1::2]', begin: [0, 0, 1], end: [4, 6, 5], strides: [1, 2, 2] },
    { name: 'contiguous block', begin: [1, 2, 0], end: [3, 5, 5], strides: [1, 1, 1] },
    { name: 'reversed, stride -2', begin: [3, 5, 4], end: [0, 0, 0], strides: [-1, -2, -1], masks: [0, 7, 0, 0, 0] },
    // Shrink with a stride != 1 elsewhere is misread by tfjs 4.22's forward kernels (cpu throws, wasm reads
    // past the input), so the shrink case keeps unit strides.
    { name: 'shrink axis 0', begin: [2, 0, 0], end: [3, 6, 5], strides: [1, 1, 1], masks: [0, 0, 0, 0, 1] },
    {
      name: 'end mask, stride 2 on the last axis',
      begin: [1, 4, 0],
      end: [0, 0, 0],
      strides: [1, 1, 2],
      masks: [0, 7, 0, 0, 0],
    },
    { name: 'new axis + ellipsis', begin: [0, 0, 1], end: [0, 0, 5], strides: [1, 1, 2], masks: [0, 0, 1, 2, 0] },
  ];
  const shape = [4, 6, 5];
  for (const s of specs) {
    test(s.name, async () => {
      const [bm, em, ell, na, sh] = s.masks ?? [0, 0, 0, 0, 0];
      const slice = (t: tf.Tensor) => tf.stridedSlice(t, s.begin, s.end, s.strides, bm, em, ell, na, sh);
      // Reference: slice a tensor of flat positions, then add r at the positions that were read.
      await tf.setBackend('cpu');
      const src = tf.tidy(() =>
        slice(tf.reshape(tf.range(0, 120, 1, 'float32'), shape))
          .dataSync()
          .slice(),
      );
      const r = new Rng(99).fillNormal(src.length);
      const expected = new Float32Array(120);
      src.forEach((pos, k) => (expected[pos] += r[k]));
      for (const backend of ['wasm', 'cpu'] as const) {
        const got = await gradsOn(backend, slice, [normal(shape, 61)], [0]);
        assertClose(got.grads[0], expected, `${backend} ${s.name}`);
      }
    });
  }
});

describe('MaxPoolGrad on wasm (stock kernel mis-handles all-negative windows)', () => {
  const configs: Array<{ k: number; s: number; pad: 'same' | 'valid'; h: number; shift: number }> = [
    { k: 2, s: 2, pad: 'valid', h: 4, shift: -3 }, // every window negative
    { k: 2, s: 2, pad: 'same', h: 5, shift: 0 },
    { k: 3, s: 2, pad: 'same', h: 5, shift: -1 },
    { k: 3, s: 1, pad: 'same', h: 4, shift: 0 },
  ];
  for (const c of configs) {
    const label = `maxPool ${c.k}x${c.k} stride ${c.s} ${c.pad} on ${c.h}x${c.h}, inputs shifted by ${c.shift}`;
    test(label, async () => {
      const fn = (x: tf.Tensor) => tf.maxPool(tf.add(x, c.shift) as tf.Tensor4D, c.k, c.s, c.pad);
      const inputs = [normal([2, c.h, c.h, 3], 71)];
      const wasm = await gradsOn('wasm', fn, inputs, [0]);
      const cpu = await gradsOn('cpu', fn, inputs, [0]);
      assertSameGrads(wasm, cpu, label);
      // Independent reference: the max of each window moves one-for-one with its argmax input.
      const x = inputs[0].values;
      const r = new Rng(99).fillNormal(wasm.y.length);
      const [, ho, wo] = wasm.yShape;
      const pt = c.pad === 'same' ? Math.floor(Math.max((ho - 1) * c.s + c.k - c.h, 0) / 2) : 0;
      const expected = new Float32Array(x.length);
      for (let b = 0; b < 2; b++)
        for (let oy = 0; oy < ho; oy++)
          for (let ox = 0; ox < wo; ox++)
            for (let ch = 0; ch < 3; ch++) {
              let best = -Infinity;
              let at = -1;
              for (let fy = 0; fy < c.k; fy++)
                for (let fx = 0; fx < c.k; fx++) {
                  const iy = oy * c.s - pt + fy;
                  const ix = ox * c.s - pt + fx;
                  if (iy < 0 || ix < 0 || iy >= c.h || ix >= c.h) continue;
                  const idx = ((b * c.h + iy) * c.h + ix) * 3 + ch;
                  if (x[idx] > best) [best, at] = [x[idx], idx];
                }
              expected[at] += r[((b * ho + oy) * wo + ox) * 3 + ch];
            }
      assertClose(wasm.grads[0], expected, `${label} vs argmax reference`);
    });
  }
});

describe('broadcasting SquaredDifference / Maximum / Minimum gradients', () => {
  const ops: Array<[string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
    ['squaredDifference', tf.squaredDifference],
    ['maximum', tf.maximum],
    ['minimum', tf.minimum],
  ];
  const shapes: Array<[number[], number[]]> = [
    [[3, 4], [4]],
    [
      [2, 1, 4],
      [3, 1],
    ],
    [[3], [2, 3]],
  ];
  for (const [name, op] of ops)
    for (const [sa, sb] of shapes) {
      const label = `${name} [${sa}] with [${sb}]`;
      test(label, async () => {
        const inputs = [normal(sa, 81), normal(sb, 82)];
        const out = tf.broadcast_util.assertAndGetBroadcastShape(sa, sb);
        // Reference: both operands broadcast explicitly (BroadcastTo's gradient does the sums).
        const explicitFn = (a: tf.Tensor, b: tf.Tensor) => op(tf.broadcastTo(a, out), tf.broadcastTo(b, out));
        const reference = await gradsOn('cpu', explicitFn, inputs, [0, 1]);
        for (const backend of ['wasm', 'cpu'] as const) {
          assertSameGrads(await gradsOn(backend, op, inputs, [0, 1]), reference, `${backend} ${label}`);
        }
      });
    }
});

describe('MirrorPad gradient', () => {
  const cases: Array<{ shape: number[]; paddings: Array<[number, number]>; mode: 'reflect' | 'symmetric' }> = [
    {
      shape: [4, 5],
      paddings: [
        [1, 2],
        [3, 1],
      ],
      mode: 'reflect',
    },
    {
      shape: [4, 5],
      paddings: [
        [2, 0],
        [1, 4],
      ],
      mode: 'symmetric',
    },
    {
      shape: [1, 4, 4, 2],
      paddings: [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ],
      mode: 'reflect',
    },
  ];
  for (const c of cases) {
    const label = `${c.mode} ${JSON.stringify(c.paddings)} on [${c.shape}]`;
    test(label, async () => {
      const fn = (x: tf.Tensor) => tf.mirrorPad(x, c.paddings, c.mode);
      // Reference: mirror-pad a tensor of flat positions, then add r at the positions that were copied.
      await tf.setBackend('cpu');
      const size = c.shape.reduce((p, v) => p * v, 1);
      const src = tf.tidy(() =>
        fn(tf.reshape(tf.range(0, size, 1, 'float32'), c.shape))
          .dataSync()
          .slice(),
      );
      const r = new Rng(99).fillNormal(src.length);
      const expected = new Float32Array(size);
      src.forEach((pos, k) => (expected[pos] += r[k]));
      for (const backend of ['wasm', 'cpu'] as const) {
        const got = await gradsOn(backend, fn, [normal(c.shape, 91)], [0]);
        assertClose(got.grads[0], expected, `${backend} ${label}`);
      }
    });
  }
});
