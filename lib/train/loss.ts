/**
 * Losses and gradient utilities of the training loop.
 *
 * Glossary: b batch, k classes; logits [b, k] float32, labels [b] int32.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Mean cross-entropy with optional label smoothing ε, as `nn.CrossEntropyLoss(label_smoothing=ε)`
 * (the official loss has ε = 0, docs/architecture.md §Training recipe): the target is (1 − ε)·onehot(y) + ε/k, so
 *   loss_i = (1 − ε)·(−log p_i[y_i]) + ε·mean_k(−log p_i[k]).
 */
export function crossEntropy(logits: tf.Tensor, labels: tf.Tensor, labelSmoothing = 0): tf.Scalar {
  if (logits.rank !== 2) throw new Error(`crossEntropy: logits must be [b, k], got [${logits.shape}]`);
  if (labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new Error(`crossEntropy: labels must be [${logits.shape[0]}], got [${labels.shape}]`);
  }
  if (!(labelSmoothing >= 0 && labelSmoothing < 1))
    throw new Error(`label smoothing must be in [0, 1), got ${labelSmoothing}`);
  return tf.tidy(() => {
    const k = logits.shape[1] as number;
    const logp = tf.logSoftmax(logits); // [b, k]
    const onehot = tf.oneHot(tf.cast(labels, 'int32'), k).toFloat(); // [b, k]
    const target = labelSmoothing > 0 ? tf.add(tf.mul(onehot, 1 - labelSmoothing), labelSmoothing / k) : onehot;
    return tf.neg(tf.mean(tf.sum(tf.mul(target, logp), 1))) as tf.Scalar; // []
  });
}

/**
 * Clip gradients to a global L2 norm, as `torch.nn.utils.clip_grad_norm_(params, maxNorm)`:
 * total = ‖concat(g)‖₂; if total > maxNorm every gradient is scaled by maxNorm / (total + 1e-6).
 * Returns the new gradients (the inputs are disposed when replaced) and the norm before clipping.
 */
export function clipByGlobalNorm(
  grads: Record<string, tf.Tensor>,
  maxNorm: number,
): { grads: Record<string, tf.Tensor>; norm: number } {
  const norm = globalNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  if (!(coef < 1) || !Number.isFinite(norm)) return { grads, norm };
  const out: Record<string, tf.Tensor> = {};
  for (const [name, g] of Object.entries(grads)) {
    out[name] = tf.mul(g, coef);
    g.dispose();
  }
  return { grads: out, norm };
}

/** ‖concat(g)‖₂ over all gradients, read back to the host. */
export function globalNorm(grads: Record<string, tf.Tensor>): number {
  const values = Object.values(grads);
  if (values.length === 0) return 0;
  return tf.tidy(() => tf.sqrt(tf.addN(values.map((g) => tf.sum(tf.square(g))))).dataSync()[0]);
}
