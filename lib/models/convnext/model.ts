/**
 * ConvNeXt (Liu et al. 2022, arXiv 2201.03545) as the official repository defines it:
 * zs1314/Microscopic-Mamba `baseline_other/CNN/convnext.py` (commit 8df9997; Meta's ConvNeXt code, "FB
 * naming"): `Block` L16–52, `ConvNeXt` L55–121, `LayerNorm` L124–150, `convnext_tiny` L166. State-dict
 * names are that file's (`downsample_layers.0.1.weight`, `stages.2.5.pwconv1.weight`, `stages.0.0.gamma`,
 * `norm.weight`, `head.bias`).
 *
 * Shapes (NHWC):  b batch   H, W input   C1..C4 = dims   K classes
 *
 *   x [b, H, W, 3] → downsample_layers.0 = conv 4×4/4 → LN → [b, H/4, W/4, C1] → stages.0
 *     → downsample_layers.i = LN → conv 2×2/2 → [b, H/2^(i+2), …, C(i+1)] → stages.i   (i = 1, 2, 3)
 *     → mean over h, w [b, C4] → norm (nn.LayerNorm) → (dropout) → head → logits [b, K]
 *
 *   Block(C): y = dwconv 7×7 (pad 3, groups C) → LN → pwconv1 Linear(C, 4C) → GELU → pwconv2 Linear(4C, C)
 *             → γ·y (LayerScale, γ initialised to 1e-6) ;  out = x + DropPath(y)
 *
 * Pitfalls (docs/architecture.md §Baselines): every LayerNorm has eps 1e-6; the stem's norm comes AFTER its conv while
 * each later downsampling layer normalises BEFORE its conv; the final norm acts on the pooled vector (there is no norm
 * on the last map); LayerScale's γ is a parameter named `gamma` of each block (no own module). The file's `LayerNorm`
 * class (channels_first in the stem/downsampling, channels_last in blocks) is not `nn.LayerNorm`, so ptflops does not
 * count it; only the final `norm` is — ConvNeXtLayerNorm below reports no MACs for that reason, and the pooling is the
 * functional `x.mean([-2, -1])` (not counted). In NHWC both data formats are a LayerNorm over the last axis.
 *
 * Initialisation (`_init_weights`, L107–110): conv and linear weights trunc_normal(std 0.02, cut at ±2),
 * biases 0; `head_init_scale` 1. `dropRate` (dropout before the head) is a switch beyond the file
 * (default 0 = the file); `dropPathRate` is its `drop_path_rate` (linspace over blocks).
 */
import * as tf from '@tensorflow/tfjs';
import {
  constant,
  Conv2d,
  DropPath,
  Dropout,
  type ForwardContext,
  GELU,
  Layer,
  LayerNorm,
  Linear,
  Sequential,
  truncNormal,
} from '../../nn/index';
import { Rng } from '../../util/random';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';
import { checkImageInput, linspace } from '../cnn-input';

export interface ConvNeXtConfig {
  numClasses: number;
  seed: number;
  depths: number[];
  dims: number[];
  /** γ's initial value (official 1e-6; 0 or less: no LayerScale, no `gamma` parameter). */
  layerScaleInitValue: number;
  /** Multiplies the head's initial weight and bias (official `head_init_scale`, 1). */
  headInitScale: number;
  dropRate: number;
  dropPathRate: number;
}

/**
 * The file's own `LayerNorm` (L124–150), eps 1e-6: over the channel axis, which is the last axis in NHWC
 * for both of its data formats. Not nn.LayerNorm, so it reports no MACs (ptflops has no hook for it).
 */
export class ConvNeXtLayerNorm extends LayerNorm {
  protected override readonly kind = undefined;

  constructor(normalizedShape: number, eps = 1e-6) {
    super(normalizedShape, eps);
  }
}

/** ConvNeXt `Block` (L16–52), the "(2)" form: dwconv → LN → Linear → GELU → Linear → γ·, + residual. */
export class ConvNeXtBlock extends Layer {
  readonly dwconv: Conv2d;
  readonly norm: ConvNeXtLayerNorm;
  readonly pwconv1: Linear;
  readonly act: GELU;
  readonly pwconv2: Linear;
  readonly gamma?: tf.Variable; // [C]
  readonly dropPath: DropPath;

