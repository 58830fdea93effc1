/**
 * Training configuration: one flat object of plain defaults, overridden by a recipe preset, then by
 * whatever the caller (or the command line) sets explicitly — nanoGPT's configurator, typed.
 *
 * Recipes:
 *   paper  the official recipe (docs/architecture.md §Training recipe; train.py): 224 px, RandomResizedCrop
 *          (0.08–1), Adam lr 1e-4 without weight decay, batch 58, 200 epochs, 10 warm-up epochs from 1e-3× then
 *          cosine to 1e-6×, plain cross-entropy, drop-path 0.1, best checkpoint on val accuracy, early stopping
 *          with patience 30 on val loss. Meant for a GPU backend.
 *   cpu    a small-input recipe that converges in minutes on a 2-core CPU, tuned on the NIH malaria
 *          cells (benchmarks/results.md): 32 px, batch 32, Adam lr 1e-3, 12 epochs with 1 warm-up epoch,
 *          no drop-path, and label-preserving augmentation only (random flips and 90° turns). Why:
 *          - 32 px: a 64-px training step costs ~4× more here (benchmarks/model.md), too slow for a
 *            45-minute budget; the wasm step time hardly changes from batch 16 to 32, so batch 32.
 *          - no random crop: at 32 px a crop often cuts the parasite out of the cell (validation
 *            accuracy after 10 epochs: 90.9 % with RandomResizedCrop(0.35–1) + flips, 92.8 % with
 *            flips + 90° turns).
 *          - drop-path 0: test OA 94.3 % vs 93.3 % with the official 0.1 (same seed, 12 epochs).
 *          Everything else as the paper recipe.
 *
 * Recipes set only the model options every registered model shares (lib/models/contract.ts: numClasses,
 * seed, dropRate, dropPathRate, imageSize), so `--recipe cpu` works for any `--model`; the trainer passes
 * the image size as the model's `imageSize` and checks it against the model's input rules.
 */
import { MONITOR_METRICS, type MonitorMetric } from './early-stopping';
import type { OptimizerName } from './optim';

export type RecipeName = 'paper' | 'cpu';
export const RECIPES_AVAILABLE: readonly RecipeName[] = ['paper', 'cpu'];

export interface TrainConfig {
  // ---- run ----
  /** Run folder name under `runsDir` (default: `<model>-<dataset>-<recipe>-s<seed>[-<hash of the options that differ>]`). */
  name: string;
  runsDir: string;
  /** The preset the other values started from ('' = the plain defaults). */
  recipe: RecipeName | '';
  /** One seed for initialisation, shuffling, augmentation and DropPath (each gets its own fork). */
  seed: number;
  /** tfjs backend ('' = MSM_BACKEND or wasm). */
  backend: string;

  // ---- data ----
  /** A dataset folder, a MedMNIST .npz, or 'synthetic' (the embedded synthetic set, generated on first use). */
  data: string;
  /** Source kind for `openDataset` ('' = folder or .npz by the path; malaria, mhist, medfm-colon, rpe, ...). */
  dataKind: string;
  /** Square input size s: images are resized (eval) or random-resized-cropped (train) to s×s. */
  imageSize: number;
  /** Per-dataset mean/std computed on the train split ('dataset'), the official MedFM constants, or none. */
  normalize: 'dataset' | 'official' | 'imagenet' | 'none';
  /** Training augmentation: RandomResizedCrop ('rrc', official) or a plain resize ('none'). */
  augment: 'rrc' | 'none';
  rrcScaleMin: number;
  rrcScaleMax: number;
  /** Random flips (commented out in the official train.py, so off in the paper recipe). */
  hflip: boolean;
  vflip: boolean;
  /** Random 90° rotations. */
  rotate90: boolean;
  /**
   * Fraction of the train folder carved out (stratified, seeded, saved) as the validation split when the
   * dataset has no val folder (0 = a missing val split is an error).
   */
  valSplit: number;

