/**
 * ViT (Dosovitskiy et al., ICLR 2021) as the official repository defines it: zs1314/Microscopic-Mamba
 * `baseline_other/Transformer/Vit.py` (commit 8df9997; lucidrains' vit-pytorch layout), whose
 * `create_vit_model('tiny')` is Table I's ViT-tiny: dim 192, depth 12, heads 3, dim_head 64, mlp 768.
 *
 * Shapes:  b batch   H = W = imageSize   p patch   N = (H/p)·(W/p) patches   T = N + 1 tokens   D dim
 *
 *   x [b, H, W, 3] → patches [b, N, p·p·3]            Rearrange 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
 *     → LayerNorm(p·p·3) → Linear(→ D) → LayerNorm(D)  to_patch_embedding.1–3 (norms on both sides)
 *     → [cls; tokens] + pos_embedding → [b, T, D]       cls_token and pos_embedding ~ N(0, 1)
 *     → depth × { x += Attention(x); x += FeedForward(x) }   pre-norm blocks (the LayerNorm is inside each)
 *     → LayerNorm(D) → tokens [b, T, D]                 transformer.norm (forwardFeatures returns these)
 *     → pool: token 0 ('cls') or the mean of all T ('mean') → mlp_head Linear(D → K)
 *
 *   Attention:   LayerNorm → to_qkv (Linear D → 3·h·dh, no bias) → softmax(q·kᵀ/√dh)·v → to_out.0 (Linear
 *                h·dh → D). With heads = 1 and dim_head = D the reference skips to_out (nn.Identity).
 *   FeedForward: net.0 LayerNorm → net.1 Linear(D → mlp) → GELU (exact) → Dropout → net.4 Linear(mlp → D) → Dropout
 *
 * Parameter names are the reference's state-dict keys (`transformer.layers.3.0.to_qkv.weight`, …), so its
 * checkpoints load 1:1. Initialisation is PyTorch's construction-time default (the reference applies no
 * init function): Linear U(±1/√fan_in), LayerNorm 1/0, cls_token and pos_embedding N(0, 1).
 *
 * Kit options the reference lacks, all off by default: `dropRate` (dropout on the pooled token before the
 * head, as timm's drop_rate) and `dropPathRate` (timm DropPath on both residual branches of every block,
 * linearly increasing with depth). The reference's own dropouts are `dropout` and `embDropout`.
 */
import * as tf from '@tensorflow/tfjs';
import {
  DropPath,
  Dropout,
  GELU,
  Layer,
  LayerNorm,
  Linear,
  multiHeadAttention,
  normal,
  Sequential,
} from '../../nn/index';
import type { ForwardContext } from '../../nn/index';
import { Rng } from '../../util/random';
import { type ClassifierModel, type ModelForwardContext, tapStage } from '../contract';

export interface ViTConfig {
  numClasses: number;
  seed: number;
  /** Input side (square); the position embedding is sized for exactly this. */
  imageSize: number;
  /** Patch side; must divide imageSize. */
  patchSize: number;
  dim: number;
  depth: number;
  heads: number;
  dimHead: number;
  mlpDim: number;
  pool: 'cls' | 'mean';
  /** The reference's `dropout`: attention weights, output projection and both FeedForward dropouts. */
  dropout: number;
  /** The reference's `emb_dropout`: on the tokens after the position embedding. */
  embDropout: number;
  /** Kit: dropout before the head (0 = the reference). */
  dropRate: number;
  /** Kit: stochastic depth on the residual branches (0 = the reference). */
  dropPathRate: number;
}

/** Replaces the einops Rearrange (to_patch_embedding.0): x [b, H, W, c] → [b, N, p·p·c] in (p1 p2 c) order. */
export class PatchRearrange extends Layer {
  constructor(readonly patchSize: number) {
    super();
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [b, H, W, c] = x.shape;
    const p = this.patchSize;
    return tf.tidy(() =>
      x
        .reshape([b, H / p, p, W / p, p, c]) // [b, h, p1, w, p2, c]
        .transpose([0, 1, 3, 2, 4, 5]) // [b, h, w, p1, p2, c]
        .reshape([b, (H / p) * (W / p), p * p * c]),
    );
  }
}

/** Official `Attention` (pre-norm multi-head self-attention; the residual is added by the caller). */
export class ViTAttention extends Layer {
  readonly norm: LayerNorm;
  readonly to_qkv: Linear;
  /** `to_out` = Sequential(Linear, Dropout), or absent (nn.Identity) when heads = 1 and dim_head = dim. */
  readonly to_out?: Sequential;
  private readonly attnDrop: Dropout;

