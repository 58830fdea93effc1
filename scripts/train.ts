/**
 * `npm run train -- [flags]`: train a registered model on a dataset (lib/train/run.ts does the work).
 *
 * Configuration is nanoGPT style: the plain defaults (the official values, docs/architecture.md §Training recipe) ← the
 * `--recipe` preset ← every flag given on the command line. `--resume` continues `runs/<name>` exactly.
 */
import { tableText } from '../lib/report/table';
import {
  DEFAULT_TRAIN_CONFIG,
  makeTrainConfig,
  RECIPES,
  TRAIN_CONFIG_CHOICES,
  TRAIN_CONFIG_HELP,
  type TrainConfig,
} from '../lib/train/config';
import { metricRows } from '../lib/train/report';
import { trainRun } from '../lib/train/run';
import { flagsFromDefaults, kebab, parseArgs, runMain, type CliSpec } from './lib/cli';

const recipeText = (name: keyof typeof RECIPES) =>
  `  --recipe ${name}: ` +
  Object.entries(RECIPES[name])
    .map(([k, v]) => `--${kebab(k)} ${String(v)}`)
    .join(' ');

export const TRAIN_SPEC: CliSpec = {
  command: 'npm run train --',
  summary: 'Train a model (default microscopic-mamba-t) and evaluate it on the test split.',
  flags: flagsFromDefaults(DEFAULT_TRAIN_CONFIG, TRAIN_CONFIG_HELP, TRAIN_CONFIG_CHOICES),
  epilog: [
    'Recipes (presets applied before the other flags; any flag overrides them):',
    recipeText('paper'),
    recipeText('cpu'),
    '',
    'Run folder runs/<name>/: config.json, run.json, log.jsonl, steps.csv, epochs.csv, checkpoints/',
    '(last.json + step-*.safetensors for --resume, best.safetensors), metrics.json, summary.json, report.html.',
    '',
    'Examples:',
    '  npm run train -- --recipe cpu                                   # synthetic set, a few minutes on a laptop',
    '  npm run download -- malaria                                     # NIH malaria cells into data/nih-malaria',
    '  npm run train -- --recipe cpu --data data/nih-malaria --data-kind malaria --name malaria-cpu',
    '  npm run train -- --recipe paper --data data/mhist --data-kind mhist --backend webgpu',
    '  npm run train -- --name malaria-cpu --resume                    # continue after a crash / Ctrl-C',
  ].join('\n'),
};

/** The explicitly given flags as a partial config. */
export function givenConfig(values: Record<string, unknown>, given: Set<string>): Partial<TrainConfig> {
  return Object.fromEntries([...given].map((k) => [k, values[k]])) as Partial<TrainConfig>;
}

async function main(): Promise<void> {
  const { values, given } = parseArgs(process.argv.slice(2), TRAIN_SPEC);
  const overrides = givenConfig(values, given);
  const config = makeTrainConfig(overrides);
  // --resume of a name with no checkpoint (a typo) is an error listing the runs, never a fresh run.
  const result = await trainRun(config, { ifNoCheckpoint: 'error' }, overrides);
  if (result.test) {
    console.log(`\ntest metrics (${result.testCheckpoint}):`);
    console.log(tableText(metricRows(result.test)));
  }
  console.log(`\nrun folder: ${result.runDir}`);
  if (result.reportFile) console.log(`report:     ${result.reportFile}`);
}

if (require.main === module) runMain(main);
