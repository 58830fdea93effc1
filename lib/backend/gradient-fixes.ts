/**
 * Gradient fixes for tfjs 4.22 (frozen upstream), registered once by ./registrations.ts.
 * See docs/platform.md §Gradient fixes for what is broken and why.
 *
 * Gradient registry (global, every backend):
 *   Cumsum        upstream transposes the result when axis != last -> shape error (tfjs-core Cumsum_grad.ts)
 *   BatchMatMul   upstream returns the un-reduced [batch, ...] gradient for a broadcast operand (tfjs#8721)
 *   StridedSlice  upstream has no gradient at all
 *   SquaredDifference, Maximum, Minimum   upstream does not sum the gradient of a broadcast input
 *                 back to its shape -> "gradient of input 'b' has shape [3,4] ... input [4]"
 *   MirrorPad     upstream slices the centre out of dy and drops the reflected border contributions
 *   Sum, Mean     upstream builds a full-size tensor of ones in JS for every call (mul(dy, ones(x.shape)))
 *                 -> broadcast dy instead: the same values, bit for bit, without the JS-side array
 *   Multiply      upstream casts the other operand to float32 even when it already is (a full copy per
 *                 gradient) -> no cast for float32; the same values
 * Kernel fixes live in files named by what they do (./matmul.ts, ./conv-gradients.ts, ./reductions.ts,
 * ./copies.ts, ...); ./registrations.ts lists them all.
 *
 * Glossary: M, K, N matMul rows / inner / cols; B flattened batch of the output; P, Q, R the rows,
 * inner and cols of one per-batch product in a gradient.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Cumsum (tfjs-core Cumsum_grad.ts): the gradient of an inclusive forward cumsum is a reverse cumsum of
 * dy along the same axis (exclusive stays exclusive). `tf.cumsum` already handles any axis, so the
 * upstream transpose that follows it is the bug.
 */
export const cumsumGrad: tf.GradConfig = {
  kernelName: tf.Cumsum,
  inputsToSave: ['x'],
  gradFunc: (dy, _saved, attrs) => {
    const a = attrs as unknown as { axis: number; exclusive: boolean; reverse: boolean };
    return { x: () => tf.cumsum(dy as tf.Tensor, a.axis, a.exclusive, !a.reverse) };
  },
};

// ---------------------------------------------------------------------------------------------------
// BatchMatMul with a broadcast operand (tfjs#8721)
// ---------------------------------------------------------------------------------------------------

const prod = (xs: number[]): number => xs.reduce((p, v) => p * v, 1);

/**
 * sum_i op(X_i) @ op(Y_i) over the B batch entries as ONE 2-D product: put the per-batch products side
 * by side, [op(X_1) ... op(X_B)] @ [op(Y_1); ...; op(Y_B)], so the batch joins the contraction.
 * This is the gradient of an operand that was broadcast over the batch (its B copies' gradients add up).
 */
function batchContracted(x: tf.Tensor, y: tf.Tensor, tX: boolean, tY: boolean, B: number): tf.Tensor {
  const xr = x.shape.length;
  const yr = y.shape.length;
  const [x0, x1] = [x.shape[xr - 2], x.shape[xr - 1]];
  const [y0, y1] = [y.shape[yr - 2], y.shape[yr - 1]];
  const x3 = tf.reshape(x, [B, x0, x1]); // [B, P, Q] or, when tX, [B, Q, P]
  const p = tX ? x1 : x0;
  const q = tX ? x0 : x1;
  const xSide = tf.reshape(tf.transpose(x3, tX ? [2, 0, 1] : [1, 0, 2]), [p, B * q]); // [P, B*Q]
  const y3 = tf.reshape(y, [B, y0, y1]); // [B, Q, R] or, when tY, [B, R, Q]
  const r = tY ? y0 : y1;
  const yStack = tf.reshape(tY ? tf.transpose(y3, [0, 2, 1]) : y3, [B * q, r]); // [B*Q, R]
  return tf.matMul(xSide, yStack); // [P, R]
}

/** Gradient of one operand, given its per-batch formula op(X_i) @ op(Y_i), reduced to its own shape. */
function operandGrad(target: tf.Tensor, outBatch: number[], x: tf.Tensor, y: tf.Tensor, tX: boolean, tY: boolean) {
  const targetBatch = target.shape.slice(0, -2);
  const B = prod(outBatch);
  if (prod(targetBatch) === B) return tf.reshape(tf.matMul(x, y, tX, tY), target.shape);
  if (prod(targetBatch) === 1) return tf.reshape(batchContracted(x, y, tX, tY, B), target.shape);
  // Partly broadcast batch dims: per-batch products, then sum the broadcast axes away.
  const full = tf.matMul(x, y, tX, tY); // [...outBatch, rows, cols]
  const axes = tf.broadcast_util.getReductionAxes(targetBatch, outBatch); // incl. leading axes it lacks
  return tf.reshape(tf.sum(full, axes), target.shape);
}

