/**
 * MobileOne (Vasu et al. 2023, arXiv 2206.04040) as the official repository defines it:
 * zs1314/Microscopic-Mamba `baseline_other/CNN/mobileone.py` (commit 8df9997): `MobileOne` L279–381,
 * `PARAMS` L384–393, `mobileone(variant)` L395–405, `reparameterize_model` L408–421. Names are the file's
 * state-dict keys (`stage0.rbr_conv.0.conv.weight`, `stage2.3.rbr_skip.running_var`, `linear.weight`; in
 * inference form `stage1.0.reparam_conv.weight`).
 *
 * Shapes (NHWC):  b batch   H, W input   w0..w3 = int(64·m0), int(128·m1), int(256·m2), int(512·m3)   K classes
 *
 *   x [b, H, W, 3] → stage0 = MobileOneBlock(3 → min(64, w0), 3×3/2, ONE conv branch) → [b, H/2, W/2, ·]
 *     → stage1..4: per block a depthwise MobileOneBlock (3×3, stride 2 for a stage's first block, else 1)
 *       then a pointwise MobileOneBlock (1×1 → the stage width), num_conv_branches branches each
 *     → [b, H/32, W/32, w3] → gap (nn.AdaptiveAvgPool2d) → [b, w3] → (dropout) → linear → logits [b, K]
 *
 * Pitfalls: stage0 is built without `num_conv_branches` (so it has 1 branch, even in s0 whose blocks have
 * 4); the skip BN exists only where Ci = Co and stride 1 (so never in a stride-2 depthwise block); the
 * scale branch exists only for k > 1 (depthwise blocks and stage0); SE only for s4 (`use_se`: the last
 * half of stage 3's blocks and all of stage 4's). There is no custom initialisation: PyTorch's defaults
 * (conv and linear U(±1/√fan_in), BN γ 1 β 0), which lib/nn's layers use.
 *
 * `reparameterize()` (also the contract's `fusedForInference()`) mirrors `reparameterize_model`: a NEW
 * model in inference form, fused from this one's weights and running statistics, in eval mode; this model
 * is unchanged. s0: 5,293,272 parameters in training form, 2,078,504 fused (1000 classes).
 * `dropRate` (dropout before `linear`) and `dropPathRate` are switches beyond the file (default 0 = the
 * file): dropout before the head, and stochastic depth on the non-identity branches of the blocks that
 * have a skip BN (as timm's RepVGG-style MobileOne blocks do), linspace(0, rate) over stages 1–4's
 * blocks. Neither changes eval outputs or the inference form.
 */
