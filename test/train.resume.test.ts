/**
 * Exact resume across processes: `scripts/train.ts` on a tiny synthetic set with a small Microscopic-Mamba
 * configuration is killed with SIGKILL right after it wrote a mid-epoch checkpoint, resumed with
 * `--resume`, and must end with the same metrics.json, epoch history and step log as an uninterrupted run
 * of the same seed (which also shows that two runs with one seed on one backend agree).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeSyntheticDataset } from '../lib/data/index';
import { readLog } from '../lib/train/logs';

const repo = path.resolve(__dirname, '..');
let tmp = '';
let dataDir = '';

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-resume-'));
  dataDir = await writeSyntheticDataset({
    root: path.join(tmp, 'data'),
    numClasses: 3,
    size: 32,
    perClass: { train: 11, val: 4, test: 4 },
    seed: 3,
  });
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** 33 training images in batches of 8 → 5 steps per epoch (the last one partial), 2 epochs. */
function args(name: string): string[] {
  return [
    '--import',
    'tsx',
    path.join(repo, 'scripts', 'train.ts'),
    '--data',
    dataDir,
    '--image-size',
    '32',
    '--model-config',
    '{"depths":[1,1,1,1],"dims":[32,64,128,256]}',
    '--batch-size',
    '8',
    '--eval-batch-size',
    '12',
    '--epochs',
    '2',
    '--warmup-epochs',
    '1',
    '--lr',
    '0.002',
    '--hflip',
    '--rrc-scale-min',
    '0.5',
    '--ckpt-every',
    '2',
    '--bootstrap',
    '50',
    '--no-report',
    '--seed',
    '5',
    '--runs-dir',
    path.join(tmp, 'runs'),
    '--name',
    name,
  ];
}

function start(argv: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: string | null; out: string }>;
} {
  const child = spawn(process.execPath, argv, {
    cwd: repo,
    env: { ...process.env, MSM_DATA_CACHE: path.join(tmp, 'cache'), MSM_PROGRESS: 'off', MSM_BACKEND: 'wasm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, out })),
  );
  return { child, done };
}

const lastJson = (name: string) => path.join(tmp, 'runs', name, 'checkpoints', 'last.json');
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** The reproducible part of a run: test metrics, epoch history without timings, step losses and lrs. */
function results(name: string) {
  const dir = path.join(tmp, 'runs', name);
  const epochs = fs
    .readFileSync(path.join(dir, 'epochs.csv'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(',').slice(0, -1).join(',')); // drop the seconds column
  const steps = readLog(path.join(dir, 'log.jsonl'))
    .filter((l) => l.type === 'step')
    .map((l) => {
      const s = l as { epoch: number; batch: number; step: number; loss: number; acc: number; lr: number };
      return [s.epoch, s.batch, s.step, s.loss, s.acc, s.lr];
    });
  return { metrics: readJson(path.join(dir, 'metrics.json')), epochs, steps };
}

test('a run killed with SIGKILL after a mid-epoch checkpoint and resumed matches an uninterrupted run', async () => {
  // Uninterrupted reference.
  const ref = await start(args('straight')).done;
  assert.equal(ref.code, 0, ref.out);

  // Same run, killed as soon as a mid-epoch checkpoint exists.
  const killed = start(args('killed'));
  let exited = false;
  void killed.done.then(() => (exited = true));
  let sawMidEpoch = false;
  while (!exited) {
    try {
      const ck = readJson(lastJson('killed'));
      if (ck.position.batch > 0) {
        killed.child.kill('SIGKILL');
        sawMidEpoch = true;
        break;
      }
    } catch {
      /* not written yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const k = await killed.done;
  assert.ok(sawMidEpoch, `the run ended before a mid-epoch checkpoint was seen:\n${k.out}`);
  assert.equal(k.signal, 'SIGKILL');
  const ck = readJson(lastJson('killed'));
  assert.equal(ck.status, 'running');
  assert.ok(ck.position.batch > 0 && ck.position.step < 10, `killed at ${JSON.stringify(ck.position)}`);
  assert.ok(!fs.existsSync(path.join(tmp, 'runs', 'killed', 'metrics.json')));

  // Resume: only the run's name and folder are needed; the rest comes from the checkpoint.
  const resumed = await start([
    ...args('killed').slice(0, 3),
    '--runs-dir',
    path.join(tmp, 'runs'),
    '--name',
    'killed',
    '--resume',
  ]).done;
  assert.equal(resumed.code, 0, resumed.out);
  assert.match(resumed.out, /resuming at epoch \d, batch \d, step \d/);

  const a = results('straight');
  const b = results('killed');
  assert.equal(a.steps.length, 10);
  assert.deepEqual(b.steps, a.steps);
  assert.deepEqual(b.epochs, a.epochs);
  assert.deepEqual(b.metrics, a.metrics);
  assert.equal(a.metrics.metrics.n, 12);

  // Times cover the whole run: the resumed run adds the training time its checkpoint recorded (up to the kill).
  assert.ok(ck.elapsed.seconds > 0 && ck.elapsed.epochSeconds > 0, `checkpoint times ${JSON.stringify(ck.elapsed)}`);
  const summary = (name: string) => readJson(path.join(tmp, 'runs', name, 'summary.json'));
  const sa = summary('straight');
  const sb = summary('killed');
  assert.equal(sa.wallSeconds, sa.callSeconds, 'a run trained in one call: whole run = this call');
  assert.ok(Math.abs(sb.wallSeconds - (sb.callSeconds + ck.elapsed.seconds)) < 1e-6, JSON.stringify(sb));
  assert.ok(sb.trainSeconds > ck.elapsed.seconds && sb.trainSeconds < sb.wallSeconds, JSON.stringify(sb));
  const epochSeconds = readLog(path.join(tmp, 'runs', 'killed', 'log.jsonl'))
    .filter((l) => l.type === 'epoch')
    .map((l) => (l as { epoch: number; seconds: number }).seconds);
  const killedEpoch = ck.position.epoch as number;
  assert.ok(
    epochSeconds[killedEpoch] >= ck.elapsed.epochSeconds,
    `the interrupted epoch's time (${epochSeconds[killedEpoch]} s) includes its ${ck.elapsed.epochSeconds} s before the kill`,
  );

  // Resuming a finished run trains nothing more and gives the same metrics again.
  const again = await start([
    ...args('killed').slice(0, 3),
    '--runs-dir',
    path.join(tmp, 'runs'),
    '--name',
    'killed',
    '--resume',
  ]).done;
  assert.equal(again.code, 0, again.out);
  assert.deepEqual(results('killed').metrics, a.metrics);
  // Without --resume an existing run is never overwritten.
  const clash = await start(args('straight')).done;
  assert.equal(clash.code, 1);
  assert.match(clash.out, /already holds a run .* pass --resume/);
});
