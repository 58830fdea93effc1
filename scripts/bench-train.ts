/**
 * `npm run bench:train [-- flags]`: the real-data training run and its committed results table.
 *
 * Trains microscopic-mamba-t with the `cpu` recipe on the NIH malaria cells: the team's 128 px subset
 * (../shared/data/nih-malaria-cells-128, its own train/validation/test split) when it is there, otherwise
 * the full set from `npm run download -- malaria` (data/nih-malaria, seeded stratified split by cell);
 * evaluates the best-val-accuracy checkpoint on the test split, and writes benchmarks/results.json + benchmarks/results.md: recipe, wall time, images/s,
 * load average, machine, test OA / AUC / F1 with 95 % bootstrap intervals, next to the paper's full-set
 * numbers (224 px, 200 epochs) as a reference — not a ratio, the settings differ.
 *
 * `--from-run runs/<name>` only tabulates a finished run (no training). Any `npm run train` flag is passed on.
 */
import * as fs from 'fs';
import * as path from 'path';
import { tableMarkdown, tableText, type Row } from '../lib/report/table';
import { DEFAULT_TRAIN_CONFIG, makeTrainConfig, RECIPES, type TrainConfig } from '../lib/train/config';
import type { ClassificationReport } from '../lib/metrics/index';
import { machineInfo, trainRun } from '../lib/train/run';
import type { ThreadInfo } from '../lib/backend/thread-info';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import { defaultDataRoot, sharedDataDir } from '../lib/data/paths';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';
import { givenConfig, TRAIN_SPEC } from './train';

const PAPER = { dataset: 'SARS (NIH malaria, full set)', imageSize: 224, epochs: 200, oa: 0.9731, auc: 0.996 };
const repo = path.resolve(__dirname, '..');

const SPEC: CliSpec = {
  ...TRAIN_SPEC,
  command: 'npm run bench:train --',
  summary:
    'Acceptance run: microscopic-mamba-t, cpu recipe, NIH malaria cells (128 px subset); writes benchmarks/results.{json,md}.',
  flags: [
    ...TRAIN_SPEC.flags,
    { key: 'fromRun', type: 'string', default: '', help: 'tabulate this finished run folder instead of training' },
  ],
  epilog: [
    'Defaults here: --recipe cpu --name bench-malaria-cpu, and --data: the 128 px subset',
    '../shared/data/nih-malaria-cells-128 when present (the committed table), else data/nih-malaria --data-kind malaria',
    '(all 27,558 cells; first run: npm run download -- malaria).',
  ].join('\n'),
};

interface ResultEntry {
  name: string;
  date: string;
  model: string;
  dataset: string;
  recipe: string;
  /** Options that differ from the plain defaults (the recipe's and explicit ones). */
  settings: Record<string, unknown>;
  status: string;
  epochs: number;
  steps: number;
  bestEpoch: number | null;
  wallMinutes: number;
  trainMinutes: number;
  imagesPerSecond: number;
  loadAverage: { start: number; end: number };
  /** `threads` is absent in entries written before it was recorded. */
  machine: Omit<ReturnType<typeof machineInfo>, 'threads'> & { backend: string; threads?: ThreadInfo };
  test: {
    n: number;
    oa: number;
    oaCI: [number, number] | null;
    auc: number | null;
    aucCI: [number | null, number | null] | null;
    f1Weighted: number;
    balancedAccuracy: number;
    confusionMatrix: number[][];
    classes: string[];
  };
  acceptance: { oa: boolean; auc: boolean; wallTime: boolean };
}

