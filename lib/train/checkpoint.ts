/**
 * Checkpoints that let `--resume` continue a run exactly.
 *
 * A checkpoint is three files in `<run>/checkpoints/`:
 *   step-<s>.safetensors        model state dict, PyTorch names and layouts (loadable by the official code)
 *   step-<s>.optim.safetensors  Adam moments as `exp_avg.<param>` / `exp_avg_sq.<param>`
 *   last.json                   everything else: config, position (epoch, batch, step), optimizer step and
 *                               hyper-parameters, every RNG state, metric history, tracker states, and the
 *                               names of the two tensor files above
 * Writes are atomic (temp file + rename) and ordered: tensors first, then the JSON that points to them, and
 * only then are older step files deleted. A process killed at any moment leaves a last.json whose files
 * exist and match it.
 *
 * The best model (by the configured validation metric) is kept separately as `best.safetensors` +
 * `best.json`.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { type Module, readSafetensors, writeSafetensors } from '../nn/index';
import { loadWeights, saveWeights } from '../models/index';
import { atomicWriteJson } from '../util/fs';
import type { RngState } from '../util/random';
import type { TrainConfig } from './config';
import type { TrackerState } from './early-stopping';
import type { OptimizerStateMeta } from './optim';

export const CHECKPOINT_FORMAT = 'microscopic-mamba-ts/checkpoint@1';

/** Where the next step of training starts. */
export interface TrainPosition {
  /** Epoch in progress (0-based). */
  epoch: number;
  /** Next batch index within that epoch (0 = the epoch has not started). */
  batch: number;
  /** Optimizer updates done so far (the schedule's step index of the next update). */
  step: number;
}

/** One finished epoch, as logged and kept in the checkpoint. */
export interface EpochRecord {
  epoch: number;
  step: number;
  lr: number;
  train_loss: number;
  train_acc: number;
  val_loss: number;
  val_acc: number;
  val_auc: number | null;
  val_balanced_acc: number;
  val_f1: number;
  /** Did this epoch set a new best (checkpoint metric) / reset early stopping? */
  best: boolean;
  early_stop_bad_epochs: number;
  /** Wall seconds of the epoch (training + validation); not part of the reproducible results. */
  seconds: number;
}

export interface CheckpointJson {
  format: typeof CHECKPOINT_FORMAT;
  /** Files relative to the checkpoint folder. */
  weights: string;
  optimizerFile: string;
  savedAt: string;
  config: TrainConfig;
  model: { name: string; numClasses: number; classNames: string[] };
  position: TrainPosition;
  /** Running sums of the epoch in progress (zero at an epoch boundary), so its train loss/acc resume exactly. */
  epochSums: { lossSum: number; correct: number; seen: number };
  optimizer: OptimizerStateMeta;
  /** Generator states: DropPath's here, the loader's own state (shuffle/augment) as it reports it. */
  rng: { dropPath: RngState; loader: unknown };
  trackers: { best: TrackerState; earlyStop: TrackerState };
  history: EpochRecord[];
  /** 'running' while training; the final state once the loop ended. */
  status: 'running' | 'finished' | 'early-stopped' | 'max-steps';
}

/** The model's state dict in PyTorch layout and names, as safetensors (`saveWeights`). */
export function writeModelWeights(model: Module, file: string, metadata: Record<string, string> = {}): void {
  saveWeights(model, file, metadata);
}

/** Load PyTorch-layout safetensors into the model, strictly (`loadWeights`); errors name the file and keys. */
export function readModelWeights(model: Module, file: string): Record<string, string> {
  return loadWeights(model, file, { from: 'pytorch' }).metadata;
}

export function checkpointDir(runDir: string): string {
  return path.join(runDir, 'checkpoints');
}

export interface SaveCheckpointArgs extends Omit<CheckpointJson, 'format' | 'weights' | 'optimizerFile' | 'savedAt'> {
  modelModule: Module;
  optimizerTensors: Map<string, tf.Tensor>;
}

/** Write a checkpoint (tensors, then last.json), then delete step files no JSON points to. */
export function saveCheckpoint(runDir: string, args: SaveCheckpointArgs): CheckpointJson {
  const dir = checkpointDir(runDir);
  fs.mkdirSync(dir, { recursive: true });
  const tag = `step-${String(args.position.step).padStart(7, '0')}`;
  const weights = `${tag}.safetensors`;
  const optimizerFile = `${tag}.optim.safetensors`;
  writeModelWeights(args.modelModule, path.join(dir, weights), {
    model: args.model.name,
    step: String(args.position.step),
  });
  writeSafetensors(path.join(dir, optimizerFile), args.optimizerTensors, { step: String(args.optimizer.step) });
  const json: CheckpointJson = {
    format: CHECKPOINT_FORMAT,
    weights,
    optimizerFile,
    savedAt: new Date().toISOString(),
    config: args.config,
    model: args.model,
    position: args.position,
    epochSums: args.epochSums,
    optimizer: args.optimizer,
    rng: args.rng,
    trackers: args.trackers,
    history: args.history,
    status: args.status,
  };
  atomicWriteJson(path.join(dir, 'last.json'), json);
  // Older step files are garbage once last.json points elsewhere.
  for (const f of fs.readdirSync(dir)) {
    if (f.startsWith('step-') && f !== weights && f !== optimizerFile) fs.rmSync(path.join(dir, f), { force: true });
  }
  return json;
}

/** Read `<run>/checkpoints/last.json` (undefined when there is none) and check its files exist. */
export function readCheckpoint(runDir: string): CheckpointJson | undefined {
  const file = path.join(checkpointDir(runDir), 'last.json');
  if (!fs.existsSync(file)) return undefined;
  let json: CheckpointJson;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as CheckpointJson;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (json.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${file}: unknown checkpoint format '${String(json.format)}' (expected ${CHECKPOINT_FORMAT})`);
  }
  for (const f of [json.weights, json.optimizerFile]) {
    if (!fs.existsSync(path.join(checkpointDir(runDir), f)))
      throw new Error(`${file}: points to ${f}, which is missing`);
  }
  return json;
}

/** Load a checkpoint's optimizer tensors (caller disposes them). */
export function readOptimizerTensors(runDir: string, json: CheckpointJson): Map<string, tf.Tensor> {
  return readSafetensors(path.join(checkpointDir(runDir), json.optimizerFile)).tensors;
}

export interface BestJson {
  metric: string;
  value: number;
  epoch: number;
  step: number;
  model: { name: string; numClasses: number; classNames: string[] };
  config: TrainConfig;
}

/** `best.safetensors` then `best.json` (both atomic). */
export function saveBest(runDir: string, model: Module, info: BestJson): void {
  const dir = checkpointDir(runDir);
  writeModelWeights(model, path.join(dir, 'best.safetensors'), {
    model: info.model.name,
    [info.metric]: String(info.value),
    epoch: String(info.epoch),
  });
  atomicWriteJson(path.join(dir, 'best.json'), info);
}
