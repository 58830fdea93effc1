/**
 * The Microscopic-Mamba block, official `SS_Conv_SSM` (paper: Hybrid-Conv-SSM block; v2: MambaMIC block),
 * L984–1037, docs/architecture.md §Block.
 *
 * Shapes (NHWC):  b batch   h, w  map size   C  stage width   c = C/2  branch width
 *
 *   x_l, x_r = chunk(x, 2, channels)                       [b, h, w, c] each
 *   G        = channel_shuffle(DropPath(PVM(x_r)), c/2)    SSM branch (the shuffle puts even channels first)
 *   L        = ConvBranch(x_l)                              BN → DW3×3 → BN → ReLU → DW3×3 ×2 → BN → ReLU → 1×1 → BN → ReLU
 *   out      = MIFA(L, G)                                   [b, h, w, C]
 *
 * No residual: the official block returns MIFA's output, so DropPath zeroes a sample's whole SSM branch
 * rather than a residual update (quirk Q2; `blockResidual` adds the input back, as MedMamba does).
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, Conv2d, DropPath, ForwardContext, Layer, ReLU, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';
import { MIFA } from './mifa';
import { PVMLayer, PVMOptions } from './pvm';
import { channelShuffle } from './shuffle';
import type { InnerTapContext } from './taps';

export interface BlockOptions extends PVMOptions {
  dropPath: number;
  mifa: boolean;
  eca: boolean;
  plainLocalGate: boolean;
  residual: boolean;
}

/** `Conv_branch` (L998–1016): children '0'…'9' as in the official nn.Sequential. */
export function buildConvBranch(c: number, rng: Rng): Sequential {
  return new Sequential(
    new BatchNorm2d(c), // 0
    new Conv2d(c, c, 3, { padding: 1, groups: c, rng }), // 1  depthwise
    new BatchNorm2d(c), // 2
    new ReLU(), // 3
    new Conv2d(c, 2 * c, 3, { padding: 1, groups: c, rng }), // 4  depthwise, channel multiplier 2
    new BatchNorm2d(2 * c), // 5
    new ReLU(), // 6
    new Conv2d(2 * c, c, 1, { rng }), // 7  pointwise
    new BatchNorm2d(c), // 8
    new ReLU(), // 9
  );
}

export class MicroscopicMambaBlock extends Layer {
  readonly drop_path: DropPath;
  readonly MIFA?: MIFA;
  readonly Conv_branch: Sequential;
  readonly pvm_layer: PVMLayer;

  constructor(
    readonly dim: number,
    readonly opts: BlockOptions,
  ) {
    super();
    const c = dim / 2;
    this.drop_path = this.addModule('drop_path', new DropPath(opts.dropPath));
    if (opts.mifa) {
      this.MIFA = this.addModule(
        'MIFA',
        new MIFA(c, { rng: opts.rng, eca: opts.eca, plainLocalGate: opts.plainLocalGate }),
      );
    }
    this.Conv_branch = this.addModule('Conv_branch', buildConvBranch(c, opts.rng));
    this.pvm_layer = this.addModule('pvm_layer', new PVMLayer(c, opts));
  }

  /** x [b, h, w, C] → [b, h, w, C]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const c = this.dim / 2;
      const [xl, xr] = tf.split(x, 2, 3); // [b, h, w, c] each
      const ssm = this.drop_path.forward(this.pvm_layer.forward(xr, ctx as InnerTapContext), ctx); // [b, h, w, c]
      const g = channelShuffle(ssm, c / 2); // [b, h, w, c]
      const l = this.Conv_branch.forward(xl, ctx); // [b, h, w, c]
      const out = this.MIFA ? this.MIFA.forward(l, g, ctx as InnerTapContext) : channelShuffle(tf.concat([l, g], 3), 2); // [b, h, w, C]
      return this.opts.residual ? tf.add(out, x) : out;
    });
  }
}
