/**
 * Activation checkpointing, as `torch.utils.checkpoint.checkpoint(block, x)` (what the official
 * `VSSLayer` does with `use_checkpoint=True`, L1093–1097): the forward pass runs the block without
 * keeping its intermediate activations for the backward pass; the backward pass runs the block's
 * forward again, this time recording it, and back-propagates through that recomputation. Memory for a
 * training step then holds one block's activations at a time instead of every block's, for about one
 * extra forward pass of compute.
 *
 * Two things must not change between the two runs of the block:
 *   - DropPath's random draws: the first run records the `ctx.rng.uniform()` values, the recomputation
 *     replays them, so both runs drop the same samples;
 *   - BatchNorm's running statistics: they are updated by the first run only (the recomputation's
 *     update is undone), so a checkpointed step leaves the same state as a plain one.
 *
 * How: `tf.customGrad` runs its forward function with the gradient tape paused (tfjs records only the
 * custom op itself), and its gradient function recomputes the block under `tf.engine().gradients` with
 * the incoming gradient dy as the seed, returning dL/dx and dL/dθ for every used parameter θ.
 */
import * as tf from '@tensorflow/tfjs';
import { ForwardContext, Layer } from '../nn/index';

export function checkpoint(block: Layer, x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
  const params = block.trainableVariables();
  const draws: number[] = [];
  const source = ctx.rng;
  const recording: ForwardContext = {
    ...ctx,
    rng: source && {
      uniform: () => {
        const u = source.uniform();
        draws.push(u);
        return u;
      },
    },
  };
  const run = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const input = args[0] as tf.Tensor;
    const value = block.forward(input, recording); // not taped: only its output is kept
    save([input]);
    return {
      value,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [xs] = saved;
        let next = 0;
        const replay: ForwardContext = { ...ctx, rng: source && { uniform: () => draws[next++] } };
        // Keep the running statistics of the first run: the recomputation must not update them again.
        const buffers = block.namedBuffers().map(([, b]) => [b, b.clone()] as const);
        // A gradient computation inside a gradient function: tfjs 4.22's Engine.gradients starts a fresh
        // tape and finally sets `state.activeTape = null`, which the outer backward pass (still running,
        // about to clean up its own tape) does not expect. Keep the outer tape and put it back.
        const state = (tf.engine() as unknown as { state: { activeTape: unknown } }).state;
        const outerTape = state.activeTape;
        let result: { value: tf.Tensor; grads: tf.Tensor[] };
        try {
          result = tf.engine().gradients(
            () => block.forward(xs, replay),
            [xs, ...params],
            dy as tf.Tensor,
            true, // a parameter the block does not reach gets zeros rather than an error
          );
        } finally {
          state.activeTape = outerTape;
        }
        const { value: again, grads } = result;
        again.dispose();
        for (const [b, before] of buffers) {
          b.assign(before);
          before.dispose();
        }
        return grads.map((g, i) => g ?? tf.zerosLike(i === 0 ? xs : params[i - 1]));
      },
    };
  });
  return run(x, ...params);
}
