/**
 * Using trained weights: evaluate them on a dataset split (official test.py) or predict class
 * probabilities for image files.
 *
 * Weights come either from a run folder (its run.json says which model, classes, image size and exactly
 * which normalisation training used) or from a bare safetensors file plus the model/size/normalisation
 * given explicitly (e.g. an official PyTorch checkpoint converted to safetensors).
 *
 * Glossary: n images, k classes, s image size; probabilities are row-major [n * k].
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { decodeImage, IMAGE_EXTENSIONS, modelInputInto, normalizationTable, type SplitName } from '../data/index';
import { classificationReport, type ClassificationReport } from '../metrics/index';
import { readModelWeights } from './checkpoint';
import { divergedText, EVALUATION_ADVICE } from './divergence';
import { makeTrainConfig, type TrainConfig } from './config';
import {
  asBatches,
  buildModel,
  evalLoader,
  normalizationFor,
  pickTestCheckpoint,
  prepareData,
  type Normalization,
  type RunInfo,
} from './run';
import { type ClassifierModel, inferenceForm } from '../models/index';
import { evaluateModel, type EvalResult } from './trainer';
import { memoryError, planInferenceBatch } from './memory';

/** A model with its weights loaded and everything needed to feed it. */
export interface LoadedModel {
  model: ClassifierModel;
  modelName: string;
  classes: string[];
  imageSize: number;
  normalization: Normalization;
  /** The weights file that was loaded. */
  weights: string;
  /** The run's configuration, when loaded from a run folder. */
  config?: TrainConfig;
  runDir?: string;
  /** Set by `prepareInference`: the model is its inference form, run in batches of `batch`. */
  inference?: InferenceSetup;
}

/** How `prepareInference` set a loaded model up. */
export interface InferenceSetup {
  /** The model was replaced by its inference form (BatchNorm folded / reparameterised). */
  folded: boolean;
  /** Images per forward pass. */
  batch: number;
  /** One line: the form and the batch, and why. */
  reason: string;
}

/**
 * Set a loaded model up for evaluation or prediction (both only run eval-mode forward passes):
 *   - its inference form (`fusedForInference()`: eval-mode BatchNorm folded into the conv before it,
 *     MobileOne / RepViT reparameterised; lib/models/inference.ts) replaces `loaded.model`, whose training
 *     form is disposed — same logits within 1e-5 relative (test/models.fold.test.ts), fewer kernels;
 *   - the batch: `batchSize` when given (> 0), else the largest that fits the backend's memory
 *     (lib/train/memory.ts `planInferenceBatch`), at most `maxBatch` (e.g. the number of images).
 */
export function prepareInference(
  loaded: LoadedModel,
  opts: { batchSize?: number; maxBatch?: number; fallback?: number; fold?: boolean } = {},
): InferenceSetup {
  let folded = false;
  if (opts.fold !== false) {
    const form = inferenceForm(loaded.model);
    if (form.fused) {
      loaded.model.dispose();
      loaded.model = form.model;
      folded = true;
    }
  }
  loaded.model.eval();
  const form = folded
    ? 'inference form (BatchNorm folded)'
    : opts.fold === false
      ? 'training form (folding off)'
      : 'training form (no inference form: nothing to fold)';
  let setup: InferenceSetup;
  if (opts.batchSize && opts.batchSize > 0) {
    setup = { folded, batch: opts.batchSize, reason: `${form}; batch ${opts.batchSize} (--batch-size)` };
  } else {
    const plan = planInferenceBatch(loaded.model, loaded.imageSize, tf.getBackend(), {
      max: opts.maxBatch,
      fallback: opts.fallback,
    });
    setup = { folded, batch: plan.batch, reason: `${form}; ${plan.reason}` };
  }
  loaded.inference = setup;
  return setup;
}

/** Images per second over a phase. */
export interface Throughput {
  images: number;
  seconds: number;
  imagesPerSecond: number;
}

function throughput(images: number, seconds: number): Throughput {
  return { images, seconds, imagesPerSecond: seconds > 0 ? images / seconds : NaN };
}