  constructor(dim: number, dropPath: number, layerScaleInitValue: number, rng: Rng) {
    super();
    this.dwconv = this.addModule('dwconv', new Conv2d(dim, dim, 7, { padding: 3, groups: dim, rng }));
    this.norm = this.addModule('norm', new ConvNeXtLayerNorm(dim, 1e-6));
    this.pwconv1 = this.addModule('pwconv1', new Linear(dim, 4 * dim, { rng }));
    this.act = this.addModule('act', new GELU());
    this.pwconv2 = this.addModule('pwconv2', new Linear(4 * dim, dim, { rng }));
    if (layerScaleInitValue > 0) this.gamma = this.addParameter('gamma', constant([dim], layerScaleInitValue));
    this.dropPath = this.addModule('drop_path', new DropPath(dropPath));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      let y = this.norm.forward(this.dwconv.forward(x)); // [b, h, w, C]
      y = this.pwconv2.forward(this.act.forward(this.pwconv1.forward(y))); // [b, h, w, 4C] → [b, h, w, C]
      if (this.gamma) y = tf.mul(y, this.gamma);
      return tf.add(x, this.dropPath.forward(y, ctx)); // [b, h, w, C]
    });
  }
}

export class ConvNeXt extends Layer implements ClassifierModel {
  readonly downsampleLayers: Sequential; // downsample_layers.0..3
  readonly stages: Sequential; // stages.0..3
  readonly norm: LayerNorm;
  readonly headDrop: Dropout;
  readonly head: Linear;
  readonly numClasses: number;
  readonly stageNames: readonly string[];

  constructor(
    readonly config: ConvNeXtConfig,
    readonly name = 'convnext',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    const dims = cfg.dims;
    this.numClasses = cfg.numClasses;
    const downsample = [
      // Stem: conv first, then the norm (L77–81).
      new Sequential(new Conv2d(3, dims[0], 4, { stride: 4, rng }), new ConvNeXtLayerNorm(dims[0], 1e-6)),
      // Downsampling: norm first, then the conv (L82–87).
      ...[1, 2, 3].map(
        (i) =>
          new Sequential(
            new ConvNeXtLayerNorm(dims[i - 1], 1e-6),
            new Conv2d(dims[i - 1], dims[i], 2, { stride: 2, rng }),
          ),
      ),
    ];
    this.downsampleLayers = this.addModule('downsample_layers', new Sequential(...downsample));
    const rates = linspace(
      cfg.dropPathRate,
      cfg.depths.reduce((a, b) => a + b, 0),
    );
    let cur = 0;
    const stages = cfg.depths.map((depth, i) => {
      const blocks = Array.from(
        { length: depth },
        (_, j) => new ConvNeXtBlock(dims[i], rates[cur + j], cfg.layerScaleInitValue, rng),
      );
      cur += depth;
      return new Sequential(...blocks);
    });
    this.stages = this.addModule('stages', new Sequential(...stages));
    this.norm = this.addModule('norm', new LayerNorm(dims[3], 1e-6)); // nn.LayerNorm: counted by ptflops
    this.headDrop = this.addModule('head_drop', new Dropout(cfg.dropRate));
    this.head = this.addModule('head', new Linear(dims[3], cfg.numClasses, { rng }));
    this.stageNames = [0, 1, 2, 3].map((i) => `stages.${i}`);
    this.initWeights(rng, cfg.headInitScale);
  }

  /** `_init_weights` (L107–110) over every Conv2d and Linear, then the head scaled by head_init_scale. */
  private initWeights(rng: Rng, headInitScale: number): void {
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d || m instanceof Linear) {
        const scale = m === this.head ? headInitScale : 1;
        tf.tidy(() => {
          m.weight.assign(tf.mul(truncNormal(m.weight.shape, 0.02, rng), scale));
          if (m.bias) m.bias.assign(tf.zerosLike(m.bias)); // 0 · head_init_scale is 0
        });
      }
    }
  }

  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → stage 4's map [b, H/32, W/32, C4] (official `forward_features` before its pooling). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor4D {
    this.checkInput(x.shape, x.dtype);
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      let y = x;
      for (let i = 0; i < 4; i++) {
        y = this.downsampleLayers.at(i).forward(y, c); // [b, H/2^(i+2), W/2^(i+2), C(i+1)]
        y = tapStage(c, `stages.${i}`, this.stages.at(i).forward(y, c)); // same shape
      }
      return y as tf.Tensor4D;
    });
  }

  /** features [b, h, w, C4] → mean over h, w → norm → (dropout) → head → logits [b, K] (L112–120). */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const pooled = this.norm.forward(tf.mean(features, [1, 2])); // [b, C4]
      return this.head.forward(this.headDrop.forward(pooled, c)) as tf.Tensor2D;
    });
  }

  checkInput(shape: number[], dtype = 'float32'): void {
    checkImageInput(`${this.name}.forward`, shape, dtype, 32, "the stem's stride 4 and three stride-2 downsamplings");
  }
}