  // ---- model ----
  model: string;
  /** Extra model options as JSON, e.g. '{"dropPathRate":0.2}' or '{"depths":[1,1,1,1]}'; merged key by key over the recipe's. */
  modelConfig: string;
  /** Start from these weights (safetensors, PyTorch names), e.g. an official checkpoint. */
  init: string;

  // ---- optimisation ----
  epochs: number;
  batchSize: number;
  evalBatchSize: number;
  optimizer: OptimizerName;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  warmupEpochs: number;
  warmupFactor: number;
  endFactor: number;
  labelSmoothing: number;
  /** Clip the global gradient norm to this value (0 = off). */
  clipGradNorm: number;
  /** Stop after this many optimizer steps in total (0 = run all epochs); the schedule still spans `epochs`. */
  maxSteps: number;

  // ---- memory (lib/train/memory.ts) ----
  /**
   * Split each training batch into micro-batches of at most this many images and accumulate their
   * gradients (same optimizer update for the mean loss; BatchNorm statistics per micro-batch). 0 = auto:
   * only when the batch does not fit the backend's memory. A run records the value it used.
   */
  microBatch: number;
  /** Evaluate in chunks of at most this many images (0 = auto); results do not depend on it. */
  evalMicroBatch: number;
  /** Activation checkpointing (recompute each block's forward in the backward pass): auto | on | off. */
  checkpointing: 'auto' | 'on' | 'off';
  /** Memory the planner may use, in MiB (0 = the backend's limit: 4 GiB heap on wasm, RAM on cpu). */
  memoryLimitMb: number;

  // ---- model selection ----
  /** Save `best.safetensors` when this validation metric strictly improves (official: val_acc). */
  bestMetric: MonitorMetric;
  /** Early stopping watches this metric (official: val_loss) ... */
  earlyStopMetric: MonitorMetric;
  /** ... and stops after this many epochs without improvement (official 30; 0 = never). */
  patience: number;
  minDelta: number;

  // ---- checkpoints, logs, evaluation ----
  /** Also checkpoint every n optimizer steps inside an epoch (0 = only at epoch ends). */
  ckptEvery: number;
  /** Seconds between plain progress lines when stdout is not a TTY (a TTY gets a live bar). */
  progressSeconds: number;
  /** Continue from `runs/<name>/checkpoints/last.json` if it exists. */
  resume: boolean;
  /** Evaluate on the test split at the end, with this checkpoint. */
  evalTest: boolean;
  testCheckpoint: 'best' | 'last';
  /** Bootstrap resamples for the test metrics' confidence intervals (0 = none). */
  bootstrap: number;
  /** Write report.html at the end. */
  report: boolean;
}

/** Plain defaults: the official values wherever the official code has one (docs/architecture.md §Training recipe). */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  name: '',
  runsDir: 'runs',
  recipe: '',
  seed: 0,
  backend: '',
  data: 'synthetic',
  dataKind: '',
  imageSize: 224,
  normalize: 'dataset',
  augment: 'rrc',
  rrcScaleMin: 0.08,
  rrcScaleMax: 1,
  hflip: false,
  vflip: false,
  rotate90: false,
  valSplit: 0,
  model: 'microscopic-mamba-t',
  modelConfig: '',
  init: '',
  epochs: 200,
  batchSize: 58,
  evalBatchSize: 64,
  optimizer: 'adam',
  lr: 1e-4,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  warmupEpochs: 10,
  warmupFactor: 1e-3,
  endFactor: 1e-6,
  labelSmoothing: 0,
  clipGradNorm: 0,
  maxSteps: 0,
  microBatch: 0,
  evalMicroBatch: 0,
  checkpointing: 'auto',
  memoryLimitMb: 0,
  bestMetric: 'val_acc',
  earlyStopMetric: 'val_loss',
  patience: 30,
  minDelta: 0,
  ckptEvery: 0,
  progressSeconds: 10,
  resume: false,
  evalTest: true,
  testCheckpoint: 'best',
  bootstrap: 1000,
  report: true,
};