/**
 * BatchMatMul (tfjs-core BatchMatMul_grad.ts): per batch entry the usual matrix-product rules
 * (dA = dy op(B)^T, dB = op(A)^T dy, with the transposes of the four cases), then the gradient of a
 * broadcast operand is summed over the batch it was broadcast across.
 */
export const batchMatMulGrad: tf.GradConfig = {
  kernelName: tf.BatchMatMul,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const g = dy as tf.Tensor; // [...outBatch, M, N]
    const [a, b] = saved; // a: [...batchA, M, K] (or [.., K, M]), b: [...batchB, K, N] (or [.., N, K])
    const { transposeA: tA, transposeB: tB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const outBatch = g.shape.slice(0, -2);
    // Per-batch rules: dA_i = X_i' Y_i' with (X, Y, tX, tY) below, and likewise dB_i.
    const forA: [tf.Tensor, tf.Tensor, boolean, boolean] = tA
      ? tB
        ? [b, g, true, true] // a^T b^T: dA = b^T dy^T
        : [b, g, false, true] // a^T b: dA = b dy^T
      : tB
        ? [g, b, false, false] // a b^T: dA = dy b
        : [g, b, false, true]; // a b: dA = dy b^T
    const forB: [tf.Tensor, tf.Tensor, boolean, boolean] = tB
      ? tA
        ? [g, a, true, true] // dB = dy^T a^T
        : [g, a, true, false] // dB = dy^T a
      : tA
        ? [a, g, false, false] // dB = a dy
        : [a, g, true, false]; // dB = a^T dy
    return {
      a: () => operandGrad(a, outBatch, ...forA),
      b: () => operandGrad(b, outBatch, ...forB),
    };
  },
};

// ---------------------------------------------------------------------------------------------------
// StridedSlice
// ---------------------------------------------------------------------------------------------------

/**
 * StridedSlice has no upstream gradient. Output element k (a multi-index over the per-axis counts, shrunk
 * axes kept as 1) was read from x at begin + k * strides (tfjs-core stridedSliceImpl), so dx scatters dy
 * back there; contiguous slices become a pad.
 */
export const stridedSliceGrad: tf.GradConfig = {
  kernelName: tf.StridedSlice,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const g = dy as tf.Tensor;
    const a = attrs as unknown as tf.StridedSliceAttrs;
    return {
      x: () => {
        const info = tf.slice_util.sliceInfo(
          x.shape,
          a.begin,
          a.end,
          a.strides,
          a.beginMask,
          a.endMask,
          a.ellipsisMask,
          a.newAxisMask,
          a.shrinkAxisMask,
        );
        if (info.isIdentity) return tf.reshape(g, x.shape);
        if (info.isSimpleSlice || info.sliceDim0) {
          const size = tf.slice_util.computeOutShape(info.begin, info.end, info.strides);
          const pads = x.shape.map((d, i) => [info.begin[i], d - info.begin[i] - size[i]] as [number, number]);
          return tf.pad(tf.reshape(g, size), pads);
        }
        // Per axis of x, how many elements were read (shrunk axes: 1). Not info.finalShapeSparse, which
        // drops shrunk axes: tfjs 4.22's own strided-slice kernels misread shrink + stride != 1 that way.
        const shape = tf.slice_util.computeOutShape(info.begin, info.end, info.strides);
        const xStrides = tf.util.computeStrides(x.shape);
        const count = prod(shape);
        const idx = new Int32Array(count);
        const k = new Array<number>(shape.length).fill(0);
        for (let e = 0; e < count; e++) {
          let flat = 0;
          for (let d = 0; d < shape.length; d++) flat += (info.begin[d] + k[d] * info.strides[d]) * (xStrides[d] ?? 1);
          idx[e] = flat;
          for (let d = shape.length - 1; d >= 0; d--) {
            if (++k[d] < shape[d]) break;
            k[d] = 0;
          }
        }
        const indices = tf.tensor2d(idx, [count, 1], 'int32'); // [count, 1] flat positions in x
        return tf.reshape(tf.scatterND(indices, tf.reshape(g, [count]), [x.size]), x.shape);
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------------
// Broadcasting binary ops whose upstream gradients forget the reduction
// ---------------------------------------------------------------------------------------------------

/** Sum a gradient over the axes along which `shape` was broadcast, back to `shape`. */
function reduceTo(g: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.broadcast_util.getReductionAxes(shape, g.shape);
  return tf.reshape(axes.length > 0 ? tf.sum(g, axes) : g, shape);
}

/** (a - b)^2: d/da = 2 (a - b) dy, d/db = -2 (a - b) dy (tfjs-core SquaredDifference_grad.ts, plus reduction). */
export const squaredDifferenceGrad: tf.GradConfig = {
  kernelName: tf.SquaredDifference,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved;
    const g = () => tf.mul(dy as tf.Tensor, tf.mul(tf.sub(a, b), 2)); // broadcast shape
    return { a: () => reduceTo(g(), a.shape), b: () => reduceTo(tf.neg(g()), b.shape) };
  },
};

/** max(a, b): dy goes to a where a >= b, else to b (upstream's tie rule), then the reduction. */
export const maximumGrad: tf.GradConfig = {
  kernelName: tf.Maximum,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved;
    return {
      a: () => reduceTo(tf.mul(dy as tf.Tensor, tf.cast(tf.greaterEqual(a, b), 'float32')), a.shape),
      b: () => reduceTo(tf.mul(dy as tf.Tensor, tf.cast(tf.less(a, b), 'float32')), b.shape),
    };
  },
};

/** min(a, b): dy goes to a where a <= b, else to b, then the reduction. */
export const minimumGrad: tf.GradConfig = {
  kernelName: tf.Minimum,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved;
    return {
      a: () => reduceTo(tf.mul(dy as tf.Tensor, tf.cast(tf.lessEqual(a, b), 'float32')), a.shape),
      b: () => reduceTo(tf.mul(dy as tf.Tensor, tf.cast(tf.greater(a, b), 'float32')), b.shape),
    };
  },
};

