/**
 * RepViT's building blocks, official `baseline_other/CNN/repvit.py` (zs1314/Microscopic-Mamba 8df9997,
 * = the RepViT authors' `model/repvit.py`; Wang et al., "RepViT: Revisiting Mobile CNN From ViT
 * Perspective", CVPR 2024, arXiv 2307.09283). Each class names the reference lines it mirrors; module and
 * parameter names are the reference's state-dict keys.
 *
 * Shapes (NHWC):  b batch   h, w  map size   C  channels
 *
 * Every re-parameterisable module has `fuse()` returning a NEW module in inference form with the same
 * eval-mode outputs (the reference's `fuse()` methods, which its repository applies recursively with
 * `replace_batchnorm`):
 *   Conv2dBN   conv → BN                        ⇒ Conv2d with bias
 *   RepVGGDW   BN(dw3×3·BN + dw1×1 + identity)  ⇒ one depthwise 3×3 Conv2d with bias
 *   BNLinear   BN1d → Linear                    ⇒ Linear
 * (the reference's `Residual.fuse` folds an identity only when it wraps a single conv; RepViT's residuals
 * wrap a Sequential, which stays a Residual with its convs fused.)
 */
import * as tf from '@tensorflow/tfjs';
import {
  BatchNorm1d,
  BatchNorm2d,
  bnScaleShift,
  constant,
  Conv2d,
  convWithWeights,
  DropPath,
  ForwardContext,
  GELU,
  Identity,
  Layer,
  Linear,
  ReLU,
  scaleFilter,
  Sequential,
  truncNormal,
} from '../../nn/index';
import { Rng } from '../../util/random';

/** A module with an inference form. `fuse()` returns a new, independent module (this one is unchanged). */
export interface Fusable {
  fuse(): Layer;
}

function isFusable(l: Layer): l is Layer & Fusable {
  return typeof (l as Partial<Fusable>).fuse === 'function';
}

/** Throwaway generator for the initial values of fused modules (overwritten at once). */
const fuseInitRng = () => new Rng(0);

/** The inference form of any layer RepViT is built from (fusable ones fused, parameter-free ones copied). */
export function fuseLayer(layer: Layer): Layer {
  if (isFusable(layer)) return layer.fuse();
  if (layer instanceof Sequential) {
    return new Sequential(...Array.from({ length: layer.length }, (_, i) => fuseLayer(layer.at(i))));
  }
  if (layer instanceof GELU) return new GELU();
  if (layer instanceof Identity) return new Identity();
  throw new Error(`repvit fuse: no inference form for ${layer.constructor.name}`);
}

/**
 * `Conv2d_BN` (L29–55): conv without bias (`c`) then BatchNorm2d (`bn`) whose γ starts at
 * `bnWeightInit` (0 for the last conv of every channel mixer, so each residual starts as the identity).
 */
export class Conv2dBN extends Layer implements Fusable {
  readonly c: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(
    inChannels: number,
    outChannels: number,
    opts: { kernelSize?: number; stride?: number; padding?: number; groups?: number; bnWeightInit?: number; rng: Rng },
  ) {
    super();
    this.c = this.addModule(
      'c',
      new Conv2d(inChannels, outChannels, opts.kernelSize ?? 1, {
        stride: opts.stride ?? 1,
        padding: opts.padding ?? 0,
        groups: opts.groups ?? 1,
        bias: false,
        rng: opts.rng,
      }),
    );
    this.bn = this.addModule('bn', new BatchNorm2d(outChannels));
    tf.tidy(() => this.bn.weight.assign(constant([outChannels], opts.bnWeightInit ?? 1)));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.bn.forward(this.c.forward(x), ctx)); // [b, h', w', out]
  }

  /** L42–55: W·scale, bias = shift. */
  fuse(): Conv2d {
    const { weight, bias } = this.fusedWeights();
    return convWithWeights(this.c, weight, bias);
  }

  /** The folded filter (tfjs layout) and bias. */
  fusedWeights(): { weight: tf.Tensor; bias: tf.Tensor1D } {
    return tf.tidy(() => {
      const { scale, shift } = bnScaleShift(this.bn);
      return { weight: scaleFilter(this.c, this.c.weight, scale), bias: shift };
    });
  }
}

/**
 * `RepVGGDW` (L86–127), the stride-1 token mixer: BN(dw3×3-BN(x) + dw1×1(x) + x), all depthwise.
 * Names: `conv` (Conv2dBN), `conv1` (1×1 depthwise conv with bias), `bn`.
 */
