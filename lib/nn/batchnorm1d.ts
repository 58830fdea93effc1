/**
 * nn.BatchNorm1d over the feature (last) axis: x [b, c] (PyTorch (N, C)) or [b, l, c] (PyTorch (N, C, L),
 * here channels-last). BatchNorm2d's computation, which already normalises over every axis but the last
 * (batch statistics and running-statistics update in training, running statistics in eval), plus the
 * 1-D input checks PyTorch makes.
 *
 * Used by RepViT's head (`BN_Linear`: BatchNorm1d → Linear). MACs as ptflops' hook for nn.BatchNorm1d:
 * numel(input), ×2 with the affine parameters.
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d } from './layers';
import { ForwardContext } from './module';

export class BatchNorm1d extends BatchNorm2d {
  protected override readonly kind = 'BatchNorm1d';

  override forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    if ((x.rank !== 2 && x.rank !== 3) || x.shape[x.rank - 1] !== this.numFeatures) {
      throw new Error(
        `BatchNorm1d(${this.numFeatures}): expected [b, ${this.numFeatures}] or [b, l, ${this.numFeatures}], got [${x.shape}]`,
      );
    }
    if ((ctx?.training ?? this.training) && x.size / this.numFeatures < 2) {
      // PyTorch: "Expected more than 1 value per channel when training".
      throw new Error(
        `BatchNorm1d(${this.numFeatures}): training needs more than 1 value per channel, got input [${x.shape}]`,
      );
    }
    return super.forward(x, ctx); // the same statistics over every axis but the last
  }
}
