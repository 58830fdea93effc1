/**
 * `npm run quickstart [-- flags]`: the first thing to run on a fresh clone (after scripts/bootstrap.sh has
 * installed what is missing). Trains microscopic-mamba-t with the `cpu` recipe on the embedded SYNTHETIC
 * set (generated into data/ on first use) — or on `--data <path>` — evaluates the best checkpoint on the
 * test split, prints OA / AUC / F1 and the report's path, and says how to continue with real data.
 *
 * Every `npm run train` flag works here too. The run folder is runs/quickstart-<dataset>; running the
 * command again resumes it (an interrupted run continues, a finished one is only re-evaluated).
 */
import * as fs from 'fs';
import * as path from 'path';
import { tableText } from '../lib/report/table';
import { makeTrainConfig } from '../lib/train/config';
import { readCheckpoint } from '../lib/train/checkpoint';
import { metricRows } from '../lib/train/report';
import { datasetTag, trainRun } from '../lib/train/run';
import { parseArgs, runMain, type CliSpec } from './lib/cli';
import { givenConfig, TRAIN_SPEC } from './train';

const SPEC: CliSpec = {
  ...TRAIN_SPEC,
  command: 'npm run quickstart --',
  summary:
    'Train microscopic-mamba-t with the cpu recipe on the synthetic set (or --data), evaluate it, print the metrics.\n' +
    'Defaults here: --recipe cpu --data synthetic --name quickstart-<dataset>; every train flag below works.',
  epilog: [
    'Examples:',
    '  npm run quickstart                                              # synthetic set, a few minutes on 2 cores',
    '  npm run quickstart -- --data data/nih-malaria --data-kind malaria  # real cells, after npm run download -- malaria',
    '  npm run quickstart -- --epochs 2                                # even quicker',
  ].join('\n'),
};

const pct = (v: number | null | undefined) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(2)} %`);

async function main(): Promise<void> {
  const { values, given } = parseArgs(process.argv.slice(2), SPEC);
  const overrides = givenConfig(values, given);
  overrides.recipe ??= 'cpu';
  let config = makeTrainConfig(overrides);
  if (!config.name)
    config = {
      ...config,
      name: `quickstart-${datasetTag(config)}${config.recipe === 'cpu' ? '' : `-${config.recipe || 'custom'}`}`,
    };
  const runDir = path.resolve(config.runsDir, config.name);
  const existing = fs.existsSync(runDir) ? readCheckpoint(runDir) : undefined;
  if (existing) {
    console.log(
      `${runDir} exists (${existing.status === 'running' ? `stopped at step ${existing.position.step}` : existing.status}): ` +
        'continuing it. Delete the folder to train from scratch.',
    );
    config = { ...config, resume: true };
  }
  console.log(`quickstart: ${config.model}, recipe ${config.recipe}, data ${config.data}\n`);
  const t0 = Date.now();
  const result = await trainRun(config, {}, existing ? { ...overrides, name: config.name, resume: true } : overrides);
  const minutes = ((Date.now() - t0) / 60000).toFixed(1);
  const t = result.test;
  console.log('\n================ quickstart result ================');
  if (t) {
    console.log(tableText(metricRows(t)));
    console.log(
      `\nOA ${pct(t.accuracy)} | AUC ${t.auc.headline === null ? '–' : t.auc.headline.toFixed(4)} | ` +
        `F1 (weighted) ${t.f1.weighted.toFixed(4)} on ${t.n} test images (${path.basename(result.testCheckpoint ?? '')})`,
    );
  }
  console.log(`run folder: ${result.runDir}  (${minutes} min)`);
  if (result.reportFile) console.log(`report:     ${result.reportFile}`);
  const synthetic = config.data === 'synthetic';
  console.log(
    [
      '',
      synthetic
        ? 'That was the SYNTHETIC set: it shows the pipeline works, not how the model does on real cells.'
        : 'Done.',
      'Next, real data:',
      '  npm run download -- malaria            # NIH malaria cell images (27,558 cells; or: npm run download -- --list)',
      '  npm run quickstart -- --data data/nih-malaria --data-kind malaria',
      '  npm run train -- --recipe cpu --data <folder with train/val/test/<class>/ images> --name my-run',
      '  npm run train -- --recipe paper --data <folder> --backend webgpu   # the official recipe, on a GPU',
      'Then: npm run evaluate -- runs/my-run   and   npm run predict -- runs/my-run <images>',
    ].join('\n'),
  );
}

if (require.main === module) runMain(main);
