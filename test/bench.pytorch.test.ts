/**
 * scripts/bench-pytorch.py (the PyTorch side of `npm run bench:model`): its JSON parses and holds what the
 * TS bench reads; its vectorised chunked scan equals the reference scan; without torch it still prints
 * JSON, with the reason in `skipped`. Needs Debian's /usr/bin/python3 with python3-torch (skips otherwise);
 * the official model's row only with MSM_OFFICIAL_MM (the official checkout or microscopicmamba.py).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const SCRIPT = path.resolve(__dirname, '../scripts/bench-pytorch.py');
const PYTHON = process.env.MSM_PYTHON ?? '/usr/bin/python3';

function hasTorch(python: string): boolean {
  return spawnSync(python, ['-c', 'import torch, torchvision'], { encoding: 'utf8' }).status === 0;
}

const torchMissing = !fs.existsSync(PYTHON)
  ? `${PYTHON} does not exist (Debian's python3 with python3-torch; or set MSM_PYTHON)`
  : !hasTorch(PYTHON)
    ? `${PYTHON} cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)`
    : undefined;

interface BenchJson {
  torch?: string;
  threads?: number;
  flushDenormal?: boolean;
  rows: Array<{ model: string; scan?: string; size: number; batch: number; forward?: number; train?: number }>;
  skipped: Array<{ what: string; reason: string }>;
  maxRelativeDiff?: number;
}

function run(args: string[], python = PYTHON, timeout = 600_000): BenchJson {
  const r = spawnSync(python, [SCRIPT, ...args], { encoding: 'utf8', timeout, maxBuffer: 1 << 24 });
  assert.equal(r.status, 0, `bench-pytorch.py ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as BenchJson;
}

test(
  'bench-pytorch.py --check-scan: the chunked scan equals the reference scan (≤ 1e-5 relative)',
  { skip: torchMissing },
  () => {
    const j = run(['--check-scan', '--chunk', '7']); // a chunk that does not divide the length
    assert.ok(
      typeof j.maxRelativeDiff === 'number' && j.maxRelativeDiff <= 1e-5,
      `max relative diff ${j.maxRelativeDiff}`,
    );
  },
);

test(
  'bench-pytorch.py: ResNet-18 row as JSON, denormals flushed, threads set; no --official is a skip with a reason',
  { skip: torchMissing },
  () => {
    const j = run(['--threads', '1', '--size', '32', '--resnet-batch', '2', '--reps', '1', '--modes', 'forward,train']);
    assert.equal(j.threads, 1);
    assert.equal(j.flushDenormal, true, 'torch.set_flush_denormal(True) took effect');
    assert.match(j.torch ?? '', /^\d+\.\d+/);
    const row = j.rows.find((r) => r.model === 'resnet18 (torchvision)');
    assert.ok(row, 'a resnet18 row');
    assert.equal(row.size, 32);
    assert.equal(row.batch, 2);
    assert.ok(row.forward! > 0 && row.train! > 0, `positive seconds: ${JSON.stringify(row)}`);
    const skip = j.skipped.find((s) => s.what.startsWith('microscopic-mamba-t'));
    if (!process.env.MSM_OFFICIAL_MM) assert.match(skip?.reason ?? '', /no --official given/);
  },
);

test(
  'bench-pytorch.py: an --official path without microscopicmamba.py is a skip naming the path',
  { skip: torchMissing },
  () => {
    const j = run(['--official', '/nonexistent/Microscopic-Mamba', '--no-resnet', '--reps', '1']);
    assert.deepEqual(j.rows, []);
    assert.match(
      j.skipped.find((s) => s.what.startsWith('microscopic-mamba-t'))?.reason ?? '',
      /\/nonexistent\/Microscopic-Mamba/,
    );
  },
);

test(
  'bench-pytorch.py: the official model (MSM_OFFICIAL_MM) forward with the chunked scan',
  {
    skip:
      torchMissing ?? (process.env.MSM_OFFICIAL_MM ? undefined : 'MSM_OFFICIAL_MM is not set (the official checkout)'),
  },
  () => {
    const j = run([
      '--size',
      '32',
      '--batch',
      '1',
      '--reps',
      '1',
      '--scans',
      'chunked',
      '--modes',
      'forward',
      '--no-resnet',
    ]);
    const row = j.rows.find((r) => r.model === 'microscopic-mamba-t (official)');
    assert.ok(row, `an official row (skipped: ${JSON.stringify(j.skipped)})`);
    assert.equal(row.scan, 'chunked');
    assert.ok(row.forward! > 0);
  },
);

test('bench-pytorch.py without torch prints JSON whose skipped entry says so', (t) => {
  // Any python3 on PATH that lacks torch (e.g. a pyenv one) shows the path a user without PyTorch takes.
  const which = spawnSync('sh', ['-c', 'command -v python3'], { encoding: 'utf8' }).stdout.trim();
  if (!which || hasTorch(which)) {
    t.skip(`no python3 without torch on PATH to run it with (${which || 'none'})`);
    return;
  }
  const j = run(['--reps', '1'], which, 60_000);
  assert.deepEqual(j.rows, []);
  assert.match(j.skipped[0]?.reason ?? '', /PyTorch is not importable/);
});
