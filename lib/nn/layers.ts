/**
 * The layers the kit's models are built from, with PyTorch's names, defaults and numerics.
 *
 * Shapes (NHWC everywhere):
 *   b  batch        h, w  height, width        c  channels
 *
 * PyTorch → here: nn.Linear → Linear (weight stored [in, out]), nn.Conv2d → Conv2d (groups 1 or
 * depthwise with channel multiplier), nn.BatchNorm2d → BatchNorm2d (running stats, momentum 0.1,
 * unbiased running_var), nn.LayerNorm → LayerNorm (last axis), GELU (exact erf), SiLU, ReLU,
 * timm DropPath, nn.Sequential.
 *
 * MACs: every leaf layer reports its multiply-accumulates in `forward` with ptflops' module-hook rule
 * (lib/nn/macs.ts), so a model built from these layers is counted by running it once
 * (lib/models/complexity.ts `countMacs`). The functional helpers (`gelu`, `silu`, `layerNorm`) report
 * nothing, as ptflops does not see `F.gelu` and friends.
 */
import * as tf from '@tensorflow/tfjs';
import {
  fusedGelu,
  fusedPartialSilu,
  fusedRelu,
  GELU_KERNEL,
  PARTIAL_SILU_KERNEL,
  RELU_KERNEL,
} from '../backend/activations';
import { fusedKernelsAvailable } from '../backend/fused';
import {
  fusedBatchNorm,
  fusedBatchNormInference,
  fusedLayerNorm,
  fusedLayerNormGate,
  fusedNormsAvailable,
  LAYER_NORM_GATE_KERNEL,
} from '../backend/norms';
import { Rng } from '../util/random';
import { defaultInitRng, torchDefaultBound, uniform, constant } from './init';
import { reportConvMacs, reportElementwiseMacs, reportLinearMacs, reportNormMacs } from './macs';
import { ForwardContext, Module } from './module';

/** Modules with one tensor in and one out. */
export abstract class Layer extends Module {
  abstract forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor;
}

export interface LinearOptions {
  bias?: boolean;
  rng?: Rng;
  /** Never called by the official forward (docs/architecture.md §Quirks Q3): counted, not trained. */
  dead?: boolean;
}

/** nn.Linear(in, out): y = x·W + b over the last axis; x: [..., in] → [..., out]. */
export class Linear extends Layer {
  readonly weight: tf.Variable; // [in, out]  (torch: [out, in])
  readonly bias?: tf.Variable; // [out]

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super();
    const rng = opts.rng ?? defaultInitRng;
    const bound = torchDefaultBound(inFeatures);
    this.weight = this.addParameter('weight', uniform([inFeatures, outFeatures], -bound, bound, rng), {
      layout: 'linear',
      dead: opts.dead,
    });
    if (opts.bias !== false) {
      this.bias = this.addParameter('bias', uniform([outFeatures], -bound, bound, rng), { dead: opts.dead });
    }
  }

  forward(x: tf.Tensor): tf.Tensor {
    reportLinearMacs(x.shape, this.outFeatures, this.bias !== undefined);
    return tf.tidy(() => {
      // Fold leading axes into rows: wasm runs 2-D matMul through XNNPACK, batched matMul is ~14× slower.
      const lead = x.shape.slice(0, -1);
      const x2 = x.reshape([-1, this.inFeatures]); // [rows, in]
      let y = tf.matMul(x2, this.weight); // [rows, out]
      if (this.bias) y = tf.add(y, this.bias);
      return y.reshape([...lead, this.outFeatures]); // [..., out]
    });
  }
}

export interface Conv2dOptions {
  stride?: number;
  /** Zero padding on every side, as PyTorch's integer `padding`. */
  padding?: number;
  /** 1 (dense) or `inChannels` (depthwise; outChannels = inChannels·multiplier). */
  groups?: number;
  bias?: boolean;
  rng?: Rng;
}

/**
 * nn.Conv2d on NHWC input. groups = 1 runs tf.conv2d with filter [kh, kw, in, out]; groups = in runs
 * tf.depthwiseConv2d with filter [kh, kw, in, mult] (PyTorch output channel c·mult + j maps to the same
 * tfjs channel, docs/architecture.md §Porting notes). x: [b, h, w, in] → [b, h', w', out].
 */
