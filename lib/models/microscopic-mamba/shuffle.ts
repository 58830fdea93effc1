/**
 * Channel shuffle (ShuffleNet), as the official `channel_shuffle` (L892–901, docs/architecture.md §Channel shuffle) on
 * NHWC input.
 *
 * Shapes: x [..., C] with C = groups · per, per = C / groups.
 * View the channels as [groups, per], swap the two axes, flatten: output channel j·groups + g is input
 * channel g·per + j. groups = C/2 (two per group) puts the even channels first, then the odd ones:
 * shuffle([0..7], 4) = [0, 2, 4, 6, 1, 3, 5, 7].
 */
import * as tf from '@tensorflow/tfjs';

export function channelShuffle(x: tf.Tensor, groups: number): tf.Tensor {
  const c = x.shape[x.rank - 1];
  if (c % groups !== 0) throw new Error(`channelShuffle: ${c} channels are not divisible into ${groups} groups`);
  const per = c / groups;
  if (groups === 1 || per === 1) return x.clone(); // the permutation is the identity
  return tf.tidy(() => {
    const lead = x.shape.slice(0, -1);
    const folded = x.reshape([-1, groups, per]); // [rows, groups, per]
    return folded.transpose([0, 2, 1]).reshape([...lead, c]); // [..., per·groups]
  });
}

/** The permutation itself: out[i] = perm[i] is the input channel that lands at output channel i. */
export function channelShufflePermutation(c: number, groups: number): number[] {
  const per = c / groups;
  const out: number[] = [];
  for (let j = 0; j < per; j++) for (let g = 0; g < groups; g++) out.push(g * per + j);
  return out;
}
