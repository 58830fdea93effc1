/**
 * Model complexity: parameter counts and multiply-accumulate (MAC) counts.
 *
 * MACs are counted by running the model once: `countMacs(model, size)` runs one eval-mode forward pass
 * on a zero batch [1, size, size, 3] inside tf.tidy while a MAC sink is active (lib/nn/macs.ts), and every
 * leaf layer of lib/nn reports what it computes. So a module called four times is counted four times
 * (it runs four times), and any model built from lib/nn layers is counted without model-specific code.
 * The leaf rules are ptflops' module hooks (the official `__main__` calls ptflops'
 * `get_model_complexity_info`):
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
 * invisible to module hooks. That is the `paper` count. Where the kit computes a hooked module's work
 * without calling its `forward` (SS2D's in_proj as two matMuls, PSFFN's partial conv as one depthwise
 * conv over all channels), the model reports it itself with the same rule. With exactly these rules it
 * reproduces the module-level counts measured on the official Microscopic-Mamba (docs/architecture.md
 * §Parameters and MACs: t 0.6445, s 0.7616, b 1.5088 G at 224²) to the digit; the paper prints 0.64 / 0.76 /
 * 1.59 (b's 1.59 is unexplained, docs/architecture.md §Open questions). `full` adds what the paper leaves out
 * (the 'extra' reports):
 *
 *   xProj      l · e · (r + 2n) per direction     (einsum "b k d l, k c d -> b k c l")
 *   dtProj     l · r · e per direction            (einsum "b k r l, k d r -> b k d l")
 *   scan       9 · l · e · n per direction        (VMamba's flops_selective_scan_fn convention, without
 *                                                   the D and z terms; docs/architecture.md §Parameters and MACs)
 *   attention  q·kᵀ and attn·v products and other token-mixing products of attention models
 * (xProj, dtProj and scan are reported by lib/ops' crossScanSSM, so every model that uses it gets them.)
 */
import * as tf from '@tensorflow/tfjs';
import { countMacsWhile, countParameters, Module, ParamCount, type ForwardContext } from '../nn/index';

/** What the MAC count adds up, by category. */
export interface MacReport {
  /** ptflops-style module-level count: the paper's convention (docs/architecture.md §Parameters and MACs). */
  paper: number;
  /** paper + every 'extra' kind (xProj + dtProj + scan + attention + ...). */
  full: number;
  xProj: number;
  dtProj: number;
  scan: number;
  /** Attention matmuls (q·kᵀ, attn·v) and other token-mixing products ('extra'). */
  attention: number;
  /** The paper count split by leaf kind ('Conv2d', 'Linear', 'BatchNorm2d', 'LayerNorm', ...). */
  byKind: Record<string, number>;
  /** The extra count split by kind ('xProj', 'dtProj', 'scan', 'attention', ...). */
  extra: Record<string, number>;
  /** Input shape the count is for, NHWC. */
  inputShape: number[];
}

/**
 * Count the MACs reported while `fn` runs (inside tf.tidy, so its tensors are released). For parts of a
 * model, e.g. `macsOf(() => psffn.forward(tf.zeros([1, 56, 56, 24])))`; put the module in eval mode first
 * if it has BatchNorm (its training forward updates the running statistics).
 */
export function macsOf(fn: () => tf.TensorContainer, inputShape: number[] = []): MacReport {
  const paper = new Map<string, number>();
  const extra = new Map<string, number>();
  countMacsWhile(
    (kind, macs, category) => {
      const into = category === 'paper' ? paper : extra;
      into.set(kind, (into.get(kind) ?? 0) + macs);
    },
    () =>
      tf.tidy(() => {
        fn(); // its tensors, the result included, are released by the tidy
      }),
  );
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return {
    paper: sum(paper),
    full: sum(paper) + sum(extra),
    xProj: extra.get('xProj') ?? 0,
    dtProj: extra.get('dtProj') ?? 0,
    scan: extra.get('scan') ?? 0,
    attention: extra.get('attention') ?? 0,
    byKind: Object.fromEntries(paper),
    extra: Object.fromEntries(extra),
    inputShape,
  };
}

/** What `countMacs` needs: a module with a forward pass (and, for zoo models, an input check). */
export interface MacCountable extends Module {
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.TensorContainer;
  checkInput?(shape: number[], dtype?: string): void;
}

/**
 * MACs of one forward pass of `model` on a batch-1 RGB image of `inputSize` (a side or [h, w]): one
 * eval-mode forward on zeros (the counts depend on shapes only). The model's train/eval flags are
 * restored afterwards. `paper` reproduces the paper's GMACs convention; `full` adds the 'extra' work.
 */
export function countMacs(
  model: MacCountable,
  inputSize: number | [number, number],
  opts: { batch?: number; channels?: number } = {},
): MacReport {
  const [h, w] = typeof inputSize === 'number' ? [inputSize, inputSize] : inputSize;
  const shape = [opts.batch ?? 1, h, w, opts.channels ?? 3];
  model.checkInput?.(shape, 'float32');
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  model.eval();
  try {
    return macsOf(() => model.forward(tf.zeros(shape), { training: false }), shape);
  } finally {
    for (const [m, mode] of modes) m.training = mode;
  }
}

/** Parameter counts as PyTorch reports them: total (dead included), trainable, used (dead excluded). */
export function countParams(model: Module): ParamCount {
  return countParameters(model);
}
