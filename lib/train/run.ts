/**
 * A whole training run, as `npm run train` and the quickstart do it:
 *
 *   config → backend → dataset (decoded once into the cache) → model → fit (checkpoints, logs, early
 *   stopping) → test evaluation of the best checkpoint → metrics.json, report.html, summary.json
 *
 * Run folder `runs/<name>/`:
 *   config.json      the full training configuration
 *   run.json         dataset (classes, counts, normalisation, size), model, backend, machine: what
 *                    `evaluate` and `predict` need to use the weights without the training data
 *   log.jsonl        one line per step / epoch / event;  steps.csv, epochs.csv
 *   checkpoints/     last.json + step-*.safetensors (resume), best.safetensors + best.json
 *   .lock            while a process writes the folder (lib/util/lock.ts): a second writer is refused
 *   metrics.json     test metrics (reproducible: no timings)
 *   test-predictions.json  each test image's label and argmax prediction (paired comparisons)
 *   summary.json     status, wall time, images/s, load average (not reproducible)
 *   report.html      curves, confusion matrix, ROC, tables
 */
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { currentBackend, initBackend } from '../backend/index';
import { type ThreadInfo, threadInfo } from '../backend/thread-info';
import {
  checkTrainingSplits,
  openDataset,
  OFFICIAL_STATS,
  type DatasetSpec,
  type DataLoader,
  type PreparedDataset,
  repoRoot,
} from '../data/index';
import type { AugmentConfig } from '../data/index';
import { classificationReport, type ClassificationReport } from '../metrics/index';
import { countParameters } from '../nn/index';
import { type ClassifierModel, createModel, modelMeta } from '../models/index';
import { atomicWriteJson } from '../util/fs';
import { acquireFolderLock } from '../util/lock';
import { checkpointDir, readBest, readCheckpoint, readModelWeights, type CheckpointJson } from './checkpoint';
import {
  baseModelConfig,
  configDelta,
  makeTrainConfig,
  mergeModelConfig,
  parseModelConfig,
  type TrainConfig,
} from './config';
import { fit, runRngs, type EpochSource, type FitResult } from './fit';
import { formatBytes, memoryError, planForRun } from './memory';
import { writeRunReport } from './report';
import { type TrainBatch, evaluateModel, type EvalResult } from './trainer';

/** ImageNet channel statistics (torchvision's usual constants), for `--normalize imagenet`. */
export const IMAGENET_STATS = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const;

export interface Normalization {
  mean: [number, number, number];
  std: [number, number, number];
  /** Where the numbers come from. */
  source: TrainConfig['normalize'];
}

/** What run.json records. */
export interface RunInfo {
  name: string;
  runDir: string;
  dataset: {
    name: string;
    kind: string;
    root: string;
    synthetic: boolean;
    classes: string[];
    counts: Record<string, number[]>;
    split: unknown;
  };
  imageSize: number;
  normalization: Normalization;
  model: {
    name: string;
    numClasses: number;
    options: Record<string, unknown>;
    resolved?: Record<string, unknown>;
    parameters: ReturnType<typeof countParameters>;
  };
  backend: string;
  machine: MachineInfo;
  /** The kit's code the run trained with (git commit of the checkout; absent outside a git checkout). */
  code?: CodeVersion;
}

export interface CodeVersion {
  commit: string;
  /** Tracked files differed from that commit (results may not be reproducible from it alone). */
  dirty: boolean;
}

/** The git commit of the kit's checkout, or undefined where git or the checkout's .git is missing. */
export function codeVersion(root = repoRoot()): CodeVersion | undefined {
  const git = (...args: string[]) => spawnSync('git', ['-C', root, ...args], { encoding: 'utf8', timeout: 10_000 });
  const head = git('rev-parse', 'HEAD');
  if (head.status !== 0) return undefined;
  const status = git('status', '--porcelain', '--untracked-files=no');
  return { commit: head.stdout.trim(), dirty: status.status !== 0 || status.stdout.trim() !== '' };
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  tfjs: string;
  platform: string;
  /** The threads the run computed with (backend kernels and the fused scan; lib/backend/thread-info.ts). */
  threads: ThreadInfo;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    tfjs: tf.version.tfjs,
    platform: `${os.platform()} ${os.arch()}`,
    threads: threadInfo(),
  };
}

