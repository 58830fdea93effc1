/**
 * `npm run evaluate -- <run folder | weights.safetensors> [flags]`: metrics of trained weights on a dataset
 * split (official test.py, with every metric of lib/metrics), printed as tables and written as JSON.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { tableText } from '../lib/report/table';
import { atomicWriteJson } from '../lib/util/fs';
import { prepareData } from '../lib/train/run';
import {
  evaluateSplit,
  weightsTarget,
  loadRun,
  loadWeightsFile,
  normalizationByName,
  prepareInference,
  type LoadedModel,
} from '../lib/train/evaluate';
import { classRows, metricRows } from '../lib/train/report';
import type { SplitName } from '../lib/data/index';
import type { TrainConfig } from '../lib/train/config';
import { batchSizeFlag, checkOutputFile, CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run evaluate --',
  summary: 'Evaluate a run (its best checkpoint by default) or a weights file on a dataset split.',
  positional: '<run folder | weights.safetensors>',
  flags: [
    { key: 'split', type: 'string', default: 'test', help: 'split to evaluate', choices: ['train', 'val', 'test'] },
    { key: 'checkpoint', type: 'string', default: 'best', help: 'run checkpoint: best | last | a weights file' },
    {
      key: 'data',
      type: 'string',
      default: '',
      help: "dataset (default: the run's); required for a bare weights file",
    },
    {
      key: 'dataKind',
      type: 'string',
      default: '',
      help: 'dataset kind when not a plain folder/.npz (malaria, mhist, ...)',
    },
    {
      key: 'batchSize',
      type: 'string',
      default: 'auto',
      help: 'evaluation batch size; auto = the largest that fits the backend memory (≤ 256)',
    },
    {
      key: 'fold',
      type: 'boolean',
      default: true,
      help: "evaluate the model's inference form (BatchNorm folded into the conv before it); --no-fold: the training form",
    },
    { key: 'bootstrap', type: 'number', default: 1000, help: 'bootstrap resamples for 95% intervals (0 = none)' },
    { key: 'seed', type: 'number', default: 0, help: 'bootstrap seed' },
    { key: 'out', type: 'string', default: '', help: 'metrics JSON file (default: <run>/eval-<dataset>-<split>.json)' },
    {
      key: 'model',
      type: 'string',
      default: 'microscopic-mamba-t',
      help: 'bare weights: registered model name (npm run params -- --list)',
    },
    { key: 'modelConfig', type: 'string', default: '', help: 'bare weights: model options as JSON' },
    { key: 'imageSize', type: 'number', default: 224, help: 'bare weights: input size' },
    {
      key: 'normalize',
      type: 'string',
      default: 'dataset',
      help: "bare weights: dataset (the --data train split's statistics) | official | imagenet | none",
      choices: ['dataset', 'official', 'imagenet', 'none'],
    },
  ],
  epilog: [
    'A run folder brings its model, classes, image size and the exact normalisation used in training.',
    'Examples:',
    '  npm run evaluate -- runs/malaria-cpu',
    '  npm run evaluate -- runs/malaria-cpu --split val --checkpoint last',
    '  npm run evaluate -- official.safetensors --data data/MHIST --data-kind mhist --image-size 224 --normalize official',
  ].join('\n'),
};

async function main(): Promise<void> {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPEC);
  if (positional.length !== 1) throw new CliError('give exactly one run folder or weights file (see --help)');
  const target = path.resolve(positional[0]);
  const batchSize = batchSizeFlag(v.batchSize as string);
  const outFlag = v.out as string;
  if (outFlag) checkOutputFile('--out', outFlag, 'a .json file name');
  const kind = weightsTarget(positional[0]);
  await initBackend((v.backend as string) || undefined);
  let loaded: LoadedModel;
  let data = v.data as string;
  let dataKind = v.dataKind as string;
  if (kind === 'run') {
    loaded = loadRun(target, v.checkpoint as string);
    data ||= loaded.config!.data;
    if (!v.data) dataKind = loaded.config!.dataKind;
  } else {
    if (!data) throw new CliError('a bare weights file needs --data (and --image-size, --model, --normalize)');
    const probe = await prepareData({ data, dataKind, imageSize: v.imageSize as number });
    const classes = probe.classes;
    probe.close();
    const normalization = await normalizationByName(v.normalize as TrainConfig['normalize'], {
      data,
      dataKind,
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
    const split = v.split as SplitName;
    const setup = prepareInference(loaded, { batchSize, fold: v.fold as boolean, fallback: 64 });
    console.log(`inference: ${setup.reason}`);
    const r = await evaluateSplit(loaded, {
      data,
      dataKind,
      split,
      bootstrap: v.bootstrap as number,
      seed: v.seed as number,
    });
    const out =
      (v.out as string) ||
      (loaded.runDir
        ? path.join(loaded.runDir, `eval-${r.dataset.name}-${split}.json`)
        : `${target.replace(/\.safetensors$/, '')}.eval-${r.dataset.name}-${split}.json`);
    console.log(
      `\n${loaded.modelName} (${path.relative(process.cwd(), loaded.weights)}) on ${r.dataset.name} ${split}` +
        `${r.dataset.synthetic ? ' (SYNTHETIC data)' : ''}, ${r.report.n} images:`,
    );
    console.log(
      `${r.throughput.images} images in ${r.throughput.seconds.toFixed(2)} s: ` +
        `${r.throughput.imagesPerSecond.toFixed(1)} images/s (loading + forward; batch ${setup.batch}, ` +
        `${setup.folded ? 'inference form' : 'training form'}, ${tf.getBackend()})`,
    );
    console.log(tableText(metricRows(r.report)));
    console.log('');
    console.log(tableText(classRows(r.report)));
    console.log('\nconfusion matrix (rows = true class, columns = predicted):');
    console.log(
      tableText(
        r.report.confusionMatrix.map((row, i) => ({
          true: r.report.classNames[i],
          ...Object.fromEntries(row.map((c, j) => [r.report.classNames[j], c])),
        })),
      ),
    );
    // Metrics are on the screen before the write is tried: a full disk or a bad --out loses nothing shown.
    atomicWriteJson(out, {
      weights: loaded.weights,
      model: loaded.modelName,
      dataset: r.dataset,
      imageSize: loaded.imageSize,
      normalization: loaded.normalization,
      loss: r.eval.loss,
      metrics: r.report,
      inference: { ...setup, backend: tf.getBackend(), throughput: r.throughput },
    });
    console.log(`\nmetrics JSON: ${out}`);
  } finally {
    loaded.model.dispose();
  }
}

if (require.main === module) runMain(main);
