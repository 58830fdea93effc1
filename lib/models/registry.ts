/**
 * The model registry: every classifier the kit can build, by name.
 *
 *   createModel('microscopic-mamba-t', { numClasses: 2, seed: 0 })     → a ClassifierModel
 *   listModels()                                                       → names and metadata
 *   registerModel(name, factory, meta)                                  → add one (each model folder's index.ts)
 *
 * Import the registry through lib/models/index.ts (or lib/index.ts), never this file alone: index.ts
 * imports every model folder, whose index.ts registers its models, so a model registered anywhere is
 * known to every consumer (train, evaluate, predict, params, the benchmarks, the notebooks).
 *
 * A ClassifierModel (contract.ts) is a lib/nn Module whose `forward(x, { training, rng })` maps an NHWC
 * float32 batch [b, h, w, 3] to logits [b, numClasses]. Its parameter names are the reference PyTorch
 * state-dict keys, so `loadWeights` / `saveWeights` (weights.ts) read and write its checkpoints.
 */
import type { ClassifierModel, ModelMeta, ModelOptions } from './contract';

export type {
  ClassifierModel,
  ModelOptions,
  ModelMeta,
  ModelFamily,
  SharedModelOptions,
  ModelForwardContext,
  InputRule,
} from './contract';

export type ModelFactory = (opts: ModelOptions) => ClassifierModel;

const FAMILIES = ['cnn', 'vit', 'hybrid', 'mamba', 'microscopic-mamba'];

const registry = new Map<string, { factory: ModelFactory; meta: ModelMeta }>();

/** Add a model under `name`; re-registering a name is an error unless `replace` is set. */
export function registerModel(
  name: string,
  factory: ModelFactory,
  meta: ModelMeta,
  opts: { replace?: boolean } = {},
): void {
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) {
    throw new Error(`registerModel: name '${name}' must be lower-case letters, digits, '.', '_' or '-'`);
  }
  if (registry.has(name) && !opts.replace) throw new Error(`registerModel: '${name}' is already registered`);
  if (!FAMILIES.includes(meta.family)) {
    throw new Error(`registerModel(${name}): family '${meta.family}' is not one of ${FAMILIES.join(', ')}`);
  }
  if (!(Number.isInteger(meta.defaultSize) && meta.defaultSize > 0)) {
    throw new Error(`registerModel(${name}): defaultSize must be a positive integer, got ${meta.defaultSize}`);
  }
  registry.set(name, { factory, meta });
}

/** Registered models, sorted by name. */
export function listModels(): Array<{ name: string } & ModelMeta> {
  return [...registry.entries()]
    .map(([name, { meta }]) => ({ name, ...meta }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The metadata a model was registered with; unknown names are an error listing what exists. */
export function modelMeta(name: string): ModelMeta {
  return entry(name, 'modelMeta').meta;
}

/** Build a registered model. Unknown names and unknown options are errors that list what exists. */
export function createModel(name: string, opts: ModelOptions = {}): ClassifierModel {
  return entry(name, 'createModel').factory(opts);
}

function entry(name: string, where: string): { factory: ModelFactory; meta: ModelMeta } {
  const e = registry.get(name);
  if (!e) {
    throw new Error(`${where}: unknown model '${name}'. Registered: ${[...registry.keys()].sort().join(', ')}`);
  }
  return e;
}