/** The `openDataset` spec a config names. */
export function datasetSpec(cfg: Pick<TrainConfig, 'data' | 'dataKind'> & { valSplit?: number }): DatasetSpec | string {
  if (cfg.data === 'synthetic' || cfg.dataKind === 'synthetic') {
    return cfg.data === 'synthetic' ? { kind: 'synthetic' } : { kind: 'synthetic', root: cfg.data };
  }
  const valSplit = cfg.valSplit ?? 0;
  if (valSplit > 0 && (cfg.dataKind === 'folder' || (cfg.dataKind === '' && !/\.npz$/i.test(cfg.data)))) {
    return { kind: 'folder', root: cfg.data, valSplit };
  }
  switch (cfg.dataKind) {
    case '':
      return cfg.data;
    case 'medmnist':
      return { kind: 'medmnist', file: cfg.data };
    case 'folder':
    case 'malaria':
    case 'mhist':
    case 'medfm-colon':
    case 'rpe':
      return { kind: cfg.dataKind, root: cfg.data } as DatasetSpec;
    default:
      throw new Error(`unknown dataset kind '${cfg.dataKind}'`);
  }
}

/**
 * Open and decode (or reuse the cache of) the dataset at the run's image size. With `forTraining`, the
 * splits are checked first (checkTrainingSplits), before anything is decoded.
 */
export async function prepareData(
  cfg: Pick<TrainConfig, 'data' | 'dataKind' | 'imageSize'> & { valSplit?: number },
  forTraining?: { needTest: boolean },
): Promise<PreparedDataset> {
  const ds = await openDataset(datasetSpec(cfg));
  if (forTraining) checkTrainingSplits(ds.info, forTraining);
  return ds.prepare({ size: cfg.imageSize });
}

/** The normalisation the config asks for (dataset statistics come from the train split at this size). */
export function normalizationFor(cfg: Pick<TrainConfig, 'normalize'>, data?: PreparedDataset): Normalization {
  const three = (v: readonly number[]) => [v[0], v[1], v[2]] as [number, number, number];
  switch (cfg.normalize) {
    case 'dataset':
      if (!data) throw new Error('normalize=dataset needs the dataset');
      return { mean: three(data.stats.mean), std: three(data.stats.std), source: 'dataset' };
    case 'official':
      return { mean: three(OFFICIAL_STATS.mean), std: three(OFFICIAL_STATS.std), source: 'official' };
    case 'imagenet':
      return { mean: three(IMAGENET_STATS.mean), std: three(IMAGENET_STATS.std), source: 'imagenet' };
    case 'none':
      return { mean: [0, 0, 0], std: [1, 1, 1], source: 'none' };
  }
}

/** The training augmentation a config asks for. */
export function augmentFor(cfg: TrainConfig): AugmentConfig | false {
  const a: AugmentConfig = {
    randomResizedCrop: cfg.augment === 'rrc' ? { scale: [cfg.rrcScaleMin, cfg.rrcScaleMax] } : false,
    hflip: cfg.hflip,
    vflip: cfg.vflip,
    rotate90: cfg.rotate90,
  };
  return a.randomResizedCrop || a.hflip || a.vflip || a.rotate90 ? a : false;
}

/** The data loader as the training loop's EpochSource (stateless: batches are a function of seed and position). */
export function loaderSource(loader: DataLoader): EpochSource {
  return {
    batchesPerEpoch: loader.numBatches,
    imagesPerEpoch: loader.samplesPerEpoch,
    batches: (epoch, start) => asBatches(loader.epoch(epoch, { startBatch: start })),
    getState: () => ({ seed: loader.seed, batchSize: loader.batchSize, samplesPerEpoch: loader.samplesPerEpoch }),
    setState: (state) => {
      const s = state as { seed: number; batchSize: number; samplesPerEpoch: number };
      if (s.seed !== loader.seed || s.batchSize !== loader.batchSize || s.samplesPerEpoch !== loader.samplesPerEpoch) {
        throw new Error(
          `checkpoint's data loader (seed ${s.seed}, batch ${s.batchSize}, ${s.samplesPerEpoch} samples) does not match ` +
            `this run's (seed ${loader.seed}, batch ${loader.batchSize}, ${loader.samplesPerEpoch} samples)`,
        );
      }
    },
  };
}

/** Loader batches → the trainer's batches (images + int32 label tensor). */
export async function* asBatches(
  batches: AsyncIterable<{ x: tf.Tensor4D; y: Int32Array }>,
): AsyncGenerator<TrainBatch> {
  for await (const b of batches) yield { x: b.x, y: tf.tensor1d(b.y, 'int32') };
}