/** Presets applied over the defaults; explicit values override them. */
export const RECIPES: Record<RecipeName, Partial<TrainConfig>> = {
  paper: {
    imageSize: 224,
    batchSize: 58,
    evalBatchSize: 64,
    optimizer: 'adam',
    lr: 1e-4,
    weightDecay: 0,
    epochs: 200,
    warmupEpochs: 10,
    augment: 'rrc',
    rrcScaleMin: 0.08,
    hflip: false,
    vflip: false,
    patience: 30,
    bestMetric: 'val_acc',
    earlyStopMetric: 'val_loss',
  },
  cpu: {
    imageSize: 32,
    batchSize: 32,
    evalBatchSize: 64,
    optimizer: 'adam',
    lr: 1e-3,
    epochs: 12,
    warmupEpochs: 1,
    augment: 'none',
    hflip: true,
    vflip: true,
    rotate90: true,
    // No stochastic depth: in 12 short epochs it only slows learning (tuning: 94.3 % vs 93.3 % test OA).
    modelConfig: '{"dropPathRate":0}',
    patience: 30,
    ckptEvery: 50,
  },
};

/** Human-readable help for every field (used by the CLI's --help and the README). */
export const TRAIN_CONFIG_HELP: Record<keyof TrainConfig, string> = {
  name: 'run folder name under --runs-dir (default <model>-<dataset>-<recipe>-s<seed>, plus a hash of the options that differ from the recipe)',
  runsDir: 'where run folders go',
  recipe: `preset applied before the other flags: ${RECIPES_AVAILABLE.join(' | ')}`,
  seed: 'seed for init, shuffling, augmentation and DropPath',
  backend: 'tfjs backend: wasm | cpu | webgpu | tensorflow (default MSM_BACKEND or wasm)',
  data: "dataset: a folder with train/val/test class folders, a MedMNIST .npz, or 'synthetic'",
  dataKind:
    'dataset kind when not a plain folder/.npz: malaria | mhist | medfm-colon | rpe | folder | medmnist | synthetic',

  imageSize: 'input size s (images become s×s)',
  normalize: 'normalisation: dataset (train-split mean/std) | official (MedFM constants) | imagenet | none',
  augment: 'training augmentation: rrc (RandomResizedCrop, official) | none',
  rrcScaleMin: 'RandomResizedCrop minimum area fraction',
  rrcScaleMax: 'RandomResizedCrop maximum area fraction',
  hflip: 'random horizontal flips',
  vflip: 'random vertical flips',
  rotate90: 'random 90° rotations',
  valSplit: 'no val folder: carve this fraction of train out as validation (stratified, seeded; 0 = error)',
  model: 'registered model name (npm run params -- --list)',
  modelConfig: "model options as JSON, e.g. '{\"dropPathRate\":0.2}', merged key by key over the recipe's",
  init: 'initial weights (.safetensors with PyTorch names), e.g. an official checkpoint',
  epochs: 'epochs (the LR schedule spans them)',
  batchSize: 'training batch size',
  evalBatchSize: 'validation/test batch size',
  optimizer: 'adam (official) | adamw (decoupled weight decay)',
  lr: 'base learning rate',
  beta1: 'Adam β1',
  beta2: 'Adam β2',
  eps: 'Adam ε',
  weightDecay: 'weight decay λ (L2 for adam, decoupled for adamw)',
  warmupEpochs: 'linear warm-up epochs',
  warmupFactor: 'LR factor at step 0',
  endFactor: 'LR factor at the end of the cosine',
  labelSmoothing: 'cross-entropy label smoothing ε',
  clipGradNorm: 'clip the global gradient norm (0 = off)',
  maxSteps: 'stop after n optimizer steps (0 = all epochs)',
  microBatch:
    "gradient accumulation: micro-batches of at most n images per batch (0 = auto, from a memory probe against the backend's limit)",
  evalMicroBatch: 'evaluate in chunks of at most n images (0 = auto)',
  checkpointing: 'activation checkpointing: auto (when it lets a larger micro-batch fit) | on | off',
  memoryLimitMb: "memory the planner may use in MiB (0 = the backend's: 4 GiB wasm heap, RAM on cpu)",
  bestMetric: `metric for best.safetensors: ${MONITOR_METRICS.join(' | ')}`,
  earlyStopMetric: `metric early stopping watches: ${MONITOR_METRICS.join(' | ')}`,
  patience: 'early-stopping patience in epochs (0 = never stop early)',
  minDelta: 'early-stopping minimum change',
  ckptEvery: 'checkpoint every n steps inside an epoch too (0 = epoch ends only)',
  progressSeconds: 'seconds between plain progress lines when stdout is not a terminal',
  resume: 'continue runs/<name> from its last checkpoint',
  evalTest: 'evaluate on the test split at the end',
  testCheckpoint: 'checkpoint to test: best | last',
  bootstrap: 'bootstrap resamples for test-metric confidence intervals (0 = none)',
  report: 'write report.html at the end',
};

