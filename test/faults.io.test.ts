/**
 * Faults: a full disk and short writes never replace a good file with a fragment (lib/util/fs.ts), and the
 * best checkpoint's weights and JSON move together (lib/train/checkpoint.ts).
 *
 * The full-disk case runs on a real 256 KiB tmpfs when this process may mount one (root in a container
 * with CAP_SYS_ADMIN); otherwise the same assertions run with ENOSPC injected into fs.writeSync (a short
 * write, then ENOSPC, as the kernel does). The test's diagnostic line says which one ran.
 */
import { test, before, after, mock } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { atomicWriteFile, atomicWriteFiles } from '../lib/util/fs';
import { readBest, readCheckpoint, saveBest, saveCheckpoint, type BestJson } from '../lib/train/checkpoint';
import { makeTrainConfig } from '../lib/train/config';
import { TinyNet } from './helpers/tiny-train';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-io-'));
let disk = '';
let mounted = false;

before(async () => {
  await initBackend('wasm', { quiet: true });
  disk = path.join(tmp, 'disk');
  fs.mkdirSync(disk);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', disk], { stdio: 'pipe' });
    mounted = true;
  } catch {
    mounted = false;
  }
});

after(() => {
  if (mounted) execFileSync('umount', [disk]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

const files = (dir: string) => fs.readdirSync(dir).sort();

test('short writes: every byte is written (fs.writeSync is called until all are on disk)', (t) => {
  const file = path.join(tmp, 'short.bin');
  const data = new Uint8Array(10_000).map((_, i) => (i * 7) & 255);
  const real = fs.writeSync;
  // At most 999 bytes per call, as a pipe, a signal or a nearly full disk may do.
  const spy = mock.method(fs, 'writeSync', ((fd: number, buf: Uint8Array, off?: number, len?: number, pos?: null) =>
    real(fd, buf, off ?? 0, Math.min(len ?? buf.byteLength - (off ?? 0), 999), pos)) as typeof fs.writeSync);
  try {
    atomicWriteFile(file, data);
  } finally {
    spy.mock.restore();
  }
  t.diagnostic(`${spy.mock.callCount()} write calls`);
  assert.ok(spy.mock.callCount() >= 11);
  assert.deepEqual(new Uint8Array(fs.readFileSync(file)), data);
});

test('a write that stops making progress fails, keeps the old file and removes the temp file', () => {
  const dir = path.join(tmp, 'stall');
  const file = path.join(dir, 'x.json');
  atomicWriteFile(file, 'old contents\n');
  const spy = mock.method(fs, 'writeSync', (() => 0) as unknown as typeof fs.writeSync);
  try {
    assert.throws(
      () => atomicWriteFile(file, 'new contents, longer\n'),
      /x\.json: wrote 0 of 21 bytes.*disk full.*previous version of the file is kept/,
    );
  } finally {
    spy.mock.restore();
  }
  assert.equal(fs.readFileSync(file, 'utf8'), 'old contents\n');
  assert.deepEqual(files(dir), ['x.json']);
});

test('a group write renames nothing when any member fails to stage', () => {
  const dir = path.join(tmp, 'group');
  atomicWriteFiles([
    { file: path.join(dir, 'a.bin'), data: 'A1' },
    { file: path.join(dir, 'a.json'), data: 'J1' },
  ]);
  const real = fs.writeSync;
  let calls = 0;
  const spy = mock.method(fs, 'writeSync', ((...args: Parameters<typeof fs.writeSync>) => {
    if (++calls === 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return (real as (...a: unknown[]) => number)(...args);
  }) as typeof fs.writeSync);
  try {
    assert.throws(
      () =>
        atomicWriteFiles([
          { file: path.join(dir, 'a.bin'), data: 'A2' },
          { file: path.join(dir, 'a.json'), data: 'J2' },
        ]),
      /writing .*a\.json: ENOSPC.*; the previous version of the file is kept/,
    );
  } finally {
    spy.mock.restore();
  }
  assert.deepEqual(
    files(dir).map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]),
    [
      ['a.bin', 'A1'],
      ['a.json', 'J1'],
    ],
  );
});

/** Fill the disk (real tmpfs) or make writes fail (injected) so that at most `freeBytes` more fit. */
function fillDisk(freeBytes: number): () => void {
  if (mounted) {
    const filler = path.join(disk, 'filler');
    const free = fs.statfsSync(disk).bavail * fs.statfsSync(disk).bsize;
    fs.writeFileSync(filler, new Uint8Array(Math.max(0, free - freeBytes)));
    return () => fs.rmSync(filler, { force: true });
  }
  // Injected: the kernel's behaviour on a full disk: a short write of what fits, then ENOSPC.
  let left = freeBytes;
  const real = fs.writeSync;
  const spy = mock.method(fs, 'writeSync', ((fd: number, buf: Uint8Array, off?: number, len?: number, pos?: null) => {
    const want = len ?? buf.byteLength - (off ?? 0);
    if (left <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const n = real(fd, buf, off ?? 0, Math.min(want, left), pos);
    left -= n;
    return n;
  }) as typeof fs.writeSync);
  return () => spy.mock.restore();
}

function bestInfo(epoch: number): BestJson {
  return {
    metric: 'val_acc',
    value: 0.5 + epoch / 100,
    epoch,
    step: 10 * (epoch + 1),
    model: { name: 'tiny', numClasses: 3, classNames: ['a', 'b', 'c'] },
    config: makeTrainConfig({ epochs: 3, warmupEpochs: 0 }),
  };
}

test('full disk: the previous best.safetensors stays byte-identical and best.json still describes it', (t) => {
  t.diagnostic(mounted ? 'ran on a real 256 KiB tmpfs' : 'mount not permitted here: ENOSPC injected into fs.writeSync');
  const runDir = path.join(disk, 'run-best');
  const ck = path.join(runDir, 'checkpoints');
  const model = new TinyNet(8, 3, 1); // 8×8×3 → 16 → 3: ≈ 13 KB of weights
  saveBest(runDir, model, bestInfo(0));
  const before = fs.readFileSync(path.join(ck, 'best.safetensors'));
  const jsonBefore = fs.readFileSync(path.join(ck, 'best.json'), 'utf8');
  assert.ok(before.byteLength > 8192);

  // The next epoch is better, but the disk has filled up: only 4 KiB fit.
  const other = new TinyNet(8, 3, 2);
  const release = fillDisk(4096);
  try {
    assert.throws(() => saveBest(runDir, other, bestInfo(1)), /ENOSPC|disk full/);
  } finally {
    release();
  }
  assert.deepEqual(fs.readFileSync(path.join(ck, 'best.safetensors')), before, 'previous best byte-identical');
  assert.equal(fs.readFileSync(path.join(ck, 'best.json'), 'utf8'), jsonBefore, 'best.json unchanged');
  assert.deepEqual(files(ck), ['best.json', 'best.safetensors'], 'no temp files left');
  assert.equal(readBest(runDir)!.epoch, 0);

  // With room again the pair moves together to the new epoch.
  saveBest(runDir, other, bestInfo(1));
  assert.equal(readBest(runDir)!.epoch, 1);
  assert.notDeepEqual(fs.readFileSync(path.join(ck, 'best.safetensors')), before);
  model.dispose();
  other.dispose();
});

test('full disk on the first write: no fragment appears under the final name', () => {
  const runDir = path.join(disk, 'run-first');
  const model = new TinyNet(8, 3, 3);
  const release = fillDisk(2048);
  try {
    assert.throws(() => saveBest(runDir, model, bestInfo(0)), /ENOSPC|disk full/);
  } finally {
    release();
  }
  assert.deepEqual(files(path.join(runDir, 'checkpoints')), []);
  model.dispose();
});

test('full disk during a checkpoint: last.json still names the previous, complete step files', () => {
  const runDir = path.join(disk, 'run-ckpt');
  const model = new TinyNet(8, 3, 4);
  const args = (step: number) => ({
    modelModule: model,
    optimizerTensors: new Map([['exp_avg.head.weight', tf.ones([3, 16])]]),
    config: makeTrainConfig({ epochs: 3, warmupEpochs: 0 }),
    model: { name: 'tiny', numClasses: 3, classNames: ['a', 'b', 'c'] },
    position: { epoch: 0, batch: step, step },
    epochSums: { lossSum: 0, correct: 0, seen: 0 },
    optimizer: { kind: 'adam', step } as never,
    rng: { dropPath: { s: [1, 2, 3, 4] } as never, loader: {} },
    trackers: { best: {} as never, earlyStop: {} as never },
    history: [],
    status: 'running' as const,
  });
  const a1 = args(1);
  saveCheckpoint(runDir, a1);
  const ck = path.join(runDir, 'checkpoints');
  const weights1 = fs.readFileSync(path.join(ck, readCheckpoint(runDir)!.weights));
  const a2 = args(2);
  const release = fillDisk(4096);
  try {
    assert.throws(() => saveCheckpoint(runDir, a2), /ENOSPC|disk full/);
  } finally {
    release();
  }
  const last = readCheckpoint(runDir)!;
  assert.equal(last.position.step, 1);
  assert.deepEqual(fs.readFileSync(path.join(ck, last.weights)), weights1);
  assert.ok(!files(ck).some((f) => f.endsWith('.tmp') || f.startsWith('step-0000002')), files(ck).join(', '));
  for (const t of [...a1.optimizerTensors.values(), ...a2.optimizerTensors.values()]) t.dispose();
  model.dispose();
});

test('best.json names the weights by size and SHA-256: a swapped or truncated file is refused', () => {
  const runDir = path.join(tmp, 'run-sha');
  const model = new TinyNet(8, 3, 5);
  saveBest(runDir, model, bestInfo(0));
  const file = path.join(runDir, 'checkpoints', 'best.safetensors');
  fs.truncateSync(file, 1000);
  assert.throws(() => readBest(runDir), /best\.safetensors \(1000 bytes\) is not the file .*best\.json describes/);
  fs.rmSync(file);
  assert.throws(() => readBest(runDir), /names best\.safetensors, which is missing/);
  model.dispose();
});
