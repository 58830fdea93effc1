/**
 * Faults at the command line (the scripts run as a user runs them, in child processes): flags checked
 * before any work, mistyped run paths, FIFOs and bad files given to predict, predict stopped by SIGINT,
 * and `--help` / bad numbers in download and make-synthetic.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../lib/backend/index';
import { writeSyntheticDataset } from '../lib/data/index';
import { saveWeights } from '../lib/models/weights';
import { buildModel } from '../lib/train/run';

const repo = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-cli-'));
const MODEL = ['--model', 'microscopic-mamba-t', '--model-config', '{"depths":[1,1,1,1],"dims":[32,64,128,256]}'];
let weights = '';
let images: string[] = [];
let dataDir = '';

before(async () => {
  await initBackend('wasm', { quiet: true });
  const dir = await writeSyntheticDataset({
    root: path.join(tmp, 'data'),
    numClasses: 2,
    size: 32,
    perClass: { train: 1, val: 1, test: 3 },
    seed: 1,
  });
  dataDir = dir;
  images = execFileSync('find', [path.join(dir, 'test'), '-name', '*.png'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .sort();
  const model = buildModel({ model: MODEL[1], modelConfig: MODEL[3], seed: 1 }, 2);
  weights = path.join(tmp, 'w.safetensors');
  saveWeights(model, weights);
  model.dispose();
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  seconds: number;
}

/** Run a script; `onErr` sees stderr as it arrives (and may signal the child). Killed after `limitS`. */
function run(
  script: string,
  args: string[],
  onErr?: (text: string, child: ReturnType<typeof spawn>) => void,
  limitS = 120,
) {
  return new Promise<Run>((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts', script), ...args], {
      cwd: repo,
      env: { ...process.env, MSM_BACKEND: 'wasm' },
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), limitS * 1000);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => {
      err += d;
      onErr?.(err, child);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

const bare = () => [...MODEL, '--classes', 'a,b', '--image-size', '32', '--normalize', 'official'];

test('download and make-synthetic: --help exits 0; --retries abc is an error naming the flag', async () => {
  const [help, synth, bad] = await Promise.all([
    run('download.ts', ['--help']),
    run('make-synthetic.ts', ['--help']),
    run('download.ts', ['bloodmnist', '--retries', 'abc']),
  ]);
  assert.equal(help.code, 0, help.err);
  assert.match(help.out, /Usage: npm run download -- <name>\.\.\. \[flags\]/);
  assert.match(help.out, /--retries N/);
  assert.equal(synth.code, 0, synth.err);
  assert.match(synth.out, /Usage: npm run make-synthetic -- \[flags\]/);
  assert.match(synth.out, /--classes N/);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /flag --retries needs a number, got 'abc'/);
});

test('predict/evaluate/train: bad flags and mistyped paths fail at once, before the model loads', async () => {
  const folderOut = path.join(tmp, 'outdir');
  fs.mkdirSync(folderOut);
  const runsDir = path.join(tmp, 'runs');
  fs.mkdirSync(path.join(runsDir, 'malaria-cpu'), { recursive: true });
  fs.writeFileSync(path.join(runsDir, 'malaria-cpu', 'run.json'), '{}');
  const [batch0, outDir, evTypo, prTypo, resumeTypo] = await Promise.all([
    run('predict.ts', [weights, images[0], ...bare(), '--batch-size', '0']),
    run('predict.ts', [weights, images[0], ...bare(), '--out', folderOut]),
    run('evaluate.ts', [path.join(tmp, 'runs', 'malaria-cpuu')]),
    run('predict.ts', [path.join(tmp, 'runs', 'malaria-cpuu'), images[0]]),
    run('train.ts', ['--resume', '--name', 'malaria-cpuu', '--runs-dir', runsDir]),
  ]);
  assert.equal(batch0.code, 2);
  assert.match(batch0.err, /flag --batch-size must be a positive integer, got 0/);
  assert.equal(outDir.code, 2);
  assert.match(outDir.err, /flag --out names a folder .*outdir/);
  for (const r of [evTypo, prTypo]) {
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /malaria-cpuu: no such run or weights file/);
  }
  assert.equal(resumeTypo.code, 1, resumeTypo.err);
  assert.match(resumeTypo.err, /--resume: no run named 'malaria-cpuu' \(runs in .*: malaria-cpu\); check --name/);
  assert.deepEqual(fs.readdirSync(runsDir), ['malaria-cpu'], 'no fresh run started');
});

test('predict never reads a FIFO (no hang); --skip-bad warns, goes on and lists the skipped files', async () => {
  const fifo = path.join(tmp, 'pipe.png');
  execFileSync('mkfifo', [fifo]);
  const broken = path.join(tmp, 'broken.png');
  fs.writeFileSync(broken, Buffer.from('not a png at all'));
  const strict = await run('predict.ts', [weights, fifo, ...bare()], undefined, 60);
  assert.equal(strict.code, 1, strict.err);
  assert.match(strict.err, /pipe\.png: not a regular file \(a FIFO, socket or device\)/);

  const out = path.join(tmp, 'preds.csv');
  const r = await run('predict.ts', [
    weights,
    images[0],
    fifo,
    broken,
    images[1],
    ...bare(),
    '--skip-bad',
    '--out',
    out,
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /warning: skipped .*pipe\.png: not a regular file/);
  assert.match(r.err, /warning: skipped .*broken\.png: not an image/);
  const rows = fs.readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(rows[0], 'file,predicted,p_a,p_b,skipped');
  assert.equal(rows.length, 5, 'header + 2 predictions + 2 skipped');
  assert.ok(rows.some((l) => l.includes('pipe.png') && /not a regular file/.test(l)));
  assert.ok(rows.some((l) => l.includes('broken.png') && /not an image/.test(l)));
});

test('SIGINT stops predict between batches (exit 130, nothing written)', async () => {
  const many = Array.from({ length: 400 }, (_, i) => images[i % images.length]);
  const out = path.join(tmp, 'never.csv');
  let sent = false;
  const r = await run('predict.ts', [weights, ...many, ...bare(), '--batch-size', '1', '--out', out], (err, child) => {
    if (!sent && /predicting 400 image\(s\)/.test(err)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.ok(sent, r.err);
  assert.equal(r.code, 130, r.err);
  assert.match(r.err, /SIGINT: stopped after \d+ of 400 image\(s\); nothing written/);
  assert.ok(!fs.existsSync(out));
});

test('evaluate prints its metrics before writing them: a full disk loses nothing shown', async (t) => {
  // A full 64 KiB tmpfs as the --out folder (the write fails after the metrics are computed).
  const disk = path.join(tmp, 'full');
  fs.mkdirSync(disk);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk], { stdio: 'pipe' });
  } catch {
    t.skip('cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)');
    return;
  }
  try {
    const st = fs.statfsSync(disk);
    fs.writeFileSync(path.join(disk, 'filler'), new Uint8Array(st.bavail * st.bsize));
    const args = [weights, ...MODEL, '--image-size', '32', '--normalize', 'official', '--data', dataDir];
    const r = await run('evaluate.ts', [...args, '--bootstrap', '0', '--out', path.join(disk, 'metrics.json')]);
    assert.equal(r.code, 1, r.err);
    assert.match(r.out, /on .* test .*6 images:[\s\S]*OA \(accuracy\)[\s\S]*confusion matrix/);
    assert.match(r.err, /writing .*metrics\.json: .*ENOSPC.*; the previous version of the file is kept/);
    assert.deepEqual(fs.readdirSync(disk), ['filler'], 'no temp file left');
  } finally {
    execFileSync('umount', [disk]);
  }
});