export class Conv2d extends Layer {
  readonly weight: tf.Variable;
  readonly bias?: tf.Variable; // [out]
  readonly stride: number;
  readonly padding: number;
  readonly groups: number;
  readonly depthwise: boolean;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    opts: Conv2dOptions = {},
  ) {
    super();
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    this.groups = opts.groups ?? 1;
    const rng = opts.rng ?? defaultInitRng;
    const k = kernelSize;
    if (this.groups !== 1 && this.groups !== inChannels) {
      throw new Error(`Conv2d: groups must be 1 or inChannels (${inChannels}); got ${this.groups}`);
    }
    if (outChannels % this.groups !== 0) {
      throw new Error(`Conv2d: outChannels ${outChannels} is not divisible by groups ${this.groups}`);
    }
    this.depthwise = this.groups !== 1;
    const fanIn = (inChannels / this.groups) * k * k;
    const bound = torchDefaultBound(fanIn);
    if (this.depthwise) {
      const mult = outChannels / inChannels;
      this.weight = this.addParameter('weight', uniform([k, k, inChannels, mult], -bound, bound, rng), {
        layout: 'depthwise',
      });
    } else {
      this.weight = this.addParameter('weight', uniform([k, k, inChannels, outChannels], -bound, bound, rng), {
        layout: 'conv2d',
      });
    }
    if (opts.bias !== false) this.bias = this.addParameter('bias', uniform([outChannels], -bound, bound, rng));
  }

  /** PyTorch fan_out = out·kh·kw (for kaiming_normal_(mode='fan_out'), docs/architecture.md §Initialisation). */
  get fanOut(): number {
    return this.outChannels * this.kernelSize * this.kernelSize;
  }

  forward(x: tf.Tensor): tf.Tensor {
    const y = this.convolve(x);
    reportConvMacs('Conv2d', y.shape, this.kernelSize ** 2, this.inChannels, this.groups, this.bias !== undefined);
    return y;
  }

  private convolve(x: tf.Tensor): tf.Tensor {
    if (this.kernelSize === 1 && this.stride === 1 && this.padding === 0 && !this.depthwise) {
      // A pointwise conv is a matMul over all positions: XNNPACK's GEMM on wasm, forward and backward
      // (tfjs-wasm's Conv2DBackpropInput is a plain loop, ~100× slower on these shapes).
      return tf.tidy(() => {
        const [b, h, w] = x.shape;
        const x2 = x.reshape([-1, this.inChannels]); // [b·h·w, in]
        const w2 = this.weight.reshape([this.inChannels, this.outChannels]); // [in, out]
        // On wasm (fused kernels on) the bias rides in the GEMM: one kernel instead of two.
        const fusedBias = this.bias && fusedKernelsAvailable(x, '_FusedMatMul');
        let y = fusedBias ? tf.fused.matMul({ a: x2, b: w2, bias: this.bias }) : tf.matMul(x2, w2); // [b·h·w, out]
        if (this.bias && !fusedBias) y = tf.add(y, this.bias);
        return y.reshape([b, h, w, this.outChannels]);
      });
    }
    return tf.tidy(() => {
      const x4 = x as tf.Tensor4D; // [b, h, w, in]
      const p = this.padding;
      const pad: [[number, number], [number, number], [number, number], [number, number]] = [
        [0, 0],
        [p, p],
        [p, p],
        [0, 0],
      ];
      const s: [number, number] = [this.stride, this.stride];
      if (this.depthwise && this.bias && fusedKernelsAvailable(x, 'FusedDepthwiseConv2D')) {
        // On wasm (fused kernels on) XNNPACK adds the bias inside the depthwise conv: one kernel instead of two.
        const filter = this.weight as tf.Tensor4D;
        return tf.fused.depthwiseConv2d({ x: x4, filter, strides: s, pad: p, bias: this.bias }); // p on every side
      }
      let y = this.depthwise
        ? tf.depthwiseConv2d(x4, this.weight as tf.Tensor4D, s, p === 0 ? 'valid' : pad) // [b, h', w', in·mult]
        : tf.conv2d(x4, this.weight as tf.Tensor4D, s, p === 0 ? 'valid' : pad); // [b, h', w', out]
      if (this.bias) y = tf.add(y, this.bias);
      return y;
    });
  }
}

