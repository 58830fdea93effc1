/**
 * Multi-head scaled dot-product attention (Vaswani et al. 2017), the core every transformer block shares;
 * the projections around it (q/k/v in, heads out) are ordinary `Linear` layers of the model using it.
 *
 * Shapes:  b batch   Tq, Tk  query / key tokens   h heads   dh = D/h head width   D = h·dh
 *
 *   q [b, Tq, D], k [b, Tk, D], v [b, Tk, D]  → split heads → [b, h, T, dh]
 *   attn = softmax(q·kᵀ · scale)              [b, h, Tq, Tk]   (scale = dh^−½ unless given)
 *   out  = attn · v                           [b, h, Tq, dh]  → merge heads → [b, Tq, D]
 *
 * Heads are the channel groups `(h dh)` in that order, as einops' `'b n (h d) -> b h n d'` splits them
 * (the official ViT, baseline_other/Transformer/Vit.py `Attention.forward`).
 *
 * MACs: the two products q·kᵀ and attn·v (b·h·Tq·Tk·dh each) are reported as 'attention' in the 'extra'
 * category (lib/nn/macs.ts): ptflops' module hooks see the Linear projections but not these matmuls.
 * Softmax and the scaling are not counted (no ptflops module rule).
 */
import * as tf from '@tensorflow/tfjs';
import { reportMacs } from './macs';

export interface AttentionOptions {
  /** Number of heads h; the channel width D must be a multiple of it. */
  heads: number;
  /** Multiplier of q·kᵀ before the softmax; default dh^−½. */
  scale?: number;
  /** Applied to the attention weights after the softmax (the reference's `nn.Dropout` on attn). */
  dropWeights?: (attn: tf.Tensor) => tf.Tensor;
}

/** softmax(q·kᵀ·scale)·v over `heads` heads: q [b, Tq, D], k and v [b, Tk, D] → [b, Tq, D]. */
export function multiHeadAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, opts: AttentionOptions): tf.Tensor3D {
  if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) {
    throw new Error(`multiHeadAttention: q, k, v must be [b, T, D]; got [${q.shape}], [${k.shape}], [${v.shape}]`);
  }
  const [b, tq, dModel] = q.shape as [number, number, number];
  const tk = (k.shape as [number, number, number])[1];
  const h = opts.heads;
  if (!Number.isInteger(h) || h < 1 || dModel % h !== 0) {
    throw new Error(`multiHeadAttention: width ${dModel} is not divisible into ${h} heads`);
  }
  if (k.shape[2] !== dModel || v.shape[2] !== dModel || v.shape[1] !== tk || k.shape[0] !== b || v.shape[0] !== b) {
    throw new Error(`multiHeadAttention: k [${k.shape}] and v [${v.shape}] do not match q [${q.shape}]`);
  }
  const dh = dModel / h;
  const scale = opts.scale ?? dh ** -0.5;
  reportMacs('attention', 2 * b * h * tq * tk * dh, 'extra'); // q·kᵀ and attn·v
  return tf.tidy(() => {
    const heads = (t: tf.Tensor, n: number) => t.reshape([b, n, h, dh]).transpose([0, 2, 1, 3]); // [b, h, n, dh]
    const dots = tf.mul(tf.matMul(heads(q, tq), heads(k, tk), false, true), scale); // [b, h, Tq, Tk]
    let attn: tf.Tensor = tf.softmax(dots); // over the keys (last axis)
    if (opts.dropWeights) attn = opts.dropWeights(attn);
    const out = tf.matMul(attn, heads(v, tk)); // [b, h, Tq, dh]
    return out.transpose([0, 2, 1, 3]).reshape([b, tq, dModel]) as tf.Tensor3D; // [b, Tq, D]
  });
}