/** Is `p` a run folder (has run.json)? */
export function isRunDir(p: string): boolean {
  return fs.existsSync(path.join(p, 'run.json'));
}

/**
 * What the first argument of evaluate/predict names: a run folder or a weights file. A path that is
 * neither is an error saying so (a typo must not read as "a bare weights file needs --data").
 */
export function weightsTarget(p: string): 'run' | 'weights' {
  if (isRunDir(p)) return 'run';
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) {
    const parent = path.dirname(path.resolve(p));
    const near = fs.existsSync(parent)
      ? fs
          .readdirSync(parent)
          .filter((n) => !n.startsWith('.'))
          .slice(0, 12)
      : [];
    throw new Error(
      `${p}: no such run or weights file` +
        (near.length ? ` (${path.dirname(p) || '.'} holds: ${near.join(', ')})` : ''),
    );
  }
  if (st.isDirectory())
    throw new Error(`${p}: a folder but not a run (no run.json); give a run folder or a .safetensors file`);
  if (!st.isFile())
    throw new Error(`${p}: not a regular file (a FIFO, socket or device); give a run folder or a .safetensors file`);
  return 'weights';
}

/**
 * Load a run's model: `checkpoint` is 'best' (default; falls back to the last checkpoint when no best was
 * saved), 'last', or a weights file path.
 */
