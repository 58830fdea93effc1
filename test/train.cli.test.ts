/**
 * The command line and configuration: flag parsing (nanoGPT-style overrides, booleans, choices, typos),
 * recipe presets vs the official values (docs/architecture.md §Training recipe), what may change on --resume, every
 * script's --help, and that `predict` preprocesses images exactly as evaluation does (same probabilities for the same
 * files).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../lib/backend/index';
import { writeSyntheticDataset } from '../lib/data/index';
import { saveWeights } from '../lib/models/index';
import {
  DEFAULT_TRAIN_CONFIG,
  makeTrainConfig,
  RECIPES,
  TRAIN_CONFIG_CHOICES,
  TRAIN_CONFIG_HELP,
} from '../lib/train/config';
import { evaluateSplit, listImages, loadWeightsFile, predictImages } from '../lib/train/evaluate';
import { buildModel, normalizationFor, prepareData, resumeConfig } from '../lib/train/run';
import { CliError, flagsFromDefaults, helpText, parseArgs, type CliSpec } from '../scripts/lib/cli';

const repo = path.resolve(__dirname, '..');
const spec: CliSpec = {
  command: 'npm run train --',
  summary: 'test',
  flags: flagsFromDefaults(DEFAULT_TRAIN_CONFIG, TRAIN_CONFIG_HELP, TRAIN_CONFIG_CHOICES),
};

let tmp = '';
before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-cli-'));
  process.env.MSM_DATA_CACHE = path.join(tmp, 'cache');
  await initBackend('wasm', { quiet: true });
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('flags: kebab or camel case, =value, booleans with --no-, numbers, and what was given', () => {
  const { values, given, positional } = parseArgs(
    [
      '--image-size',
      '96',
      '--lr=3e-4',
      '--no-report',
      '--hflip',
      '--modelConfig',
      '{"dropPathRate":0.2}',
      '--vflip',
      'false',
    ],
    spec,
  );
  assert.equal(values.imageSize, 96);
  assert.equal(values.lr, 3e-4);
  assert.equal(values.report, false);
  assert.equal(values.hflip, true);
  assert.equal(values.vflip, false);
  assert.equal(values.modelConfig, '{"dropPathRate":0.2}');
  assert.equal(values.epochs, DEFAULT_TRAIN_CONFIG.epochs, 'untouched flags keep their defaults');
  assert.deepEqual([...given].sort(), ['hflip', 'imageSize', 'lr', 'modelConfig', 'report', 'vflip']);
  assert.deepEqual(positional, []);
});

test('flag errors name the flag: unknown (with a suggestion), bad number, bad choice, stray argument', () => {
  assert.throws(
    () => parseArgs(['--learning-rate', '1'], spec),
    (e: unknown) => e instanceof CliError && /unknown flag --learning-rate/.test((e as Error).message),
  );
  assert.throws(() => parseArgs(['--epoch', '3'], spec), /did you mean --epochs\?/);
  assert.throws(() => parseArgs(['--batch-size', 'ten'], spec), /--batch-size needs a number, got 'ten'/);
  assert.throws(() => parseArgs(['--optimizer', 'sgd'], spec), /--optimizer must be one of adam, adamw; got 'sgd'/);
  assert.throws(() => parseArgs(['--lr'], spec), /--lr needs a value/);
  assert.throws(() => parseArgs(['extra'], spec), /unexpected argument 'extra'/);
  assert.match(helpText(spec), /--image-size N\s+input size s .*\[224\]/);
});

test('recipes: paper per docs/architecture.md §Training recipe; cpu; explicit values win; bad values name the field', () => {
  const paper = makeTrainConfig({ recipe: 'paper' });
  assert.deepEqual(
    [paper.imageSize, paper.batchSize, paper.optimizer, paper.lr, paper.weightDecay, paper.epochs, paper.warmupEpochs],
    [224, 58, 'adam', 1e-4, 0, 200, 10],
  );
  assert.deepEqual([paper.warmupFactor, paper.endFactor, paper.labelSmoothing], [1e-3, 1e-6, 0]);
  assert.deepEqual(
    [paper.augment, paper.rrcScaleMin, paper.rrcScaleMax, paper.hflip, paper.vflip],
    ['rrc', 0.08, 1, false, false],
  );
  assert.deepEqual([paper.bestMetric, paper.earlyStopMetric, paper.patience], ['val_acc', 'val_loss', 30]);
  const cpu = makeTrainConfig({ recipe: 'cpu', lr: 5e-4 });
  for (const [k, v] of Object.entries(RECIPES.cpu)) if (k !== 'lr') assert.equal(cpu[k as keyof typeof cpu], v, k);
  assert.equal(cpu.lr, 5e-4);
  assert.throws(() => makeTrainConfig({ warmupEpochs: 5, epochs: 5 }), /warmupEpochs: must be in \[0, epochs = 5\)/);
  assert.throws(() => makeTrainConfig({ modelConfig: '{bad' }), /modelConfig: not valid JSON/);
  assert.throws(() => makeTrainConfig({ recipe: 'gpu' as never }), /Unknown recipe 'gpu'/);
});

test('resume: only run-control options may change; the rest must match the checkpoint', () => {
  const saved = makeTrainConfig({ recipe: 'cpu', name: 'r', seed: 4 });
  const ok = resumeConfig(saved, { resume: true, maxSteps: 10, backend: 'cpu', seed: 4 }, 'last.json');
  assert.equal(ok.maxSteps, 10);
  assert.equal(ok.backend, 'cpu');
  assert.equal(ok.lr, saved.lr);
  // The learning rate may change (e.g. lower after a divergence); the seed may not.
  assert.equal(resumeConfig(saved, { lr: 1e-4 }, 'last.json').lr, 1e-4);
  assert.throws(
    () => resumeConfig(saved, { lr: 0.1, seed: 5, batchSize: 8 }, 'last.json'),
    /--resume: seed \(4 in last\.json, 5 given\), batchSize \(32 in last\.json, 8 given\) cannot change on resume/,
  );
});

test('every script answers --help with its flags and exits 0', async () => {
  const run = (script: string) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts', script), '--help'], {
        cwd: repo,
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (code) => resolve({ code, out }));
    });
  const results = await Promise.all(['train.ts', 'evaluate.ts', 'predict.ts', 'quickstart.ts'].map(run));
  for (const r of results) {
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Usage: npm run \w+ --/);
    assert.match(r.out, /--backend S/);
  }
  assert.match(results[0].out, /--recipe cpu: --image-size 32/);
  assert.match(results[2].out, /<run folder \| weights\.safetensors> <image \| folder>\.\.\./);
});

test('predict gives the same probabilities as evaluation for the same images', async () => {
  const dir = await writeSyntheticDataset({
    root: path.join(tmp, 'data'),
    numClasses: 2,
    size: 48,
    perClass: { train: 4, val: 2, test: 3 },
    seed: 1,
  });
  const cfg = { model: 'microscopic-mamba-t', modelConfig: '{"depths":[1,1,1,1],"dims":[32,64,128,256]}', seed: 2 };
  const data = await prepareData({ data: dir, dataKind: '', imageSize: 32 }); // 48 px files → 32 px: a real resize
  const normalization = normalizationFor({ normalize: 'dataset' }, data);
  const classes = data.classes;
  const testFiles = data.paths('test');
  data.close();
  const model = buildModel(cfg, classes.length);
  const file = path.join(tmp, 'w.safetensors');
  saveWeights(model, file);
  model.dispose();
  const loaded = loadWeightsFile(file, { ...cfg, imageSize: 32, classes, normalization });
  const ev = await evaluateSplit(loaded, { data: dir, split: 'test', bootstrap: 0 });
  const files = listImages([path.join(dir, 'test')]);
  assert.deepEqual([...files].sort(), [...testFiles].sort());
  const preds = await predictImages(loaded, files, 4);
  loaded.model.dispose();
  const k = classes.length;
  for (const p of preds) {
    const i = testFiles.indexOf(p.file);
    const want = Array.from(ev.eval.probs.subarray(i * k, (i + 1) * k));
    for (let c = 0; c < k; c++)
      assert.ok(Math.abs(p.probs[c] - want[c]) < 1e-5, `${p.file} class ${c}: ${p.probs[c]} vs ${want[c]}`);
  }
  assert.equal(ev.report.n, 6);
});
