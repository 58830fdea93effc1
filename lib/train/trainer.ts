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
import { divergedText, EVALUATION_ADVICE, TRAINING_ADVICE } from './divergence';
import { clipByGlobalNorm, crossEntropy, globalNorm } from './loss';
import type { Adam } from './optim';
import { microBatchSizes } from './memory';
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
      `${divergedText(what, value, `epoch ${epoch + 1}, batch ${batch + 1} (optimizer step ${step + 1}) of training`)}; ` +
        TRAINING_ADVICE,
    );
    this.name = 'NonFiniteLossError';
  }
}

/** Thrown when an evaluation batch's loss is not finite (same wording as in training). */
export class NonFiniteEvalError extends Error {
  constructor(
    readonly batch: number,
    readonly firstImage: number,
    readonly lastImage: number,
    readonly value: number,
  ) {
    super(
      `${divergedText('loss', value, `batch ${batch + 1} (images ${firstImage + 1}–${lastImage}) of evaluation`)}; ` +
        EVALUATION_ADVICE,
    );
    this.name = 'NonFiniteEvalError';
  }
}

export interface TrainerOptions {
  /** Base learning rate and the schedule's shape (docs/architecture.md §Training recipe);
   *  lr(step) = lr · lrFactor(step, schedule). */
  lr: number;
  schedule: LrScheduleOptions;
  labelSmoothing?: number;
  /** Global-norm clipping threshold (0/undefined = off). */
  clipGradNorm?: number;
  /** DropPath's generator (the trainer's fork of the run seed). */
  rng: Rng;
  /**
   * Split each batch into micro-batches of at most this many images and accumulate their gradients
   * (same update as the full batch for a mean loss; BatchNorm statistics per micro-batch). Default: none.
   */
  microBatch?: number;
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
    const n = batch.x.shape[0];
    const sizes = microBatchSizes(n, this.options.microBatch ?? n);
    let loss = 0;
    let correct = 0;
    let g: tf.NamedTensorMap = {};
    try {
      if (sizes.length === 1) {
        // The whole batch at once (unchanged from before accumulation existed: bit-identical steps).
        ({ loss, correct, grads: g } = this.gradients(batch.x, batch.y, ctx, 1));
        if (!Number.isFinite(loss)) throw new NonFiniteLossError(where.epoch, where.batch, step, loss);
      } else {
        // Gradient accumulation: each micro-batch's mean loss scaled by its share m/n of the batch, so the
        // summed gradients are those of the full batch's mean loss (see lib/train/memory.ts).
        let offset = 0;
        for (const m of sizes) {
          const x = tf.slice(batch.x, [offset, 0, 0, 0], [m, -1, -1, -1]); // [m, s, s, 3]
          const y = tf.slice(batch.y, [offset], [m]); // [m]
          offset += m;
          let part: { loss: number; correct: number; grads: tf.NamedTensorMap };
          try {
            part = this.gradients(x, y, ctx, m / n);
          } finally {
            tf.dispose([x, y]);
          }
          loss += part.loss;
          correct += part.correct;
          const sum: tf.NamedTensorMap = {};
          for (const [k, t] of Object.entries(part.grads)) {
            sum[k] = g[k] ? tf.add(g[k], t) : t;
            if (g[k]) tf.dispose([g[k], t]);
          }
          g = sum;
          if (!Number.isFinite(part.loss)) throw new NonFiniteLossError(where.epoch, where.batch, step, part.loss);
        }
      }
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

  /** Loss, correct predictions and gradients of (x, y); loss and gradients scaled by `scale` (≠ 1 only for micro-batches). */
  private gradients(
    x: tf.Tensor,
    y: tf.Tensor,
    ctx: ForwardContext,
    scale: number,
  ): { loss: number; correct: number; grads: tf.NamedTensorMap } {
    let correctT: tf.Tensor | undefined;
    const { value, grads } = tf.tidy(() =>
      tf.variableGrads(() => {
        const logits = this.model.forward(x, ctx); // [b, k]
        checkLogits(logits, x);
        correctT = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.cast(y, 'int32')), 'int32'))); // []
        const ce = crossEntropy(logits, y, this.options.labelSmoothing ?? 0);
        return scale === 1 ? ce : tf.mul(ce, scale);
      }, this.vars),
    );
    const loss = value.dataSync()[0];
    const correct = correctT!.dataSync()[0];
    value.dispose();
    correctT!.dispose();
    return { loss, correct, grads };
  }
}

function checkLogits(logits: tf.Tensor, x: tf.Tensor): void {
  if (logits.rank !== 2 || logits.shape[0] !== x.shape[0]) {
    throw new Error(`model output must be logits [${x.shape[0]}, k]; got [${logits.shape}]`);
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
  opts: { microBatch?: number } = {},
): Promise<EvalResult> {
  model.eval();
  const probs: Float32Array[] = [];
  const labels: Int32Array[] = [];
  let lossSum = 0;
  let n = 0;
  let k = 0;
  let hits = 0;
  let batchIndex = 0;
  for await (const batch of batches) {
    try {
      const b = batch.x.shape[0];
      const ya = Int32Array.from(batch.y.dataSync());
      // In chunks of at most `microBatch` images (eval mode: each image's output is independent of the others).
      let offset = 0;
      for (const m of microBatchSizes(b, opts.microBatch ?? b)) {
        const [p, l] = tf.tidy(() => {
          const x = m === b ? batch.x : tf.slice(batch.x, [offset, 0, 0, 0], [m, -1, -1, -1]); // [m, s, s, 3]
          const y = m === b ? batch.y : tf.slice(batch.y, [offset], [m]); // [m]
          const logits = model.forward(x, { training: false }); // [m, k]
          checkLogits(logits, x);
          return [tf.softmax(logits), tf.mul(crossEntropy(logits, y), m)]; // [m, k], []
        });
        const pa = p.dataSync() as Float32Array;
        k = p.shape[1]!;
        const chunkLoss = l.dataSync()[0];
        tf.dispose([p, l]);
        // NaN logits would otherwise surface later as an opaque metrics error ('probs[0][0] = NaN').
        if (!Number.isFinite(chunkLoss)) {
          throw new NonFiniteEvalError(batchIndex, n + offset, n + offset + m, chunkLoss / m);
        }
        lossSum += chunkLoss;
        for (let i = 0; i < m; i++) {
          let arg = 0;
          for (let c = 1; c < k; c++) if (pa[i * k + c] > pa[i * k + arg]) arg = c;
          if (arg === ya[offset + i]) hits++;
        }
        probs.push(Float32Array.from(pa));
        offset += m;
      }
      batchIndex++;
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
