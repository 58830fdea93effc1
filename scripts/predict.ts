/**
 * `npm run predict -- <run folder | weights.safetensors> <image | folder>... [flags]`: class probabilities
 * for image files, as CSV (file, predicted, p_<class>...) or JSON.
 */
import * as path from 'path';
import { initBackend } from '../lib/backend/index';
import { toCsv } from '../lib/report/table';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import {
  isRunDir,
  listImages,
  loadRun,
  loadWeightsFile,
  normalizationByName,
  predictImages,
  type LoadedModel,
} from '../lib/train/evaluate';
import type { TrainConfig } from '../lib/train/config';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run predict --',
  summary: 'Predict class probabilities for images with a run (best checkpoint) or a weights file.',
  positional: '<run folder | weights.safetensors> <image | folder>...',
  flags: [
    { key: 'out', type: 'string', default: '', help: 'output file, .csv or .json (default: CSV on stdout)' },
    { key: 'format', type: 'string', default: 'csv', help: 'stdout format without --out', choices: ['csv', 'json'] },
    { key: 'checkpoint', type: 'string', default: 'best', help: 'run checkpoint: best | last | a weights file' },
    { key: 'batchSize', type: 'number', default: 32, help: 'images per forward pass' },
    {
      key: 'model',
      type: 'string',
      default: 'microscopic-mamba-t',
      help: 'bare weights: registered model name (npm run params -- --list)',
    },
    { key: 'modelConfig', type: 'string', default: '', help: 'bare weights: model options as JSON' },
    { key: 'imageSize', type: 'number', default: 224, help: 'bare weights: input size' },
    { key: 'classes', type: 'string', default: '', help: 'bare weights: class names, comma-separated, in label order' },
    {
      key: 'normalize',
      type: 'string',
      default: 'official',
      help: 'bare weights: official | imagenet | none | dataset (needs --data)',
      choices: ['dataset', 'official', 'imagenet', 'none'],
    },
    {
      key: 'data',
      type: 'string',
      default: '',
      help: 'bare weights with --normalize dataset: the dataset whose train statistics to use',
    },
  ],
  epilog: [
    'Images are decoded, resized to the model size (bilinear) and normalised exactly as in evaluation.',
    'Examples:',
    '  npm run -s predict -- runs/malaria-cpu cell1.png cell2.png',
    '  npm run predict -- runs/malaria-cpu ../shared/data/nih-malaria-cells-128/test --out preds.csv',
    '  npm run predict -- official.safetensors img/ --classes HP,SSA --image-size 224 --normalize official --out p.json',
  ].join('\n'),
};

async function main(): Promise<void> {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPEC);
  if (positional.length < 2) throw new CliError('give a run folder (or weights file) and at least one image or folder');
  const [target, ...inputs] = positional;
  await initBackend((v.backend as string) || undefined, { quiet: !v.out });
  let loaded: LoadedModel;
  if (isRunDir(target)) loaded = loadRun(target, v.checkpoint as string);
  else {
    const classes = (v.classes as string)
      .split(',')
      .map((c) => c.trim())
      .filter(Boolean);
    if (classes.length < 2) throw new CliError('a bare weights file needs --classes a,b[,c...] (in label order)');
    const normalization = await normalizationByName(v.normalize as TrainConfig['normalize'], {
      data: v.data as string,
      imageSize: v.imageSize as number,
    });
    loaded = loadWeightsFile(target, {
      model: v.model as string,
      modelConfig: v.modelConfig as string,
      imageSize: v.imageSize as number,
      classes,
      normalization,
    });
  }
  try {
    const files = listImages(inputs);
    if (files.length === 0) throw new CliError(`no images found in ${inputs.join(', ')}`);
    const preds = await predictImages(loaded, files, v.batchSize as number);
    const rows = preds.map((p) => ({
      file: p.file,
      predicted: p.predicted,
      ...Object.fromEntries(loaded.classes.map((c, i) => [`p_${c}`, p.probs[i]])),
    }));
    const out = v.out as string;
    const asJson = out ? out.toLowerCase().endsWith('.json') : v.format === 'json';
    const json = { model: loaded.modelName, weights: loaded.weights, classes: loaded.classes, predictions: preds };
    if (out) {
      if (asJson) atomicWriteJson(out, json);
      else atomicWriteFile(out, toCsv(rows));
      const counts = loaded.classes.map((c) => `${c} ${preds.filter((p) => p.predicted === c).length}`).join(', ');
      console.log(`${preds.length} image(s) → ${path.resolve(out)} (predicted: ${counts})`);
    } else process.stdout.write(asJson ? JSON.stringify(json, null, 2) + '\n' : toCsv(rows));
  } finally {
    loaded.model.dispose();
  }
}

if (require.main === module) runMain(main);
