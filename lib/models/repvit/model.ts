/**
 * RepViT, the whole classifier: official `RepViT` (baseline_other/CNN/repvit.py L222–245, zs1314/
 * Microscopic-Mamba 8df9997) with `repvit_m1_0`'s configuration (L329–363); Wang et al., CVPR 2024,
 * arXiv 2307.09283. A pure conv net (MobileNetV3 blocks re-arranged in a ViT-like macro design: a token
 * mixer, then a residual channel-mixer FFN) with structural re-parameterisation for inference.
 *
 * Shapes (NHWC):  b batch   H, W  input size   C0..  block widths   K  classes
 *
 *   x [b, H, W, 3] → features.0 (stem: 3×3 s2 Conv2dBN → GELU → 3×3 s2 Conv2dBN) → [b, H/4, W/4, C0]
 *     → features.1..n: RepViTBlocks; a stride-2 block halves the map (m1.0: 3 of them → H/32)
 *     → adaptive average pool → [b, C] → classifier (BN1d → Linear) → logits [b, K]
 *
 * Reference behaviours kept: the last BN of every channel mixer starts at γ = 0 (each residual starts as
 * the identity); the head is BatchNorm1d → Linear (`classifier.classifier.bn/.l`), with `distillation=False`
 * (no `classifier_dist`); SqueezeExcite is timm's (ReLU, sigmoid gate, reduced width ⌈C/4⌉₈); GELU for
 * both `use_hs` settings; widths pass through `_make_divisible(c, 8)`.
 * Kit additions (off by default, so the default model is the reference): `dropPathRate` sets the
 * reference `Residual`'s own per-sample `drop` (which its factories never set) with timm's linear rule
 * over blocks; `dropRate` adds dropout on the pooled features.
 *
 * Inference form (`fusedForInference()`, or `fused: true` at build time): every Conv2dBN, RepVGGDW and the
 * BN_Linear head folded (the reference's `fuse()` methods applied recursively, as the RepViT repository's
 * `replace_batchnorm` does); state-dict keys are then those of the reference's fused model
 * (`features.0.0.weight`, `features.1.token_mixer.0.bias`, `classifier.weight`, ...). m1.0 at 1000 classes:
 * 6,852,900 parameters in training form, 6,810,312 fused.
 */
import * as tf from '@tensorflow/tfjs';
import { Dropout } from '../../nn/dropout';
import { ForwardContext, GELU, Layer, Linear, Sequential } from '../../nn/index';
import { Rng } from '../../util/random';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { BNLinear, Conv2dBN, fuseLayer, RepViTBlock } from './layers';

/** One cfgs row of repvit.py: [kernel, expansion t, channels, use_se, use_hs, stride]. */
export type RepViTBlockCfg = [number, number, number, number, number, number];

/** `repvit_m1_0`'s cfgs (L333–360): widths 56 / 112 / 224 / 448, 3 + 4 + 16 + 3 blocks. */
export const REPVIT_M1_0_CFGS: readonly RepViTBlockCfg[] = [
  [3, 2, 56, 1, 0, 1],
  [3, 2, 56, 0, 0, 1],
  [3, 2, 56, 0, 0, 1],
  [3, 2, 112, 0, 0, 2],
  [3, 2, 112, 1, 0, 1],
  [3, 2, 112, 0, 0, 1],
  [3, 2, 112, 0, 0, 1],
  [3, 2, 224, 0, 1, 2],
  ...Array.from({ length: 14 }, (_, i): RepViTBlockCfg => [3, 2, 224, i % 2 === 0 ? 1 : 0, 1, 1]),
  [3, 2, 224, 0, 1, 1],
  [3, 2, 448, 0, 1, 2],
  [3, 2, 448, 1, 1, 1],
  [3, 2, 448, 0, 1, 1],
];

export interface RepViTConfig {
  cfgs: RepViTBlockCfg[];
  numClasses: number;
  seed: number;
  dropRate: number;
  dropPathRate: number;
  /** Build the fused inference form directly (to load a fused checkpoint). */
  fused: boolean;
}

/** repvit.py `_make_divisible` (L4–21): round to the nearest multiple of `divisor`, never below 90 %. */
export function makeDivisible(v: number, divisor = 8): number {
  let next = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (next < 0.9 * v) next += divisor;
  return next;
}

/** Check a cfgs list: one clear error naming the row. */
export function checkCfgs(name: string, cfgs: unknown): RepViTBlockCfg[] {
  if (!Array.isArray(cfgs) || cfgs.length === 0) {
    throw new Error(
      `${name}: option cfgs must be a non-empty array of [kernel, t, channels, use_se, use_hs, stride] rows`,
    );
  }
  return cfgs.map((row: unknown, i) => {
    const ok =
      Array.isArray(row) &&
      row.length === 6 &&
      row.every((v) => Number.isInteger(v)) &&
      row[0] % 2 === 1 &&
      row[1] === 2 &&
      row[2] > 0 &&
      (row[5] === 1 || row[5] === 2);
    if (!ok) {
      throw new Error(
        `${name}: cfgs[${i}] = ${JSON.stringify(row)} must be [odd kernel, 2, channels > 0, 0|1, 0|1, 1|2] ` +
          `(the reference asserts expansion 2)`,
      );
    }
    return row as RepViTBlockCfg;
  });
}