function entryFromRun(runDir: string): ResultEntry {
  const read = (f: string) => JSON.parse(fs.readFileSync(path.join(runDir, f), 'utf8'));
  const cfg = read('config.json') as TrainConfig;
  const summary = read('summary.json');
  const metrics = read('metrics.json');
  const run = read('run.json');
  const m = metrics.metrics as ClassificationReport;
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    if (['name', 'runsDir', 'resume', 'backend', 'progressSeconds'].includes(k)) continue;
    if (v === DEFAULT_TRAIN_CONFIG[k as keyof TrainConfig]) continue;
    // Paths relative to the checkout, so the committed table names no machine-specific folder.
    settings[k] = k === 'data' && v !== 'synthetic' ? path.relative(repo, path.resolve(repo, String(v))) : v;
  }
  const wallMinutes = summary.wallSeconds / 60;
  return {
    name: cfg.name,
    date: summary.finishedAt,
    model: cfg.model,
    dataset: `${run.dataset.name} (train ${sum(run.dataset.counts.train)}, val ${sum(run.dataset.counts.val)}, test ${sum(run.dataset.counts.test)})`,
    recipe: cfg.recipe || 'custom',
    settings,
    status: summary.status,
    epochs: metrics.epochs,
    steps: metrics.steps,
    bestEpoch: metrics.best.epoch === null ? null : metrics.best.epoch + 1,
    wallMinutes,
    trainMinutes: summary.trainSeconds / 60,
    imagesPerSecond: summary.imagesPerSecond,
    loadAverage: summary.loadAverage,
    machine: { ...summary.machine, backend: summary.backend },
    test: {
      n: m.n,
      oa: m.accuracy,
      oaCI: m.ci ? [m.ci.accuracy.low, m.ci.accuracy.high] : null,
      auc: m.auc.headline,
      aucCI: m.ci ? [m.ci.auc.low, m.ci.auc.high] : null,
      f1Weighted: m.f1.weighted,
      balancedAccuracy: m.balancedAccuracy,
      confusionMatrix: m.confusionMatrix,
      classes: m.classNames,
    },
    acceptance: { oa: m.accuracy >= 0.93, auc: (m.auc.headline ?? 0) >= 0.97, wallTime: wallMinutes <= 45 },
  };
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
/** 'wasm 1 + scan 2': the backend's kernel threads and the fused scan's (runs before this field: 'not recorded'). */
const threadsCell = (e: ResultEntry) =>
  e.machine.threads
    ? `${e.machine.backend} ${e.machine.threads.backend ?? '?'} + scan ${e.machine.threads.scan}`
    : 'not recorded';
const pct = (v: number | null) => (v === null ? '–' : `${(100 * v).toFixed(2)}`);
const ci = (c: [number | null, number | null] | null, f = pct) => (c ? `${f(c[0])}–${f(c[1])}` : '–');

function markdown(entries: ResultEntry[]): string {
  const rows: Row[] = entries.map((e) => ({
    run: e.name,
    model: e.model,
    recipe: e.recipe,
    'test OA %': pct(e.test.oa),
    'OA 95% CI': ci(e.test.oaCI),
    'test AUC %': pct(e.test.auc),
    'AUC 95% CI': ci(e.test.aucCI),
    'F1 (weighted) %': pct(e.test.f1Weighted),
    epochs: e.epochs,
    'best epoch': e.bestEpoch,
    'wall min': e.wallMinutes.toFixed(1),
    'img/s': e.imagesPerSecond.toFixed(1),
    'load avg (start→end)': `${e.loadAverage.start.toFixed(1)}→${e.loadAverage.end.toFixed(1)}`,
    threads: threadsCell(e),
  }));
  const paper: Row[] = [
    {
      source: 'paper (Table I, docs/architecture.md §Table I)',
      data: PAPER.dataset,
      'input px': PAPER.imageSize,
      epochs: PAPER.epochs,
      'OA %': pct(PAPER.oa),
      'AUC %': pct(PAPER.auc),
    },
  ];
  const details = entries.map((e) =>
    [
      `### ${e.name}`,
      '',
      `- dataset: ${e.dataset}`,
      `- recipe: \`${e.recipe}\`; settings that differ from the plain defaults: ` +
        Object.entries(e.settings)
          .map(([k, v]) => `\`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}\``)
          .join(', '),
      `- status ${e.status}, ${e.steps} steps; train ${e.trainMinutes.toFixed(1)} min, wall ${e.wallMinutes.toFixed(1)} min`,
      `- machine: ${e.machine.cores} × ${e.machine.cpu}, ${e.machine.memoryGiB} GiB, ${e.machine.platform}, Node ${e.machine.node}, ` +
        `tfjs ${e.machine.tfjs}, backend ${e.machine.backend}, threads: ${e.machine.threads?.text ?? 'not recorded'}; ` +
        `load average ${e.loadAverage.start.toFixed(2)} at start, ` +
        `${e.loadAverage.end.toFixed(2)} at end (the machine was shared with other work)`,
      `- test confusion matrix (rows true ${e.test.classes.join(' / ')}): ${JSON.stringify(e.test.confusionMatrix)}`,
      `- acceptance (OA ≥ 93 %, AUC ≥ 0.97, wall ≤ 45 min): ${e.acceptance.oa ? 'OA ok' : 'OA MISSED'}, ` +
        `${e.acceptance.auc ? 'AUC ok' : 'AUC MISSED'}, ${e.acceptance.wallTime ? 'time ok' : 'time over target'}`,
      `- finished ${e.date}`,
    ].join('\n'),
  );
  return [
    '# Training results on real data',
    '',
    'Written by `npm run bench:train` (scripts/bench-train.ts) from the run folder of each entry. Test metrics are',
    "those of the best-validation-accuracy checkpoint on the dataset's own test split; 95 % intervals are",
    'percentile bootstrap intervals over the test images. Wall time covers data caching, training, every',
    'validation pass and the test evaluation.',
    '',
    tableMarkdown(rows),
    'For reference, the paper (different data size, input size and schedule — not comparable one to one):',
    '',
    tableMarkdown(paper),
    ...details,
    '',
  ].join('\n');
}