/**
 * nn.BatchNorm2d over the channel (last) axis. Training: normalise with the batch's biased variance
 * and update running_mean/var with momentum 0.1, running_var from the unbiased variance (n/(n−1)),
 * exactly as PyTorch. Eval: normalise with the running statistics.
 */
export class BatchNorm2d extends Layer {
  /** The PyTorch module mirrored, as its MACs are reported (BatchNorm1d reuses this class). */
  protected readonly kind: string = 'BatchNorm2d';
  readonly weight: tf.Variable; // [c]
  readonly bias: tf.Variable; // [c]
  readonly runningMean: tf.Variable; // [c]
  readonly runningVar: tf.Variable; // [c]

  constructor(
    readonly numFeatures: number,
    readonly eps = 1e-5,
    readonly momentum = 0.1,
  ) {
    super();
    this.weight = this.addParameter('weight', constant([numFeatures], 1));
    this.bias = this.addParameter('bias', constant([numFeatures], 0));
    this.runningMean = this.addBuffer('running_mean', constant([numFeatures], 0));
    this.runningVar = this.addBuffer('running_var', constant([numFeatures], 1));
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    reportNormMacs(this.kind, x.shape); // affine
    const training = ctx?.training ?? this.training;
    if (!training) {
      // y = x·scale + shift with per-channel scale = γ/√(running_var + eps), shift = β − running_mean·scale
      // (two broadcast ops: tfjs-wasm's FusedBatchNorm kernel is ~6× slower than this; on wasm one fused
      // kernel, lib/backend/norms.ts).
      if (fusedNormsAvailable(x)) {
        return fusedBatchNormInference(x, this.weight, this.bias, this.runningMean, this.runningVar, this.eps);
      }
      return tf.tidy(() => {
        const scale = tf.mul(this.weight, tf.rsqrt(tf.add(this.runningVar, this.eps))); // [c]
        const shift = tf.sub(this.bias, tf.mul(this.runningMean, scale)); // [c]
        return tf.add(tf.mul(x, scale), shift);
      });
    }
    const n = x.size / this.numFeatures;
    // Running statistics are state, not part of the loss: the assigned values have no path to it.
    const updateRunning = (mean: tf.Tensor, variance: tf.Tensor) => {
      const m = this.momentum;
      const unbiased = tf.mul(variance, n / Math.max(n - 1, 1));
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - m), tf.mul(mean, m)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - m), tf.mul(unbiased, m)));
    };
    // On wasm one fused kernel each way computes y and the batch moments (lib/backend/norms.ts).
    if (fusedNormsAvailable(x)) return fusedBatchNorm(x, this.weight, this.bias, this.eps, updateRunning);
    return tf.tidy(() => {
      const axes = x.shape.slice(0, -1).map((_, i) => i); // all but channels
      const { mean, variance } = tf.moments(x, axes); // [c], [c] (biased)
      updateRunning(mean, variance);
      const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps))); // [..., c]
      return tf.add(tf.mul(xhat, this.weight), this.bias);
    });
  }
}

/** nn.LayerNorm(c, eps=1e-5) over the last axis: x: [..., c] → [..., c]. */
export class LayerNorm extends Layer {
  /** The module kind its MACs are reported as; undefined for a module ptflops has no hook for (ConvNeXt's own). */
  protected readonly kind: string | undefined = 'LayerNorm';
  readonly weight: tf.Variable; // [c]
  readonly bias: tf.Variable; // [c]

  constructor(
    readonly normalizedShape: number,
    readonly eps = 1e-5,
  ) {
    super();
    this.weight = this.addParameter('weight', constant([normalizedShape], 1));
    this.bias = this.addParameter('bias', constant([normalizedShape], 0));
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (this.kind) reportNormMacs(this.kind, x.shape); // elementwise_affine
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/**
 * LayerNorm over the last axis with the biased variance (as PyTorch). On wasm the same formula runs as one
 * fused kernel each way (lib/backend/norms.ts; MSM_FUSED_KERNELS=0 keeps these tf ops).
 */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  if (fusedNormsAvailable(x)) return fusedLayerNorm(x, weight, bias, eps);
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const mean = tf.mean(x, axis, true); // [..., 1]
    const xc = tf.sub(x, mean); // [..., c]
    const variance = tf.mean(tf.square(xc), axis, true); // [..., 1]
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), weight), bias);
  });
}

