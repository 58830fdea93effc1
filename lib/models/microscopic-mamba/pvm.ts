/**
 * PVMLayer — the parallel VSSM (paper: Parallel Efficient Vision Mamba, PEVM), official L904–932,
 * docs/architecture.md §Parallel VSSM.
 *
 * Shapes (NHWC):  b batch   h, w  map size   c  SSM-branch width (C/2)   g  groups (4)   d = c/g
 *
 *   u            = LN(x)                                   x [b, h, w, c]
 *   u_1..u_g     = chunk(u, g, channels)                   [b, h, w, d] each
 *   v_i          = SS2D(u_i) + s · u_i                     ONE SS2D shared by the g groups; s = skip_scale
 *   out          = LN(concat(v_1..v_g))                    the SAME LayerNorm again (quirk Q4)
 *
 * The g calls share every weight, so the groups are stacked on the batch axis ([b·g, h, w, d]) and SS2D
 * runs once; the result is the same as g separate calls (and so are the MACs it reports: every count
 * is linear in the batch, and SS2D has no bias counted once per call). `proj` (Linear c → c) is created by the
 * official code and never used (quirk Q3).
 */
import * as tf from '@tensorflow/tfjs';
import { Layer, LayerNorm, Linear } from '../../nn/index';
import { SS2D, SS2DOptions } from './ss2d';
import type { InnerTapContext } from './taps';

export interface PVMOptions extends SS2DOptions {
  /** 4 (official parallel VSSM) or 1 (ablation: one SS2D over all c channels). */
  groups: number;
  /** Give the second LayerNorm its own weights (`norm_out`) instead of reusing `norm` (fix of quirk Q4). */
  separateNorms: boolean;
}

export class PVMLayer extends Layer {
  readonly skip_scale: tf.Variable; // [1]
  readonly norm: LayerNorm;
  readonly mamba: SS2D;
  readonly proj?: Linear;
  readonly norm_out?: LayerNorm;
  readonly groups: number;

  constructor(
    readonly dim: number,
    opts: PVMOptions,
  ) {
    super();
    this.groups = opts.groups;
    if (dim % opts.groups !== 0) throw new Error(`PVMLayer: ${dim} channels do not split into ${opts.groups} groups`);
    this.skip_scale = this.addParameter('skip_scale', tf.ones([1]));
    this.norm = this.addModule('norm', new LayerNorm(dim));
    this.mamba = this.addModule('mamba', new SS2D(dim / opts.groups, opts));
    if (opts.keepDeadParams) this.proj = this.addModule('proj', new Linear(dim, dim, { rng: opts.rng, dead: true }));
    if (opts.separateNorms) this.norm_out = this.addModule('norm_out', new LayerNorm(dim));
  }

  /** x [b, h, w, c] → [b, h, w, c]; `ctx` carries the SS2D's inner tap. */
  forward(x: tf.Tensor, ctx?: InnerTapContext): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const g = this.groups;
      const d = c / g;
      const u = this.norm.forward(x); // [b, h, w, c]
      // Stack the g channel groups on the batch axis: [b, h·w, g, d] → [b, g, h·w, d] = [b·g, h, w, d].
      // (A rank-4 transpose: tfjs-wasm's generic rank-5 path is ~30× slower for this permutation.)
      const ug =
        g === 1
          ? u
          : u
              .reshape([b, h * w, g, d])
              .transpose([0, 2, 1, 3])
              .reshape([b * g, h, w, d]);
      const vg = tf.add(this.mamba.forward(ug, ctx), tf.mul(ug, this.skip_scale)); // [b·g, h, w, d]
      const v =
        g === 1
          ? vg
          : vg
              .reshape([b, g, h * w, d])
              .transpose([0, 2, 1, 3])
              .reshape([b, h, w, c]); // [b, h, w, c]
      return (this.norm_out ?? this.norm).forward(v); // [b, h, w, c]
    });
  }
}