/** The loader over an evaluation split (no shuffling, no augmentation). */
export function evalLoader(
  data: PreparedDataset,
  split: 'val' | 'test' | 'train',
  cfg: Pick<TrainConfig, 'evalBatchSize'>,
  norm: Normalization,
): DataLoader {
  return data.loader(split, { batchSize: cfg.evalBatchSize, shuffle: false, augment: false, stats: norm, prefetch: 1 });
}

/**
/**
 * Build the model a config names; its initialisation seed is the run seed's 'init' fork. The model gets
 * the training size as its shared `imageSize` option (architectures whose shape depends on it, e.g. ViT's
 * position embedding, are built for it) unless `modelConfig` sets one, and the size is checked against
 * the model's own input rules (`checkInput`) here, with one error naming the flag (without `imageSize`: neither).
 * `checkpointing` 'on' adds the model option `useCheckpoint` (activation checkpointing; same results, less memory).
 */
export function buildModel(
  cfg: Pick<TrainConfig, 'model' | 'modelConfig' | 'seed'> & {
    imageSize?: number;
    checkpointing?: TrainConfig['checkpointing'];
  },
  numClasses: number,
): ClassifierModel {
  const options = parseModelConfig(cfg.modelConfig);
  if (cfg.checkpointing === 'on') options.useCheckpoint = true;
  const seed = runRngs(cfg.seed).init.nextUint32();
  const model = createModel(cfg.model, { imageSize: cfg.imageSize, ...options, numClasses, seed });
  if (cfg.imageSize === undefined) return model;
  try {
    model.checkInput([1, cfg.imageSize, cfg.imageSize, 3], 'float32');
  } catch (e) {
    model.dispose();
    const input = JSON.stringify(modelMeta(cfg.model).input);
    throw new Error(
      `--image-size ${cfg.imageSize} does not fit ${cfg.model} (input rules ${input}): ${(e as Error).message}`,
    );
  }
  return model;
}

/** The model's full resolved options when it exposes them as a plain `config` object (Microscopic-Mamba does). */
export function resolvedModelConfig(model: unknown): Record<string, unknown> | undefined {
  const c = (model as { config?: unknown }).config;
  return c && typeof c === 'object' && !Array.isArray(c) ? { ...(c as Record<string, unknown>) } : undefined;
}

/**
 * Fit the training step into the backend's memory before the first step (lib/train/memory.ts): probe,
 * plan, and return the config with the micro-batch, evaluation chunk and checkpointing it will use (a
 * resumed run has them fixed in its saved config, so it repeats the same plan or refuses).
 */
export function planRunMemory(
  cfg: TrainConfig,
  numClasses: number,
  backend: string,
  log: (line: string) => void,
): { config: TrainConfig; plan: ReturnType<typeof planForRun> } {
  const makeProbeModel = (checkpointing: boolean) => {
    try {
      return buildModel({ ...cfg, checkpointing: checkpointing ? 'on' : 'off' }, numClasses);
    } catch (e) {
      if (checkpointing && /useCheckpoint/.test((e as Error).message)) return undefined; // no checkpointing
      throw e;
    }
  };
  const plan = planForRun(cfg, backend, makeProbeModel);
  log(
    `memory: ${plan.reason}` +
      (plan.probe
        ? ` [probe ${plan.probeSeconds.toFixed(0)} s; ${plan.probe.sources?.join(', ')}; ` +
          `step peak ≈ ${formatBytes(plan.probe.train.fixed)} + ${formatBytes(plan.probe.train.perImage)}/image` +
          (plan.probe.trainCheckpointed
            ? `, checkpointed ${formatBytes(plan.probe.trainCheckpointed.fixed)} + ${formatBytes(plan.probe.trainCheckpointed.perImage)}/image`
            : '') +
          ' in tensor bytes]'
        : ''),
  );
  const config = {
    ...cfg,
    microBatch: plan.microBatch,
    evalMicroBatch: plan.evalMicroBatch,
    checkpointing: plan.checkpointing,
  };
  return { config, plan };
}

