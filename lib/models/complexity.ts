/**
 * Model complexity: parameter counts and multiply-accumulate (MAC) counts.
 *
 * MACs are counted by walking the model with shapes, not by running it: every module of the kit's
 * models implements `countMacs(counter, inputShape) → outputShape`, calls its children in the order its
 * forward pass does (a module called four times is counted four times), and reports its leaf layers
 * to a `MacCounter`. The leaf rules are ptflops' module hooks (the official `__main__` calls
 * ptflops' `get_model_complexity_info`):
 *
 *   Conv2d      output positions · k² · in · out/groups, + out per position for the bias
 *   Linear      numel(input) · out, + out once for the bias (ptflops counts the bias once, not per row)
 *   BatchNorm2d / LayerNorm   numel(input), ×2 with affine parameters
 *   activation modules (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid)   numel(output)
 *   pooling     numel(input)
 *   Conv1d      as Conv2d (ECA's per-channel weight: one MAC per channel)
 *
 * Functional calls (`F.silu(z)`), element-wise products and sums (gates, residuals), channel shuffles
 * and everything SS2D computes with raw parameters (einsum x_proj / dt_proj, the selective scan) are
 * invisible to module hooks. That is the `paper` count. With exactly these rules it reproduces the
 * module-level counts measured on the official model (docs/architecture.md §Parameters and MACs: t 0.6445, s 0.7616, b
 * 1.5088 G at 224²) to the digit; the paper prints 0.64 / 0.76 / 1.59 (b's 1.59 is unexplained,
 * docs/architecture.md §Open questions). `full` adds what the paper leaves out:
 *
 *   x_proj   l · e · (r + 2n) per direction       (einsum "b k d l, k c d -> b k c l")
 *   dt_proj  l · r · e per direction              (einsum "b k r l, k d r -> b k d l")
 *   scan     9 · l · e · n per direction          (VMamba's flops_selective_scan_fn convention, without
 *                                                   the D and z terms; docs/architecture.md §Parameters and MACs)
 */
import {
  BatchNorm2d,
  Conv2d,
  countParameters,
  DropPath,
  GELU,
  Identity,
  LayerNorm,
  Linear,
  Module,
  ParamCount,
  ReLU,
  Sequential,
  SiLU,
} from '../nn/index';

/** What the MAC walk adds up, by category. */
export interface MacReport {
  /** ptflops-style module-level count: the paper's convention (docs/architecture.md §Parameters and MACs). */
  paper: number;
  /** paper + xProj + dtProj + scan. */
  full: number;
  xProj: number;
  dtProj: number;
  scan: number;
  /** The paper count split by leaf kind ('Conv2d', 'Linear', 'BatchNorm2d', 'LayerNorm', ...). */
  byKind: Record<string, number>;
  /** Input shape the count is for, NHWC. */
  inputShape: number[];
}

const prod = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Accumulates MACs while a model walks itself with shapes. Shapes are NHWC / [..., features]. */
export class MacCounter {
  paper = 0;
  xProj = 0;
  dtProj = 0;
  scan = 0;
  readonly byKind = new Map<string, number>();

