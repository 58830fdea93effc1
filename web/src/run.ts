/**
 * A trained run in the page: run.json (model, classes, image size, the normalisation training used),
 * config.json (the model options it was built with) and best.safetensors (its weights), from a folder the
 * user picks or from the server (`npm run web`, `npm run web:build`). The model is built as
 * `loadRun` builds it in Node (lib/train/evaluate.ts → buildModel): the registered model, the run's
 * modelConfig, its class count and image size; the weights are loaded strictly, so weights of another
 * model or another configuration are refused with the keys that do not fit.
 */
import * as tf from '@tensorflow/tfjs';
import { createModel, listModels, type ClassifierModel } from '../../lib/models/index';
import { parseSafetensors } from '../../lib/nn/safetensors';
import { StateDictError } from '../../lib/nn/module';
import { normalizationTable } from '../../lib/data/transforms';

/** The parts of run.json and config.json the page reads. */
export interface RunFiles {
  runJson: string;
  configJson: string;
  weights: Uint8Array;
  /** Where the files came from, for messages ("runs/x", "the chosen folder"). */
  label: string;
}

export interface PageRun {
  name: string;
  model: ClassifierModel;
  modelName: string;
  classes: string[];
  imageSize: number;
  normalization: { mean: number[]; std: number[]; source: string };
  /** (v/255 − mean)/std per channel, the lookup table predict uses. */
  lut: Float32Array;
}

/** Thrown for a run that cannot be used; the message says which file and what to do. */
export class RunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunError';
  }
}

function parseJson(text: string, file: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* reported below */
  }
  throw new RunError(`${file} is not a JSON object: is this a run folder written by npm run train?`);
}

export function loadPageRun(files: RunFiles): PageRun {
  const info = parseJson(files.runJson, `${files.label}/run.json`);
  const config = parseJson(files.configJson, `${files.label}/config.json`);
  const model = info.model as { name?: string; numClasses?: number } | undefined;
  const dataset = info.dataset as { classes?: string[] } | undefined;
  const norm = info.normalization as PageRun['normalization'] | undefined;
  const imageSize = info.imageSize as number | undefined;
  if (!model?.name || !dataset?.classes || !norm?.mean || !norm?.std || !imageSize) {
    throw new RunError(
      `${files.label}/run.json lacks model, dataset.classes, imageSize or normalization: not a run.json`,
    );
  }
  if (config.model !== model.name) {
    throw new RunError(
      `${files.label}: config.json builds '${String(config.model)}' but run.json is a run of '${model.name}' ` +
        '(files of two different runs?): pick one run folder',
    );
  }
  if (!listModels().some((m) => m.name === model.name)) {
    throw new RunError(`${files.label}: model '${model.name}' is not registered in this build of the kit`);
  }
  let options: Record<string, unknown> = {};
  if (typeof config.modelConfig === 'string' && config.modelConfig) {
    options = parseJson(config.modelConfig, `${files.label}/config.json modelConfig`);
  }
  const classes = dataset.classes;
  const built = createModel(model.name, {
    imageSize,
    ...options,
    numClasses: model.numClasses ?? classes.length,
    seed: Number(config.seed) || 0,
  });
  try {
    built.checkInput([1, imageSize, imageSize, 3], 'float32');
    loadWeightsBytes(built, files.weights, `${files.label}/best.safetensors`, model.name);
  } catch (e) {
    built.dispose();
    throw e;
  }
  built.eval();
  return {
    name: String(info.name ?? files.label),
    model: built,
    modelName: model.name,
    classes,
    imageSize,
    normalization: norm,
    lut: normalizationTable({
      mean: norm.mean as [number, number, number],
      std: norm.std as [number, number, number],
    }),
  };
}

/** `loadWeights` (lib/models/weights.ts) on bytes instead of a file: strict, PyTorch names and layouts. */
function loadWeightsBytes(model: ClassifierModel, bytes: Uint8Array, label: string, modelName: string): void {
  let tensors: Map<string, tf.Tensor>;
  try {
    tensors = parseSafetensors(bytes, label).tensors;
  } catch (e) {
    throw new RunError(`${(e as Error).message} (not a safetensors file?)`);
  }
  try {
    model.loadStateDict(tensors, { layout: 'pytorch', strict: true });
  } catch (e) {
    if (!(e instanceof StateDictError)) throw e;
    const some = (keys: string[]) => keys.slice(0, 3).join(', ') + (keys.length > 3 ? `, … (${keys.length})` : '');
    const parts = [
      e.missing.length ? `missing ${some(e.missing)}` : '',
      e.unexpected.length ? `unexpected ${some(e.unexpected)}` : '',
      e.mismatched.length
        ? `wrong shape ${e.mismatched
            .slice(0, 2)
            .map((m) => `${m.key} [${m.got}] ≠ [${m.expected}]`)
            .join(', ')}`
        : '',
    ].filter(Boolean);
    throw new RunError(
      `${label} does not fit ${modelName} as config.json builds it (${parts.join('; ')}): ` +
        'these are weights of another model or configuration',
    );
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