// ---------------------------------------------------------------------------------------------------
// Sum, Mean and Multiply without the upstream temporaries (same values)
// ---------------------------------------------------------------------------------------------------

/** dy of a reduction of x over `axis`, reshaped to broadcast against x (the reduced axes kept as 1). */
function expandReduced(dy: tf.Tensor, x: tf.Tensor, axis: unknown): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis as number | number[], x.shape);
  return tf.reshape(
    dy,
    x.shape.map((s, i) => (axes.includes(i) ? 1 : s)),
  );
}

/** Σ: every x gets dy (upstream: dy · ones(x.shape), the same values). */
export const sumGrad: tf.GradConfig = {
  kernelName: tf.Sum,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    return { x: () => tf.broadcastTo(expandReduced(dy as tf.Tensor, x, attrs.axis), x.shape) };
  },
};

/** mean: every x gets dy / n (upstream: (dy · ones(x.shape)) / n; dy · 1 = dy, so the same values). */
export const meanGrad: tf.GradConfig = {
  kernelName: tf.Mean,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const n = x.size / Math.max((dy as tf.Tensor).size, 1);
    return { x: () => tf.broadcastTo(tf.div(expandReduced(dy as tf.Tensor, x, attrs.axis), n), x.shape) };
  },
};

/** a · b: d/da = dy · b, d/db = dy · a, summed back over broadcast axes (upstream, minus the float32 casts). */
export const multiplyGrad: tf.GradConfig = {
  kernelName: tf.Multiply,
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved) => {
    const [a, b] = saved;
    const asFloat = (t: tf.Tensor) => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
    const outShape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const der = (other: tf.Tensor, shape: number[]) => () => {
      const res = tf.mul(dy as tf.Tensor, asFloat(other));
      const axes = tf.broadcast_util.getReductionAxes(shape, outShape);
      return axes.length > 0 ? tf.reshape(tf.sum(res, axes), shape) : res;
    };
    return { a: der(b, a.shape), b: der(a, b.shape) };
  },
};

// ---------------------------------------------------------------------------------------------------
// MirrorPad
// ---------------------------------------------------------------------------------------------------

/**
 * MirrorPad pads each axis with a mirror image of its border, so a border cell of dy belongs to an
 * interior cell of x: fold the two border strips back (reversed) onto the centre, one axis at a time.
 * Along an axis of length n padded (p0, p1): 'reflect' mirrors around the edge cell (padded index i < p0
 * reads x[p0 - i]), 'symmetric' includes it (x[p0 - 1 - i]); likewise on the far side.
 */
export const mirrorPadGrad: tf.GradConfig = {
  kernelName: tf.MirrorPad,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const { paddings, mode } = attrs as unknown as { paddings: Array<[number, number]>; mode: 'reflect' | 'symmetric' };
    const edge = mode === 'reflect' ? 1 : 0; // reflect skips the edge cell itself
    return {
      x: () => {
        let g = dy as tf.Tensor;
        paddings.forEach(([p0, p1], axis) => {
          if (p0 === 0 && p1 === 0) return;
          const n = x.shape[axis];
          const part = (start: number, size: number) => {
            const begin = g.shape.map((_, i) => (i === axis ? start : 0));
            const sizes = g.shape.map((d, i) => (i === axis ? size : d));
            return tf.slice(g, begin, sizes);
          };
          const along = (before: number, after: number) =>
            g.shape.map((_, i) => (i === axis ? [before, after] : [0, 0]) as [number, number]);
          let centre = part(p0, n);
          if (p0 > 0) centre = tf.add(centre, tf.pad(tf.reverse(part(0, p0), axis), along(edge, n - edge - p0)));
          if (p1 > 0) {
            const start = n - edge - p1; // first x index the reversed far strip lands on
            centre = tf.add(centre, tf.pad(tf.reverse(part(p0 + n, p1), axis), along(start, n - start - p1)));
          }
          g = centre;
        });
        return g;
      },
    };
  },
};
