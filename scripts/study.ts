/**
 * `npm run study -- studies/NAME.json`: train every (arm, seed) cell of a study that has not finished,
 * then aggregate the cells into studies/NAME/results.{json,md} and report.html (lib/study).
 *
 *   npm run study -- studies/ablations-malaria.json --dry-run      each cell's estimated time and the total
 *   npm run study -- studies/ablations-malaria.json                run (resumes; finished cells are skipped)
 *   npm run study -- studies/ablations-malaria.json --jobs 2       two cells side by side, cores split
 *   npm run study -- studies/ablations-malaria.json --cell 3       one cell (what a Slurm array task runs)
 *   npm run study -- studies/ablations-malaria.json --executor slurm --slurm-args '--partition=gpu --time=04:00:00'
 *
 *   npm run study -- studies/ablations-malaria.json --aggregate    results from the finished cells only
 *
 * With every cell.json present it trains nothing and only re-aggregates (a clone without checkpoints
 * reproduces the committed results.md); `--aggregate` does the same for a study still in progress.
 */
import * as path from 'path';
import { initBackend } from '../lib/backend/index';
import {
  aggregateStudy,
  cellByIndex,
  estimateStudy,
  followJob,
  formatDuration,
  threadsPerJob,
  loadStudy,
  readCell,
  runCell,
  runLocal,
  exitWhenOrphaned,
  splitSlurmArgs,
  submitArray,
  writeStudyResults,
  type Study,
} from '../lib/study/index';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

export const STUDY_SPEC: CliSpec = {
  command: 'npm run study --',
  summary: 'Run a study (arms × seeds, each an ordinary run folder) and aggregate it; see README §Studies.',
  positional: '<studies/NAME.json>',
  backend: false,
  flags: [
    {
      key: 'dryRun',
      type: 'boolean',
      default: false,
      help: "print each cell's estimated time (probed step times) and the total; train nothing",
    },
    {
      key: 'aggregate',
      type: 'boolean',
      default: false,
      help: 'only aggregate the finished cells (their cell.json files) into the results; train nothing',
    },
    {
      key: 'cell',
      type: 'number',
      default: -1,
      help: 'run only this cell (0-based; Slurm array tasks use it) and do not aggregate',
    },
    {
      key: 'jobs',
      type: 'number',
      default: 1,
      help: 'cells side by side (each its own process, the cores split between them); with --dry-run, probe and total as they would run',
    },
    { key: 'executor', type: 'string', default: 'local', choices: ['local', 'slurm'], help: 'where the cells run' },
    {
      key: 'slurmArgs',
      type: 'string',
      default: '',
      help: "extra sbatch options, e.g. '--partition=gpu --time=04:00:00 --mem=16G --gres=gpu:1'",
    },
    {
      key: 'probeSteps',
      type: 'number',
      default: 3,
      help: '--dry-run: timed training steps per distinct configuration (after 1 warm-up step; the fastest counts)',
    },
    {
      key: 'slurmTimeout',
      type: 'number',
      default: 0,
      help: 'stop following the Slurm job after this many seconds (0 = wait until it ends)',
    },
  ],
  epilog: [
    "Outputs: run folders under runs/studies/NAME/ (or the study's runsDir), studies/NAME/cells/<arm>-s<seed>/cell.json",
    '(commit these), studies/NAME/results.json, results.md and report.html. Backend: MSM_BACKEND (default wasm).',
  ].join('\n'),
};

function printPlanHeader(study: Study): void {
  const d = study.def;
  console.log(
    `study ${d.name}: ${d.arms.length} arms × ${d.seeds.length} seeds = ${study.cells.length} cells; data ${d.data}, recipe ${d.recipe || 'custom'}; ` +
      `runs in ${path.relative(process.cwd(), study.runsDir)}, results in ${path.relative(process.cwd(), study.outDir)}`,
  );
}

async function dryRun(study: Study, probeSteps: number, jobs: number): Promise<void> {
  printPlanHeader(study);
  const est = await estimateStudy(study, { probeSteps, jobs, log: (l) => console.log(l) });
  if (est.counts)
    console.log(
      `dataset: ${Object.entries(est.counts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')} images`,
    );
  console.log(
    `step times probed on ${est.backend} (${probeSteps} timed steps after 1 warm-up, fastest), load average ` +
      `${est.load.average.toFixed(1)} on ${est.load.cores} cores` +
      (jobs > 1 ? `; ${threadsPerJob(jobs)} thread(s) per cell, as --jobs ${jobs} runs them` : ''),
  );
  if (est.probeThreads) console.log(`probes ran with: ${est.probeThreads}`);
  if (est.calibration) {
    const c = est.calibration;
    console.log(
      `calibrated by ${c.source}: ${c.benchSecondsPerStep.toFixed(3)} s/step measured there vs ${c.probeSecondsPerStep.toFixed(3)} probed now ` +
        `(every estimate × ${c.factor.toFixed(2)})`,
    );
  } else if (est.load.average > est.load.cores) {
    console.log(`WARNING: the machine is busy (load above the core count): the estimates overstate an idle run`);
  }
  console.log('');
  console.log(
    ['cell', 'arm', 'seed', 'model', 'size', 'batch', 'epochs', 'steps', 's/step', 'estimate', 'status'].join('\t'),
  );
  for (const e of est.cells) {
    const c = e.cell;
    console.log(
      [
        c.index,
        c.arm.label,
        c.seed,
        c.config.model,
        c.config.imageSize,
        c.config.batchSize,
        c.config.epochs,
        e.steps ?? '?',
        e.secondsPerStep === null ? '?' : e.secondsPerStep.toFixed(3),
        e.seconds === null ? `? (${e.problem})` : formatDuration(e.seconds) + (e.note ? ` (WARNING: ${e.note})` : ''),
        readCell(c) ? 'done' : 'to run',
      ].join('\t'),
    );
  }
  const left = est.cells.filter((e) => !readCell(e.cell)).reduce((s, e) => s + (e.seconds ?? 0), 0);
  const unknown = est.cells.filter((e) => e.seconds === null).length;
  console.log(
    `\ntotal ${formatDuration(est.totalSeconds)} for all ${est.cells.length} cells, ${formatDuration(left)} for the unfinished ones` +
      (unknown ? ` (${unknown} cells without an estimate, not counted)` : '') +
      (jobs > 1 ? `; with --jobs ${jobs}, about ${formatDuration(left / jobs)} of wall time` : '') +
      '; early stopping can only shorten it.',
  );
}

