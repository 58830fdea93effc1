/**
 * Checkpoints that let `--resume` continue a run exactly.
 *
 * A checkpoint is three files in `<run>/checkpoints/`:
 *   step-<s>.safetensors        model state dict, PyTorch names and layouts (loadable by the official code)
 *   step-<s>.optim.safetensors  Adam moments as `exp_avg.<param>` / `exp_avg_sq.<param>`
 *   last.json                   everything else: config, position (epoch, batch, step), optimizer step and
 *                               hyper-parameters, every RNG state, metric history, tracker states, and the
 *                               names of the two tensor files above
 * Writes are atomic (temp file, every byte written, fsync, rename; lib/util/fs.ts) and ordered: tensors first,
 * then the JSON that points to them, and only then are older step files deleted. A process killed at any
 * moment, or a disk that fills up, leaves a last.json whose files exist, are complete and match it.
 *
 * The best model (by the configured validation metric) is kept separately as `best.safetensors` +
 * `best.json`; the pair is staged in full before either is renamed, and best.json records the weights'
 * size and SHA-256, so a JSON never describes a missing, partial or different weights file.
 *
 * Weights are checked before they are written: a state dict holding NaN or ±Infinity is never saved
 * (NonFiniteWeightsError), so the last checkpoint of a run that blew up is one from before the blow-up.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { type Module, readSafetensors, serializeSafetensors } from '../nn/index';
import { loadWeights } from '../models/index';
import { atomicWriteFiles, atomicWriteJson, jsonText } from '../util/fs';
import { checkFiniteWeights } from './divergence';
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
  /**
   * Training wall time up to this checkpoint, summed over every call that trained the run (work redone after an
   * interruption counts once), and the part of it spent in the epoch in progress. Lets a resumed run report the
   * time the whole run took, not only its last call's. Absent in checkpoints written before it existed.
   */
  elapsed?: { seconds: number; epochSeconds: number };
  /** 'running' while training; the final state once the loop ended. */
  status: 'running' | 'finished' | 'early-stopped' | 'max-steps';
}

/**
 * The model's state dict in PyTorch layout and names, serialised as safetensors (what `saveWeights` writes),
 * after checking every value is finite (`where` labels the error).
 */
export function modelWeightBytes(model: Module, metadata: Record<string, string>, where: string): Uint8Array {
  const sd = model.stateDict({ layout: 'pytorch' });
  try {
    checkFiniteWeights(sd, where);
    return serializeSafetensors(sd, { format: 'pt', ...metadata });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}

/** The model's state dict as safetensors at `file` (atomic; refuses non-finite weights). */
export function writeModelWeights(model: Module, file: string, metadata: Record<string, string> = {}): void {
  atomicWriteFiles([{ file, data: modelWeightBytes(model, metadata, file) }]);
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
  const where = `step ${args.position.step} (checkpoint ${path.join(dir, weights)})`;
  const weightBytes = modelWeightBytes(
    args.modelModule,
    { model: args.model.name, step: String(args.position.step) },
    where,
  );
  checkFiniteWeights(args.optimizerTensors, `${where}, optimizer moments`);
  const optimizerBytes = serializeSafetensors(args.optimizerTensors, { step: String(args.optimizer.step) });
  atomicWriteFiles([
    { file: path.join(dir, weights), data: weightBytes },
    { file: path.join(dir, optimizerFile), data: optimizerBytes },
  ]);
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
    ...(args.elapsed ? { elapsed: args.elapsed } : {}),
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
  /** The weights file this JSON describes (relative to the checkpoint folder), its size and SHA-256. */
  weights?: { file: string; bytes: number; sha256: string };
  metric: string;
  value: number;
  epoch: number;
  step: number;
  model: { name: string; numClasses: number; classNames: string[] };
  config: TrainConfig;
}

export const BEST_WEIGHTS = 'best.safetensors';

/**
 * `best.safetensors` + `best.json` as one unit: both are written in full (and fsync'd) before the weights
 * and then the JSON are renamed into place, so a failed write (full disk) leaves the previous pair intact.
 */
export function saveBest(runDir: string, model: Module, info: BestJson): BestJson {
  const dir = checkpointDir(runDir);
  const file = path.join(dir, BEST_WEIGHTS);
  const bytes = modelWeightBytes(
    model,
    { model: info.model.name, [info.metric]: String(info.value), epoch: String(info.epoch) },
    `epoch ${info.epoch + 1}, step ${info.step} (${file})`,
  );
  const json: BestJson = { ...info, weights: { file: BEST_WEIGHTS, bytes: bytes.byteLength, sha256: sha256(bytes) } };
  atomicWriteFiles([
    { file, data: bytes },
    { file: path.join(dir, 'best.json'), data: jsonText(json) },
  ]);
  return json;
}

/**
 * best.json, checked against the weights file it names (size and SHA-256); undefined when there is none.
 * An error names both files when they do not belong together.
 */
export function readBest(runDir: string): BestJson | undefined {
  const dir = checkpointDir(runDir);
  const jsonFile = path.join(dir, 'best.json');
  if (!fs.existsSync(jsonFile)) return undefined;
  const json = JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as BestJson;
  if (!json.weights) return json; // written before the pair was checksummed
  const file = path.join(dir, json.weights.file);
  if (!fs.existsSync(file)) throw new Error(`${jsonFile}: names ${json.weights.file}, which is missing`);
  const bytes = fs.readFileSync(file);
  if (bytes.byteLength !== json.weights.bytes || sha256(bytes) !== json.weights.sha256) {
    throw new Error(
      `${file} (${bytes.byteLength} bytes) is not the file ${jsonFile} describes (${json.weights.bytes} bytes, ` +
        `sha256 ${json.weights.sha256.slice(0, 12)}…); use --checkpoint last or retrain`,
    );
  }
  return json;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