  constructor(
    readonly dim: number,
    readonly heads: number,
    readonly dimHead: number,
    dropout: number,
    rng: Rng,
  ) {
    super();
    const inner = heads * dimHead;
    this.norm = this.addModule('norm', new LayerNorm(dim));
    this.attnDrop = new Dropout(dropout); // self.dropout (no state)
    this.to_qkv = this.addModule('to_qkv', new Linear(dim, 3 * inner, { bias: false, rng }));
    if (!(heads === 1 && dimHead === dim)) {
      this.to_out = this.addModule('to_out', new Sequential(new Linear(inner, dim, { rng }), new Dropout(dropout)));
    }
  }

  /** x [b, T, D] → [b, T, D]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const qkv = this.to_qkv.forward(this.norm.forward(x)); // [b, T, 3·h·dh]
      const [q, k, v] = tf.split(qkv, 3, 2); // [b, T, h·dh] each (chunk(3, dim=-1))
      const out = multiHeadAttention(q, k, v, {
        heads: this.heads,
        scale: this.dimHead ** -0.5,
        dropWeights: (attn) => this.attnDrop.forward(attn, ctx),
      }); // [b, T, h·dh]
      return this.to_out ? this.to_out.forward(out, ctx) : out; // [b, T, D]
    });
  }
}

/** Official `FeedForward`: net = Sequential(LayerNorm, Linear, GELU, Dropout, Linear, Dropout). */
export class ViTFeedForward extends Layer {
  readonly net: Sequential;

  constructor(dim: number, hidden: number, dropout: number, rng: Rng) {
    super();
    this.net = this.addModule(
      'net',
      new Sequential(
        new LayerNorm(dim), // 0
        new Linear(dim, hidden, { rng }), // 1
        new GELU(), // 2
        new Dropout(dropout), // 3
        new Linear(hidden, dim, { rng }), // 4
        new Dropout(dropout), // 5
      ),
    );
  }

  /** x [b, T, D] → [b, T, D]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.net.forward(x, ctx);
  }
}

/** One entry of the official `Transformer.layers` ModuleList: children '0' (Attention) and '1' (FeedForward). */
export class ViTBlock extends Layer {
  readonly attn: ViTAttention;
  readonly ff: ViTFeedForward;
  private readonly dropPath: DropPath;

  constructor(cfg: ViTConfig, dropPath: number, rng: Rng) {
    super();
    this.attn = this.addModule('0', new ViTAttention(cfg.dim, cfg.heads, cfg.dimHead, cfg.dropout, rng));
    this.ff = this.addModule('1', new ViTFeedForward(cfg.dim, cfg.mlpDim, cfg.dropout, rng));
    this.dropPath = new DropPath(dropPath); // kit option, no state
  }

  /** x = attn(x) + x; x = ff(x) + x  (official `Transformer.forward`). x [b, T, D] → [b, T, D]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const y = tf.add(this.dropPath.forward(this.attn.forward(x, ctx), ctx), x);
      return tf.add(this.dropPath.forward(this.ff.forward(y, ctx), ctx), y);
    });
  }
}

/** Official `Transformer`: `norm` (the final LayerNorm) and `layers`. */
export class ViTTransformer extends Layer {
  readonly norm: LayerNorm;
  readonly layers: Sequential;

  constructor(cfg: ViTConfig, rng: Rng) {
    super();
    this.norm = this.addModule('norm', new LayerNorm(cfg.dim));
    const rates = Array.from({ length: cfg.depth }, (_, i) =>
      cfg.depth > 1 ? (cfg.dropPathRate * i) / (cfg.depth - 1) : 0,
    );
    this.layers = this.addModule('layers', new Sequential(...rates.map((r) => new ViTBlock(cfg, r, rng))));
  }

  /** tokens [b, T, D] → each block (tapped as `transformer.layers.i`) → final LayerNorm → [b, T, D]. */
  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor {
    return tf.tidy(() => {
      let y = x;
      for (let i = 0; i < this.layers.length; i++) {
        y = tapStage(ctx, `transformer.layers.${i}`, this.layers.at(i).forward(y, ctx)); // [b, T, D]
      }
      return this.norm.forward(y);
    });
  }
}

export class ViT extends Layer implements ClassifierModel {
  readonly pos_embedding: tf.Variable; // [1, N + 1, D]
  readonly cls_token: tf.Variable; // [1, 1, D]
  readonly to_patch_embedding: Sequential;
  readonly transformer: ViTTransformer;
  readonly mlp_head: Linear;
  readonly numClasses: number;
  readonly numPatches: number;
  private readonly embDrop: Dropout;
  private readonly headDrop: Dropout;

