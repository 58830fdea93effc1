/**
 * `npm run predict -- <run folder | weights.safetensors> <image | folder>... [flags]`: class probabilities
 * for image files, as CSV (file, predicted, p_<class>...) or JSON.
 */
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { toCsv } from '../lib/report/table';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import {
  listImages,
  loadRun,
  loadWeightsFile,
  normalizationByName,
  predictImages,
  PredictionStopped,
  prepareInference,
  type PredictOptions,
  weightsTarget,
  type LoadedModel,
  type Prediction,
  type SkippedInput,
} from '../lib/train/evaluate';
import type { TrainConfig } from '../lib/train/config';
import { batchSizeFlag, checkOutputFile, CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run predict --',
  summary: 'Predict class probabilities for images with a run (best checkpoint) or a weights file.',
  positional: '<run folder | weights.safetensors> <image | folder>...',
  flags: [
    { key: 'out', type: 'string', default: '', help: 'output file, .csv or .json (default: CSV on stdout)' },
    { key: 'format', type: 'string', default: 'csv', help: 'stdout format without --out', choices: ['csv', 'json'] },
    { key: 'checkpoint', type: 'string', default: 'best', help: 'run checkpoint: best | last | a weights file' },
    {
      key: 'batchSize',
      type: 'string',
      default: 'auto',
      help: 'images per forward pass; auto = the largest that fits the backend memory (≤ 256 and the image count)',
    },
    {
      key: 'fold',
      type: 'boolean',
      default: true,
      help: "run the model's inference form (BatchNorm folded into the conv before it); --no-fold runs the training form",
    },
    {
      key: 'skipBad',
      type: 'boolean',
      default: false,
      help: 'warn about unreadable / undecodable / non-regular files and go on (they are listed in the output)',
    },
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
    '  npm run predict -- runs/malaria-cpu data/nih-malaria/cell_images/Parasitized --out preds.csv',
    '  npm run predict -- official.safetensors img/ --classes HP,SSA --image-size 224 --normalize official --out p.json',
  ].join('\n'),
};

/** SIGINT / SIGTERM: stop between batches (a second signal exits at once). */
function stopOnSignals(): { signal: () => NodeJS.Signals | undefined } {
  let got: NodeJS.Signals | undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (got) process.exit(128 + os.constants.signals[sig]);
      got = sig;
      process.stderr.write(`${sig}: stopping after the current batch (again to stop at once)\n`);
    });
  }
  return { signal: () => got };
}

async function main(): Promise<void> {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPEC);
  if (positional.length < 2) throw new CliError('give a run folder (or weights file) and at least one image or folder');
  const [target, ...inputs] = positional;
  // Everything a user can get wrong is checked before the backend starts and the model loads.
  const batchSize = batchSizeFlag(v.batchSize as string);
  const out = v.out as string;
  if (out) checkOutputFile('--out', out, 'a file name ending in .csv or .json');
  const kind = weightsTarget(target);
  const stop = stopOnSignals();
  await initBackend((v.backend as string) || undefined, { quiet: !v.out });
  let loaded: LoadedModel;
  if (kind === 'run') loaded = loadRun(target, v.checkpoint as string);
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
    const skipBad = v.skipBad as boolean;
    const skipped: SkippedInput[] = [];
    const warn = (line: string) => process.stderr.write(`warning: ${line}\n`);
    const files = listImages(inputs, skipBad ? skipped : undefined);
    for (const s of skipped) warn(`skipped ${s.file}: ${s.problem}`);
    if (files.length === 0) throw new CliError(`no images found in ${inputs.join(', ')}`);
    const setup = prepareInference(loaded, { batchSize, maxBatch: files.length, fold: v.fold as boolean });
    process.stderr.write(`inference: ${setup.reason}\n`);
    process.stderr.write(`predicting ${files.length} image(s), batches of ${setup.batch} (Ctrl-C stops)\n`);
    let preds: Prediction[];
    const speed: PredictOptions['throughput'] = {};
    try {
      preds = await predictImages(loaded, files, {
        throughput: speed,
        skipBad,
        skipped,
        warn,
        shouldStop: () => !!stop.signal(),
      });
    } catch (e) {
      if (!(e instanceof PredictionStopped)) throw e;
      const sig = stop.signal() as NodeJS.Signals;
      process.stderr.write(`${sig}: stopped after ${e.done} of ${files.length} image(s); nothing written\n`);
      process.exit(128 + os.constants.signals[sig]);
    }
    // Skipped files appear in the output too: in CSV as rows with an empty prediction and the problem.
    const rows = [
      ...preds.map((p) => ({
        file: p.file,
        predicted: p.predicted,
        ...Object.fromEntries(loaded.classes.map((c, i) => [`p_${c}`, p.probs[i]])),
        ...(skipBad ? { skipped: '' } : {}),
      })),
      ...skipped.map((s) => ({
        file: s.file,
        predicted: '',
        ...Object.fromEntries(loaded.classes.map((c) => [`p_${c}`, ''])),
        skipped: s.problem,
      })),
    ];
    const asJson = out ? out.toLowerCase().endsWith('.json') : v.format === 'json';
    const t = speed.total!;
    process.stderr.write(
      `${t.images} image(s) in ${t.seconds.toFixed(2)} s: ${t.imagesPerSecond.toFixed(1)} images/s ` +
        `(forward passes alone ${speed.forward!.imagesPerSecond.toFixed(1)} images/s; batch ${setup.batch}, ` +
        `${setup.folded ? 'inference form' : 'training form'}, ${tf.getBackend()})\n`,
    );
    const json = {
      model: loaded.modelName,
      weights: loaded.weights,
      classes: loaded.classes,
      predictions: preds,
      ...(skipBad ? { skipped } : {}),
      inference: { ...setup, backend: tf.getBackend(), throughput: speed },
    };
    if (skipped.length) warn(`${skipped.length} file(s) skipped (listed in the output)`);
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
