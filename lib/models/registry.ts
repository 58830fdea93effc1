/**
 * The model registry: every classifier the kit can build, by name.
 *
 *   createModel('microscopic-mamba-t', { numClasses: 2, seed: 0 })     → a ClassifierModel
 *   listModels()                                                       → names and descriptions
 *   registerModel(name, factory, meta)                                  → add one (baselines do this)
 *
 * A ClassifierModel is a lib/nn Module whose `forward(x, { training, rng })` maps an NHWC float32 batch
 * [b, h, w, 3] to logits [b, numClasses]. Its parameter names are the official PyTorch state-dict keys,
 * so `loadWeights` / `saveWeights` (weights.ts) read and write official checkpoints.
 */
import * as tf from '@tensorflow/tfjs';
import type { ClassifierModel, ModelMeta, ModelOptions } from './contract';
import {
  MicroscopicMamba,
  MicroscopicMambaConfig,
  MicroscopicMambaVariant,
  resolveConfig,
  VARIANTS,
} from './microscopic-mamba/index';

export type { ClassifierModel, ModelOptions, ModelMeta, ModelFamily, SharedModelOptions } from './contract';

export type ModelFactory = (opts: ModelOptions) => ClassifierModel;

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
  registry.set(name, { factory, meta });
}

/** Registered models, sorted by name. */
export function listModels(): Array<{ name: string } & ModelMeta> {
  return [...registry.entries()]
    .map(([name, { meta }]) => ({ name, ...meta }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Build a registered model. Unknown names and unknown options are errors that list what exists. */
export function createModel(name: string, opts: ModelOptions = {}): ClassifierModel {
  const entry = registry.get(name);
  if (!entry) {
    throw new Error(`createModel: unknown model '${name}'. Registered: ${[...registry.keys()].sort().join(', ')}`);
  }
  return entry.factory(opts);
}

/** Build Microscopic-Mamba directly with a typed config (what the registry's factories call). */
export function createMicroscopicMamba(
  variant: MicroscopicMambaVariant,
  config: Partial<MicroscopicMambaConfig> = {},
): MicroscopicMamba {
  return new MicroscopicMamba(resolveConfig(config, variant), variant);
}

for (const variant of Object.keys(VARIANTS) as MicroscopicMambaVariant[]) {
  registerModel(variant, (opts) => createMicroscopicMamba(variant, opts as Partial<MicroscopicMambaConfig>), {
    description: VARIANTS[variant].description,
    family: 'microscopic-mamba',
    source: 'arXiv 2409.07896; github.com/zs1314/Microscopic-Mamba microscopicmamba.py (8df9997)',
    input: { multipleOf: 32, minSize: 32, square: true },
    defaultSize: 224,
  });
}
