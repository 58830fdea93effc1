/**
 * Studies end to end on a tiny study (2 arms × 2 seeds of a reduced Microscopic-Mamba, 4 training steps
 * each on the embedded synthetic set): cells, cell.json, aggregation, re-aggregation without the run
 * folders, a study killed mid-cell and restarted, the dry-run plan, and the Slurm executor against a
 * real single-node Slurm (scripts/slurm-local.sh; skipped with the reason where it cannot start).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../lib/backend/index';
import {
  aggregateStudy,
  loadStudy,
  readCell,
  resultsMarkdown,
  runLocal,
  threadsPerJob,
  writeStudyResults,
  type StudyResults,
} from '../lib/study/index';
import { DEFAULT_TRAIN_CONFIG } from '../lib/train/config';

const ROOT = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-study-'));
const TINY_OPTIONS = { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256] };

/** A copy of the tiny study in its own folder (its results and runs stay there). */
function tinyStudy(dir: string): string {
  fs.mkdirSync(path.join(tmp, dir), { recursive: true });
  const file = path.join(tmp, dir, 'tiny.json');
  const def = {
    name: 'tiny',
    description: 'Pipeline check on synthetic data.',
    data: 'synthetic',
    recipe: 'cpu',
    train: { batchSize: 8, epochs: 2, warmupEpochs: 0, maxSteps: 4, ckptEvery: 2, bootstrap: 0 },
    seeds: [0, 1],
    reference: 'full',
    runsDir: path.join(tmp, dir, 'runs'),
    arms: [
      { label: 'full', model: 'microscopic-mamba-t', options: TINY_OPTIONS },
      { label: 'w/o MIFA', model: 'microscopic-mamba-t', options: { ...TINY_OPTIONS, mifa: false } },
    ],
    bootstrap: { samples: 200, seed: 0 },
  };
  fs.writeFileSync(file, JSON.stringify(def, null, 2));
  return file;
}

const studyCli = (args: string[], opts: { timeout?: number } = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'study.ts'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: opts.timeout ?? 180_000,
    env: { ...process.env, MSM_PROGRESS: 'plain' },
  });

/** A study's results without its wall times (measured, so they differ between two runs of the same cells). */
function numbers(r: StudyResults) {
  const noWall = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(noWall)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k]) => k !== 'wallSeconds')
              .map(([k, x]) => [k, noWall(x)]),
          )
        : v;
  return noWall({ arms: r.arms, paired: r.paired, cells: r.cells });
}

let reference: StudyResults | undefined;
let referenceFile = '';

before(async () => {
  await initBackend('wasm', { quiet: true });
});

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('a tiny study trains its cells, aggregates them, and re-aggregates from cell.json alone', async () => {
  referenceFile = tinyStudy('local');
  const study = loadStudy(referenceFile);
  assert.deepEqual(
    study.cells.map((c) => c.id),
    ['full-s0', 'w_o_MIFA-s0', 'full-s1', 'w_o_MIFA-s1'],
    'seed-major order',
  );
  const lines: string[] = [];
  const r = await runLocal(study, { log: (l) => lines.push(l), progress: 'off' });
  assert.deepEqual(r.failed, []);
  assert.ok(
    lines.some((l) => /study tiny: 4 done, 0 running, 0 left/.test(l)),
    'progress line',
  );
  assert.ok(
    lines.some((l) => /study tiny: 1 done, 0 running, 3 left; ETA \d+ s/.test(l)),
    'ETA after the first cell',
  );
  const cells = study.cells.map((c) => readCell(c));
  assert.ok(cells.every((c) => c));
  // Run names carry the seed and the options hash; the two arms and two seeds never collide.
  const runs = cells.map((c) => c!.run);
  assert.equal(new Set(runs).size, 4);
  for (const c of cells)
    assert.match(c!.run, new RegExp(`^microscopic-mamba-t-synthetic-cpu-s${c!.seed}-[0-9a-f]{8}$`));
  // The effective configuration is written in full: every training option, the merged model options, the
  // model's resolved options.
  const runDir = study.cells[1].runDir;
  const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
  assert.deepEqual(Object.keys(config).sort(), Object.keys(DEFAULT_TRAIN_CONFIG).sort());
  assert.deepEqual(JSON.parse(config.modelConfig), { dropPathRate: 0, ...TINY_OPTIONS, mifa: false });
  const runInfo = JSON.parse(fs.readFileSync(path.join(runDir, 'run.json'), 'utf8'));
  assert.equal(runInfo.model.resolved.mifa, false);
  assert.equal(runInfo.model.resolved.psffnRatio, 0.25);
  assert.equal(runInfo.model.resolved.dropPathRate, 0);
  // Per-image test predictions, as many as test images.
  assert.equal(cells[0]!.test.predicted.length, 150);
  assert.equal(cells[0]!.test.labels.length, 150);

  reference = aggregateStudy(study, cells);
  const out = writeStudyResults(study, reference);
  const md = fs.readFileSync(out.md, 'utf8');
  assert.equal(md, resultsMarkdown(reference));
  assert.match(md, /\| full \(reference\) \| microscopic-mamba-t \| 32 \| 2 \|/);
  assert.match(md, /\| w\/o MIFA \| 0, 1 \|/);
  assert.match(fs.readFileSync(out.html, 'utf8'), /Accuracy vs parameters/);
  const paired = reference.paired[0];
  const d = [0, 1].map((i) => cells[2 * i + 1]!.test.accuracy - cells[2 * i]!.test.accuracy);
  assert.deepEqual(paired.perSeed.accuracy!.differences, d, 'per-seed OA differences arm − reference');

  // A clone without the run folders: the CLI trains nothing and reproduces results.md byte for byte.
  fs.rmSync(study.runsDir, { recursive: true });
  fs.rmSync(out.md);
  const cli = studyCli([referenceFile]);
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /4 done, 0 running, 0 left/);
  assert.doesNotMatch(cli.stdout, /training:/);
  assert.equal(fs.readFileSync(out.md, 'utf8'), md);
  assert.ok(!fs.existsSync(study.runsDir), 'nothing was trained');
});

