/**
 * SwiftFormer, the whole classifier: official `SwiftFormer` (baseline_other/cnn_tran_hybird/Swiftformer.py
 * L279–430, zs1314/Microscopic-Mamba 8df9997) with `SwiftFormer_XS` / `SwiftFormer_S` (L446–467):
 * widths XS 48-56-112-220 / S 48-64-168-224, depths XS 3-3-6-4 / S 3-3-9-6, vit_num 1, distillation off.
 *
 * Shapes (NHWC):  b batch   H, W  input size   C1..C4 stage widths   K classes
 *
 *   x [b, H, W, 3] → patch_embed (3×3 s2 conv-BN-ReLU ×2) → [b, H/4, W/4, C1]
 *     → network.0 (stage 1: ConvEncoders, then one SwiftFormerEncoder) → network.1 (Embedding) → [b, H/8, W/8, C2]
 *     → network.2 → network.3 → [b, H/16, W/16, C3] → network.4 → network.5 → [b, H/32, W/32, C4] → network.6
 *     → norm (BatchNorm2d) → mean over H, W → head (Linear) → logits [b, K]
 *
 * With distillation=False the reference builds no `dist_head`, so there is none here (the 1000-class
 * counts 3,254,360 / 5,867,128 are without it). Drop path: SwiftFormerEncoder j of the whole net (blocks
 * counted over all stages) gets drop_path_rate·j/(Σdepths − 1), as the reference's `Stage`; ConvEncoders
 * get none. `dropRate` (a kit addition, off by default) adds dropout on the pooled features; the
 * reference's `drop_rate` is accepted by its constructor but never reaches a layer.
 */