/** Options that may change when a run is resumed; any other difference would break exact continuation. */
export const RESUMABLE_OVERRIDES: ReadonlyArray<keyof TrainConfig> = [
  'resume',
  // A lower learning rate after a divergence; the schedule keeps its shape, the log records the change.
  'lr',
  'maxSteps',
  'evalTest',
  'testCheckpoint',
  'bootstrap',
  'report',
  'progressSeconds',
  'backend',
  'ckptEvery',
  'runsDir',
  'name',
  // Memory settings that do not change the numbers (microBatch and checkpointing do: fixed at the start).
  'evalMicroBatch',
  'memoryLimitMb',
];

/** `p` relative to the working directory when it lies inside it (logs and notebook outputs name no machine paths). */
function shownPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

/** Two model-option JSON strings with the same keys and values (key order aside). */
function sameJson(a: string, b: string): boolean {
  const pa = parseModelConfig(a);
  const pb = parseModelConfig(b);
  const keys = Object.keys(pa);
  return (
    keys.length === Object.keys(pb).length && keys.every((key) => JSON.stringify(pa[key]) === JSON.stringify(pb[key]))
  );
}

/** The config of a resumed run: the saved one, with only the allowed options taken from `given`. */
export function resumeConfig(saved: TrainConfig, given: Partial<TrainConfig>, file: string): TrainConfig {
  // A given modelConfig is compared as it would be merged over the saved run's recipe.
  const same = (k: keyof TrainConfig) =>
    k === 'modelConfig'
      ? sameJson(mergeModelConfig(baseModelConfig(saved.recipe), String(given[k])), saved[k])
      : given[k] === saved[k];
  const conflicts = (Object.keys(given) as Array<keyof TrainConfig>).filter(
    (k) => !RESUMABLE_OVERRIDES.includes(k) && given[k] !== undefined && !same(k),
  );
  if (conflicts.length > 0) {
    throw new Error(
      `--resume: ${conflicts.map((k) => `${k} (${String(saved[k])} in ${file}, ${String(given[k])} given)`).join(', ')} ` +
        `cannot change on resume; only ${RESUMABLE_OVERRIDES.join(', ')} can. Start a new --name (optionally --init from its weights).`,
    );
  }
  const merged = { ...saved } as TrainConfig;
  for (const k of RESUMABLE_OVERRIDES)
    if (given[k] !== undefined) (merged as unknown as Record<string, unknown>)[k] = given[k];
  return makeTrainConfig({ ...merged, recipe: saved.recipe });
}

export interface TrainRunOptions {
  /** Progress rendering for the epochs ('auto' by default). */
  progress?: 'auto' | 'tty' | 'plain' | 'off';
  /** Messages (default console.log). */
  log?: (line: string) => void;
  /**
   * `resume` with no checkpoint to resume: 'start' a new run (default; a notebook cell that re-runs safely) or
   * 'error' listing the runs that exist (the `--resume` flag: a mistyped --name must not start a fresh run).
   */
  ifNoCheckpoint?: 'start' | 'error';
}

export interface TrainRunResult {
  runDir: string;
  config: TrainConfig;
  fit: FitResult;
  /** Test metrics (undefined with evalTest false). */
  test?: ClassificationReport;
  testCheckpoint?: string;
  reportFile?: string;
  wallSeconds: number;
}

/** The dataset's short name in run names: 'synthetic', or the folder / .npz name. */
export function datasetTag(cfg: Pick<TrainConfig, 'data'>): string {
  const ds = cfg.data === 'synthetic' ? 'synthetic' : path.basename(path.resolve(cfg.data)).replace(/\.npz$/i, '');
  return ds.replace(/[^A-Za-z0-9._-]+/g, '_');
}

/** 8 hex digits of the SHA-256 of `configDelta(cfg)` ('' when the run is its recipe unchanged). */
export function configHash(cfg: TrainConfig): string {
  const delta = configDelta(cfg);
  if (Object.keys(delta.train).length === 0 && Object.keys(delta.model).length === 0) return '';
  return crypto.createHash('sha256').update(JSON.stringify(delta)).digest('hex').slice(0, 8);
}

/**
 * Default run name: `<model>-<dataset>-<recipe or custom>-s<seed>`, then `-<configHash>` when any option
 * differs from the recipe, so two seeds or two ablation arms never collide in one runs folder.
 */
export function defaultRunName(cfg: TrainConfig): string {
  const hash = configHash(cfg);
  return `${cfg.model}-${datasetTag(cfg)}-${cfg.recipe || 'custom'}-s${cfg.seed}${hash ? `-${hash}` : ''}`.replace(
    /[^A-Za-z0-9._-]+/g,
    '_',
  );
}