  private add(kind: string, macs: number): void {
    this.paper += macs;
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + macs);
  }

  /** nn.Linear: x [..., in] → [..., out]. */
  linear(layer: Linear, shape: number[]): number[] {
    if (shape[shape.length - 1] !== layer.inFeatures) {
      throw new Error(`MacCounter.linear: input [${shape}] does not end in ${layer.inFeatures} features`);
    }
    this.add('Linear', prod(shape) * layer.outFeatures + (layer.bias ? layer.outFeatures : 0));
    return [...shape.slice(0, -1), layer.outFeatures];
  }

  /** nn.Conv2d: x [b, h, w, in] → [b, h', w', out]. */
  conv2d(layer: Conv2d, shape: number[]): number[] {
    const [b, h, w, c] = shape;
    if (c !== layer.inChannels)
      throw new Error(`MacCounter.conv2d: input [${shape}] has ${c} ≠ ${layer.inChannels} channels`);
    const k = layer.kernelSize;
    const ho = Math.floor((h + 2 * layer.padding - k) / layer.stride) + 1;
    const wo = Math.floor((w + 2 * layer.padding - k) / layer.stride) + 1;
    const positions = b * ho * wo;
    const perPosition = k * k * layer.inChannels * (layer.outChannels / layer.groups);
    this.add('Conv2d', positions * perPosition + (layer.bias ? positions * layer.outChannels : 0));
    return [b, ho, wo, layer.outChannels];
  }

  /** A 1×1 grouped Conv1d over one position per channel (ECA as the official code builds it). */
  conv1dPerChannel(batch: number, channels: number): void {
    this.add('Conv1d', batch * channels);
  }

  batchNorm(layer: BatchNorm2d, shape: number[]): number[] {
    this.add('BatchNorm2d', prod(shape) * 2); // affine
    void layer;
    return shape;
  }

  layerNorm(layer: LayerNorm, shape: number[]): number[] {
    this.add('LayerNorm', prod(shape) * 2); // elementwise_affine
    void layer;
    return shape;
  }

  /** An activation module (nn.ReLU, nn.GELU, nn.SiLU, nn.Sigmoid): one MAC per output element. */
  activation(kind: 'ReLU' | 'GELU' | 'SiLU' | 'Sigmoid', shape: number[]): number[] {
    this.add(kind, prod(shape));
    return shape;
  }

  /** AdaptiveAvgPool2d(1): x [b, h, w, c] → [b, c]. */
  globalAvgPool(shape: number[]): number[] {
    this.add('AdaptiveAvgPool2d', prod(shape));
    return [shape[0], shape[shape.length - 1]];
  }

  /** SS2D's raw-parameter work for `calls` calls over k directions (not module-hooked: `full` only). */
  crossScan(opts: { batch: number; l: number; e: number; n: number; r: number; k: number }): void {
    const { batch, l, e, n, r, k } = opts;
    this.xProj += batch * k * l * e * (r + 2 * n);
    this.dtProj += batch * k * l * r * e;
    this.scan += batch * k * 9 * l * e * n;
  }

  report(inputShape: number[]): MacReport {
    return {
      paper: this.paper,
      full: this.paper + this.xProj + this.dtProj + this.scan,
      xProj: this.xProj,
      dtProj: this.dtProj,
      scan: this.scan,
      byKind: Object.fromEntries(this.byKind),
      inputShape,
    };
  }
}

/** A module that can count its MACs for an input shape; returns its output shape. */
export interface MacCountable {
  countMacs(counter: MacCounter, inputShape: number[]): number[];
}

export function isMacCountable(m: unknown): m is MacCountable {
  return typeof (m as MacCountable | undefined)?.countMacs === 'function';
}

/**
 * Count one layer of lib/nn (or any MacCountable module) applied to `shape`; returns the output shape.
 * Sequential containers are walked child by child, as ptflops' hooks fire on each child.
 */
export function countLayer(counter: MacCounter, layer: Module, shape: number[]): number[] {
  if (isMacCountable(layer)) return layer.countMacs(counter, shape);
  if (layer instanceof Sequential) {
    let s = shape;
    for (let i = 0; i < layer.length; i++) s = countLayer(counter, layer.at(i), s);
    return s;
  }
  if (layer instanceof Conv2d) return counter.conv2d(layer, shape);
  if (layer instanceof Linear) return counter.linear(layer, shape);
  if (layer instanceof BatchNorm2d) return counter.batchNorm(layer, shape);
  if (layer instanceof LayerNorm) return counter.layerNorm(layer, shape);
  if (layer instanceof ReLU) return counter.activation('ReLU', shape);
  if (layer instanceof GELU) return counter.activation('GELU', shape);
  if (layer instanceof SiLU) return counter.activation('SiLU', shape);
  if (layer instanceof Identity || layer instanceof DropPath) return shape; // no arithmetic
  throw new Error(`countLayer: no MAC rule for ${layer.constructor.name}`);
}

/**
 * MACs of one forward pass of `model` on a batch-1 RGB image of `inputSize` (a side or [h, w]).
 * `paper` reproduces the paper's GMACs convention; `full` adds SS2D's x_proj, dt_proj and scan.
 */
export function countMacs(
  model: Module,
  inputSize: number | [number, number],
  opts: { batch?: number; channels?: number } = {},
): MacReport {
  if (!isMacCountable(model)) {
    throw new Error(`countMacs: ${model.constructor.name} does not implement countMacs(counter, shape)`);
  }
  const [h, w] = typeof inputSize === 'number' ? [inputSize, inputSize] : inputSize;
  const shape = [opts.batch ?? 1, h, w, opts.channels ?? 3];
  const counter = new MacCounter();
  model.countMacs(counter, shape);
  return counter.report(shape);
}

/** Parameter counts as PyTorch reports them: total (dead included), trainable, used (dead excluded). */
export function countParams(model: Module): ParamCount {
  return countParameters(model);
}