import * as tf from '@tensorflow/tfjs';
import { AdaptiveAvgPool2d, Dropout, Layer, Linear, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { checkImageInput, linspace } from '../cnn-input';
import { MobileOneBlock } from './block';

export interface MobileOneConfig {
  numClasses: number;
  seed: number;
  /** Blocks per stage 1..4 (official default [2, 8, 10, 1]). */
  numBlocksPerStage: number[];
  /** Width multipliers of stages 1..4 (s0: 0.75, 1, 1, 2). */
  widthMultipliers: number[];
  /** Conv branches per block of stages 1..4 (s0: 4; the file's default 1). */
  numConvBranches: number;
  /** SE-ReLU in the last blocks (s4). */
  useSe: boolean;
  /** Build the inference form directly (the file's `inference_mode`): one `reparam_conv` per block. */
  inferenceMode: boolean;
  dropRate: number;
  dropPathRate: number;
}

export class MobileOne extends Layer implements ClassifierModel {
  readonly stage0: MobileOneBlock;
  readonly stages: Sequential[]; // stage1..stage4
  readonly gap: AdaptiveAvgPool2d;
  readonly headDrop: Dropout;
  readonly linear: Linear;
  readonly numClasses: number;
  readonly stageNames: readonly string[] = ['stage0', 'stage1', 'stage2', 'stage3', 'stage4'];

  constructor(
    readonly config: MobileOneConfig,
    readonly name = 'mobileone',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    const m = cfg.widthMultipliers;
    this.numClasses = cfg.numClasses;
    let inPlanes = Math.min(64, Math.trunc(64 * m[0]));
    this.stage0 = this.addModule(
      'stage0',
      new MobileOneBlock(3, inPlanes, 3, {
        stride: 2,
        padding: 1,
        groups: 1,
        inferenceMode: cfg.inferenceMode,
        useSe: false,
        numConvBranches: 1, // not passed in the file (L310–312): the default 1
        rng,
      }),
    );
    const widths = [64, 128, 256, 512].map((w, i) => Math.trunc(w * m[i]));
    const nb = cfg.numBlocksPerStage;
    const seBlocks = cfg.useSe ? [0, 0, Math.trunc(nb[2] / 2), nb[3]] : [0, 0, 0, 0];
    const rates = linspace(cfg.dropPathRate, 2 * nb.reduce((a, b) => a + b, 0));
    let blockIndex = 0;
    this.stages = widths.map((planes, s) => {
      const blocks: MobileOneBlock[] = [];
      for (let ix = 0; ix < nb[s]; ix++) {
        const useSe = ix >= nb[s] - seBlocks[s];
        const common = { inferenceMode: cfg.inferenceMode, useSe, numConvBranches: cfg.numConvBranches, rng };
        // Depthwise 3×3 (stride 2 opens the stage), then pointwise 1×1 to the stage width (L347–367).
        blocks.push(
          new MobileOneBlock(inPlanes, inPlanes, 3, {
            stride: ix === 0 ? 2 : 1,
            padding: 1,
            groups: inPlanes,
            dropPath: rates[blockIndex++],
            ...common,
          }),
        );
        blocks.push(
          new MobileOneBlock(inPlanes, planes, 1, {
            stride: 1,
            padding: 0,
            groups: 1,
            dropPath: rates[blockIndex++],
            ...common,
          }),
        );
        inPlanes = planes;
      }
      return this.addModule(`stage${s + 1}`, new Sequential(...blocks));
    });
    this.gap = this.addModule('gap', new AdaptiveAvgPool2d(1));
    this.headDrop = this.addModule('head_drop', new Dropout(cfg.dropRate));
    this.linear = this.addModule('linear', new Linear(widths[3], cfg.numClasses, { rng }));
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → stage4's map [b, H/32, W/32, w3] (the file's `forward` up to stage4). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = tapStage(c, 'stage0', this.stage0.forward(x, c)); // [b, H/2, W/2, min(64, w0)]
      this.stages.forEach((stage, i) => {
        y = tapStage(c, `stage${i + 1}`, stage.forward(y, c)); // [b, H/2^(i+2), W/2^(i+2), w_i]
      });
      return y as tf.Tensor4D;
    });
  }

  /** features [b, h, w, w3] → gap → flatten [b, w3] → (dropout) → linear → logits [b, K]. */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const pooled = this.gap.forward(features).reshape([features.shape[0], -1]); // [b, w3]
      return this.linear.forward(this.headDrop.forward(pooled, c)) as tf.Tensor2D;
    });
  }

  checkInput(shape: number[], dtype = 'float32'): void {
    checkImageInput(`${this.name}.forward`, shape, dtype, 32, 'stage0 and the four stages each halve it');
  }

  /**
   * `reparameterize_model`: a NEW MobileOne in inference form (every block one conv with bias), fused
   * from this model's weights and BatchNorm running statistics, returned in eval mode. Its eval forward
   * equals this model's eval forward (≤ 1e-4); this model is left unchanged; dispose the result yourself.
   */
  reparameterize(): MobileOne {
    if (this.isInferenceForm) {
      throw new Error(`${this.name}.reparameterize: the model is already in its inference form (inferenceMode)`);
    }
    const fused = new MobileOne({ ...this.config, inferenceMode: true }, this.name);
    const blocks = (model: MobileOne) => [
      model.stage0,
      ...model.stages.flatMap((s) => Array.from({ length: s.length }, (_, i) => s.at(i) as MobileOneBlock)),
    ];
    const [mine, theirs] = [blocks(this), blocks(fused)];
    mine.forEach((block, i) => {
      const target = theirs[i];
      const { kernel, bias } = block.fusedKernelBias();
      target.reparamConv!.weight.assign(kernel);
      target.reparamConv!.bias!.assign(bias);
      kernel.dispose();
      bias.dispose();
      if (block.se && target.se) {
        const sd = target.se.stateDict();
        for (const [name, t] of block.se.stateDict()) (sd.get(name) as tf.Variable).assign(t);
      }
    });
    fused.linear.weight.assign(this.linear.weight);
    fused.linear.bias!.assign(this.linear.bias!);
    return fused.eval();
  }

  /** Built with `inferenceMode: true` (or returned by `reparameterize()`): one conv per block already. */
  get isInferenceForm(): boolean {
    return this.config.inferenceMode;
  }

  /** The contract's hook for the inference form: `reparameterize()`. */
  fusedForInference(): MobileOne {
    return this.reparameterize();
  }
}