/** Run folders under `runsDir` (those with a run.json or a checkpoint), sorted. */
export function listRuns(runsDir: string): string[] {
  if (!fs.existsSync(runsDir)) return [];
  return fs
    .readdirSync(runsDir, { withFileTypes: true })
    .filter(
      (d) =>
        d.isDirectory() &&
        (fs.existsSync(path.join(runsDir, d.name, 'run.json')) ||
          fs.existsSync(path.join(checkpointDir(path.join(runsDir, d.name)), 'last.json'))),
    )
    .map((d) => d.name)
    .sort();
}

/** `--resume` of a run that has nothing to resume: an error that lists the runs there are (never a new run). */
function checkResumable(runDir: string, runsDir: string): void {
  if (fs.existsSync(path.join(checkpointDir(runDir), 'last.json'))) return;
  const runs = listRuns(runsDir);
  const known = runs.length
    ? `runs in ${shownPath(runsDir)}: ${runs.join(', ')}`
    : `${shownPath(runsDir)} holds no runs`;
  if (fs.existsSync(runDir)) {
    throw new Error(
      `--resume: ${shownPath(runDir)} has no checkpoint yet (it stopped before the first one); start it again without --resume`,
    );
  }
  throw new Error(`--resume: no run named '${path.basename(runDir)}' (${known}); check --name and --runs-dir`);
}

/**
 * Train per `config` (see the file doc for what lands in the run folder). With `config.resume` the run
 * continues from `runs/<name>/checkpoints/last.json` (without one: a new run, or with `ifNoCheckpoint: 'error'`
 * an error listing the runs that exist); `given` (the explicitly set options) is then checked against the saved config. Without
 * it, an existing checkpoint is an error, never overwritten. The run folder is locked while this runs: a
 * second train/--resume on it is refused, naming the process that holds it.
 */
export async function trainRun(
  config: TrainConfig,
  opts: TrainRunOptions = {},
  given: Partial<TrainConfig> = {},
): Promise<TrainRunResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const runDir = path.resolve(config.runsDir, config.name || defaultRunName(config));
  if (config.resume && opts.ifNoCheckpoint === 'error') checkResumable(runDir, path.resolve(config.runsDir));
  const lock = acquireFolderLock(runDir, { command: config.resume ? 'train --resume' : 'train', warn: log });
  try {
    return await trainRunLocked(config, opts, given);
  } finally {
    lock.release();
  }
}

