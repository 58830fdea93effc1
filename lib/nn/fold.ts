/**
 * Eval-mode BatchNorm folding: conv → BatchNorm2d with nothing between becomes one conv with bias.
 *
 * In eval mode BatchNorm is a per-channel affine map with its running statistics,
 *   bn(y) = y·scale + shift,   scale = γ/√(running_var + eps),   shift = β − running_mean·scale   [C] each,
 * so for y = conv(x) + b (b = 0 without a conv bias) it folds into the conv's output channels:
 *   W' = W·scale (per output channel),   b' = b·scale + shift.
 * PyTorch does the same with `torch.nn.utils.fusion.fuse_conv_bn_eval` and `torch.ao.quantization.fuse_modules`
 * (which also leaves an nn.Identity where the BatchNorm was). The folded form holds in eval mode only:
 * training normalises with batch statistics, so an inference form is never trained.
 *
 * Legal only for conv → BN with nothing between (an activation, a residual add or a split between them
 * breaks it). A BN *before* a padded conv cannot fold forward into it (the padding zeros would need the
 * shift too), and LayerNorm normalises each position with that position's statistics: nothing to fold.
 *
 * `foldConvBatchNorm(root, pairs)` is the model surgery: each pair of child paths (conv, bn) becomes
 * (folded conv, Identity) in place, through `Module.replaceChild`. Callers fold a COPY of a model
 * (lib/models/inference.ts): the training model's parameters are never touched.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../util/random';
import { BatchNorm2d, Conv2d, Identity, Sequential } from './layers';
import type { Module } from './module';

/** Per-channel eval-mode BN affine map: scale = γ/√(running_var + eps), shift = β − running_mean·scale. */
export function bnScaleShift(bn: BatchNorm2d): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
  return tf.tidy(() => {
    const scale = tf.mul(bn.weight, tf.rsqrt(tf.add(bn.runningVar, bn.eps))) as tf.Tensor1D; // [C]
    const shift = tf.sub(bn.bias, tf.mul(bn.runningMean, scale)) as tf.Tensor1D; // [C]
    return { scale, shift };
  });
}

/** Multiply a conv filter by a per-output-channel factor (dense [kh,kw,in,out]; depthwise [kh,kw,C,m]). */
export function scaleFilter(conv: Conv2d, filter: tf.Tensor, perOut: tf.Tensor1D): tf.Tensor {
  return tf.tidy(() => {
    if (!conv.depthwise) return tf.mul(filter, perOut); // broadcast over the last axis (out)
    const [, , c, m] = filter.shape;
    return tf.mul(filter, perOut.reshape([c, m])); // output channel c·m + j (PyTorch order)
  });
}

/** A new Conv2d shaped like `like` (stride, padding, groups) with a bias, holding `weight` and `bias` (both disposed). */
export function convWithWeights(like: Conv2d, weight: tf.Tensor, bias: tf.Tensor): Conv2d {
  const conv = new Conv2d(like.inChannels, like.outChannels, like.kernelSize, {
    stride: like.stride,
    padding: like.padding,
    groups: like.groups,
    bias: true,
    rng: new Rng(0), // throwaway initial values, overwritten at once
  });
  conv.weight.assign(weight);
  conv.bias!.assign(bias);
  weight.dispose();
  bias.dispose();
  return conv;
}

/** conv → bn (eval) as ONE new Conv2d with bias: W' = W·scale, b' = b·scale + shift. Neither input changes. */
export function foldBatchNormIntoConv(conv: Conv2d, bn: BatchNorm2d): Conv2d {
  if (bn.numFeatures !== conv.outChannels) {
    throw new Error(
      `foldBatchNormIntoConv: BatchNorm2d(${bn.numFeatures}) cannot follow a conv with ${conv.outChannels} outputs`,
    );
  }
  const { weight, bias } = tf.tidy(() => {
    const { scale, shift } = bnScaleShift(bn);
    const b = conv.bias ? tf.add(tf.mul(conv.bias, scale), shift) : shift; // [C]
    return { weight: scaleFilter(conv, conv.weight, scale), bias: b };
  });
  return convWithWeights(conv, weight, bias);
}

/**
 * Every (Conv2d, BatchNorm2d) pair of adjacent children of a Sequential under `root` (a Sequential passes
 * one child's output straight to the next, so these always fold), as child paths.
 */
export function sequentialConvBatchNormPairs(root: Module): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [path, m] of root.namedModules()) {
    if (!(m instanceof Sequential)) continue;
    for (let i = 0; i + 1 < m.length; i++) {
      const [a, b] = [m.at(i), m.at(i + 1)];
      // Exactly BatchNorm2d: a subclass (BatchNorm1d) never follows a conv's 4-D output.
      if (a instanceof Conv2d && b instanceof BatchNorm2d && b.constructor === BatchNorm2d) {
        pairs.push([join(path, String(i)), join(path, String(i + 1))]);
      }
    }
  }
  return pairs;
}

/**
 * Fold each (conv path, bn path) pair of `root` IN PLACE: the conv becomes the folded conv, the BN an
 * Identity; the replaced modules are disposed. The caller guarantees that each BN directly follows its
 * conv in the forward pass. Returns the number of folded pairs.
 */
export function foldConvBatchNorm(root: Module, pairs: Array<[string, string]>): number {
  const modules = new Map(root.namedModules());
  for (const [convPath, bnPath] of pairs) {
    const conv = modules.get(convPath);
    const bn = modules.get(bnPath);
    if (!(conv instanceof Conv2d) || !(bn instanceof BatchNorm2d)) {
      throw new Error(`foldConvBatchNorm: '${convPath}' → '${bnPath}' is not a Conv2d → BatchNorm2d pair`);
    }
    const folded = foldBatchNormIntoConv(conv, bn);
    const convAt = parentOf(modules, convPath);
    const bnAt = parentOf(modules, bnPath);
    convAt.parent.replaceChild(convAt.name, folded);
    bnAt.parent.replaceChild(bnAt.name, new Identity());
    conv.dispose();
    bn.dispose();
  }
  return pairs.length;
}

function parentOf(modules: Map<string, Module>, path: string): { parent: Module; name: string } {
  const cut = path.lastIndexOf('.');
  const parent = modules.get(cut < 0 ? '' : path.slice(0, cut));
  if (!parent) throw new Error(`foldConvBatchNorm: no module holds '${path}'`);
  return { parent, name: path.slice(cut + 1) };
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}
