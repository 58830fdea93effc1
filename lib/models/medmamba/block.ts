/**
 * MedMamba's block, official `SS_Conv_SSM` of zs1314/Microscopic-Mamba `baseline_other/mamba/medmamba.py`
 * (commit 8df9997; MedMamba, Yue & Li 2024, arXiv 2403.03849).
 *
 * Shapes (NHWC):  b batch   h, w  map size   C  stage width   c = C/2  branch width
 *
 *   x_l, x_r = chunk(x, 2, channels)                                  [b, h, w, c] each
 *   S = DropPath(SS2D(LayerNorm(x_r)))                                SSM branch
 *   L = conv33conv33conv11(x_l)                                       BN → Conv3×3 → BN → ReLU → Conv3×3 → BN → ReLU → Conv1×1 → ReLU
 *   out = channel_shuffle(cat(L, S), 2) + x                           [b, h, w, C]
 *
 * Next to the Microscopic-Mamba block (lib/models/microscopic-mamba/block.ts), which grew out of this one:
 * the conv branch uses FULL 3×3 convolutions (not depthwise, no channel multiplier) and has no BatchNorm
 * after its final 1×1; the SSM branch is one plain SS2D (no parallel groups, no PSFFN, out_proj kept) with
 * NO residual inside SS2D; the two branches are merged by a plain 2-group channel shuffle (no MIFA), and
 * the block HAS a residual. The SS2D itself is the kit's (microscopic-mamba/ss2d.ts with `residual: false`):
 * same in_proj/chunk, depthwise 3×3 + SiLU, four scan directions merged row-major (forward_corev0 ≡
 * forward_corev2), out_norm then the SiLU(z) gate, d_state 16, dt_rank ⌈d/16⌉, dt/A/D initialisation.
 * ln_1 is nn.LayerNorm with eps 1e-5: VSSM passes its `norm_layer=nn.LayerNorm`, which replaces the
 * block's own default (LayerNorm with eps 1e-6).
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, Conv2d, DropPath, ForwardContext, Layer, LayerNorm, ReLU, Sequential } from '../../nn/index';
import type { ScanImpl } from '../../ops/selective-scan/index';
import { Rng } from '../../util/random';
import { channelShuffle } from '../microscopic-mamba/shuffle';
import { SS2D } from '../microscopic-mamba/ss2d';

export interface MedMambaBlockOptions {
  rng: Rng;
  dState: number;
  dropPath: number;
  scanImpl: ScanImpl;
}

/** `conv33conv33conv11` (children '0'…'8' as in the official nn.Sequential), c → c channels. */
export function buildMedMambaConvBranch(c: number, rng: Rng): Sequential {
  return new Sequential(
    new BatchNorm2d(c), // 0
    new Conv2d(c, c, 3, { padding: 1, rng }), // 1  full 3×3
    new BatchNorm2d(c), // 2
    new ReLU(), // 3
    new Conv2d(c, c, 3, { padding: 1, rng }), // 4  full 3×3
    new BatchNorm2d(c), // 5
    new ReLU(), // 6
    new Conv2d(c, c, 1, { rng }), // 7  pointwise
    new ReLU(), // 8
  );
}

export class MedMambaBlock extends Layer {
  readonly ln_1: LayerNorm;
  readonly self_attention: SS2D;
  readonly drop_path: DropPath;
  readonly conv33conv33conv11: Sequential;

  constructor(
    readonly dim: number,
    opts: MedMambaBlockOptions,
  ) {
    super();
    if (dim % 2 !== 0) throw new Error(`MedMambaBlock: width ${dim} must be even (it is split into two halves)`);
    const c = dim / 2;
    this.ln_1 = this.addModule('ln_1', new LayerNorm(c));
    this.self_attention = this.addModule(
      'self_attention',
      new SS2D(c, {
        dState: opts.dState,
        rng: opts.rng,
        psffn: false,
        transposeHW: false,
        keepDeadParams: false,
        scanImpl: opts.scanImpl,
        addInput: false,
      }),
    );
    this.drop_path = this.addModule('drop_path', new DropPath(opts.dropPath));
    this.conv33conv33conv11 = this.addModule('conv33conv33conv11', buildMedMambaConvBranch(c, opts.rng));
  }

  /** x [b, h, w, C] → [b, h, w, C]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const [left, right] = tf.split(x, 2, 3); // [b, h, w, c] each (input.chunk(2, dim=-1))
      const ssm = this.drop_path.forward(this.self_attention.forward(this.ln_1.forward(right)), ctx); // [b, h, w, c]
      const conv = this.conv33conv33conv11.forward(left, ctx); // [b, h, w, c]
      const merged = channelShuffle(tf.concat([conv, ssm], 3), 2); // [b, h, w, C]: conv and SSM channels interleaved
      return tf.add(merged, x);
    });
  }
}
