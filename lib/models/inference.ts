/**
 * Inference forms: the model a prediction or an evaluation runs, with eval-mode BatchNorm folded into the
 * conv before it (lib/nn/fold.ts) — fewer kernels per forward pass, the same logits up to rounding.
 *
 * Per model (the contract's `fusedForInference()`):
 *   resnet18             every conv → BN (stem, both convs of each BasicBlock, the downsample shortcut)
 *   microscopic-mamba-*  the stem's two Conv2d_BN and the conv branch's three conv → BN pairs; the branch's
 *                        leading BN (before a padded depthwise conv) stays
 *   medmamba-*           the conv branch's two conv → BN pairs (its first BN precedes a padded conv: stays)
 *   swiftformer-*        the stem's two conv → BN, each Embedding's proj → norm and each ConvEncoder /
 *                        local representation's dwconv → norm; the Mlp's BN precedes its conv and the final
 *                        norm follows a block's residual add: both stay
 *   mobileone-s0         its own `reparameterize()` (every branch into one conv), repvit-m1.0 its `fuse()`
 *   convnext-*, vit-*    nothing to fold: LayerNorm normalises each position with its own statistics,
 *                        and there is no BatchNorm
 */
import { foldConvBatchNorm, type Module, sequentialConvBatchNormPairs } from '../nn/index';
import type { ClassifierModel } from './contract';

/**
 * A NEW model in eval mode: `rebuild()` (a fresh model of the same configuration) with `model`'s
 * parameters and buffers, every conv → BN pair of a Sequential and every pair `namedPairs(copy)` lists
 * folded. `model` is left unchanged (its training continues with its own parameters).
 */
export function foldedCopy<M extends ClassifierModel & { isInferenceForm: boolean }>(
  model: M,
  rebuild: () => M,
  namedPairs: (copy: M) => Array<[string, string]> = () => [],
): M {
  if (model.isInferenceForm) {
    throw new Error(`${model.constructor.name}.fusedForInference: the model is already its inference form`);
  }
  const copy = rebuild();
  try {
    copy.loadStateDict(model.stateDict());
    foldConvBatchNorm(copy, [...sequentialConvBatchNormPairs(copy), ...namedPairs(copy)]);
  } catch (e) {
    copy.dispose();
    throw e;
  }
  copy.isInferenceForm = true;
  return copy.eval();
}

/** Paths of the children `convName` → `bnName` of every module of `root` that `is` accepts. */
export function childPairs(
  root: Module,
  is: (m: Module) => boolean,
  ...names: Array<[string, string]>
): Array<[string, string]> {
  const at = (path: string, child: string) => (path ? `${path}.${child}` : child);
  return root
    .namedModules()
    .filter(([, m]) => is(m))
    .flatMap(([path]) => names.map(([conv, bn]): [string, string] => [at(path, conv), at(path, bn)]));
}

/**
 * The model to run for inference: its `fusedForInference()` form when it has one, else the model itself
 * (in eval mode). With `fused` the returned model is a new one: the caller disposes it and the original.
 */
export function inferenceForm(model: ClassifierModel): { model: ClassifierModel; fused: boolean } {
  if (typeof model.fusedForInference !== 'function' || model.isInferenceForm)
    return { model: model.eval(), fused: false };
  return { model: model.fusedForInference(), fused: true };
}
