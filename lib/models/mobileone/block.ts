/**
 * MobileOne's building block (Vasu et al. 2023, arXiv 2206.04040) as the official repository defines it:
 * zs1314/Microscopic-Mamba `baseline_other/CNN/mobileone.py` (commit 8df9997; Apple's ml-mobileone code):
 * `SEBlock` L16–52, `MobileOneBlock` L55–276 (forward L131–153, reparameterize L155–183,
 * _get_kernel_bias L185–217, _fuse_bn_tensor L219–256, _conv_bn L258–276).
 *
 * Shapes (NHWC):  b batch   h, w  input size   Ci, Co  in / out channels   k kernel size   s stride
 *
 * Training form (names = the file's state-dict keys):
 *   out = rbr_scale(x)            conv 1×1 → BN, only when k > 1                      [b, h/s, w/s, Co]
 *       + rbr_skip(x)             BN alone, only when Ci = Co and s = 1               [b, h, w, Ci]
 *       + Σ_i rbr_conv.i(x)       num_conv_branches × (conv k×k → BN), no conv bias    [b, h/s, w/s, Co]
 *   y = activation(se(out))       nn.ReLU module; se = SEBlock or the identity
 * Inference form (`inference_mode=True`, or after `reparameterize`): y = activation(se(reparam_conv(x))),
 * one k×k conv with bias holding every branch: each conv-BN folds to (W·γ/σ, β − μ·γ/σ), σ = √(var + eps);
 * the 1×1 kernel is zero-padded to k×k; the skip BN is the identity kernel (a 1 at the centre tap of
 * channel c → c) times γ/σ. Folding uses the BatchNorms' running statistics, so the two forms agree in
 * eval mode only. Groups are 1 or Ci (depthwise), as MobileOne uses.
 *
 * SEBlock: global mean (functional F.avg_pool2d, so ptflops does not count it) → reduce conv 1×1
 * (Ci → int(Ci·0.0625)) → F.relu → expand conv 1×1 → sigmoid → scale x. Only variant s4 uses it.
 */
import * as tf from '@tensorflow/tfjs';
import { BatchNorm2d, Conv2d, DropPath, type ForwardContext, Layer, ReLU } from '../../nn/index';
import { Rng } from '../../util/random';

/** The file's `SEBlock` (rd_ratio 0.0625): x [b, h, w, C] → x · sigmoid(expand(relu(reduce(mean(x))))). */
export class SEBlock extends Layer {
  readonly reduce: Conv2d;
  readonly expand: Conv2d;

  constructor(channels: number, rng: Rng, rdRatio = 0.0625) {
    super();
    const reduced = Math.floor(channels * rdRatio);
    if (reduced < 1) {
      throw new Error(
        `MobileOne SEBlock: int(${channels}·${rdRatio}) = 0 channels; SE needs ≥ ${1 / rdRatio} channels`,
      );
    }
    this.reduce = this.addModule('reduce', new Conv2d(channels, reduced, 1, { rng }));
    this.expand = this.addModule('expand', new Conv2d(reduced, channels, 1, { rng }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const squeezed = tf.mean(x, [1, 2], true); // [b, 1, 1, C]
      const gate = tf.sigmoid(this.expand.forward(tf.relu(this.reduce.forward(squeezed)))); // [b, 1, 1, C]
      return tf.mul(x, gate);
    });
  }
}

/** `_conv_bn`: a bias-free conv named `conv` followed by a BatchNorm2d named `bn`. */
export class ConvBN extends Layer {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(
    inChannels: number,
    outChannels: number,
    kernelSize: number,
    opts: { stride: number; padding: number; groups: number; rng: Rng },
  ) {
    super();
    this.conv = this.addModule('conv', new Conv2d(inChannels, outChannels, kernelSize, { ...opts, bias: false }));
    this.bn = this.addModule('bn', new BatchNorm2d(outChannels));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.bn.forward(this.conv.forward(x), ctx));
  }
}

export interface MobileOneBlockOptions {
  stride: number;
  padding: number;
  /** 1 (dense) or inChannels (depthwise). */
  groups: number;
  inferenceMode: boolean;
  useSe: boolean;
  numConvBranches: number;
  /** Stochastic depth on the conv branches of a block with a skip BN (timm's RepVGG/MobileOne blocks); 0 = the file. */
  dropPath?: number;
  rng: Rng;
}

