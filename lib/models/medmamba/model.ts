/**
 * MedMamba, the whole classifier: official `VSSM` of zs1314/Microscopic-Mamba
 * `baseline_other/mamba/medmamba.py` (commit 8df9997); medmamba_t = depths 2-2-4-2, medmamba_s = 2-2-8-2,
 * dims 96-192-384-768 for both.
 *
 * Shapes (NHWC):  b batch   H, W  input size (multiples of 32)   C1..C4  stage widths   K  classes
 *
 *   x [b, H, W, 3] → patch_embed: Conv4×4/4 (bias) → LayerNorm → [b, H/4, W/4, C1]
 *     → stage i: depths[i] × MedMambaBlock, then PatchMerging2D (not after the last) → … → [b, H/32, W/32, C4]
 *     → global average pool → [b, C4] → head Linear → logits [b, K]
 *
 * No final norm (commented out in the reference), no position embedding (`ape = False`); pos_drop has the
 * reference's default p = 0 and is left out. Stages and PatchMerging2D are the Microscopic-Mamba kit's
 * (the reference files share them), and so is the initialisation (`VSSM._init_weights` + the Conv2d
 * kaiming re-init: microscopic-mamba/init.ts). Module and parameter names equal the reference's state-dict
 * keys (`patch_embed.proj.weight`, `layers.2.blocks.1.self_attention.A_logs`, `head.bias`, …).
 *
 * Kit options the reference lacks: `dropRate` (dropout on the pooled features before the head, as timm's
 * drop_rate and the kit's Microscopic-Mamba; the reference's own `drop_rate` only feeds pos_drop).
 */
import * as tf from '@tensorflow/tfjs';
import { Conv2d, Dropout, Layer, LayerNorm, Linear, Sequential } from '../../nn/index';
import type { ScanImpl } from '../../ops/selective-scan/index';
import { Rng } from '../../util/random';
import { foldedCopy } from '../inference';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { dropPathSchedule } from '../microscopic-mamba/config';
import { initMicroscopicMamba } from '../microscopic-mamba/init';
import { VSSLayer } from '../microscopic-mamba/model';
import { PatchMerging2D } from '../microscopic-mamba/stem';
import { MedMambaBlock } from './block';

export interface MedMambaConfig {
  numClasses: number;
  seed: number;
  depths: number[];
  dims: number[];
  dState: number;
  /** Stem stride and kernel (official patch_size 4). */
  patchSize: number;
  dropRate: number;
  dropPathRate: number;
  scanImpl: ScanImpl;
  /** Recompute each block in the backward pass (official use_checkpoint). */
  useCheckpoint: boolean;
}

/** Official `PatchEmbed2D` with patch_norm: Conv p×p stride p, then LayerNorm over channels. */
export class PatchEmbed2D extends Layer {
  readonly proj: Conv2d;
  readonly norm: LayerNorm;

  constructor(patchSize: number, embedDim: number, rng: Rng) {
    super();
    this.proj = this.addModule('proj', new Conv2d(3, embedDim, patchSize, { stride: patchSize, rng }));
    this.norm = this.addModule('norm', new LayerNorm(embedDim));
  }

  /** x [b, H, W, 3] → [b, H/p, W/p, C1]. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.norm.forward(this.proj.forward(x)));
  }
}

export class MedMamba extends Layer implements ClassifierModel {
  /** Set on the copy `fusedForInference` returns (BatchNorm folded: it must not be trained or folded again). */
  isInferenceForm = false;
  readonly patch_embed: PatchEmbed2D;
  readonly layers: Sequential;
  readonly head: Linear;
  readonly numClasses: number;
  private readonly headDrop: Dropout;

  constructor(
    readonly config: MedMambaConfig,
    readonly name = 'medmamba',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    this.numClasses = cfg.numClasses;
    this.patch_embed = this.addModule('patch_embed', new PatchEmbed2D(cfg.patchSize, cfg.dims[0], rng));
    const dpr = dropPathSchedule(cfg.depths, cfg.dropPathRate);
    let blockIndex = 0;
    const stages = cfg.depths.map((depth, i) => {
      const blocks = Array.from(
        { length: depth },
        () =>
          new MedMambaBlock(cfg.dims[i], {
            rng,
            dState: cfg.dState,
            dropPath: dpr[blockIndex++],
            scanImpl: cfg.scanImpl,
          }),
      );
      const last = i === cfg.depths.length - 1;
      return new VSSLayer(blocks, last ? undefined : new PatchMerging2D(cfg.dims[i], rng), cfg.useCheckpoint);
    });
    this.layers = this.addModule('layers', new Sequential(...stages));
    this.headDrop = new Dropout(cfg.dropRate);
    this.head = this.addModule('head', new Linear(cfg.dims[cfg.dims.length - 1], cfg.numClasses, { rng }));
    initMicroscopicMamba(this, rng);
  }

  /** Stage names passed to `tapStage`: the stem, then each stage's output (after its PatchMerging). */
  get stageNames(): string[] {
    return ['stem', ...this.config.depths.map((_, i) => `layers.${i}`)];
  }

  /** x [b, H, W, 3] → logits [b, K]. */
  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → last stage map [b, H/32, W/32, C4] (official `forward_backbone`). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c: ModelForwardContext = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = tapStage(c, 'stem', this.patch_embed.forward(x)); // [b, H/4, W/4, C1]
      for (let i = 0; i < this.layers.length; i++) {
        y = tapStage(c, `layers.${i}`, this.layers.at(i).forward(y, c)); // halved by PatchMerging except the last
      }
      return y as tf.Tensor4D;
    });
  }

  /** features [b, h, w, C4] → global average pool [b, C4] → (kit dropRate) → head → logits [b, K]. */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c: ModelForwardContext = ctx ?? { training: this.training };
    return tf.tidy(() => this.head.forward(this.headDrop.forward(tf.mean(features, [1, 2]), c)) as tf.Tensor2D);
  }

  /** H and W must be multiples of patchSize·8 (the stem, then a halving per PatchMerging); any aspect ratio. */
  checkInput(shape: number[], dtype = 'float32'): void {
    const where = `${this.name}.forward`;
    if (shape.length !== 4) throw new Error(`${where}: expected an NHWC batch [b, h, w, 3], got shape [${shape}]`);
    const [, h, w, ch] = shape;
    if (ch !== 3) throw new Error(`${where}: expected 3 input channels (RGB, NHWC), got ${ch} in shape [${shape}]`);
    if (dtype !== 'float32') throw new Error(`${where}: expected float32 input, got ${dtype}`);
    const m = this.config.patchSize * 2 ** (this.config.depths.length - 1);
    if (h < m || w < m || h % m !== 0 || w % m !== 0) {
      throw new Error(
        `${where}: input size ${h}×${w} must be a multiple of ${m} (the stem divides by ` +
          `${this.config.patchSize} and ${this.config.depths.length - 1} PatchMerging layers halve it again; e.g. 32, 64, 224)`,
      );
    }
  }

  /**
   * The inference form (lib/models/inference.ts): a NEW model in eval mode with each conv branch's
   * Conv3×3 → BN pairs (conv33conv33conv11.1→2, .4→5) folded; the branch's first BN precedes a padded conv
   * and the stem's norm is a LayerNorm: both stay. This model is unchanged.
   */
  fusedForInference(): MedMamba {
    return foldedCopy(this, () => new MedMamba({ ...this.config, useCheckpoint: false }, this.name));
  }
}
