/**
 * Microscopic-Mamba, the whole classifier: official `VSSM` (L1106–1202), docs/architecture.md §Macro structure.
 *
 * Shapes (NHWC):  b batch   H, W  input size (multiples of 32)   C1..C4  stage widths   numClasses  classes
 *
 *   x [b, H, W, 3] → stem → [b, H/4, W/4, C1]
 *     → stage 1 (depths[0] blocks) → PatchMerging → [b, H/8, W/8, C2]
 *     → stage 2 → PatchMerging → [b, H/16, W/16, C3] → stage 3 → PatchMerging → [b, H/32, W/32, C4]
 *     → stage 4 → global average pool → [b, C4] → Linear → logits [b, numClasses]
 *
 * There is no final norm (commented out in the official code), no 1×1 conv before the head (the paper
 * figure's "Conv 1×1" is not in the code, docs/architecture.md §Figure vs code), no position embedding;
 * pos_drop has p = 0. Module and parameter names equal the official state-dict keys (`patch_embed.0.c.weight`,
 * `layers.2.blocks.3.pvm_layer.mamba.A_logs`, `head.bias`, ...).
 */
import * as tf from '@tensorflow/tfjs';
import { defaultInitRng, ForwardContext, Layer, Linear, reportElementwiseMacs, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';
import { checkpoint } from '../checkpoint';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { MicroscopicMambaBlock } from './block';
import { dropPathSchedule, MicroscopicMambaConfig, needsSquareInput } from './config';
import { initMicroscopicMamba } from './init';
import { MIFA } from './mifa';
import { SS2D } from './ss2d';
import { buildStem, Conv2dBN, PatchMerging2D } from './stem';
import { childPairs, foldedCopy } from '../inference';
import { innerTap, type InnerTapContext } from './taps';

/** One stage, official `VSSLayer` (L1040–1103): `blocks.0..` then an optional `downsample`. */
export class VSSLayer extends Layer {
  readonly blocks: Sequential;
  readonly downsample?: PatchMerging2D;
  /** Its state-dict path (set by the model): `ctx.tapInner` sees the blocks' output as `<tapName>.blocks`. */
  tapName = 'VSSLayer';

  constructor(
    blocks: Layer[], // MicroscopicMambaBlock here; medmamba/ reuses the stage with its own blocks
    downsample: PatchMerging2D | undefined,
    readonly useCheckpoint = false,
  ) {
    super();
    this.blocks = this.addModule('blocks', new Sequential(...blocks));
    if (downsample) this.downsample = this.addModule('downsample', downsample);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    const training = ctx?.training ?? this.training;
    return tf.tidy(() => {
      let y = x; // [b, h, w, C]
      for (let i = 0; i < this.blocks.length; i++) {
        const block = this.blocks.at(i);
        // Official L1093–1097: `x = checkpoint.checkpoint(blk, x)` when use_checkpoint.
        y = this.useCheckpoint && training ? checkpoint(block, y, { training, rng: ctx?.rng }) : block.forward(y, ctx);
      }
      y = innerTap(ctx as InnerTapContext | undefined, `${this.tapName}.blocks`, y); // the stage's map before PatchMerging
      return this.downsample ? this.downsample.forward(y) : y; // [b, h/2, w/2, 2C] or [b, h, w, C]
    });
  }
}

export class MicroscopicMamba extends Layer implements ClassifierModel {
  /** Set on the copy `fusedForInference` returns (BatchNorm folded: it must not be trained or folded again). */
  isInferenceForm = false;
  readonly patch_embed: Sequential;
  readonly layers: Sequential;
  readonly head: Linear;
  readonly numClasses: number;

  constructor(
    readonly config: MicroscopicMambaConfig,
    readonly name = 'microscopic-mamba',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    this.numClasses = cfg.numClasses;
    this.patch_embed = this.addModule('patch_embed', buildStem(cfg.dims[0], rng));
    const dpr = dropPathSchedule(cfg.depths, cfg.dropPathRate);
    const stages: VSSLayer[] = [];
    let blockIndex = 0;
    cfg.depths.forEach((depth, i) => {
      const blocks = Array.from(
        { length: depth },
        () =>
          new MicroscopicMambaBlock(cfg.dims[i], {
            rng,
            dState: cfg.dState,
            dropPath: dpr[blockIndex++],
            groups: cfg.parallelVssm ? 4 : 1,
            psffn: cfg.psffn,
            psffnRatio: cfg.psffnRatio,
            transposeHW: needsSquareInput(cfg),
            keepDeadParams: !cfg.dropDeadParams,
            separateNorms: cfg.separatePvmNorms,
            scanImpl: cfg.scanImpl,
            mifa: cfg.mifa,
            eca: cfg.eca,
            plainLocalGate: cfg.fixMifaGate,
            residual: cfg.blockResidual,
          }),
      );
      const last = i === cfg.depths.length - 1;
      stages.push(new VSSLayer(blocks, last ? undefined : new PatchMerging2D(cfg.dims[i], rng), cfg.useCheckpoint));
    });
    this.layers = this.addModule('layers', new Sequential(...stages));
    this.head = this.addModule('head', new Linear(cfg.dims[cfg.dims.length - 1], cfg.numClasses, { rng }));
    initMicroscopicMamba(this, rng);
    // Inner taps (./taps.ts) are named by the module's state-dict path.
    for (const [name, m] of this.namedModules())
      if (m instanceof MIFA || m instanceof SS2D || m instanceof VSSLayer) m.tapName = name;
  }

  /** Stage names passed to `tapStage`: the stem, then each stage's output (after its PatchMerging). */
  get stageNames(): string[] {
    return ['stem', ...this.config.depths.map((_, i) => `layers.${i}`)];
  }

  /**
   * Logits for a batch of NHWC float32 images: x [b, H, W, 3] → [b, K]. `ctx.training` (default: the
   * module's train/eval mode) switches BatchNorm to batch statistics and turns DropPath on; `ctx.rng`
   * draws DropPath's per-sample masks.
   */
  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → stage-4 map [b, H/32, W/32, C4] (official `forward_backbone`, L1185–1194). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = tapStage(c, 'stem', this.patch_embed.forward(x, c)); // [b, H/4, W/4, C1]
      for (let i = 0; i < this.layers.length; i++) {
        y = tapStage(c, `layers.${i}`, this.layers.at(i).forward(y, c)); // [b, H/2^(i+3), …, C(i+2)] (last: C4 at H/32)
      }
      return y as tf.Tensor4D;
    });
  }

  /**
   * features [b, h, w, C4] → global average pool [b, C4] → Linear → logits [b, K] (official `forward`,
   * L1196–1202). With the kit's `dropRate` > 0 (not in the official model), dropout on the pooled
   * features in training, its mask seeded by one draw of `ctx.rng`.
   */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    reportElementwiseMacs('AdaptiveAvgPool2d', features.shape); // the official nn.AdaptiveAvgPool2d(1)
    const p = this.config.dropRate;
    const dropout = p > 0 && (ctx?.training ?? this.training);
    const seed = dropout ? Math.floor((ctx?.rng ?? defaultInitRng).uniform() * 2 ** 31) : 0;
    return tf.tidy(() => {
      let pooled = tf.mean(features, [1, 2]); // [b, C4]
      if (dropout) {
        const keep = tf.cast(tf.less(tf.randomUniform(pooled.shape, 0, 1, 'float32', seed), 1 - p), 'float32');
        pooled = tf.mul(pooled, tf.div(keep, 1 - p)); // [b, C4], survivors scaled by 1/(1 − p)
      }
      return this.head.forward(pooled) as tf.Tensor2D;
    });
  }

  /** Clear errors for inputs the official model cannot take (docs/architecture.md §Quirks Q7). */
  checkInput(shape: number[], dtype = 'float32'): void {
    const where = `${this.name}.forward`;
    if (shape.length !== 4) throw new Error(`${where}: expected an NHWC batch [b, h, w, 3], got shape [${shape}]`);
    const [, h, w, ch] = shape;
    if (ch !== 3) throw new Error(`${where}: expected 3 input channels (RGB, NHWC), got ${ch} in shape [${shape}]`);
    if (dtype !== 'float32') throw new Error(`${where}: expected float32 input, got ${dtype}`);
    if (h < 32 || w < 32 || h % 32 !== 0 || w % 32 !== 0) {
      throw new Error(
        `${where}: input size ${h}×${w} must be a multiple of 32 (the stem divides by 4 and three ` +
          `PatchMerging layers halve it again; e.g. 32, 64, 224)`,
      );
    }
    if (h !== w && needsSquareInput(this.config)) {
      throw new Error(
        `${where}: input ${h}×${w} is not square; the official PSFFN transposes H and W ` +
          `(docs/architecture.md §Quirks Q1), so only square inputs work. Use a square size, or build with ` +
          `fixPsffnTranspose: true (a different model).`,
      );
    }
  }

  /**
   * The inference form (lib/models/inference.ts): a NEW model in eval mode with eval-mode BatchNorm folded
   * into the conv before it — the stem's two `Conv2d_BN` (c → bn) and each conv branch's dw3×3 → BN,
   * dw3×3 → BN and 1×1 → BN (Conv_branch.1→2, .4→5, .7→8). The branch's first BN precedes a padded conv
   * and stays. This model is unchanged.
   */
  fusedForInference(): MicroscopicMamba {
    return foldedCopy(
      this,
      () => new MicroscopicMamba({ ...this.config, useCheckpoint: false }, this.name),
      (copy) => childPairs(copy, (m) => m instanceof Conv2dBN, ['c', 'bn']),
    );
  }
}
