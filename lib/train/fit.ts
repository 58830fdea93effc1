/**
 * The training loop (official train.py L95–195): epochs of optimizer steps, a validation pass after each
 * epoch, the best checkpoint on one validation metric, early stopping on another, checkpoints that resume
 * exactly, logs, and a live progress bar.
 *
 * Exact resume: everything that influences the next step is in the checkpoint — weights and BatchNorm
 * buffers, Adam moments and step count, the position (epoch, batch, step), the partial sums of the running
 * epoch, the DropPath generator, the loader's own state (shuffle / augmentation), the trackers and the
 * history. On one backend the resumed run then computes the same numbers as a run that never stopped.
 */
import * as tf from '@tensorflow/tfjs';
import { classificationReport } from '../metrics/index';
import { Progress, type ProgressStream } from '../report/progress';
import { Rng, type RngState } from '../util/random';
import {
  type CheckpointJson,
  type EpochRecord,
  readModelWeights,
  readOptimizerTensors,
  saveBest,
  saveCheckpoint,
  checkpointDir,
  type TrainPosition,
} from './checkpoint';
import type { ClassifierModel } from '../models/index';
import type { TrainConfig } from './config';
import { checkFiniteWeights, NonFiniteWeightsError } from './divergence';
import { BestTracker, EarlyStopping, metricMode } from './early-stopping';
import { RunLog } from './logs';
import { memoryError, OutOfMemoryError } from './memory';
import { createOptimizer } from './optim';
import { type TrainBatch, evaluateModel, namedTrainable, NonFiniteLossError, Trainer } from './trainer';
import * as path from 'path';

/** What the loop needs from the training data: a fixed number of batches per epoch, resumable mid-epoch. */
export interface EpochSource {
  /** Batches per epoch (the schedule's steps per epoch; the official DataLoader keeps the last partial batch). */
  readonly batchesPerEpoch: number;
  /** Images per epoch (for images/s). */
  readonly imagesPerEpoch: number;
  /** The batches of `epoch` from batch index `start` on. Each batch's tensors are disposed by the loop. */
  batches(epoch: number, start: number): Iterable<TrainBatch> | AsyncIterable<TrainBatch>;
  /** Generator state needed to reproduce the rest of the epoch (saved in checkpoints). */
  getState(): unknown;
  setState(state: unknown): void;
}

export interface ModelInfo {
  name: string;
  numClasses: number;
  classNames: string[];
}

type EpochSums = CheckpointJson['epochSums'];

export interface FitOptions {
  runDir: string;
  config: TrainConfig;
  model: ClassifierModel;
  modelInfo: ModelInfo;
  train: EpochSource;
  /** A fresh pass over the validation split. */
  val: () => Iterable<TrainBatch> | AsyncIterable<TrainBatch>;
  /** Images in the validation split (for the progress bar's total and ETA). */
  valImages?: number;
  /** Continue from this checkpoint (read with `readCheckpoint`). */
  resume?: CheckpointJson;
  /** Progress output (default process.stdout); `mode` 'off' silences it. */
  progress?: { stream?: ProgressStream; mode?: 'auto' | 'tty' | 'plain' | 'off' };
  /** The memory plan (lib/train/memory.ts), recorded in log.jsonl as a 'memory' event. */
  memory?: Record<string, unknown>;
}

export interface FitResult {
  status: 'finished' | 'early-stopped' | 'max-steps';
  history: EpochRecord[];
  position: TrainPosition;
  best: { metric: string; value: number | null; epoch: number | null };
  earlyStop: { metric: string; best: number | null; epoch: number | null; badEpochs: number };
  /** Wall seconds spent in this call (training + validation). */
  seconds: number;
  /**
   * Wall seconds of training the whole run (training + validation): earlier calls up to their last checkpoint
   * (the checkpoint's `elapsed`) plus this call. Equals `seconds` for a run trained in one call.
   */
  totalSeconds: number;
  /** Training images processed in this call (a resumed run counts only its own). */
  imagesSeen: number;
}

/** Validation metrics of one pass, as the trackers name them. */
export interface ValMetrics {
  val_loss: number;
  val_acc: number;
  val_auc: number | null;
  val_balanced_acc: number;
  val_f1: number;
}