/**
 * Exact GELU, 0.5·x·(1 + erf(x/√2)) (nn.GELU() default, not the tanh approximation). On wasm as one fused
 * kernel each way (lib/backend/activations.ts; MSM_FUSED_KERNELS=0 keeps these tf ops).
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (fusedKernelsAvailable(x, GELU_KERNEL)) return fusedGelu(x);
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/**
 * norm(x) ⊙ SiLU(z) for a LayerNorm `norm` over the last axis (VMamba's SS2D output gate, y ⊙ F.silu(z) after
 * out_norm). Reports the norm's MACs as its forward does (the SiLU is functional: not counted). On wasm as
 * one fused kernel each way (lib/backend/norms.ts; MSM_FUSED_KERNELS=0 keeps these tf ops).
 */
export function layerNormSiluGate(norm: LayerNorm, x: tf.Tensor, z: tf.Tensor): tf.Tensor {
  if (!fusedKernelsAvailable(x, LAYER_NORM_GATE_KERNEL) || !tf.util.arraysEqual(x.shape, z.shape)) {
    return tf.tidy(() => tf.mul(norm.forward(x), silu(z)));
  }
  reportNormMacs('LayerNorm', x.shape);
  return fusedLayerNormGate(x, norm.weight, norm.bias, z, norm.eps);
}

/** SiLU (swish): x·sigmoid(x). On wasm with a one-call gradient (lib/backend/activations.ts). */
export function silu(x: tf.Tensor): tf.Tensor {
  if (fusedKernelsAvailable(x, PARTIAL_SILU_KERNEL)) return fusedPartialSilu(x, x.shape[x.rank - 1] ?? 1);
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * SiLU on the first p channels of x [..., c], identity on the rest: x·(σ(x)·m + (1 − m)) with the channel
 * mask m = 1 on [0, p), 0 on [p, c). On wasm as one fused kernel each way (lib/backend/activations.ts).
 */
export function siluFirstChannels(x: tf.Tensor, p: number): tf.Tensor {
  if (fusedKernelsAvailable(x, PARTIAL_SILU_KERNEL)) return fusedPartialSilu(x, p);
  const c = x.shape[x.rank - 1] ?? 1;
  return tf.tidy(() => {
    const m = tf.tensor1d(new Float32Array(c).fill(1, 0, p)); // [c]
    const gate = tf.add(tf.mul(tf.sigmoid(x), m), tf.sub(1, m)); // [..., c]
    return tf.mul(x, gate);
  });
}

export class GELU extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    reportElementwiseMacs('GELU', x.shape);
    return gelu(x);
  }
}

export class SiLU extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    reportElementwiseMacs('SiLU', x.shape);
    return silu(x);
  }
}

export class ReLU extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    reportElementwiseMacs('ReLU', x.shape);
    // on wasm one fused kernel each way (lib/backend/activations.ts; MSM_FUSED_KERNELS=0 keeps tf.relu)
    return fusedKernelsAvailable(x, RELU_KERNEL) ? fusedRelu(x) : tf.relu(x);
  }
}

export class Identity extends Layer {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

/**
 * timm DropPath (stochastic depth): in training, each sample's whole tensor is zeroed with probability
 * p and otherwise scaled by 1/(1−p); identity in eval mode or when p = 0. The per-sample draws come
 * from `ctx.rng` so that runs are reproducible.
 */
export class DropPath extends Layer {
  constructor(readonly dropProb: number) {
    super();
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    const training = ctx?.training ?? this.training;
    if (!training || this.dropProb === 0) return x;
    const keep = 1 - this.dropProb;
    const rng = ctx?.rng ?? defaultInitRng;
    const b = x.shape[0];
    const mask = new Float32Array(b);
    for (let i = 0; i < b; i++) mask[i] = Math.floor(keep + rng.uniform()) / keep; // 0 or 1/keep
    return tf.tidy(() => tf.mul(x, tf.tensor(mask, [b, ...x.shape.slice(1).map(() => 1)])));
  }
}

/** nn.Sequential: children named '0', '1', ... applied in order. */
export class Sequential extends Layer {
  private readonly layers: Layer[];

  constructor(...layers: Layer[]) {
    super();
    this.layers = layers.map((l, i) => this.addModule(String(i), l));
  }

  get length(): number {
    return this.layers.length;
  }

  at(i: number): Layer {
    return this.layers[i];
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.layers.reduce((h, layer) => layer.forward(h, ctx), x));
  }
}
