/**
 * SwiftFormer's building blocks, official `baseline_other/cnn_tran_hybird/Swiftformer.py`
 * (zs1314/Microscopic-Mamba 8df9997, = the SwiftFormer authors' `models/swiftformer.py`; Shaker et al.,
 * "SwiftFormer: Efficient Additive Attention for Transformer-based Real-time Mobile Vision
 * Applications", ICCV 2023, arXiv 2303.15446). Module and parameter names are the reference's state-dict keys.
 *
 * Shapes (NHWC):  b batch   h, w  map size   C  channels   N = h·w tokens   D  token width (= C here)
 *
 * Reference behaviours kept:
 *   - every Conv2d / Linear weight trunc_normal(std 0.02), bias 0 (`_init_weights`); `w_g` ~ N(0, 1);
 *   - BatchNorm2d (not LayerNorm) everywhere: after the depthwise convs, at the start of the Mlp, in the
 *     stem and the downsampling `Embedding`;
 *   - LayerScale γ = 1 in ConvEncoder and the local representation, 1e-5 on the attention and Mlp branches,
 *     stored as [C, 1, 1] parameters on the block;
 *   - DropPath only on SwiftFormerEncoder's two branches (ConvEncoder and the local representation are
 *     built with drop_path 0); the Mlp's Dropout gets p = 0 (Stage never passes drop_rate on).
 */
import * as tf from '@tensorflow/tfjs';
import {
  BatchNorm2d,
  constant,
  Conv2d,
  DropPath,
  ForwardContext,
  GELU,
  Layer,
  layerScale,
  layerScaleInit,
  Linear,
  normal,
  reportMacs,
  truncNormal,
} from '../../nn/index';
import { Rng } from '../../util/random';

/** `_init_weights`: trunc_normal(std 0.02) weight, zero bias (tfjs layout; the std is layout-free). */
export function truncNormalInit(layer: Conv2d | Linear, rng: Rng): void {
  tf.tidy(() => {
    layer.weight.assign(truncNormal(layer.weight.shape, 0.02, rng));
    if (layer.bias) layer.bias.assign(constant(layer.bias.shape, 0));
  });
}

/**
 * `ConvEncoder` (L63–106) and `SwiftFormerLocalRepresentation` (L194–235), which differ only in the hidden
 * width (C·mlp_ratio vs C): x + γ·pw2(GELU(pw1(BN(dw3×3(x))))), γ (`layer_scale`, [C,1,1]) initialised to 1.
 */
export class ConvEncoder extends Layer {
  readonly dwconv: Conv2d;
  readonly norm: BatchNorm2d;
  readonly pwconv1: Conv2d;
  readonly act: GELU;
  readonly pwconv2: Conv2d;
  readonly layer_scale: tf.Variable; // [C]  (torch [C, 1, 1])

  constructor(dim: number, hiddenDim: number, rng: Rng) {
    super();
    this.dwconv = this.addModule('dwconv', new Conv2d(dim, dim, 3, { padding: 1, groups: dim, rng }));
    this.norm = this.addModule('norm', new BatchNorm2d(dim));
    this.pwconv1 = this.addModule('pwconv1', new Conv2d(dim, hiddenDim, 1, { rng }));
    this.act = this.addModule('act', new GELU());
    this.pwconv2 = this.addModule('pwconv2', new Conv2d(hiddenDim, dim, 1, { rng }));
    this.layer_scale = this.addParameter('layer_scale', layerScaleInit(dim, 1), { torchShape: [dim, 1, 1] });
    for (const conv of [this.dwconv, this.pwconv1, this.pwconv2]) truncNormalInit(conv, rng);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const y = this.norm.forward(this.dwconv.forward(x), ctx); // [b, h, w, C]
      const branch = this.pwconv2.forward(this.act.forward(this.pwconv1.forward(y))); // [b, h, w, hidden] → [b, h, w, C]
      return tf.add(x, layerScale(branch, this.layer_scale));
    });
  }
}

/** x / max(‖x‖₂ over `axis`, 1e-12): torch.nn.functional.normalize(x, dim=axis). */
function l2Normalize(x: tf.Tensor, axis: number): tf.Tensor {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.sqrt(tf.sum(tf.square(x), axis, true)), 1e-12)));
}

/**
 * `EfficientAdditiveAttnetion` (L141–191; the reference's spelling), on tokens x [b, N, D]:
 *   q = normalize(to_query(x)), k = normalize(to_key(x))         L2 over channels
 *   α = normalize(q·w_g · D^−½)                                   L2 over the N TOKENS (dim=1), not a softmax
 *   g = Σ_N α ⊙ q                                                 one global query [b, D]
 *   out = final(Proj(g ⊙ k) + q)
 * `num_heads` = 1 and token_dim = in_dims in SwiftFormerEncoder, so every width is D.
 */
export class EfficientAdditiveAttention extends Layer {
  readonly to_query: Linear;
  readonly to_key: Linear;
  readonly w_g: tf.Variable; // [D, 1]
  readonly Proj: Linear;
  readonly final: Linear;
  readonly scaleFactor: number;

