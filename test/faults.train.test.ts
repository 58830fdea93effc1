/**
 * Faults in training runs: one writer per run folder (lock file, stale lock taken over), `--resume` of a
 * mistyped name, and divergence (a blow-up is never checkpointed; `--resume` may lower the learning rate
 * and the log records it; the same NaN message in training and evaluation).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { acquireFolderLock, FolderLockedError, LOCK_FILE, readLock } from '../lib/util/lock';
import { readCheckpoint } from '../lib/train/checkpoint';
import { makeTrainConfig, type TrainConfig } from '../lib/train/config';
import { fit } from '../lib/train/fit';
import { readLog } from '../lib/train/logs';
import { trainRun } from '../lib/train/run';
import { evaluateModel, NonFiniteLossError, Trainer, namedTrainable } from '../lib/train/trainer';
import { Adam } from '../lib/train/optim';
import { NonFiniteWeightsError } from '../lib/train/divergence';
import { Rng } from '../lib/util/random';
import { TinyNet, ToySource, toyEvalBatches, toyImages } from './helpers/tiny-train';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-train-'));
const S = 4;
const K = 3;

before(async () => {
  await initBackend('wasm', { quiet: true });
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The pid of a process that has exited (so certainly not running). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  assert.equal(r.status, 0);
  return r.pid!;
}

test('lock: a second writer is refused, naming the holder (pid, host, command, start time)', () => {
  const dir = path.join(tmp, 'locked');
  const lock = acquireFolderLock(dir, { command: 'train' });
  const held = readLock(dir)!;
  assert.equal(held.pid, process.pid);
  assert.equal(held.host, os.hostname());
  assert.throws(
    () => acquireFolderLock(dir, { command: 'train --resume' }),
    (e: unknown) =>
      e instanceof FolderLockedError &&
      e.message.includes(`in use by pid ${process.pid} on ${os.hostname()} (train, since ${held.startedAt})`) &&
      e.message.includes(path.join(dir, LOCK_FILE)),
  );
  lock.release();
  assert.equal(readLock(dir), undefined);
  acquireFolderLock(dir, { command: 'train' }).release(); // free again
});

test('lock: a stale lock (dead pid on this host) is taken over with a warning; another host’s is not', () => {
  const dir = path.join(tmp, 'stale');
  fs.mkdirSync(dir);
  const pid = deadPid();
  const stale = { pid, host: os.hostname(), startedAt: '2026-01-01T00:00:00.000Z', command: 'train' };
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(stale));
  const warnings: string[] = [];
  const lock = acquireFolderLock(dir, { command: 'train --resume', warn: (l) => warnings.push(l) });
  assert.equal(readLock(dir)!.pid, process.pid);
  assert.match(warnings.join('\n'), new RegExp(`taking over the stale lock .*pid ${pid} on .*is no longer running`));
  lock.release();

  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify({ ...stale, host: 'some-other-node' }));
  assert.throws(() => acquireFolderLock(dir, { command: 'train' }), /in use by pid \d+ on some-other-node/);
});

test('train refuses a run folder another process writes to, and leaves its lock alone', async () => {
  const runsDir = path.join(tmp, 'runs-lock');
  const dir = path.join(runsDir, 'busy');
  fs.mkdirSync(dir, { recursive: true });
  // A live process on this host holds it: this test process's parent (the test runner).
  const holder = { pid: process.ppid, host: os.hostname(), startedAt: new Date().toISOString(), command: 'train' };
  fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(holder));
  await assert.rejects(
    trainRun(makeTrainConfig({ name: 'busy', runsDir, data: 'synthetic' }), { log: () => {} }),
    new RegExp(`busy is in use by pid ${process.ppid} on ${os.hostname()} \\(train, since`),
  );
  assert.deepEqual(readLock(dir), holder);
});

test('--resume (ifNoCheckpoint: error) with a mistyped name lists the runs that exist and starts nothing', async () => {
  const runsDir = path.join(tmp, 'runs-typo');
  for (const name of ['malaria-cpu', 'mhist-paper']) {
    fs.mkdirSync(path.join(runsDir, name), { recursive: true });
    fs.writeFileSync(path.join(runsDir, name, 'run.json'), '{}');
  }
  await assert.rejects(
    trainRun(makeTrainConfig({ name: 'malaria-cppu', runsDir, resume: true }), {
      log: () => {},
      ifNoCheckpoint: 'error',
    }),
    /--resume: no run named 'malaria-cppu' \(runs in .*runs-typo: malaria-cpu, mhist-paper\); check --name/,
  );
  assert.deepEqual(fs.readdirSync(runsDir).sort(), ['malaria-cpu', 'mhist-paper'], 'no new run folder');
  // A run folder that exists but stopped before its first checkpoint: say so (and still start nothing).
  await assert.rejects(
    trainRun(makeTrainConfig({ name: 'mhist-paper', runsDir, resume: true }), {
      log: () => {},
      ifNoCheckpoint: 'error',
    }),
    /mhist-paper has no checkpoint yet .*start it again without --resume/,
  );
});

function toyFit(dir: string, config: TrainConfig, model: TinyNet, resume = false) {
  const source = new ToySource(toyImages(32, S, K, 1), S, 8, 3);
  return fit({
    runDir: dir,
    config,
    model,
    modelInfo: { name: 'tiny', numClasses: K, classNames: ['a', 'b', 'c'] },
    train: source,
    val: () => toyEvalBatches(toyImages(9, S, K, 2), S, 16),
    resume: resume ? readCheckpoint(dir) : undefined,
    progress: { mode: 'off' },
  });
}

test('divergence: weights that blow up are never checkpointed; --resume with a lower lr continues and is logged', async () => {
  const dir = path.join(tmp, 'diverge');
  const base = { epochs: 3, warmupEpochs: 0, batchSize: 8, seed: 3, patience: 0, ckptEvery: 1 };
  // Two good steps (checkpoint at step 2).
  const m1 = new TinyNet(S, K, 3);
  await toyFit(dir, makeTrainConfig({ ...base, lr: 1e-3, maxSteps: 2 }), m1);
  m1.dispose();
  assert.equal(readCheckpoint(dir)!.position.step, 2);

  // Resumed with an absurd learning rate: step 3's loss is still finite (computed before the update) but
  // the update makes the weights infinite. The checkpoint after step 3 must not be written.
  const m2 = new TinyNet(S, K, 3);
  await assert.rejects(toyFit(dir, makeTrainConfig({ ...base, lr: 1e39, maxSteps: 6 }), m2, true), (e: unknown) => {
    assert.ok(e instanceof NonFiniteWeightsError, String(e));
    assert.match((e as Error).message, /^the model diverged: weight '[\w.]+' is (-?Infinity|NaN) at step 3 /);
    assert.match((e as Error).message, /Kept checkpoint: step 2; continue with --resume --lr <smaller>/);
    return true;
  });
  m2.dispose();
  const kept = readCheckpoint(dir)!;
  assert.equal(kept.position.step, 2, 'the last checkpoint is the one before the blow-up');
  assert.ok(!fs.readdirSync(path.join(dir, 'checkpoints')).some((f) => f.startsWith('step-0000003')));
  const events = readLog(path.join(dir, 'log.jsonl')).filter((l) => l.type === 'event') as Array<
    Record<string, unknown>
  >;
  const diverged = events.find((l) => l.event === 'diverged')!;
  assert.equal(diverged.kept_checkpoint, 'step 2');

  // --resume with a smaller lr continues from step 2; the log records the change.
  const m3 = new TinyNet(S, K, 3);
  const r = await toyFit(dir, makeTrainConfig({ ...base, lr: 5e-4, maxSteps: 4 }), m3, true);
  m3.dispose();
  assert.equal(r.position.step, 4);
  const resumes = (readLog(path.join(dir, 'log.jsonl')) as Array<Record<string, unknown>>).filter(
    (l) => l.event === 'resume',
  );
  assert.deepEqual(
    resumes.map((l) => [l.lr, l.previous_lr]),
    [
      [1e39, 1e-3],
      [5e-4, 1e-3],
    ],
    'each resume that changed the lr names the new and the old one',
  );
});

test('the NaN message is the same in training and in evaluation', async () => {
  const model = new TinyNet(S, K, 7);
  const opt = new Adam(namedTrainable(model), { lr: 0.01 });
  const trainer = new Trainer(model, opt, { lr: 0.01, schedule: { stepsPerEpoch: 4, epochs: 2 }, rng: new Rng(1) });
  const d = toyImages(8, S, K, 1);
  const x = tf.mul(tf.tensor4d(d.x, [8, S, S, 3]), NaN) as tf.Tensor4D;
  const y = tf.tensor1d(d.y, 'int32');
  let trainMsg = '';
  try {
    trainer.trainStep({ x, y }, 0, { epoch: 0, batch: 1 });
  } catch (e) {
    assert.ok(e instanceof NonFiniteLossError);
    trainMsg = (e as Error).message;
  }
  opt.dispose();
  // Evaluation of weights that hold NaN: before, this surfaced as "probs[0][0] = NaN is not finite".
  const w = model.fc1.weight;
  w.assign(tf.fill(w.shape, NaN));
  let evalMsg = '';
  await evaluateModel(model, toyEvalBatches(toyImages(9, S, K, 2), S, 4)).catch((e: Error) => (evalMsg = e.message));
  tf.dispose([x, y]);
  model.dispose();
  assert.match(trainMsg, /^the model diverged: loss is NaN at epoch 1, batch 2 \(optimizer step 1\) of training; /);
  assert.match(evalMsg, /^the model diverged: loss is NaN at batch 1 \(images 1–4\) of evaluation; /);
});