async function aggregate(study: Study): Promise<boolean> {
  // Counting each arm's parameters at 1000 classes builds its model: on the study's backend, quietly.
  await initBackend(study.cells[0].config.backend || undefined, { quiet: true });
  const cells = study.cells.map((c) => readCell(c));
  const finished = cells.filter((c) => c).length;
  if (finished === 0) {
    console.log(`no finished cells yet in ${path.relative(process.cwd(), study.outDir)}: nothing to aggregate`);
    return false;
  }
  const out = writeStudyResults(study, aggregateStudy(study, cells));
  console.log(
    `\n${finished} of ${study.cells.length} cells aggregated: ${[out.md, out.json, out.html].map((f) => path.relative(process.cwd(), f)).join(', ')}`,
  );
  return finished === study.cells.length;
}

async function runSlurm(study: Study, slurmArgs: string[], timeoutSeconds: number): Promise<number[]> {
  const todo = study.cells.filter((c) => !readCell(c)).map((c) => c.index);
  if (todo.length === 0) return [];
  const { jobId, script } = submitArray(study, { cells: todo, slurmArgs });
  console.log(`submitted ${path.relative(process.cwd(), script)} as Slurm job ${jobId} (${todo.length} array tasks)`);
  const t0 = Date.now();
  const final = await followJob(jobId, {
    timeoutSeconds: timeoutSeconds || undefined,
    onPoll: (counts) => {
      const done = study.cells.filter((c) => readCell(c)).length;
      console.log(
        `job ${jobId} after ${formatDuration((Date.now() - t0) / 1000)}: ${
          Object.entries(counts)
            .map(([s, n]) => `${n} ${s.toLowerCase()}`)
            .join(', ') || 'no tasks listed'
        }; ` + `${done} of ${study.cells.length} cells done`,
      );
    },
  });
  const failed = todo.filter((i) => !readCell(study.cells[i]));
  for (const i of failed) {
    const t = final.get(`${jobId}_${i}`);
    console.error(
      `cell ${i} (${study.cells[i].id}) did not finish` +
        (t ? ` (task ${jobId}_${i}: ${t.state}, exit code ${t.exitCode})` : '') +
        `; its output: ${path.relative(process.cwd(), path.join(study.runsDir, 'slurm', `${jobId}_${i}.out`))}`,
    );
  }
  return failed;
}

async function main(): Promise<void> {
  const { values, positional } = parseArgs(process.argv.slice(2), STUDY_SPEC);
  if (positional.length !== 1)
    throw new CliError('give one study file, e.g. npm run study -- studies/ablations-malaria.json');
  const file = positional[0];
  const study = loadStudy(file);
  const jobs = values.jobs as number;
  if (!(Number.isInteger(jobs) && jobs >= 1)) throw new CliError(`--jobs must be an integer ≥ 1 (got ${jobs})`);
  if (values.dryRun) return dryRun(study, values.probeSteps as number, jobs);
  if (values.aggregate) {
    printPlanHeader(study);
    await aggregate(study);
    return;
  }

  const cellIndex = values.cell as number;
  if (cellIndex !== -1) {
    if (!Number.isInteger(cellIndex) || cellIndex < 0)
      throw new CliError(`--cell must be a cell index ≥ 0 (got ${cellIndex})`);
    const cell = cellByIndex(study, cellIndex);
    exitWhenOrphaned();
    console.log(
      `cell ${cell.index} of ${study.def.name}: ${cell.arm.label}, seed ${cell.seed} → ${path.relative(process.cwd(), cell.runDir)}`,
    );
    const outcome = await runCell(study, cell, { progress: 'plain' });
    console.log(`cell ${cell.index}: ${outcome === 'skipped' ? 'already finished (cell.json exists)' : outcome}`);
    return;
  }

  printPlanHeader(study);
  let failed: number[];
  if (values.executor === 'slurm') {
    failed = await runSlurm(study, splitSlurmArgs(values.slurmArgs as string), values.slurmTimeout as number);
  } else {
    const script = path.resolve(__dirname, 'study.ts');
    const r = await runLocal(study, {
      jobs,
      cellCommand: (i) => ({ command: process.execPath, args: ['--import', 'tsx', script, file, '--cell', String(i)] }),
    });
    failed = r.failed.map((f) => f.index);
  }
  await aggregate(study);
  if (failed.length) {
    console.error(
      `${failed.length} cell(s) failed: ${failed.join(', ')}; run the same command again to retry them (finished cells are kept)`,
    );
    process.exitCode = 1;
  }
}

if (require.main === module) runMain(main);