export function loadRun(runDir: string, checkpoint: string = 'best'): LoadedModel {
  const infoFile = path.join(runDir, 'run.json');
  if (!fs.existsSync(infoFile)) throw new Error(`${runDir} is not a run folder (no run.json)`);
  const info = JSON.parse(fs.readFileSync(infoFile, 'utf8')) as RunInfo;
  const config = makeTrainConfig(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as TrainConfig);
  const weights =
    checkpoint === 'best' || checkpoint === 'last' ? pickTestCheckpoint(runDir, checkpoint) : path.resolve(checkpoint);
  const model = buildModel(config, info.model.numClasses);
  try {
    readModelWeights(model, weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return {
    model,
    modelName: info.model.name,
    classes: info.dataset.classes,
    imageSize: info.imageSize,
    normalization: info.normalization,
    weights,
    config,
    runDir,
  };
}

export interface BareWeightsOptions {
  model: string;
  modelConfig?: string;
  imageSize: number;
  classes: string[];
  normalization: Normalization;
}

/** Load a bare safetensors file (PyTorch names) into a freshly built model. */
export function loadWeightsFile(file: string, opts: BareWeightsOptions): LoadedModel {
  const model = buildModel(
    { model: opts.model, modelConfig: opts.modelConfig ?? '', seed: 0, imageSize: opts.imageSize },
    opts.classes.length,
  );
  try {
    readModelWeights(model, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return {
    model,
    modelName: opts.model,
    classes: opts.classes,
    imageSize: opts.imageSize,
    normalization: opts.normalization,
    weights: path.resolve(file),
  };
}

export interface EvaluateSplitOptions {
  data: string;
  dataKind?: string;
  split: SplitName;
  batchSize?: number;
  /** Bootstrap resamples for confidence intervals (0 = none). */
  bootstrap?: number;
  seed?: number;
  onBatch?: (done: number) => void;
  /** Forward in chunks of at most this many images (default: the chunk the run's memory plan chose). */
  microBatch?: number;
}

export interface SplitEvaluation {
  eval: EvalResult;
  /** The evaluation loop (loading, forward passes, softmax), images per second. */
  throughput: Throughput;
  report: ClassificationReport;
  dataset: { name: string; synthetic: boolean; split: SplitName };
}

/**
 * Evaluate a loaded model on one split of a dataset, with the model's own normalisation (the training
 * statistics, not the evaluated set's). The dataset's classes must match the model's.
 */
export async function evaluateSplit(loaded: LoadedModel, opts: EvaluateSplitOptions): Promise<SplitEvaluation> {
  const data = await prepareData({ data: opts.data, dataKind: opts.dataKind ?? '', imageSize: loaded.imageSize });
  try {
    if (data.classes.join('\u0000') !== loaded.classes.join('\u0000')) {
      throw new Error(
        `${opts.data}: classes [${data.classes.join(', ')}] differ from the model's [${loaded.classes.join(', ')}]`,
      );
    }
    const evalBatchSize = opts.batchSize ?? loaded.inference?.batch ?? 64;
    const loader = evalLoader(data, opts.split, { evalBatchSize }, loaded.normalization);
    if (loader.length === 0) throw new Error(`${opts.data}: the ${opts.split} split is empty`);
    // prepareInference's batch was planned for this model alone; without it, the run's training-time plan.
    const microBatch = opts.microBatch ?? loaded.inference?.batch ?? (loaded.config?.evalMicroBatch || undefined);
    let r: EvalResult;
    const t0 = performance.now();
    try {
      r = await evaluateModel(loaded.model, asBatches(loader.epoch(0)), opts.onBatch, { microBatch });
    } catch (e) {
      throw memoryError(e, { backend: tf.getBackend(), where: `the evaluation of the ${opts.split} split` });
    }
    const report = classificationReport(r.labels, r.probs, {
      classNames: loaded.classes,
      bootstrap: (opts.bootstrap ?? 1000) > 0 ? { samples: opts.bootstrap ?? 1000, seed: opts.seed ?? 0 } : false,
    });
    const info = data.dataset.info;
    const seconds = (performance.now() - t0) / 1000;
    return {
      eval: r,
      throughput: throughput(r.labels.length, seconds),
      report,
      dataset: { name: info.name, synthetic: info.synthetic, split: opts.split },
    };
  } finally {
    data.close();
  }
}

/**
 * Image files under the given paths (folders are searched recursively, files sorted by path). Only regular
 * files are ever listed: reading a FIFO or a device would block forever. A non-regular input is an error,
 * or, with `skipped`, recorded there and left out.
 */
export function listImages(inputs: string[], skipped?: SkippedInput[]): string[] {
  const out: string[] = [];
  const bad = (file: string, problem: string) => {
    if (!skipped) throw new Error(`${file}: ${problem}`);
    skipped.push({ file, problem });
  };
  const walk = (p: string) => {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (!st) return bad(p, 'no such file or folder');
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) if (!e.startsWith('.')) walk(path.join(p, e));
    } else if (IMAGE_EXTENSIONS.includes(path.extname(p).toLowerCase())) {
      if (st.isFile()) out.push(p);
      else bad(p, 'not a regular file (a FIFO, socket or device); not read');
    }
  };
  for (const p of inputs) {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (st?.isFile())
      out.push(p); // named explicitly: try it whatever its extension
    else if (st && !st.isDirectory()) bad(p, 'not a regular file (a FIFO, socket or device); not read');
    else walk(p);
  }
  return out;
}

/** An input predict left out (with skipBad), and why. */
export interface SkippedInput {
  file: string;
  problem: string;
}

export interface PredictOptions {
  /** Images per forward pass (default 32). */
  batchSize?: number;
  /** Leave out files that cannot be read or decoded (recorded in `skipped`) instead of failing. */
  skipBad?: boolean;
  /** Where left-out files are recorded (with skipBad). */
  skipped?: SkippedInput[];
  /** Told about each left-out file (default: nothing). */
  warn?: (line: string) => void;
  /** Checked between batches; true stops the loop with PredictionStopped. */
  shouldStop?: () => boolean;
  /** Filled in: decoding + forward passes, and forward passes alone, in images per second. */
  throughput?: { total?: Throughput; forward?: Throughput };
}

/** Thrown between batches when `shouldStop` says so (e.g. after SIGINT). */
export class PredictionStopped extends Error {
  constructor(readonly done: number) {
    super(`stopped after ${done} image(s)`);
    this.name = 'PredictionStopped';
  }
}

export interface Prediction {
  file: string;
  /** Class with the highest probability. */
  predicted: string;
  /** Probability per class, in class order. */
  probs: number[];
}

/**
 * Class probabilities for image files: decode, resize to s×s (PIL bilinear, as the evaluation transform),
 * normalise with the model's statistics, forward in eval mode in batches.
 */
export async function predictImages(
  loaded: LoadedModel,
  files: string[],
  options: number | PredictOptions = {},
): Promise<Prediction[]> {
  const opts: PredictOptions = typeof options === 'number' ? { batchSize: options } : options;
  let batchSize = opts.batchSize ?? loaded.inference?.batch ?? 32;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) {
    throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  }
  // No larger batches than the run's memory plan evaluated with (lib/train/memory.ts), unless
  // prepareInference planned them for this model alone.
  if (loaded.config?.evalMicroBatch && !loaded.inference) batchSize = Math.min(batchSize, loaded.config.evalMicroBatch);
  const t0 = performance.now();
  let forwardSeconds = 0;
  const s = loaded.imageSize;
  const per = s * s * 3;
  const lut = normalizationTable(loaded.normalization);
  loaded.model.eval();
  const out: Prediction[] = [];
  for (let i = 0; i < files.length; i += batchSize) {
    // Let signal handlers run between batches (a forward pass is synchronous).
    await new Promise((r) => setImmediate(r));
    if (opts.shouldStop?.()) throw new PredictionStopped(out.length);
    const chunk: string[] = [];
    const host = new Float32Array(Math.min(batchSize, files.length - i) * per);
    for (const file of files.slice(i, i + batchSize)) {
      let img;
      try {
        // Re-checked here: a FIFO or device would block the read forever.
        const st = fs.statSync(file, { throwIfNoEntry: false });
        if (!st?.isFile())
          throw new Error(`${file}: ${st ? 'not a regular file (a FIFO, socket or device)' : 'no such file'}`);
        img = await decodeImage(file);
      } catch (e) {
        if (!opts.skipBad) throw e;
        const problem = (e as Error).message.startsWith(file)
          ? (e as Error).message.slice(file.length + 2)
          : (e as Error).message;
        opts.skipped?.push({ file, problem });
        opts.warn?.(`skipped ${file}: ${problem}`);
        continue;
      }
      modelInputInto(host, chunk.length * per, img, s, lut);
      chunk.push(file);
    }
    if (chunk.length === 0) continue;
    let probs: tf.Tensor;
    const f0 = performance.now();
    try {
      probs = tf.tidy(() => {
        const x = tf.tensor4d(host.subarray(0, chunk.length * per), [chunk.length, s, s, 3]); // [b, s, s, 3]
        return tf.softmax(loaded.model.forward(x, { training: false })); // [b, k]
      });
    } catch (e) {
      throw memoryError(e, {
        backend: tf.getBackend(),
        where: `prediction of images ${i + 1}–${i + chunk.length} (batch ${batchSize}; try a smaller --batch-size)`,
      });
    }
    const p = probs.dataSync() as Float32Array;
    probs.dispose();
    forwardSeconds += (performance.now() - f0) / 1000;
    const k = loaded.classes.length;
    chunk.forEach((file, j) => {
      const row = Array.from(p.subarray(j * k, (j + 1) * k));
      const bad = row.find((v) => !Number.isFinite(v));
      if (bad !== undefined)
        throw new Error(`${divergedText('output', bad, `image ${file} of prediction`)}; ${EVALUATION_ADVICE}`);
      let arg = 0;
      for (let c = 1; c < k; c++) if (row[c] > row[arg]) arg = c;
      out.push({ file, predicted: loaded.classes[arg], probs: row });
    });
  }
  if (opts.throughput) {
    opts.throughput.total = throughput(out.length, (performance.now() - t0) / 1000);
    opts.throughput.forward = throughput(out.length, forwardSeconds);
  }
  return out;
}

/** Normalisation for bare weights: a named preset, or the statistics of a dataset's train split. */
export async function normalizationByName(
  name: TrainConfig['normalize'],
  dataset?: { data: string; dataKind?: string; imageSize: number },
): Promise<Normalization> {
  if (name !== 'dataset') return normalizationFor({ normalize: name });
  if (!dataset) throw new Error("normalize 'dataset' needs --data (its train split's statistics are used)");
  const data = await prepareData({
    data: dataset.data,
    dataKind: dataset.dataKind ?? '',
    imageSize: dataset.imageSize,
  });
  try {
    return normalizationFor({ normalize: 'dataset' }, data);
  } finally {
    data.close();
  }
}
