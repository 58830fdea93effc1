/**
 * The stem (`patch_embed`, official L1121–1122) and the downsampling layer (`PatchMerging2D`, L314–354).
 *
 * Shapes (NHWC):  b batch   h, w  height, width   C1 first stage width   c channels of the stage
 *
 *   stem:           [b, h, w, 3] → Conv3×3/2 → BN → GELU → Conv3×3/2 → BN → [b, h/4, w/4, C1]
 *   PatchMerging2D: [b, h, w, c] → concat of the four 2×2 phases → LayerNorm(4c) → Linear(4c → 2c) → [b, h/2, w/2, 2c]
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, Conv2d, ForwardContext, GELU, Layer, LayerNorm, Linear, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';

/** `Conv2d_BN` (L843–866): a bias-free conv followed by BatchNorm2d (γ = 1, β = 0); children `c`, `bn`. */
export class Conv2dBN extends Layer {
  readonly c: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(inChannels: number, outChannels: number, kernel: number, stride: number, padding: number, rng: Rng) {
    super();
    this.c = this.addModule('c', new Conv2d(inChannels, outChannels, kernel, { stride, padding, bias: false, rng }));
    this.bn = this.addModule('bn', new BatchNorm2d(outChannels));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.bn.forward(this.c.forward(x), ctx)); // [b, h', w', out]
  }
}

/** The stem: two stride-2 3×3 convs with PyTorch's symmetric padding 1 (docs/architecture.md §Porting notes). */
export function buildStem(embedDim: number, rng: Rng): Sequential {
  return new Sequential(
    new Conv2dBN(3, embedDim / 2, 3, 2, 1, rng), // [b, h/2, w/2, C1/2]
    new GELU(),
    new Conv2dBN(embedDim / 2, embedDim, 3, 2, 1, rng), // [b, h/4, w/4, C1]
  );
}

/** PatchMerging2D: Swin's 2×2 space-to-depth in the order x0=[0::2,0::2], x1=[1::2,0::2], x2=[0::2,1::2], x3=[1::2,1::2]. */
export class PatchMerging2D extends Layer {
  readonly reduction: Linear;
  readonly norm: LayerNorm;

  constructor(
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    // Registration order = the official state-dict order (reduction, then norm).
    this.reduction = this.addModule('reduction', new Linear(4 * dim, 2 * dim, { bias: false, rng }));
    this.norm = this.addModule('norm', new LayerNorm(4 * dim));
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [b, h, w, c] = x.shape;
    if (h % 2 !== 0 || w % 2 !== 0) {
      throw new Error(`PatchMerging2D: feature map ${h}×${w} must have even sides (input size divisible by 32)`);
    }
    return tf.tidy(() => {
      // [b, h/2, i, w/2, j, c] with i the row phase and j the column phase; the official order is j·2 + i.
      const phases = x.reshape([b, h / 2, 2, w / 2, 2, c]);
      const merged = phases.transpose([0, 1, 3, 4, 2, 5]).reshape([b, h / 2, w / 2, 4 * c]); // [b, h/2, w/2, 4c]
      return this.reduction.forward(this.norm.forward(merged)); // [b, h/2, w/2, 2c]
    });
  }
}