export class MobileOneBlock extends Layer {
  readonly se?: SEBlock;
  readonly activation: ReLU;
  readonly reparamConv?: Conv2d;
  readonly rbrSkip?: BatchNorm2d;
  readonly rbrConv: ConvBN[] = [];
  readonly rbrScale?: ConvBN;
  readonly dropPath?: DropPath;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: MobileOneBlockOptions,
  ) {
    super();
    const { stride, padding, groups, rng } = opts;
    if (opts.useSe) this.se = this.addModule('se', new SEBlock(outChannels, rng));
    this.activation = this.addModule('activation', new ReLU());
    if (opts.inferenceMode) {
      this.reparamConv = this.addModule(
        'reparam_conv',
        new Conv2d(inChannels, outChannels, kernelSize, { stride, padding, groups, bias: true, rng }),
      );
      return;
    }
    // Registration order follows the file (rbr_skip, rbr_conv, rbr_scale), so state dicts list alike.
    if (outChannels === inChannels && stride === 1)
      this.rbrSkip = this.addModule('rbr_skip', new BatchNorm2d(inChannels));
    const branches = new ModuleList();
    for (let i = 0; i < opts.numConvBranches; i++) {
      this.rbrConv.push(
        branches.add(new ConvBN(inChannels, outChannels, kernelSize, { stride, padding, groups, rng })),
      );
    }
    this.addModule('rbr_conv', branches);
    if (kernelSize > 1) {
      this.rbrScale = this.addModule(
        'rbr_scale',
        new ConvBN(inChannels, outChannels, 1, { stride, padding: 0, groups, rng }),
      );
    }
    if (this.rbrSkip && (opts.dropPath ?? 0) > 0)
      this.dropPath = this.addModule('drop_path', new DropPath(opts.dropPath!));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      let out: tf.Tensor; // [b, h/s, w/s, Co]
      if (this.reparamConv) {
        out = this.reparamConv.forward(x);
      } else {
        // scale_out + Σ conv branches, then the skip BN (the file adds the same terms; with a drop path
        // only the non-identity branches are dropped, as timm's RepVGG-style blocks do).
        const parts: tf.Tensor[] = [];
        if (this.rbrScale) parts.push(this.rbrScale.forward(x, ctx));
        for (const branch of this.rbrConv) parts.push(branch.forward(x, ctx));
        out = parts.length === 1 ? parts[0] : tf.addN(parts);
        if (this.dropPath) out = this.dropPath.forward(out, ctx);
        if (this.rbrSkip) out = tf.add(out, this.rbrSkip.forward(x, ctx));
      }
      if (this.se) out = this.se.forward(out);
      return this.activation.forward(out);
    });
  }

  /**
   * The fused kernel and bias of `_get_kernel_bias` (uses the BatchNorms' running statistics), in the
   * kit's layout: dense [k, k, Ci, Co], depthwise [k, k, C, 1]; bias [Co].
   */
  fusedKernelBias(): { kernel: tf.Tensor4D; bias: tf.Tensor1D } {
    if (this.reparamConv) {
      return {
        kernel: this.reparamConv.weight.clone() as tf.Tensor4D,
        bias: this.reparamConv.bias!.clone() as tf.Tensor1D,
      };
    }
    return tf.tidy(() => {
      const k = this.kernelSize;
      const depthwise = this.opts.groups !== 1;
      const terms: Array<{ kernel: tf.Tensor; bias: tf.Tensor }> = [];
      for (const branch of this.rbrConv) terms.push(foldBN(branch.conv.weight, branch.bn, depthwise));
      if (this.rbrScale) {
        const { kernel, bias } = foldBN(this.rbrScale.conv.weight, this.rbrScale.bn, depthwise);
        const p = Math.floor(k / 2); // 1×1 → k×k: the tap sits at the centre
        terms.push({
          kernel: tf.pad(kernel, [
            [p, p],
            [p, p],
            [0, 0],
            [0, 0],
          ]),
          bias,
        });
      }
      if (this.rbrSkip) terms.push(foldBN(identityKernel(this.inChannels, k, depthwise), this.rbrSkip, depthwise));
      return {
        kernel: tf.addN(terms.map((t) => t.kernel)) as tf.Tensor4D,
        bias: tf.addN(terms.map((t) => t.bias)) as tf.Tensor1D,
      };
    });
  }
}

/** nn.ModuleList: children named '0', '1', ... (no forward of its own). */
class ModuleList extends Layer {
  private count = 0;

  add<M extends Layer>(module: M): M {
    return this.addModule(String(this.count++), module);
  }

  forward(): tf.Tensor {
    throw new Error('ModuleList has no forward; call its members');
  }
}

/** (W·γ/σ, β − μ·γ/σ) with σ = √(running_var + eps), γ/σ applied per output channel (`_fuse_bn_tensor`). */
function foldBN(kernel: tf.Tensor, bn: BatchNorm2d, depthwise: boolean): { kernel: tf.Tensor; bias: tf.Tensor } {
  const t = tf.div(bn.weight, tf.sqrt(tf.add(bn.runningVar, bn.eps))); // [Co]
  // Output channels are the last axis of a dense kernel, axis 2 of a depthwise one (multiplier 1).
  const scale = depthwise ? t.reshape([-1, 1]) : t;
  return { kernel: tf.mul(kernel, scale), bias: tf.sub(bn.bias, tf.mul(bn.runningMean, t)) };
}

/** The skip branch as a conv kernel: 1 at the centre tap from channel c to channel c (`id_tensor`). */
function identityKernel(channels: number, k: number, depthwise: boolean): tf.Tensor {
  const centre = Math.floor(k / 2);
  if (depthwise) {
    const v = new Float32Array(k * k * channels);
    for (let c = 0; c < channels; c++) v[(centre * k + centre) * channels + c] = 1;
    return tf.tensor4d(v, [k, k, channels, 1]);
  }
  const v = new Float32Array(k * k * channels * channels);
  for (let c = 0; c < channels; c++) v[((centre * k + centre) * channels + c) * channels + c] = 1;
  return tf.tensor4d(v, [k, k, channels, channels]);
}
