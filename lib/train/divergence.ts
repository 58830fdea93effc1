/**
 * Non-finite numbers (NaN, ±Infinity) in training and evaluation: one message shape for both, and the
 * check that keeps diverged weights out of every checkpoint.
 *
 * The message always reads `the model diverged: <what> is <value> at <where>; <what to do>`, whether the
 * NaN shows up in a training step's loss, in the gradient norm, in an evaluation batch, or in the weights
 * about to be saved, so a user (or a grep over logs) sees the same words for the same problem.
 */
import type * as tf from '@tensorflow/tfjs';

/** The shared sentence: `the model diverged: loss is NaN at epoch 2, batch 3 (optimizer step 7)`. */
export function divergedText(what: string, value: number | string, where: string): string {
  return `the model diverged: ${what} is ${value} at ${where}`;
}

/** What a training run does and keeps when it diverges (appended to the training message). */
export const TRAINING_ADVICE =
  'the weights were not updated and the last checkpoint with finite weights is kept. ' +
  'Try a lower --lr (allowed with --resume), --clip-grad-norm, or more warm-up.';

/** What it means in evaluation / prediction. */
export const EVALUATION_ADVICE =
  'the weights produce non-finite outputs (a diverged run or a damaged weights file); evaluate an earlier checkpoint.';

/** Thrown when weights about to be saved (or just loaded) hold a non-finite value. */
export class NonFiniteWeightsError extends Error {
  constructor(
    readonly tensor: string,
    readonly value: number,
    where: string,
  ) {
    super(
      `${divergedText(`weight '${tensor}'`, value, where)}; not saved, the last checkpoint with finite weights is kept. ` +
        'Try a lower --lr (allowed with --resume), --clip-grad-norm, or more warm-up.',
    );
    this.name = 'NonFiniteWeightsError';
  }
}

/** The first non-finite entry of a state dict as [name, value], or undefined when all are finite. */
export function firstNonFinite(tensors: Map<string, tf.Tensor>): [string, number] | undefined {
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32') continue;
    const v = t.dataSync() as Float32Array;
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return [name, v[i]];
  }
  return undefined;
}

/** Throw NonFiniteWeightsError when a state dict holds NaN or ±Infinity; `where` names the step/file. */
export function checkFiniteWeights(tensors: Map<string, tf.Tensor>, where: string): void {
  const bad = firstNonFinite(tensors);
  if (bad) throw new NonFiniteWeightsError(bad[0], bad[1], where);
}