test('a study killed mid-cell and restarted ends with the same numbers as an uninterrupted one', async (t) => {
  if (!reference) return t.skip('needs the uninterrupted study of the previous test');
  const file = tinyStudy('killed');
  const study = loadStudy(file);
  const first = study.cells[0];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'study.ts'), file], {
    cwd: ROOT,
    stdio: 'ignore',
    detached: true, // its own process group: the study and the cell process it starts die together
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  // Kill it once cell 0 has its first checkpoint (step 2 of 4) and before it finishes.
  const lastJson = path.join(first.runDir, 'checkpoints', 'last.json');
  const t0 = Date.now();
  while (!fs.existsSync(lastJson) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 20));
  process.kill(-child.pid!, 'SIGKILL'); // as a closed terminal or a cancelled job kills the whole group
  await exited;
  await new Promise((r) => setTimeout(r, 200)); // the group's cell process goes down with it
  assert.ok(fs.existsSync(lastJson), 'cell 0 reached a checkpoint');
  assert.ok(!readCell(first), 'killed before cell 0 finished');
  assert.ok(!fs.existsSync(path.join(first.runDir, 'summary.json')), 'killed mid-cell');
  const stepAtKill = JSON.parse(fs.readFileSync(lastJson, 'utf8')).position.step as number;
  assert.ok(stepAtKill < 4, `killed at step ${stepAtKill}`);

  const lines: string[] = [];
  const r = await runLocal(study, { log: (l) => lines.push(l), progress: 'off' });
  assert.deepEqual(r.failed, []);
  assert.ok(
    lines.some((l) => /taking over the stale lock/.test(l)),
    'the dead process left its lock; it was taken over',
  );
  const log = fs.readFileSync(path.join(first.runDir, 'log.jsonl'), 'utf8');
  assert.match(log, /"event":"resume"/, 'cell 0 resumed from its checkpoint');
  const again = aggregateStudy(
    study,
    study.cells.map((c) => readCell(c)),
  );
  assert.deepEqual(numbers(again), numbers(reference));
});

test('--dry-run prints each cell with its estimated time and the total', (t) => {
  if (!referenceFile) return t.skip('needs the study of the first test');
  const cli = studyCli([referenceFile, '--dry-run', '--probe-steps', '1']);
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /dataset: train 600, val 150, test 150 images/);
  const rows = cli.stdout.split('\n').filter((l) => /^\d\t/.test(l));
  assert.equal(rows.length, 4);
  for (const row of rows) assert.match(row, /\t4\t\d+\.\d{3}\t\d+ s\tdone$/);
  assert.match(cli.stdout, /total \d+ s for all 4 cells, 0 s for the unfinished ones/);
  assert.match(cli.stdout, /probes ran with: wasm \d+ threads? \(backend-reported\)/);
});

