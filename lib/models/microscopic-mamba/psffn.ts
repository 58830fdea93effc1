/**
 * PSFFN — Partially Selected Feed-Forward Network (v2: LAEF), official L869–889, docs/architecture.md §PSFFN. It takes
 * the place of SS2D's out_proj.
 *
 * Shapes (NHWC):  b batch   h, w  map size   e  SS2D d_inner (input)   d  d_model (output)
 *                 p = floor(d·pRate), official pRate 1/4 (config `psffnRatio`; the paper's Fig. 4 sweeps it)
 *
 *   t      = SiLU(Conv1×1_{e→d}(y) + bias)                     [b, h, w, d]
 *   t1, t2 = split(t, [p, d − p])                               [b, h, w, p], [b, h, w, d−p]
 *   t1     = SiLU(DWConv3×3_p(t1) + bias)                       only a quarter of the channels is filtered
 *   out    = channel_shuffle(concat(t1, t2), groups = d/2)      [b, h, w, d]
 *
 * The official forward permutes NCHW → (0,3,2,1) before the shuffle and back with (0,3,1,2), which leaves
 * the map H/W-transposed (docs/architecture.md §Quirks Q1). Built with `transposeHW` it reproduces that: the shuffle
 * and the transpose are then one copy.
 *
 * How it is computed here: the split / filter-a-quarter / concat is FasterNet's partial convolution, and
 * it equals ONE depthwise conv over all d channels whose last d − p kernels are the identity (a centred
 * 1, bias 0), followed by SiLU on the first p channels only (a constant 0/1 channel mask). That is the
 * same arithmetic (the identity kernels add exact zeros) without the split and concat copies, which on
 * wasm cost more than the convolution itself, in the forward and again in the backward pass.
 */
import * as tf from '@tensorflow/tfjs';
import { Conv2d, Layer, reportConvMacs, reportElementwiseMacs, silu, siluFirstChannels } from '../../nn/index';
import { Rng } from '../../util/random';

export class PSFFN extends Layer {
  readonly conv_0: Conv2d;
  readonly conv_1: Conv2d;
  readonly pDim: number;
  private readonly identityKernels: Float32Array;

  constructor(
    readonly dim: number,
    readonly outDim: number,
    rng: Rng,
    /** Leave the output H/W-transposed, as the official permutes do (quirk Q1). */
    readonly transposeHW = false,
    /** Fraction of the d channels the depthwise 3×3 filters (official p_rate = 0.25, L871: int(out_dim·p_rate)). */
    pRate = 0.25,
  ) {
    super();
    if (outDim % 2 !== 0) throw new Error(`PSFFN: out_dim ${outDim} must be even (channel shuffle in pairs)`);
    this.pDim = Math.floor(outDim * pRate);
    if (this.pDim < 1) throw new Error(`PSFFN: out_dim ${outDim} leaves no channel for the partial conv`);
    this.conv_0 = this.addModule('conv_0', new Conv2d(dim, outDim, 1, { rng }));
    this.conv_1 = this.addModule('conv_1', new Conv2d(this.pDim, this.pDim, 3, { padding: 1, groups: this.pDim, rng }));
    const rest = outDim - this.pDim;
    this.identityKernels = new Float32Array(9 * rest); // [3, 3, d−p, 1]: 1 at the centre tap (1, 1)
    this.identityKernels.fill(1, 4 * rest, 5 * rest);
  }

  /** y [b, h, w, e] → [b, h, w, d], or [b, w, h, d] when `transposeHW` (the official quirk). */
  forward(y: tf.Tensor): tf.Tensor {
    const transposeHW = this.transposeHW;
    return tf.tidy(() => {
      const [b, h, w] = y.shape;
      const d = this.outDim;
      const p = this.pDim;
      const t = silu(this.conv_0.forward(y)) as tf.Tensor4D; // [b, h, w, d]
      // MACs of the official modules this computes without their forward: act(conv_0), and conv_1 + act
      // on the p filtered channels only (the identity kernels are not part of the official model).
      reportElementwiseMacs('SiLU', t.shape);
      reportConvMacs('Conv2d', [b, h, w, p], 9, p, p, true);
      reportElementwiseMacs('SiLU', [b, h, w, p]);
      // conv_1 on channels [0, p), identity on [p, d): one depthwise conv over all d channels.
      // (pRate 1 filters every channel: no identity part.)
      const kernel =
        p === d
          ? this.conv_1.weight
          : tf.concat([this.conv_1.weight, tf.tensor4d(this.identityKernels, [3, 3, d - p, 1])], 2); // [3, 3, d, 1]
      const bias = p === d ? this.conv_1.bias! : tf.concat([this.conv_1.bias!, tf.zeros([d - p])]); // [d]
      const pad: [[number, number], [number, number], [number, number], [number, number]] = [
        [0, 0],
        [1, 1],
        [1, 1],
        [0, 0],
      ];
      const u = tf.add(tf.depthwiseConv2d(t, kernel as tf.Tensor4D, 1, pad), bias); // [b, h, w, d]
      // SiLU on the filtered channels only: u·(σ(u)·m + (1 − m)) with m = 1 on [0, p), 0 on [p, d).
      const cat = siluFirstChannels(u, p).reshape([b, h, w, d / 2, 2]); // [b, h, w, groups, per] = concat(t1, t2)
      // channel_shuffle(groups = d/2): swap (groups, per); with the quirk, also swap h and w in the same copy.
      const perm = transposeHW ? [0, 2, 1, 4, 3] : [0, 1, 2, 4, 3];
      return cat.transpose(perm).reshape(transposeHW ? [b, w, h, d] : [b, h, w, d]);
    });
  }
}