/** Allowed values of the enumerated fields. */
export const TRAIN_CONFIG_CHOICES: Partial<Record<keyof TrainConfig, readonly string[]>> = {
  recipe: ['', ...RECIPES_AVAILABLE],
  normalize: ['dataset', 'official', 'imagenet', 'none'],
  augment: ['rrc', 'none'],
  dataKind: ['', 'folder', 'medmnist', 'malaria', 'mhist', 'medfm-colon', 'rpe', 'synthetic'],
  optimizer: ['adam', 'adamw'],
  bestMetric: MONITOR_METRICS,
  earlyStopMetric: MONITOR_METRICS,
  testCheckpoint: ['best', 'last'],
  checkpointing: ['auto', 'on', 'off'],
};

/**
 * defaults ← recipe ← overrides; `modelConfig` merges with the recipe's key by key (the override wins). Unknown keys and values outside a field's choices throw with the
 * field's name; numbers are checked for range.
 */
export function makeTrainConfig(overrides: Partial<TrainConfig> = {}): TrainConfig {
  const recipe = overrides.recipe ?? '';
  if (recipe !== '' && !RECIPES_AVAILABLE.includes(recipe)) {
    throw new Error(`Unknown recipe '${recipe}' (choose ${RECIPES_AVAILABLE.join(' or ')})`);
  }
  for (const key of Object.keys(overrides)) {
    if (!(key in DEFAULT_TRAIN_CONFIG)) throw new Error(`Unknown training option '${key}'`);
  }
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const cfg: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...(recipe ? RECIPES[recipe] : {}), ...defined, recipe };
  // Model options merge per key (the given ones win): '{"mifa":false}' over the cpu recipe keeps its
  // dropPathRate 0 instead of silently returning to the model's default (an ablation must change one thing).
  if (typeof defined.modelConfig === 'string')
    cfg.modelConfig = mergeModelConfig(baseModelConfig(recipe), defined.modelConfig);
  validateTrainConfig(cfg);
  return cfg;
}

