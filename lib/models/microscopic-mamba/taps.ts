/**
 * Inner taps of Microscopic-Mamba, for explanation (lib/explain): besides the contract's stage taps
 * (`ctx.tap`, lib/models/contract.ts), a caller may set `ctx.tapInner` to see, and replace, maps inside the
 * blocks. Names are the module's state-dict path plus what the map is:
 *
 *   layers.<i>.blocks.<j>.MIFA.gate_local                 M_l = sigmoid(ReLU(W(l)))   [b, h, w, c]
 *   layers.<i>.blocks.<j>.MIFA.gate_global                M_g = sigmoid(GELU(W(g)))   [b, h, w, c]
 *   layers.<i>.blocks.<j>.pvm_layer.mamba.scan_input      xc, the cross-scan's input  [b·G, h, w, e]  (G PVM groups on the batch axis)
 *   layers.<i>.blocks                                     stage i's blocks' output, before its PatchMerging  [b, h, w, C]
 *
 * Without `tapInner` nothing changes (the default): the forward pass is the same tensors as before.
 */
import type * as tf from '@tensorflow/tfjs';
import type { ModelForwardContext } from '../contract';

/** A forward context that may carry the inner tap. */
export interface InnerTapContext extends ModelForwardContext {
  tapInner?: (name: string, t: tf.Tensor) => tf.Tensor;
}

/** Pass an inner map through the caller's `tapInner`, if any. */
export function innerTap(ctx: InnerTapContext | undefined, name: string, t: tf.Tensor): tf.Tensor {
  return ctx?.tapInner ? ctx.tapInner(name, t) : t;
}