test('--dry-run --jobs 2 probes each cell with its share of the cores and divides the wall time', (t) => {
  if (!referenceFile) return t.skip('needs the study of the first test');
  const cli = studyCli([referenceFile, '--dry-run', '--probe-steps', '1', '--jobs', '2']);
  assert.equal(cli.status, 0, cli.stderr);
  const per = threadsPerJob(2);
  assert.match(cli.stdout, new RegExp(`; ${per} thread\\(s\\) per cell, as --jobs 2 runs them`));
  assert.match(cli.stdout, new RegExp(`probes ran with: wasm ${per} threads? \\(backend-reported\\), scan ${per} `));
  assert.match(
    cli.stdout,
    /total \d+ s for all 4 cells, 0 s for the unfinished ones; with --jobs 2, about 0 s of wall time/,
  );
  assert.doesNotMatch(cli.stdout, /calibrated by/, 'benchmarks ran on every core: no calibration');
});

test('study files: errors name the field', () => {
  const write = (name: string, def: unknown) => {
    const f = path.join(tmp, `${name}.json`);
    fs.writeFileSync(f, JSON.stringify(def));
    return f;
  };
  const ok = {
    name: 'x',
    data: 'synthetic',
    recipe: 'cpu',
    seeds: [0],
    reference: 'a',
    arms: [{ label: 'a', model: 'microscopic-mamba-t' }],
  };
  assert.equal(loadStudy(write('ok', ok)).cells.length, 1);
  assert.throws(
    () => loadStudy(write('r', { ...ok, reference: 'b' })),
    /reference must be the label of one of the arms \(a\)/,
  );
  assert.throws(() => loadStudy(write('s', { ...ok, seeds: [0, 0] })), /seeds must not repeat a seed/);
  assert.throws(() => loadStudy(write('f', { ...ok, epochs: 3 })), /'epochs' is not a study field/);
  assert.throws(() => loadStudy(write('o', { ...ok, train: { seed: 3 } })), /train may not set 'seed'/);
  assert.throws(
    () => loadStudy(write('d', { ...ok, arms: [ok.arms[0], { label: 'b', model: 'microscopic-mamba-t' }] })),
    /arms 'a' and 'b' train the same run/,
  );
  assert.throws(() => loadStudy(path.join(tmp, 'none.json')), /none\.json: no such study file/);
});

test('Slurm executor: a 4-cell array job on a real single-node Slurm aggregates as the local executor', async (t) => {
  if (!reference) return t.skip('needs the local study of the first test');
  const script = path.join(ROOT, 'scripts', 'slurm-local.sh');
  const wasRunning = spawnSync('bash', [script, 'status'], { encoding: 'utf8' }).status === 0;
  const start = spawnSync('bash', [script, 'start'], { encoding: 'utf8', timeout: 60_000 });
  if (start.status !== 0) {
    return t.skip(
      `Slurm cannot start here: ${(start.stderr || start.stdout || `exit ${start.status}`).trim().split('\n').pop()}`,
    );
  }
  try {
    const file = tinyStudy('slurm');
    const cli = studyCli([file, '--executor', 'slurm', '--slurm-args', '--time=00:10:00', '--slurm-timeout', '240'], {
      timeout: 300_000,
    });
    assert.equal(cli.status, 0, cli.stdout + cli.stderr);
    assert.match(cli.stdout, /submitted .*study-tiny\.sbatch as Slurm job \d+ \(4 array tasks\)/);
    assert.match(cli.stdout, /4 completed; 4 of 4 cells done/);
    const sbatch = fs.readFileSync(path.join(tmp, 'slurm', 'runs', 'slurm', 'study-tiny.sbatch'), 'utf8');
    assert.match(sbatch, /#SBATCH --array=0-3/);
    assert.match(sbatch, /#SBATCH --time=00:10:00/);
    assert.match(sbatch, /npm run -s study -- .*tiny\.json --cell "\$SLURM_ARRAY_TASK_ID"/);
    const study = loadStudy(file);
    const viaSlurm = aggregateStudy(
      study,
      study.cells.map((c) => readCell(c)),
    );
    assert.deepEqual(numbers(viaSlurm), numbers(reference));
  } finally {
    if (!wasRunning) execFileSync('bash', [script, 'stop'], { stdio: 'ignore', timeout: 60_000 });
  }
});