export class RepVGGDW extends Layer implements Fusable {
  readonly conv: Conv2dBN;
  readonly conv1: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    this.conv = this.addModule('conv', new Conv2dBN(dim, dim, { kernelSize: 3, padding: 1, groups: dim, rng }));
    this.conv1 = this.addModule('conv1', new Conv2d(dim, dim, 1, { groups: dim, rng }));
    this.bn = this.addModule('bn', new BatchNorm2d(dim));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.bn.forward(tf.add(tf.add(this.conv.forward(x, ctx), this.conv1.forward(x)), x), ctx));
  }

  /**
   * L98–127: the 1×1 kernel and the identity become the centre tap of the 3×3 kernel, the biases add,
   * then the outer BN folds in: W' = (W3 + W1 + I)·scale, b' = β + (b3 + b1 − running_mean)·scale.
   */
  fuse(): Conv2d {
    const { weight, bias } = tf.tidy(() => {
      const inner = this.conv.fusedWeights(); // dw 3×3 [3, 3, C, 1] and its bias [C]
      const centre = tf.add(this.conv1.weight, 1).pad([
        [1, 1],
        [1, 1],
        [0, 0],
        [0, 0],
      ]); // W1 + identity: [1, 1, C, 1] → centre tap of [3, 3, C, 1]
      const { scale } = bnScaleShift(this.bn);
      const innerBias = tf.sub(tf.add(inner.bias, this.conv1.bias!), this.bn.runningMean); // [C]
      return {
        weight: scaleFilter(this.conv.c, tf.add(inner.weight, centre), scale),
        bias: tf.add(this.bn.bias, tf.mul(innerBias, scale)),
      };
    });
    return convWithWeights(this.conv.c, weight, bias);
  }
}

/**
 * timm's `SqueezeExcite` = `SEModule(channels, rd_ratio=0.25)` (timm 0.4.12 layers/squeeze_excite.py):
 * s = sigmoid(fc2(ReLU(fc1(mean_hw(x))))), y = x·s. fc1/fc2 are 1×1 convs with bias; the reduced width
 * is make_divisible(C·0.25, 8, round_limit=0). timm's `bn` is an Identity here (no norm_layer): no state.
 */
export class SqueezeExcite extends Layer implements Fusable {
  readonly fc1: Conv2d;
  readonly act = new ReLU();
  readonly fc2: Conv2d;

  constructor(
    readonly channels: number,
    readonly reducedChannels: number,
    rng: Rng,
  ) {
    super();
    this.fc1 = this.addModule('fc1', new Conv2d(channels, reducedChannels, 1, { rng }));
    this.addModule('act', this.act);
    this.fc2 = this.addModule('fc2', new Conv2d(reducedChannels, channels, 1, { rng }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const squeezed = tf.mean(x, [1, 2], true); // [b, 1, 1, C]
      const gate = tf.sigmoid(this.fc2.forward(this.act.forward(this.fc1.forward(squeezed)))); // [b, 1, 1, C]
      return tf.mul(x, gate); // [b, h, w, C]
    });
  }

  /** Nothing to fold: a copy with the same weights. */
  fuse(): SqueezeExcite {
    const copy = new SqueezeExcite(this.channels, this.reducedChannels, fuseInitRng());
    copy.loadStateDict(this.stateDict());
    return copy;
  }
}

/** timm `make_divisible(v, divisor, round_limit=0)` (the reduced width of timm's SE). */
export function seReducedChannels(channels: number, ratio = 0.25, divisor = 8): number {
  return Math.max(divisor, Math.floor((channels * ratio + divisor / 2) / divisor) * divisor);
}

/**
 * `Residual` (L58–83): x + m(x). The reference drops the branch per sample with probability `drop` in
 * training (mask rand ≥ drop, scaled by 1/(1−drop): timm's DropPath); RepViT's factories leave drop = 0.
 */
export class Residual extends Layer implements Fusable {
  readonly m: Sequential;
  private readonly dropPath: DropPath;

  constructor(
    m: Sequential,
    readonly drop = 0,
  ) {
    super();
    this.m = this.addModule('m', m);
    this.dropPath = this.addModule('drop_path', new DropPath(drop)); // no state: no state-dict key
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.dropPath.forward(this.m.forward(x, ctx), ctx)));
  }

  fuse(): Residual {
    return new Residual(fuseLayer(this.m) as Sequential, this.drop);
  }
}