  constructor(
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    this.to_query = this.addModule('to_query', new Linear(dim, dim, { rng }));
    this.to_key = this.addModule('to_key', new Linear(dim, dim, { rng }));
    this.w_g = this.addParameter('w_g', normal([dim, 1], 1, rng)); // torch.randn(D, 1)
    this.scaleFactor = dim ** -0.5;
    this.Proj = this.addModule('Proj', new Linear(dim, dim, { rng }));
    this.final = this.addModule('final', new Linear(dim, dim, { rng }));
    for (const l of [this.to_query, this.to_key, this.Proj, this.final]) truncNormalInit(l, rng);
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [b, n, d] = x.shape;
    // Functional work ptflops' hooks do not see: q·w_g, Σ α⊙q and g⊙k, N·D each.
    reportMacs('attention', 3 * b * n * d, 'extra');
    return tf.tidy(() => {
      const query = l2Normalize(this.to_query.forward(x), 2); // [b, N, D]
      const key = l2Normalize(this.to_key.forward(x), 2); // [b, N, D]
      const queryWeight = tf.matMul(query.reshape([b * n, d]), this.w_g).reshape([b, n, 1]); // [b, N, 1]
      const alpha = l2Normalize(tf.mul(queryWeight, this.scaleFactor), 1); // [b, N, 1], unit norm over tokens
      const global = tf.sum(tf.mul(alpha, query), 1, true); // [b, 1, D]
      const out = tf.add(this.Proj.forward(tf.mul(global, key)), query); // [b, N, D]
      return this.final.forward(out); // [b, N, D]
    });
  }
}

/** `Mlp` (L109–138): BN → 1×1 conv (C → C·r) → GELU → 1×1 conv (→ C); its Dropout has p = 0 here. */
export class Mlp extends Layer {
  readonly norm1: BatchNorm2d;
  readonly fc1: Conv2d;
  readonly act: GELU;
  readonly fc2: Conv2d;

  constructor(dim: number, hiddenDim: number, rng: Rng) {
    super();
    this.norm1 = this.addModule('norm1', new BatchNorm2d(dim));
    this.fc1 = this.addModule('fc1', new Conv2d(dim, hiddenDim, 1, { rng }));
    this.act = this.addModule('act', new GELU());
    this.fc2 = this.addModule('fc2', new Conv2d(hiddenDim, dim, 1, { rng }));
    for (const conv of [this.fc1, this.fc2]) truncNormalInit(conv, rng);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.fc2.forward(this.act.forward(this.fc1.forward(this.norm1.forward(x, ctx))))); // [b, h, w, C]
  }
}

/**
 * `SwiftFormerEncoder` (L238–276), the last block of every stage:
 *   x = local_representation(x)
 *   x = x + DropPath(γ1 ⊙ attn(tokens(x)))      γ1, γ2 ([C,1,1]) start at 1e-5
 *   x = x + DropPath(γ2 ⊙ linear(x))
 */
export class SwiftFormerEncoder extends Layer {
  readonly local_representation: ConvEncoder;
  readonly attn: EfficientAdditiveAttention;
  readonly linear: Mlp;
  readonly drop_path: DropPath;
  readonly layer_scale_1: tf.Variable; // [C]  (torch [C, 1, 1])
  readonly layer_scale_2: tf.Variable; // [C]

  constructor(dim: number, opts: { mlpRatio: number; dropPath: number; layerScaleInit: number; rng: Rng }) {
    super();
    const { rng } = opts;
    this.local_representation = this.addModule('local_representation', new ConvEncoder(dim, dim, rng));
    this.attn = this.addModule('attn', new EfficientAdditiveAttention(dim, rng));
    this.linear = this.addModule('linear', new Mlp(dim, Math.floor(dim * opts.mlpRatio), rng));
    this.drop_path = this.addModule('drop_path', new DropPath(opts.dropPath)); // no state
    const torchShape = [dim, 1, 1];
    this.layer_scale_1 = this.addParameter('layer_scale_1', layerScaleInit(dim, opts.layerScaleInit), { torchShape });
    this.layer_scale_2 = this.addParameter('layer_scale_2', layerScaleInit(dim, opts.layerScaleInit), { torchShape });
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const local = this.local_representation.forward(x, ctx); // [b, h, w, C]
      const [b, h, w, c] = local.shape;
      const attended = this.attn.forward(local.reshape([b, h * w, c])).reshape([b, h, w, c]); // tokens row-major, as permute+reshape
      const y = tf.add(local, this.drop_path.forward(layerScale(attended, this.layer_scale_1), ctx));
      return tf.add(y, this.drop_path.forward(layerScale(this.linear.forward(y, ctx), this.layer_scale_2), ctx));
    });
  }
}

/** `Embedding` (L44–60) between stages: 3×3 stride-2 conv (pad 1, bias) → BatchNorm2d: [b, h, w, C] → [b, h/2, w/2, C']. */
export class Embedding extends Layer {
  readonly proj: Conv2d;
  readonly norm: BatchNorm2d;

  constructor(inChannels: number, outChannels: number, rng: Rng) {
    super();
    this.proj = this.addModule('proj', new Conv2d(inChannels, outChannels, 3, { stride: 2, padding: 1, rng }));
    this.norm = this.addModule('norm', new BatchNorm2d(outChannels));
    truncNormalInit(this.proj, rng);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.norm.forward(this.proj.forward(x), ctx));
  }
}
