/**
 * nn.BatchNorm1d over the feature (last) axis: x [b, c] (PyTorch (N, C)) or [b, l, c] (PyTorch (N, C, L),
 * here channels-last). Same numerics as BatchNorm2d: training normalises with the batch's biased variance
 * over every axis but the last and updates running_mean / running_var (momentum 0.1, running_var from the
 * unbiased variance n/(n−1)); eval normalises with the running statistics.
 *
 * Used by RepViT's head (`BN_Linear`: BatchNorm1d → Linear). MACs as ptflops' hook for nn.BatchNorm1d:
 * numel(input), ×2 with the affine parameters.
 */
import * as tf from '@tensorflow/tfjs';
import { constant } from './init';
import { Layer } from './layers';
import { reportMacs } from './macs';
import { ForwardContext } from './module';

export class BatchNorm1d extends Layer {
  readonly weight: tf.Variable; // [c]
  readonly bias: tf.Variable; // [c]
  readonly runningMean: tf.Variable; // [c]
  readonly runningVar: tf.Variable; // [c]

  constructor(
    readonly numFeatures: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
  ) {
    super();
    this.weight = this.addParameter('weight', constant([numFeatures], 1));
    this.bias = this.addParameter('bias', constant([numFeatures], 0));
    this.runningMean = this.addBuffer('running_mean', constant([numFeatures], 0));
    this.runningVar = this.addBuffer('running_var', constant([numFeatures], 1));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    if ((x.rank !== 2 && x.rank !== 3) || x.shape[x.rank - 1] !== this.numFeatures) {
      throw new Error(
        `BatchNorm1d(${this.numFeatures}): expected [b, ${this.numFeatures}] or [b, l, ${this.numFeatures}], got [${x.shape}]`,
      );
    }
    reportMacs('BatchNorm1d', x.size * 2);
    const training = ctx?.training ?? this.training;
    if (!training) {
      // y = x·scale + shift, scale = γ/√(running_var + eps), shift = β − running_mean·scale
      return tf.tidy(() => {
        const scale = tf.mul(this.weight, tf.rsqrt(tf.add(this.runningVar, this.eps))); // [c]
        const shift = tf.sub(this.bias, tf.mul(this.runningMean, scale)); // [c]
        return tf.add(tf.mul(x, scale), shift);
      });
    }
    const n = x.size / this.numFeatures;
    if (n < 2) {
      // PyTorch: "Expected more than 1 value per channel when training".
      throw new Error(
        `BatchNorm1d(${this.numFeatures}): training needs more than 1 value per channel, got input [${x.shape}]`,
      );
    }
    return tf.tidy(() => {
      const axes = x.shape.slice(0, -1).map((_, i) => i); // all but features
      const { mean, variance } = tf.moments(x, axes); // [c], [c] (biased)
      // Running statistics are state, not part of the loss.
      const m = this.momentum;
      const unbiased = tf.mul(variance, n / (n - 1));
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(unbiased, m)));
      const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps))); // [..., c]
      return tf.add(tf.mul(xhat, this.weight), this.bias);
    });
  }
}
