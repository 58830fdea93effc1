/**
 * nn.Dropout(p): in training, each element is zeroed with probability p and the survivors are scaled by
 * 1/(1−p); the identity in eval mode or when p = 0. The mask comes from a tfjs generator seeded by one
 * draw of `ctx.rng`, so a seeded run is reproducible and no per-element JS loop runs.
 *
 * MACs: none reported — ptflops has no hook for nn.Dropout.
 */
import * as tf from '@tensorflow/tfjs';
import { defaultInitRng } from './init';
import { Layer } from './layers';
import type { ForwardContext } from './module';

export class Dropout extends Layer {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new Error(`Dropout: p must be in [0, 1), got ${p}`);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    const training = ctx?.training ?? this.training;
    if (!training || this.p === 0) return x;
    const keep = 1 - this.p;
    const seed = Math.floor((ctx?.rng ?? defaultInitRng).uniform() * 2 ** 31);
    return tf.tidy(() => {
      const u = tf.randomUniform(x.shape, 0, 1, 'float32', seed); // same shape as x
      const mask = tf.div(tf.cast(tf.less(u, keep), 'float32'), keep); // 0 or 1/keep
      return tf.mul(x, mask);
    });
  }
}