export function validateTrainConfig(cfg: TrainConfig): void {
  const bad = (key: keyof TrainConfig, why: string) =>
    new Error(`training option ${key}: ${why} (got ${String(cfg[key])})`);
  for (const [key, choices] of Object.entries(TRAIN_CONFIG_CHOICES) as Array<[keyof TrainConfig, readonly string[]]>) {
    if (!choices.includes(String(cfg[key]))) throw bad(key, `must be one of ${choices.filter(Boolean).join(', ')}`);
  }
  const positiveInts: Array<keyof TrainConfig> = ['imageSize', 'epochs', 'batchSize', 'evalBatchSize'];
  for (const key of positiveInts)
    if (!(Number.isInteger(cfg[key]) && (cfg[key] as number) > 0)) throw bad(key, 'must be a positive integer');
  const nonNegInts: Array<keyof TrainConfig> = [
    'maxSteps',
    'patience',
    'ckptEvery',
    'bootstrap',
    'microBatch',
    'evalMicroBatch',
    'memoryLimitMb',
  ];
  for (const key of nonNegInts)
    if (!(Number.isInteger(cfg[key]) && (cfg[key] as number) >= 0)) throw bad(key, 'must be an integer ≥ 0');
  if (!(cfg.lr > 0)) throw bad('lr', 'must be > 0');
  if (!(cfg.progressSeconds > 0)) throw bad('progressSeconds', 'must be > 0');
  if (!(cfg.warmupEpochs >= 0 && cfg.warmupEpochs < cfg.epochs))
    throw bad('warmupEpochs', `must be in [0, epochs = ${cfg.epochs})`);
  if (!(cfg.labelSmoothing >= 0 && cfg.labelSmoothing < 1)) throw bad('labelSmoothing', 'must be in [0, 1)');
  if (!(cfg.clipGradNorm >= 0)) throw bad('clipGradNorm', 'must be ≥ 0');
  if (!(cfg.weightDecay >= 0)) throw bad('weightDecay', 'must be ≥ 0');
  if (!(cfg.rrcScaleMin > 0 && cfg.rrcScaleMin <= cfg.rrcScaleMax && cfg.rrcScaleMax <= 1)) {
    throw bad('rrcScaleMin', `must satisfy 0 < rrcScaleMin ≤ rrcScaleMax (${cfg.rrcScaleMax}) ≤ 1`);
  }
  if (!(cfg.valSplit >= 0 && cfg.valSplit < 1)) throw bad('valSplit', 'must be in [0, 1)');
  if (cfg.modelConfig) parseModelConfig(cfg.modelConfig);
}

/** The model options a recipe sets ('' = none). */
export function baseModelConfig(recipe: RecipeName | ''): string {
  return (recipe ? RECIPES[recipe].modelConfig : undefined) ?? DEFAULT_TRAIN_CONFIG.modelConfig;
}

/** `over`'s model options on top of `base`'s, key by key, as JSON ('' when both are empty). */
export function mergeModelConfig(base: string, over: string): string {
  const merged = { ...parseModelConfig(base), ...parseModelConfig(over) };
  return Object.keys(merged).length ? JSON.stringify(merged) : '';
}

/**
 * Options that do not change what a run computes (where it is written, how it reports, the checkpoint
 * cadence — resuming is exact) or that the run name already shows; `configDelta` leaves them out.
 */
export const NOT_IN_RUN_IDENTITY: ReadonlyArray<keyof TrainConfig> = [
  'name',
  'runsDir',
  'recipe',
  'seed',
  'backend',
  'data',
  'model',
  'modelConfig',
  'ckptEvery',
  'progressSeconds',
  'resume',
  'report',
];

/**
 * What makes this run differ from its recipe: the training options whose value is not the recipe's
 * (defaults ← recipe) and the model options not equal to the recipe's, each sorted by key. Empty when the
 * run is the recipe as published. The run name hashes it (lib/train/run.ts defaultRunName).
 */
export function configDelta(cfg: TrainConfig): { train: Record<string, unknown>; model: Record<string, unknown> } {
  const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...(cfg.recipe ? RECIPES[cfg.recipe] : {}) };
  const train: Record<string, unknown> = {};
  for (const key of (Object.keys(DEFAULT_TRAIN_CONFIG) as Array<keyof TrainConfig>).sort()) {
    if (!NOT_IN_RUN_IDENTITY.includes(key) && cfg[key] !== base[key]) train[key] = cfg[key];
  }
  const baseModel = parseModelConfig(base.modelConfig);
  const given = parseModelConfig(cfg.modelConfig);
  const model: Record<string, unknown> = {};
  for (const key of Object.keys(given).sort()) {
    if (JSON.stringify(given[key]) !== JSON.stringify(baseModel[key])) model[key] = given[key];
  }
  return { train, model };
}

/** `modelConfig` as an object; errors say what is wrong with the JSON. */
export function parseModelConfig(json: string): Record<string, unknown> {
  if (!json) return {};
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new Error(`training option modelConfig: not valid JSON (${(e as Error).message}): ${json}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new Error(`training option modelConfig: must be a JSON object, got ${json}`);
  }
  return v as Record<string, unknown>;
}
