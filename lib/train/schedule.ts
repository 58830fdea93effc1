/**
 * The official per-step learning-rate schedule (docs/architecture.md §Training recipe; official utils.py L7–33
 * `create_lr_scheduler`, used in train.py L91–92 with warmup_epochs=10 over 200 epochs).
 *
 * The factor multiplies the base learning rate. With W = warmupEpochs·stepsPerEpoch warm-up steps and
 * T = (epochs − warmupEpochs)·stepsPerEpoch cosine steps:
 *
 *   step ≤ W:  α = step / W,               f = warmupFactor·(1 − α) + α          (1e-3 → 1, linear)
 *   step > W:  f = ½·(1 + cos(π·(step − W) / T))·(1 − endFactor) + endFactor   (1 → 1e-6, cosine)
 *
 * Step counting follows PyTorch's LambdaLR: the optimizer update number `s` (0-based) runs with factor
 * f(s), because the scheduler is built before training (f(0)) and `lr_scheduler.step()` is called after
 * every `optimizer.step()`. The boundary step W belongs to the warm-up branch (`x <= W`, factor exactly 1),
 * as in the official code.
 */

export interface LrScheduleOptions {
  /** Optimizer steps per epoch (the official `len(train_loader)`). */
  stepsPerEpoch: number;
  /** Total epochs of the run (official 200). */
  epochs: number;
  /** Warm-up epochs (official 10; the function's own default is 1). 0 disables warm-up. */
  warmupEpochs?: number;
  /** Factor at step 0 (official 1e-3). */
  warmupFactor?: number;
  /** Factor the cosine ends at (official 1e-6). */
  endFactor?: number;
}

/** Learning-rate factor for optimizer update `step` (0-based); the rate is baseLr · lrFactor(step, ...). */
export function lrFactor(step: number, options: LrScheduleOptions): number {
  const { stepsPerEpoch, epochs, warmupEpochs = 1, warmupFactor = 1e-3, endFactor = 1e-6 } = options;
  if (!(stepsPerEpoch > 0 && epochs > 0)) {
    // official: assert num_step > 0 and epochs > 0
    throw new Error(`lrFactor: stepsPerEpoch (${stepsPerEpoch}) and epochs (${epochs}) must be > 0`);
  }
  if (!(warmupEpochs >= 0 && warmupEpochs < epochs)) {
    throw new Error(`lrFactor: warmupEpochs (${warmupEpochs}) must lie in [0, epochs = ${epochs})`);
  }
  if (!(Number.isInteger(step) && step >= 0)) throw new Error(`lrFactor: step ${step} must be an integer >= 0`);
  const warmupSteps = warmupEpochs * stepsPerEpoch; // W
  if (warmupSteps > 0 && step <= warmupSteps) {
    const alpha = step / warmupSteps;
    return warmupFactor * (1 - alpha) + alpha;
  }
  const cosineSteps = (epochs - warmupEpochs) * stepsPerEpoch; // T
  const current = step - warmupSteps;
  return ((1 + Math.cos((current * Math.PI) / cosineSteps)) / 2) * (1 - endFactor) + endFactor;
}

/** The paper recipe's schedule for a loader of `stepsPerEpoch` batches (docs/architecture.md §Training recipe). */
export function paperLrSchedule(stepsPerEpoch: number): Required<LrScheduleOptions> {
  return { stepsPerEpoch, epochs: 200, warmupEpochs: 10, warmupFactor: 1e-3, endFactor: 1e-6 };
}