/** `Classfier` (L207–219) with distillation=False: `classifier` = BN_Linear. */
export class RepViTClassifier extends Layer {
  readonly classifier: BNLinear;

  constructor(dim: number, numClasses: number, rng: Rng) {
    super();
    this.classifier = this.addModule('classifier', new BNLinear(dim, numClasses, rng));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.classifier.forward(x, ctx);
  }
}

export class RepViT extends Layer implements ClassifierModel {
  readonly features: Sequential;
  /** Training form: `Classfier` (`classifier.classifier.bn/.l`); fused: one Linear (`classifier`). */
  readonly classifier: RepViTClassifier | Linear;
  private readonly headDropout: Dropout;
  readonly numClasses: number;
  readonly stageNames: string[];
  /** True for the inference form. */
  readonly fused: boolean;

  constructor(
    readonly config: RepViTConfig,
    readonly name = 'repvit',
    parts?: { features: Sequential; classifier: Linear },
  ) {
    super();
    this.numClasses = config.numClasses;
    this.stageNames = stageNamesOf(config.cfgs);
    if (parts) {
      this.fused = true;
      this.features = this.addModule('features', parts.features);
      this.classifier = this.addModule('classifier', parts.classifier);
    } else {
      this.fused = false;
      const rng = new Rng(config.seed);
      const c0 = config.cfgs[0][2]; // the stem takes the first row's channels as given (not rounded to 8)
      const half = Math.floor(c0 / 2); // input_channel // 2
      const stem = new Sequential(
        new Conv2dBN(3, half, { kernelSize: 3, stride: 2, padding: 1, rng }),
        new GELU(),
        new Conv2dBN(half, c0, { kernelSize: 3, stride: 2, padding: 1, rng }),
      );
      const blocks: RepViTBlock[] = [];
      let inputChannels = c0;
      const n = config.cfgs.length;
      config.cfgs.forEach(([k, t, c, useSe, , s], i) => {
        const out = makeDivisible(c);
        const hidden = makeDivisible(inputChannels * t);
        const drop = n > 1 ? (config.dropPathRate * i) / (n - 1) : 0;
        blocks.push(
          RepViTBlock.build(inputChannels, hidden, out, { kernelSize: k, stride: s, useSe: useSe === 1, drop, rng }),
        );
        inputChannels = out;
      });
      this.features = this.addModule('features', new Sequential(stem, ...blocks));
      this.classifier = this.addModule('classifier', new RepViTClassifier(inputChannels, config.numClasses, rng));
    }
    this.headDropout = this.addModule('head_drop', new Dropout(config.dropRate)); // no state
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → the last block's map [b, H/32, W/32, C] (m1.0: C = 448). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = x;
      for (let i = 0; i < this.features.length; i++) {
        y = this.features.at(i).forward(y, c); // [b, h, w, C_i]
        const tap = `features.${i}`;
        if (this.stageNames.includes(tap)) y = tapStage(c, tap, y);
      }
      return y as tf.Tensor4D;
    });
  }

  /** features [b, h, w, C] → adaptive average pool [b, C] → (dropout) → BN1d → Linear → logits [b, K]. */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const pooled = this.headDropout.forward(tf.mean(features, [1, 2]), c); // [b, C]
      return this.classifier.forward(pooled, c) as tf.Tensor2D;
    });
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
   * The inference form: a NEW RepViT in eval mode with every BN folded (see the file header); its
   * eval-mode logits equal this model's. This model is unchanged; the caller disposes the result.
   */
  get isInferenceForm(): boolean {
    return this.fused || this.classifier instanceof Linear;
  }

  fusedForInference(): RepViT {
    if (this.isInferenceForm || this.classifier instanceof Linear) {
      throw new Error(`${this.name}.fusedForInference: the model is already in its fused inference form`);
    }
    const features = fuseLayer(this.features) as Sequential;
    const classifier = this.classifier.classifier.fuse();
    return new RepViT({ ...this.config, fused: true }, this.name, { features, classifier }).eval();
  }
}

/** Tap names: the stem (`features.0`) and the last block before each stride-2 block, and the last block. */
function stageNamesOf(cfgs: RepViTBlockCfg[]): string[] {
  const names = ['features.0'];
  cfgs.forEach((row, i) => {
    const next = cfgs[i + 1];
    if (!next || next[5] === 2) names.push(`features.${i + 1}`);
  });
  return names;
}
