/**
 * The training step and the evaluation pass (official train.py `train_one_epoch` / `evaluate`).
 *
 * One step: forward in training mode (BatchNorm batch statistics, DropPath drawing from the trainer's
 * seeded Rng) → cross-entropy → `tf.variableGrads` → optional global-norm clipping → Adam/AdamW with the
 * scheduled learning rate. Everything runs inside tf.tidy, so no tensor outlives the step; a non-finite
 * loss stops before any weight changes (the caller keeps its last good checkpoint).
 *
 * Glossary: b batch, s image size, k classes; x [b, s, s, 3] float32 (NHWC, normalised), y [b] int32.
 */
import * as tf from '@tensorflow/tfjs';
import type { ClassifierModel } from '../models/index';
import type { ForwardContext, Module } from '../nn/index';
import type { Rng } from '../util/random';
import { clipByGlobalNorm, crossEntropy, globalNorm } from './loss';
import type { Adam } from './optim';
import { lrFactor, type LrScheduleOptions } from './schedule';

/** A batch: normalised images and integer labels. The consumer disposes the tensors. */
export interface TrainBatch {
  x: tf.Tensor4D; // [b, s, s, 3]
  y: tf.Tensor1D; // [b] int32
}

/** The parameters an optimizer updates, with their PyTorch names: trainable and used (not dead). */
export function namedTrainable(model: Module): Array<[string, tf.Variable]> {
  return model
    .namedParameters()
    .filter(([, p]) => p.trainable && !p.dead)
    .map(([name, p]) => [name, p.variable]);
}

/** Thrown when the loss (or the gradient norm) stops being finite. */
export class NonFiniteLossError extends Error {
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly step: number,
    readonly value: number,
    what = 'loss',
  ) {
    super(
      `training diverged: ${what} is ${value} at epoch ${epoch + 1}, batch ${batch + 1} (optimizer step ${step + 1}); ` +
        'the weights were not updated and the last good checkpoint is kept. Try a lower --lr, --clip-grad-norm, or more warm-up.',
    );
    this.name = 'NonFiniteLossError';
  }
}

export interface TrainerOptions {
  /** Base learning rate and the schedule's shape (spec §2); lr(step) = lr · lrFactor(step, schedule). */
  lr: number;
  schedule: LrScheduleOptions;
  labelSmoothing?: number;
  /** Global-norm clipping threshold (0/undefined = off). */
  clipGradNorm?: number;
  /** DropPath's generator (the trainer's fork of the run seed). */
  rng: Rng;
}

export interface StepResult {
  loss: number;
  /** Correct argmax predictions in the batch (training mode). */
  correct: number;
  lr: number;
  gradNorm?: number;
}

export class Trainer {
  private readonly vars: tf.Variable[];

  constructor(
    readonly model: ClassifierModel,
    readonly optimizer: Adam,
    readonly options: TrainerOptions,
  ) {
    this.vars = optimizer.variables();
  }

  /** Learning rate of optimizer update `step` (0-based). */
  lrAt(step: number): number {
    return this.options.lr * lrFactor(step, this.options.schedule);
  }

  /**
   * One optimizer update on (x, y) as update number `step` (0-based; it picks the learning rate).
   * `where` only labels the error if the loss is not finite.
   */
  trainStep(
    batch: TrainBatch,
    step: number,
    where: { epoch: number; batch: number } = { epoch: 0, batch: 0 },
  ): StepResult {
    const lr = this.lrAt(step);
    this.model.train();
    const ctx: ForwardContext = { training: true, rng: this.options.rng };
    let correctT: tf.Tensor | undefined;
    const { value, grads } = tf.tidy(() =>
      tf.variableGrads(() => {
        const logits = this.model.forward(batch.x, ctx); // [b, k]
        checkLogits(logits, batch);
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.cast(batch.y, 'int32')), 'int32'))); // []
        return crossEntropy(logits, batch.y, this.options.labelSmoothing ?? 0);
      }, this.vars),
    );
    const loss = value.dataSync()[0];
    const correct = correctT!.dataSync()[0];
    value.dispose();
    correctT!.dispose();
    let g = grads;
    try {
      if (!Number.isFinite(loss)) throw new NonFiniteLossError(where.epoch, where.batch, step, loss);
      let gradNorm: number | undefined;
      const clip = this.options.clipGradNorm ?? 0;
      if (clip > 0) {
        const clipped = clipByGlobalNorm(g, clip);
        g = clipped.grads;
        gradNorm = clipped.norm;
      } else if (process.env.MSM_CHECK_GRADS === '1') gradNorm = globalNorm(g);
      if (gradNorm !== undefined && !Number.isFinite(gradNorm)) {
        throw new NonFiniteLossError(where.epoch, where.batch, step, gradNorm, 'the gradient norm');
      }
      this.optimizer.applyGradients(g, lr);
      return { loss, correct, lr, gradNorm };
    } finally {
      for (const t of Object.values(g)) t.dispose();
    }
  }
}

function checkLogits(logits: tf.Tensor, batch: TrainBatch): void {
  if (logits.rank !== 2 || logits.shape[0] !== batch.x.shape[0]) {
    throw new Error(`model output must be logits [${batch.x.shape[0]}, k]; got [${logits.shape}]`);
  }
}

export interface EvalResult {
  /** Mean cross-entropy (no label smoothing), as the official `evaluate`. */
  loss: number;
  accuracy: number;
  /** Softmax probabilities, row-major [n * k]. */
  probs: Float32Array;
  labels: Int32Array;
  numClasses: number;
}

/**
 * Run the model in eval mode over batches and collect probabilities and labels. The batches' tensors are
 * disposed here.
 */
export async function evaluateModel(
  model: ClassifierModel,
  batches: Iterable<TrainBatch> | AsyncIterable<TrainBatch>,
  onBatch?: (done: number) => void,
): Promise<EvalResult> {
  model.eval();
  const probs: Float32Array[] = [];
  const labels: Int32Array[] = [];
  let lossSum = 0;
  let n = 0;
  let k = 0;
  let hits = 0;
  for await (const batch of batches) {
    try {
      const b = batch.x.shape[0];
      const [p, l] = tf.tidy(() => {
        const logits = model.forward(batch.x, { training: false }); // [b, k]
        checkLogits(logits, batch);
        return [tf.softmax(logits), tf.mul(crossEntropy(logits, batch.y), b)]; // [b, k], []
      });
      const pa = p.dataSync() as Float32Array;
      const ya = Int32Array.from(batch.y.dataSync());
      k = p.shape[1]!;
      lossSum += l.dataSync()[0];
      tf.dispose([p, l]);
      for (let i = 0; i < b; i++) {
        let arg = 0;
        for (let c = 1; c < k; c++) if (pa[i * k + c] > pa[i * k + arg]) arg = c;
        if (arg === ya[i]) hits++;
      }
      probs.push(Float32Array.from(pa));
      labels.push(ya);
      n += b;
      onBatch?.(n);
    } finally {
      tf.dispose([batch.x, batch.y]);
    }
  }
  if (n === 0) throw new Error('evaluateModel: the split has no images');
  return {
    loss: lossSum / n,
    accuracy: hits / n,
    probs: concat(probs, n * k),
    labels: concatI(labels, n),
    numClasses: k,
  };
}

function concat(parts: Float32Array[], total: number): Float32Array {
  const out = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function concatI(parts: Int32Array[], total: number): Int32Array {
  const out = new Int32Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