async function trainRunLocked(
  config: TrainConfig,
  opts: TrainRunOptions,
  given: Partial<TrainConfig>,
): Promise<TrainRunResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const t0 = Date.now();
  const load0 = os.loadavg()[0];
  let cfg = config;
  const name = cfg.name || defaultRunName(cfg);
  const runDir = path.resolve(cfg.runsDir, name);
  const resume: CheckpointJson | undefined = readCheckpoint(runDir);
  if (resume && !cfg.resume) {
    throw new Error(
      `${runDir} already holds a run (checkpoint at step ${resume.position.step}); pass --resume to continue it or --name for a new run`,
    );
  }
  if (cfg.resume && !resume) log(`no checkpoint in ${shownPath(runDir)}: starting a new run`);
  if (resume) cfg = resumeConfig(resume.config, given, path.join(checkpointDir(runDir), 'last.json'));
  cfg = { ...cfg, name };
  if (resume && cfg.lr !== resume.config.lr)
    log(`--resume: learning rate ${resume.config.lr} → ${cfg.lr} (recorded in log.jsonl)`);

  const backend = await initBackend(cfg.backend || undefined, { quiet: true });
  log(`run ${shownPath(runDir)}\nbackend ${backend.name} (tfjs ${backend.tfjsVersion})`);
  const data = await prepareData(cfg, { needTest: cfg.evalTest });
  const info = data.dataset.info;
  log(data.dataset.report());
  if (info.synthetic)
    log('NOTE: this is the SYNTHETIC dataset (not real data); its metrics only show the pipeline works.');
  const norm = normalizationFor(cfg, data);
  const numClasses = data.classes.length;
  const rngs = runRngs(cfg.seed);
  const loaderSeed = rngs.data.nextUint32();
  const trainLoader = data.loader('train', {
    batchSize: cfg.batchSize,
    shuffle: true,
    augment: augmentFor(cfg),
    seed: loaderSeed,
    stats: norm,
  });
  const memory = planRunMemory(cfg, numClasses, backend.name, log);
  cfg = memory.config;
  const model = buildModel(cfg, numClasses);
  const modelInfo = { name: cfg.model, numClasses, classNames: data.classes };
  try {
    if (cfg.init && !resume) {
      readModelWeights(model, cfg.init);
      log(`initial weights: ${cfg.init}`);
    }
    const params = countParameters(model);
    log(
      `model ${cfg.model}: ${params.total.toLocaleString('en-US')} parameters (${params.used.toLocaleString('en-US')} used), ${numClasses} classes`,
    );
    fs.mkdirSync(runDir, { recursive: true });
    atomicWriteJson(path.join(runDir, 'config.json'), cfg);
    const runInfo: RunInfo = {
      name,
      runDir,
      dataset: {
        name: info.name,
        kind: info.kind,
        root: info.root,
        synthetic: info.synthetic,
        classes: data.classes,
        counts: info.counts,
        split: info.split,
      },
      imageSize: cfg.imageSize,
      normalization: norm,
      model: {
        name: cfg.model,
        numClasses,
        options: parseModelConfig(cfg.modelConfig),
        // Every option the model was built with, defaults included (models that expose their resolved config).
        resolved: resolvedModelConfig(model),
        parameters: params,
      },
      backend: backend.name,
      machine: machineInfo(),
      code: codeVersion(),
    };
    atomicWriteJson(path.join(runDir, 'run.json'), runInfo);
    log(
      `training: ${cfg.epochs} epochs × ${trainLoader.numBatches} steps (batch ${cfg.batchSize}` +
        (memory.plan.microSteps > 1 ? ` as ${memory.plan.microSteps} micro-batches of ≤ ${cfg.microBatch}` : '') +
        (cfg.checkpointing === 'on' ? ', activation checkpointing' : '') +
        `, ${cfg.imageSize} px), ` +
        `${cfg.optimizer} lr ${cfg.lr}, warm-up ${cfg.warmupEpochs} epoch(s), seed ${cfg.seed}` +
        (resume
          ? `; resuming at epoch ${resume.position.epoch + 1}, batch ${resume.position.batch}, step ${resume.position.step}`
          : ''),
    );

    const result = await fit({
      runDir,
      config: cfg,
      model,
      modelInfo,
      train: loaderSource(trainLoader),
      val: () => asBatches(evalLoader(data, 'val', cfg, norm).epoch(0)),
      valImages: data.count('val'),
      resume,
      progress: { mode: opts.progress ?? 'auto' },
      memory: {
        microBatch: memory.plan.microBatch,
        microSteps: memory.plan.microSteps,
        checkpointing: memory.plan.checkpointing,
        evalMicroBatch: memory.plan.evalMicroBatch,
        trainEstimateMiB: mib(memory.plan.trainEstimate),
        evalEstimateMiB: mib(memory.plan.evalEstimate),
        fullBatchEstimateMiB: mib(memory.plan.fullBatchEstimate),
        limit: memory.plan.limit.what,
        limitMiB: mib(memory.plan.limit.bytes ?? NaN),
        budgetMiB: mib(memory.plan.budget),
        reason: memory.plan.reason,
        probe: memory.plan.probe,
      },
    });
    const earlierSeconds = result.totalSeconds - result.seconds; // earlier calls of a resumed run
    log(
      `training ${result.status} after ${result.position.step} steps (${result.seconds.toFixed(0)} s` +
        (earlierSeconds > 0 ? `; ${result.totalSeconds.toFixed(0)} s with the earlier calls` : '') +
        ')',
    );

    let test: ClassificationReport | undefined;
    let testCheckpoint: string | undefined;
    let testEval: EvalResult | undefined;
    if (cfg.evalTest) {
      testCheckpoint = pickTestCheckpoint(runDir, cfg.testCheckpoint);
      readModelWeights(model, testCheckpoint);
      try {
        testEval = await evaluateModel(model, asBatches(evalLoader(data, 'test', cfg, norm).epoch(0)), undefined, {
          microBatch: cfg.evalMicroBatch > 0 ? cfg.evalMicroBatch : undefined,
        });
      } catch (e) {
        throw memoryError(e, { backend: backend.name, where: 'the test evaluation', plan: cfg });
      }
      test = classificationReport(testEval.labels, testEval.probs, {
        classNames: data.classes,
        bootstrap: cfg.bootstrap > 0 ? { samples: cfg.bootstrap, seed: cfg.seed } : false,
      });
      atomicWriteJson(path.join(runDir, 'metrics.json'), {
        split: 'test',
        checkpoint: path.relative(runDir, testCheckpoint),
        best: result.best,
        earlyStop: result.earlyStop,
        status: result.status,
        steps: result.position.step,
        epochs: result.history.length,
        dataset: { name: info.name, synthetic: info.synthetic },
        loss: testEval.loss,
        metrics: test,
      });
      // Per-image predictions (paired comparisons between runs on the same test images: lib/study).
      atomicWriteJson(path.join(runDir, 'test-predictions.json'), testPredictions(testEval, data.classes));
    }
    const callSeconds = (Date.now() - t0) / 1000;
    // Whole-run times: a resumed run adds its earlier calls' training time (up to their last checkpoint).
    const wallSeconds = callSeconds + earlierSeconds;
    atomicWriteJson(path.join(runDir, 'summary.json'), {
      status: result.status,
      steps: result.position.step,
      epochs: result.history.length,
      trainSeconds: result.totalSeconds,
      wallSeconds,
      // This call alone (equal to wallSeconds unless the run was resumed).
      callSeconds,
      // Training images per second of this call, validation passes included in the time.
      imagesPerSecond: result.imagesSeen / Math.max(1e-9, result.seconds),
      loadAverage: { start: load0, end: os.loadavg()[0] },
      backend: currentBackend()?.name,
      machine: machineInfo(),
      finishedAt: new Date().toISOString(),
    });
    let reportFile: string | undefined;
    if (cfg.report) {
      reportFile = path.join(runDir, 'report.html');
      writeRunReport(reportFile, {
        title: `${cfg.model} on ${info.name}${info.synthetic ? ' (SYNTHETIC data)' : ''}`,
        summary:
          `Model ${cfg.model} (${runInfo.model.parameters.total.toLocaleString('en-US')} parameters), dataset ${info.name} ` +
          `(${data.classes.join(', ')}), recipe ${cfg.recipe || 'custom'}, ${cfg.imageSize} px, seed ${cfg.seed}, backend ${backend.name}. ` +
          `Training ${result.status} after ${result.history.length} epoch(s) / ${result.position.step} steps; best ${result.best.metric} ` +
          `${result.best.value?.toFixed(4) ?? '–'} at epoch ${(result.best.epoch ?? -1) + 1}. Wall time ${(wallSeconds / 60).toFixed(1)} min ` +
          `on ${runInfo.machine.cores} × ${runInfo.machine.cpu}.` +
          (info.synthetic ? ' The data is SYNTHETIC: these numbers say nothing about real microscopy.' : ''),
        history: result.history,
        test:
          test && testEval
            ? {
                report: test,
                labels: testEval.labels,
                probs: testEval.probs,
                checkpoint: path.basename(testCheckpoint!),
              }
            : undefined,
        config: cfg,
      });
    }
    return { runDir, config: cfg, fit: result, test, testCheckpoint, reportFile, wallSeconds };
  } finally {
    model.dispose();
    data.close();
  }
}