/**
 * `RepViTBlock` (L130–173): token mixer then channel mixer (a residual 1×1 FFN, expansion 2, GELU).
 *   stride 1: token_mixer = [RepVGGDW, SE or Identity]
 *   stride 2: token_mixer = [dw k×k stride-2 Conv2dBN, SE or Identity, 1×1 Conv2dBN inp→oup]
 * `useHs` selects GELU in both cases in the reference (`nn.GELU() if use_hs else nn.GELU()`).
 */
export class RepViTBlock extends Layer implements Fusable {
  readonly token_mixer: Sequential;
  readonly channel_mixer: Residual;

  constructor(tokenMixer: Sequential, channelMixer: Residual) {
    super();
    this.token_mixer = this.addModule('token_mixer', tokenMixer);
    this.channel_mixer = this.addModule('channel_mixer', channelMixer);
  }

  static build(
    inp: number,
    hiddenDim: number,
    oup: number,
    opts: { kernelSize: number; stride: number; useSe: boolean; drop: number; rng: Rng },
  ): RepViTBlock {
    const { kernelSize: k, stride, useSe, rng } = opts;
    if (stride !== 1 && stride !== 2) throw new Error(`RepViTBlock: stride must be 1 or 2, got ${stride}`);
    if (hiddenDim !== 2 * inp) throw new Error(`RepViTBlock: hidden_dim ${hiddenDim} must be 2·inp (${2 * inp})`);
    const se = () => (useSe ? new SqueezeExcite(inp, seReducedChannels(inp), rng) : new Identity());
    let tokenMixer: Sequential;
    let ffnIn: number;
    let ffnHidden: number;
    if (stride === 2) {
      tokenMixer = new Sequential(
        new Conv2dBN(inp, inp, { kernelSize: k, stride: 2, padding: (k - 1) / 2, groups: inp, rng }),
        se(),
        new Conv2dBN(inp, oup, { rng }),
      );
      [ffnIn, ffnHidden] = [oup, 2 * oup];
    } else {
      if (inp !== oup) throw new Error(`RepViTBlock: a stride-1 block needs inp = oup (got ${inp} → ${oup})`);
      tokenMixer = new Sequential(new RepVGGDW(inp, rng), se());
      [ffnIn, ffnHidden] = [inp, hiddenDim];
    }
    const channelMixer = new Residual(
      new Sequential(
        new Conv2dBN(ffnIn, ffnHidden, { rng }), // pw
        new GELU(),
        new Conv2dBN(ffnHidden, oup, { bnWeightInit: 0, rng }), // pw-linear, γ = 0
      ),
      opts.drop,
    );
    return new RepViTBlock(tokenMixer, channelMixer);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.channel_mixer.forward(this.token_mixer.forward(x, ctx), ctx));
  }

  fuse(): RepViTBlock {
    return new RepViTBlock(fuseLayer(this.token_mixer) as Sequential, this.channel_mixer.fuse());
  }
}

/** `BN_Linear` (L179–204): BatchNorm1d (`bn`) then Linear (`l`, trunc_normal std 0.02, bias 0). */
export class BNLinear extends Layer implements Fusable {
  readonly bn: BatchNorm1d;
  readonly l: Linear;

  constructor(inFeatures: number, outFeatures: number, rng: Rng) {
    super();
    this.bn = this.addModule('bn', new BatchNorm1d(inFeatures));
    this.l = this.addModule('l', new Linear(inFeatures, outFeatures, { rng }));
    tf.tidy(() => {
      this.l.weight.assign(truncNormal([inFeatures, outFeatures], 0.02, rng));
      this.l.bias!.assign(constant([outFeatures], 0));
    });
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.l.forward(this.bn.forward(x, ctx))); // [b, in] → [b, out]
  }

  /** L190–204: W' = diag(scale)·W, b' = shift·W + b (W in tfjs layout [in, out]). */
  fuse(): Linear {
    const linear = new Linear(this.l.inFeatures, this.l.outFeatures, { rng: fuseInitRng() });
    tf.tidy(() => {
      const { scale, shift } = bnScaleShift(this.bn);
      linear.weight.assign(tf.mul(this.l.weight, scale.reshape([-1, 1]))); // [in, out]
      linear.bias!.assign(tf.add(tf.matMul(shift.reshape([1, -1]), this.l.weight).reshape([-1]), this.l.bias!)); // [out]
    });
    return linear;
  }
}