  constructor(
    readonly config: ViTConfig,
    readonly name = 'vit',
  ) {
    super();
    const cfg = config;
    const rng = new Rng(cfg.seed);
    const p = cfg.patchSize;
    const patchDim = 3 * p * p;
    this.numClasses = cfg.numClasses;
    this.numPatches = (cfg.imageSize / p) ** 2;
    // The reference's own parameters come first in its state dict.
    this.pos_embedding = this.addParameter('pos_embedding', normal([1, this.numPatches + 1, cfg.dim], 1, rng));
    this.cls_token = this.addParameter('cls_token', normal([1, 1, cfg.dim], 1, rng));
    this.to_patch_embedding = this.addModule(
      'to_patch_embedding',
      new Sequential(
        new PatchRearrange(p), // 0  [b, N, p·p·3]
        new LayerNorm(patchDim), // 1
        new Linear(patchDim, cfg.dim, { rng }), // 2  [b, N, D]
        new LayerNorm(cfg.dim), // 3
      ),
    );
    this.embDrop = new Dropout(cfg.embDropout); // self.dropout
    this.transformer = this.addModule('transformer', new ViTTransformer(cfg, rng));
    this.headDrop = new Dropout(cfg.dropRate); // kit option
    this.mlp_head = this.addModule('mlp_head', new Linear(cfg.dim, cfg.numClasses, { rng }));
  }

  /** Stage names passed to `tapStage`: each transformer block's output (before the final norm). */
  get stageNames(): string[] {
    return Array.from({ length: this.config.depth }, (_, i) => `transformer.layers.${i}`);
  }

  /** x [b, H, W, 3] → logits [b, K]. */
  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    return tf.tidy(() => this.forwardHead(this.forwardFeatures(x, ctx), ctx));
  }

  /** x [b, H, W, 3] → the final-normed tokens [b, N + 1, D] (cls token first). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor3D {
    this.checkInput(x.shape, x.dtype);
    const c: ModelForwardContext = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const patches = this.to_patch_embedding.forward(x, c); // [b, N, D]
      const b = x.shape[0];
      const cls = tf.tile(this.cls_token, [b, 1, 1]); // [b, 1, D]
      const tokens = tf.add(tf.concat([cls, patches], 1), this.pos_embedding); // [b, T, D]
      return this.transformer.forward(this.embDrop.forward(tokens, c), c) as tf.Tensor3D; // [b, T, D]
    });
  }

  /** tokens [b, T, D] → pool ('cls': token 0, 'mean': all tokens) → [b, D] → mlp_head → [b, K]. */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D {
    const c: ModelForwardContext = ctx ?? { training: this.training };
    return tf.tidy(() => {
      const [b, , d] = features.shape;
      const pooled =
        this.config.pool === 'mean' ? tf.mean(features, 1) : features.slice([0, 0, 0], [b, 1, d]).reshape([b, d]); // [b, D]
      return this.mlp_head.forward(this.headDrop.forward(pooled, c)) as tf.Tensor2D;
    });
  }

  /** The position embedding fixes the input size: exactly imageSize × imageSize, 3 channels. */
  checkInput(shape: number[], dtype = 'float32'): void {
    const where = `${this.name}.forward`;
    const s = this.config.imageSize;
    if (shape.length !== 4) throw new Error(`${where}: expected an NHWC batch [b, h, w, 3], got shape [${shape}]`);
    const [, h, w, ch] = shape;
    if (ch !== 3) throw new Error(`${where}: expected 3 input channels (RGB, NHWC), got ${ch} in shape [${shape}]`);
    if (dtype !== 'float32') throw new Error(`${where}: expected float32 input, got ${dtype}`);
    if (h !== s || w !== s) {
      throw new Error(
        `${where}: input ${h}×${w} does not match the model's imageSize ${s} (its position embedding has ` +
          `${this.numPatches} + 1 tokens); resize the input, or build the model with imageSize: ${h === w ? h : 'a square size'}`,
      );
    }
  }
}