/** What test-predictions.json holds: the test images' labels and argmax predictions, in loader order. */
export interface TestPredictions {
  classes: string[];
  labels: number[];
  predicted: number[];
}

export function testPredictions(ev: EvalResult, classes: string[]): TestPredictions {
  const k = ev.numClasses;
  const predicted: number[] = [];
  for (let i = 0; i < ev.labels.length; i++) {
    let best = 0;
    for (let c = 1; c < k; c++) if (ev.probs[i * k + c] > ev.probs[i * k + best]) best = c;
    predicted.push(best);
  }
  return { classes, labels: Array.from(ev.labels), predicted };
}

function mib(bytes: number): number | null {
  return Number.isFinite(bytes) ? Math.round(bytes / 2 ** 20) : null;
}

/** best.safetensors (or last), falling back to the last checkpoint when no best was saved. */
export function pickTestCheckpoint(runDir: string, which: 'best' | 'last'): string {
  const dir = checkpointDir(runDir);
  const best = path.join(dir, 'best.safetensors');
  if (which === 'best' && fs.existsSync(best)) {
    readBest(runDir); // best.json must describe this very file (size, SHA-256)
    return best;
  }
  const last = readCheckpoint(runDir);
  if (!last) throw new Error(`${runDir}: no checkpoint to evaluate`);
  return path.join(dir, last.weights);
}