import * as tf from '@tensorflow/tfjs';
import { Dropout } from '../../nn/dropout';
import { BatchNorm2d, Conv2d, Layer, Linear, ReLU, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';
import { childPairs, foldedCopy } from '../inference';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { ConvEncoder, Embedding, SwiftFormerEncoder, truncNormalInit } from './layers';

export interface SwiftFormerConfig {
  /** Blocks per stage (reference `layers`). */
  layers: number[];
  /** Stage widths (reference `embed_dims`). */
  embedDims: number[];
  /** SwiftFormerEncoders at the end of each stage (reference `vit_num`; the rest are ConvEncoders). */
  vitNum: number;
  numClasses: number;
  seed: number;
  dropRate: number;
  dropPathRate: number;
}

export const SWIFTFORMER_VARIANTS = {
  'swiftformer-xs': { layers: [3, 3, 6, 4], embedDims: [48, 56, 112, 220] },
  'swiftformer-s': { layers: [3, 3, 9, 6], embedDims: [48, 64, 168, 224] },
} as const;

const MLP_RATIO = 4;
const LAYER_SCALE_INIT = 1e-5;

export class SwiftFormer extends Layer implements ClassifierModel {
  /** Set on the copy `fusedForInference` returns (BatchNorm folded: it must not be trained or folded again). */
  isInferenceForm = false;
  readonly patch_embed: Sequential;
  readonly network: Sequential;
  readonly norm: BatchNorm2d;
  readonly head: Linear;
  private readonly headDropout: Dropout;
  readonly numClasses: number;
  readonly stageNames: string[];

  constructor(
    readonly config: SwiftFormerConfig,
    readonly name = 'swiftformer',
  ) {
    super();
    const { layers, embedDims } = config;
    const rng = new Rng(config.seed);
    this.numClasses = config.numClasses;

    // `stem` (L28–41): two 3×3 stride-2 convs (bias) with BatchNorm and ReLU.
    const c1 = embedDims[0];
    const stemConvs = [
      new Conv2d(3, Math.floor(c1 / 2), 3, { stride: 2, padding: 1, rng }),
      new Conv2d(Math.floor(c1 / 2), c1, 3, { stride: 2, padding: 1, rng }),
    ];
    stemConvs.forEach((conv) => truncNormalInit(conv, rng));
    this.patch_embed = this.addModule(
      'patch_embed',
      new Sequential(
        stemConvs[0],
        new BatchNorm2d(Math.floor(c1 / 2)),
        new ReLU(),
        stemConvs[1],
        new BatchNorm2d(c1),
        new ReLU(),
      ),
    );

    // `Stage` (L279–304) and the Embedding after every stage but the last (downsamples all True).
    const total = layers.reduce((a, v) => a + v, 0);
    const network: Layer[] = [];
    let before = 0;
    layers.forEach((depth, i) => {
      const dim = embedDims[i];
      const blocks: Layer[] = [];
      for (let j = 0; j < depth; j++) {
        if (depth - j <= config.vitNum) {
          const dropPath = total > 1 ? (config.dropPathRate * (j + before)) / (total - 1) : 0;
          blocks.push(
            new SwiftFormerEncoder(dim, { mlpRatio: MLP_RATIO, dropPath, layerScaleInit: LAYER_SCALE_INIT, rng }),
          );
        } else {
          blocks.push(new ConvEncoder(dim, Math.floor(MLP_RATIO * dim), rng));
        }
      }
      before += depth;
      network.push(new Sequential(...blocks));
      if (i < layers.length - 1) network.push(new Embedding(dim, embedDims[i + 1], rng));
    });
    this.network = this.addModule('network', new Sequential(...network));
    this.stageNames = ['patch_embed', ...layers.map((_, i) => `network.${2 * i}`)];

    const cLast = embedDims[embedDims.length - 1];
    this.norm = this.addModule('norm', new BatchNorm2d(cLast));
    this.head = this.addModule('head', new Linear(cLast, config.numClasses, { rng }));
    truncNormalInit(this.head, rng);
    this.headDropout = this.addModule('head_drop', new Dropout(config.dropRate)); // no state
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → the normalised last-stage map [b, H/32, W/32, C4] (stages, then `norm`). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = tapStage(c, 'patch_embed', this.patch_embed.forward(x, c)); // [b, H/4, W/4, C1]
      for (let i = 0; i < this.network.length; i++) {
        y = this.network.at(i).forward(y, c); // stage: same size; Embedding: [b, h/2, w/2, C_next]
        if (i % 2 === 0) y = tapStage(c, `network.${i}`, y);
      }
      return this.norm.forward(y, c) as tf.Tensor4D; // [b, h, w, C4]
    });
  }

  /** features [b, h, w, C4] → mean over h, w → (dropout) → head → logits [b, K] (L414–423). */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => this.head.forward(this.headDropout.forward(tf.mean(features, [1, 2]), c)) as tf.Tensor2D);
  }

  checkInput(shape: number[], dtype = 'float32'): void {
    const where = `${this.name}.forward`;
    if (shape.length !== 4) throw new Error(`${where}: expected an NHWC batch [b, h, w, 3], got shape [${shape}]`);
    if (shape[3] !== 3)
      throw new Error(`${where}: expected 3 input channels (RGB, NHWC), got ${shape[3]} in shape [${shape}]`);
    if (dtype !== 'float32') throw new Error(`${where}: expected float32 input, got ${dtype}`);
    if (shape[1] < 1 || shape[2] < 1) throw new Error(`${where}: empty input ${shape[1]}×${shape[2]}`);
  }

  /**
   * The inference form (lib/models/inference.ts): a NEW model in eval mode with BatchNorm folded into the
   * conv before it — the stem's two conv → BN, each Embedding's proj → norm, each ConvEncoder's (and local
   * representation's) dwconv → norm. The Mlp's norm1 comes before its conv and the final norm after a
   * residual add: both stay. This model is unchanged.
   */
  fusedForInference(): SwiftFormer {
    return foldedCopy(
      this,
      () => new SwiftFormer(this.config, this.name),
      (copy) => [
        ...childPairs(copy, (m) => m instanceof Embedding, ['proj', 'norm']),
        ...childPairs(copy, (m) => m instanceof ConvEncoder, ['dwconv', 'norm']),
      ],
    );
  }
}