/** One validation pass → loss and metrics (weighted F1 as the official test.py; AUC binary / weighted OvR). */
export async function validate(
  model: ClassifierModel,
  batches: Iterable<TrainBatch> | AsyncIterable<TrainBatch>,
  classNames: string[],
  onBatch?: (done: number) => void,
  microBatch?: number,
): Promise<ValMetrics> {
  const r = await evaluateModel(model, batches, onBatch, { microBatch });
  const rep = classificationReport(r.labels, r.probs, { classNames, bootstrap: false, topK: [] });
  return {
    val_loss: r.loss,
    val_acc: rep.accuracy,
    val_auc: rep.auc.headline,
    val_balanced_acc: rep.balancedAccuracy,
    val_f1: rep.f1.weighted,
  };
}

/** Train (or continue training) a model; see the file doc. */
export async function fit(opts: FitOptions): Promise<FitResult> {
  const { config: cfg, model, train, runDir } = opts;
  const t0 = Date.now();
  // Time spent by earlier calls (a resumed run), so reported times cover the whole run.
  const before = opts.resume?.elapsed ?? { seconds: 0, epochSeconds: 0 };
  const elapsedSeconds = () => before.seconds + (Date.now() - t0) / 1000;
  let epochT0 = t0; // when the epoch in progress started, as if it had run in one call
  const stepsPerEpoch = train.batchesPerEpoch;
  if (!(stepsPerEpoch > 0)) throw new Error('fit: the training split yields no batches');

  // One seed, independent streams: DropPath here; init and data are forked the same way by the caller.
  const dropPathRng = runRngs(cfg.seed).dropPath;
  const optimizer = createOptimizer(namedTrainable(model), {
    kind: cfg.optimizer,
    lr: cfg.lr,
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    eps: cfg.eps,
    weightDecay: cfg.weightDecay,
  });
  const trainer = new Trainer(model, optimizer, {
    lr: cfg.lr,
    schedule: {
      stepsPerEpoch,
      epochs: cfg.epochs,
      warmupEpochs: cfg.warmupEpochs,
      warmupFactor: cfg.warmupFactor,
      endFactor: cfg.endFactor,
    },
    labelSmoothing: cfg.labelSmoothing,
    clipGradNorm: cfg.clipGradNorm,
    rng: dropPathRng,
    microBatch: cfg.microBatch > 0 ? cfg.microBatch : undefined,
  });
  const best = new BestTracker(cfg.bestMetric, 'strict');
  const earlyStop = new EarlyStopping(cfg.earlyStopMetric, cfg.patience, cfg.minDelta);
  let pos: TrainPosition = { epoch: 0, batch: 0, step: 0 };
  let sums: EpochSums = { lossSum: 0, correct: 0, seen: 0 };
  let history: EpochRecord[] = [];

  if (opts.resume) {
    const ck = opts.resume;
    const weightsFile = path.join(checkpointDir(runDir), ck.weights);
    readModelWeights(model, weightsFile);
    // The live variables (layout 'tfjs'): checked in place, not disposed.
    checkFiniteWeights(model.stateDict(), `the checkpoint to resume from (${weightsFile})`);
    const tensors = readOptimizerTensors(runDir, ck);
    try {
      optimizer.setState(ck.optimizer, tensors, path.join(checkpointDir(runDir), ck.optimizerFile));
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    dropPathRng.setState(ck.rng.dropPath);
    train.setState(ck.rng.loader);
    best.restore(ck.trackers.best);
    earlyStop.restore(ck.trackers.earlyStop);
    pos = { ...ck.position };
    sums = { ...ck.epochSums };
    history = ck.history.filter((r) => r.epoch < pos.epoch);
  }
  const log = new RunLog(runDir, opts.resume ? pos : undefined);
  // A resumed run may change the learning rate (e.g. after a divergence); the log says so.
  const lrChange =
    opts.resume && opts.resume.config.lr !== cfg.lr ? { lr: cfg.lr, previous_lr: opts.resume.config.lr } : {};
  log.event(opts.resume ? 'resume' : 'start', pos.step, { epoch: pos.epoch, batch: pos.batch, ...lrChange });
  let lastCheckpointStep: number | undefined = opts.resume?.position.step;
  if (opts.memory) log.event('memory', pos.step, opts.memory);
  // What the loop is doing, for the message if the backend runs out of memory (lib/train/memory.ts).
  let doing = 'training';

  const checkpoint = (status: CheckpointJson['status'], at: TrainPosition, epochSums: EpochSums) => {
    const { meta, tensors } = optimizer.getState();
    const json = saveCheckpoint(runDir, {
      modelModule: model,
      optimizerTensors: tensors,
      config: cfg,
      model: opts.modelInfo,
      position: at,
      optimizer: meta,
      rng: { dropPath: dropPathRng.getState() as RngState, loader: train.getState() },
      trackers: { best: best.state, earlyStop: earlyStop.state },
      epochSums,
      history,
      elapsed: { seconds: elapsedSeconds(), epochSeconds: at.batch > 0 ? (Date.now() - epochT0) / 1000 : 0 },
      status,
    });
    log.event('checkpoint', at.step, { epoch: at.epoch, batch: at.batch, file: json.weights });
    lastCheckpointStep = at.step;
  };

  // A run whose loop already ended is not trained further (the caller may still test and report it).
  let imagesSeen = 0;
  let status: FitResult['status'] | 'running' =
    opts.resume && opts.resume.status !== 'running' && opts.resume.status !== 'max-steps'
      ? opts.resume.status
      : 'running';
  if (status === 'running' && cfg.maxSteps > 0 && pos.step >= cfg.maxSteps) status = 'max-steps';
  try {
    for (let epoch = pos.epoch; epoch < cfg.epochs && status === 'running'; epoch++) {
      const start = epoch === pos.epoch ? pos.batch : 0;
      // A resumed epoch carries the seconds it had run before the interruption.
      epochT0 = Date.now() - (start > 0 ? before.epochSeconds * 1000 : 0);
      if (epoch !== pos.epoch) sums = { lossSum: 0, correct: 0, seen: 0 };
      const bar = new Progress({
        total: train.imagesPerEpoch,
        label: `epoch ${epoch + 1}/${cfg.epochs}`,
        unit: 'img',
        stream: opts.progress?.stream,
        mode: opts.progress?.mode,
        intervalMs: cfg.progressSeconds * 1000,
      });
      if (sums.seen > 0) bar.update(sums.seen);
      let b = start;
      let stoppedByMaxSteps = false;
      for await (const batch of train.batches(epoch, start)) {
        let res;
        const n = batch.x.shape[0];
        const tStep = Date.now();
        doing = `training step ${pos.step + 1} (epoch ${epoch + 1}, batch ${b + 1}, ${n} images)`;
        try {
          res = trainer.trainStep(batch, pos.step, { epoch, batch: b });
        } finally {
          tf.dispose([batch.x, batch.y]);
        }
        const dt = Math.max(1e-3, (Date.now() - tStep) / 1000);
        pos = { epoch, batch: ++b, step: pos.step + 1 };
        sums = { lossSum: sums.lossSum + res.loss * n, correct: sums.correct + res.correct, seen: sums.seen + n };
        imagesSeen += n;
        log.step({
          epoch,
          batch: b - 1,
          step: pos.step,
          loss: res.loss,
          acc: res.correct / n,
          lr: res.lr,
          ...(res.gradNorm !== undefined ? { grad_norm: res.gradNorm } : {}),
          images_per_s: n / dt,
        });
        bar.update(sums.seen, { loss: sums.lossSum / sums.seen, acc: sums.correct / sums.seen, lr: res.lr });
        const atMax = cfg.maxSteps > 0 && pos.step >= cfg.maxSteps;
        if (b < stepsPerEpoch && (atMax || (cfg.ckptEvery > 0 && pos.step % cfg.ckptEvery === 0))) {
          checkpoint('running', pos, sums);
        }
        if (atMax) {
          stoppedByMaxSteps = true;
          break;
        }
      }
      bar.finish();
      const epochDone = b >= stepsPerEpoch;
      if (!epochDone && !stoppedByMaxSteps) {
        throw new Error(`fit: epoch ${epoch + 1} yielded ${b} batches, expected ${stepsPerEpoch}`);
      }

      // ---- validation, trackers, best checkpoint ----
      const valBar = new Progress({
        total: opts.valImages,
        label: 'validation',
        unit: 'img',
        stream: opts.progress?.stream,
        mode: opts.progress?.mode,
        intervalMs: cfg.progressSeconds * 1000,
      });
      doing = `validation after epoch ${epoch + 1} (step ${pos.step})`;
      const val = await validate(
        model,
        opts.val(),
        opts.modelInfo.classNames,
        (n) => valBar.update(n),
        cfg.evalMicroBatch > 0 ? cfg.evalMicroBatch : undefined,
      );
      valBar.finish();
      const bestValue = val[cfg.bestMetric];
      const improved = bestValue !== null && best.update(bestValue, epoch);
      const esValue = val[cfg.earlyStopMetric];
      earlyStop.update(esValue ?? NaN, epoch);
      const rec: EpochRecord = {
        epoch,
        step: pos.step,
        lr: trainer.lrAt(Math.max(0, pos.step - 1)),
        train_loss: sums.lossSum / Math.max(1, sums.seen),
        train_acc: sums.correct / Math.max(1, sums.seen),
        ...val,
        best: improved,
        early_stop_bad_epochs: earlyStop.state.badEpochs,
        seconds: (Date.now() - epochT0) / 1000,
      };
      if (improved) {
        saveBest(runDir, model, {
          metric: cfg.bestMetric,
          value: bestValue!,
          epoch,
          step: pos.step,
          model: opts.modelInfo,
          config: cfg,
        });
      }
      history.push(rec);
      log.epoch(rec, history);
      const arrow = (m: string) => (metricMode(m as never) === 'min' ? '↓' : '↑');
      bar.log(
        `epoch ${epoch + 1}/${cfg.epochs}: train loss ${rec.train_loss.toFixed(4)} acc ${(100 * rec.train_acc).toFixed(2)}% | ` +
          `val loss ${rec.val_loss.toFixed(4)} acc ${(100 * rec.val_acc).toFixed(2)}%` +
          (rec.val_auc !== null ? ` auc ${rec.val_auc.toFixed(4)}` : '') +
          ` | best ${cfg.bestMetric}${arrow(cfg.bestMetric)} ${fmt(best.state.best)} (epoch ${(best.state.bestEpoch ?? -1) + 1})` +
          `${improved ? ' *saved*' : ''} | early stop on ${cfg.earlyStopMetric}${arrow(cfg.earlyStopMetric)}: ` +
          `${earlyStop.state.badEpochs}/${cfg.patience || '∞'} | ${rec.seconds.toFixed(0)} s`,
      );

      if (stoppedByMaxSteps && !epochDone) {
        // The mid-epoch checkpoint was written before validation, so --resume with a larger --max-steps
        // continues this epoch; the partial epoch's record is dropped from the logs then.
        status = 'max-steps';
        break;
      }
      pos = { epoch: epoch + 1, batch: 0, step: pos.step };
      sums = { lossSum: 0, correct: 0, seen: 0 };
      if (earlyStop.shouldStop) status = 'early-stopped';
      else if (epoch + 1 >= cfg.epochs) status = 'finished';
      else if (stoppedByMaxSteps) status = 'max-steps';
      checkpoint(status === 'running' ? 'running' : status, pos, sums);
      if (status === 'early-stopped') {
        bar.log(`early stopping: ${cfg.earlyStopMetric} has not improved for ${cfg.patience} epochs`);
      }
    }
  } catch (e) {
    if (e instanceof NonFiniteLossError || e instanceof NonFiniteWeightsError) {
      const kept = lastCheckpointStep === undefined ? 'none yet' : `step ${lastCheckpointStep}`;
      if (e instanceof NonFiniteLossError)
        log.event('diverged', e.step, {
          epoch: e.epoch,
          batch: e.batch,
          value: String(e.value),
          kept_checkpoint: kept,
        });
      else log.event('diverged', pos.step, { tensor: e.tensor, value: String(e.value), kept_checkpoint: kept });
      e.message +=
        lastCheckpointStep === undefined
          ? ' (No checkpoint was written before it.)'
          : ` Kept checkpoint: step ${lastCheckpointStep}; continue with --resume --lr <smaller>.`;
      throw e;
    }
    const oom = memoryError(e, {
      backend: tf.getBackend(),
      where: doing,
      plan: { microBatch: cfg.microBatch, checkpointing: cfg.checkpointing, evalMicroBatch: cfg.evalMicroBatch },
    });
    if (oom instanceof OutOfMemoryError) log.event('out-of-memory', pos.step, { where: doing, error: oom.message });
    throw oom;
  } finally {
    optimizer.dispose();
  }
  if (status === 'running') status = 'finished'; // resumed a run whose loop had already ended
  log.event('end', pos.step, { status });
  return {
    status,
    history,
    position: pos,
    best: { metric: cfg.bestMetric, value: best.state.best, epoch: best.state.bestEpoch },
    earlyStop: {
      metric: cfg.earlyStopMetric,
      best: earlyStop.state.best,
      epoch: earlyStop.state.bestEpoch,
      badEpochs: earlyStop.state.badEpochs,
    },
    seconds: (Date.now() - t0) / 1000,
    totalSeconds: elapsedSeconds(),
    imagesSeen,
  };
}

/** The run's generators, each an independent fork of `seed` (same labels in every run → same streams). */
export function runRngs(seed: number): { init: Rng; data: Rng; dropPath: Rng } {
  const master = new Rng(seed);
  return { init: master.fork('init'), data: master.fork('data'), dropPath: master.fork('droppath') };
}

function fmt(v: number | null): string {
  return v === null ? '–' : v.toFixed(4);
}