/** The team's 128 px subset when the shared folder is there, else the downloaded full set. */
function defaultMalariaData(): Partial<TrainConfig> {
  const shared = sharedDataDir();
  const subset = shared && path.join(shared, 'nih-malaria-cells-128');
  if (subset && fs.existsSync(subset)) return { data: path.relative(process.cwd(), subset) };
  const downloaded = path.join(defaultDataRoot(), 'nih-malaria');
  if (fs.existsSync(downloaded)) return { data: path.relative(process.cwd(), downloaded), dataKind: 'malaria' };
  throw new CliError(`no malaria data at ${downloaded}: run 'npm run download -- malaria' first, or pass --data`);
}

async function main(): Promise<void> {
  const { values, given } = parseArgs(process.argv.slice(2), SPEC);
  let runDir = values.fromRun as string;
  if (!runDir) {
    const overrides = givenConfig(values, given);
    delete (overrides as Record<string, unknown>).fromRun;
    overrides.recipe ??= 'cpu';
    if (overrides.data === undefined) Object.assign(overrides, defaultMalariaData());
    overrides.name ??= 'bench-malaria-cpu';
    const config = makeTrainConfig(overrides);
    const result = await trainRun(config, {}, overrides);
    runDir = result.runDir;
  }
  const entry = entryFromRun(path.resolve(runDir));
  const jsonFile = path.join(repo, 'benchmarks', 'results.json');
  const previous: ResultEntry[] = fs.existsSync(jsonFile) ? JSON.parse(fs.readFileSync(jsonFile, 'utf8')).results : [];
  const entries = [...previous.filter((e) => e.name !== entry.name), entry];
  atomicWriteJson(jsonFile, { recipes: RECIPES, paper: PAPER, results: entries });
  atomicWriteFile(path.join(repo, 'benchmarks', 'results.md'), markdown(entries));
  console.log(
    tableText([
      {
        run: entry.name,
        'OA %': pct(entry.test.oa),
        'AUC %': pct(entry.test.auc),
        'wall min': entry.wallMinutes.toFixed(1),
        threads: threadsCell(entry),
        'load avg (start→end)': `${entry.loadAverage.start.toFixed(1)}→${entry.loadAverage.end.toFixed(1)}`,
      },
    ]),
  );
  console.log(`wrote ${jsonFile} and results.md`);
}

if (require.main === module) runMain(main);
