/**
 * `study --dry-run`'s step-time probes run each configuration in its own process (lib/study/probe.ts): the
 * wasm heap of one process only grows, and probing the zoo study's 26 configurations in one process hit the
 * 4 GB wasm32 limit after 16 ("memory access out of bounds" for every later arm). Checked here on several
 * different models (reduced configurations, so the test stays short): every arm gets an estimate, this
 * process's wasm heap does not grow while they are probed, and a probe that fails costs only its own arm,
 * with a one-line reason.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { modelMeta } from '../lib/models/index';
import { estimateStudy, loadStudy, probeInChild } from '../lib/study/index';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-probe-'));
const MODELS = ['microscopic-mamba-t', 'resnet18', 'convnext-atto', 'mobileone-s0', 'repvit-m1.0', 'swiftformer-xs'];

/** Bytes of this process's wasm heap (its WebAssembly.Memory), which never shrinks. */
function wasmHeapBytes(): number {
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  assert.ok(wasm?.HEAPU8, 'the wasm backend exposes its heap');
  return wasm.HEAPU8.length;
}

function writeStudy(name: string, arms: unknown[]): string {
  const file = path.join(tmp, `${name}.json`);
  const def = {
    name,
    data: 'synthetic',
    recipe: 'cpu',
    train: { batchSize: 8, epochs: 1, warmupEpochs: 0 },
    seeds: [0],
    reference: (arms[0] as { label: string }).label,
    runsDir: path.join(tmp, 'runs'),
    arms,
  };
  fs.writeFileSync(file, JSON.stringify(def));
  return file;
}

before(async () => {
  await initBackend('wasm', { quiet: true });
});

after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('several arms are probed, each in its own process; this process keeps its heap', async () => {
  const arms = MODELS.map((model) => {
    const r = modelMeta(model).reducedConfig!;
    return { label: model, model, options: r.options, train: { imageSize: r.size } };
  });
  const study = loadStudy(writeStudy('several', arms));
  const heapBefore = wasmHeapBytes();
  const lines: string[] = [];
  const est = await estimateStudy(study, { probeSteps: 1, log: (l) => lines.push(l) });
  assert.equal(lines.filter((l) => l.startsWith('probing ')).length, MODELS.length, 'one probe per arm');
  for (const c of est.cells) {
    assert.equal(c.problem, undefined, `${c.cell.arm.label}: ${c.problem}`);
    assert.ok(c.secondsPerStep! > 0 && Number.isFinite(c.seconds!), `${c.cell.arm.label} has an estimate`);
  }
  assert.equal(wasmHeapBytes(), heapBefore, 'the probes ran elsewhere: this heap did not grow');
});

test('a failing probe costs only its own arm, with a one-line reason', async () => {
  const ok = modelMeta('convnext-atto').reducedConfig!;
  const study = loadStudy(
    writeStudy('failing', [
      { label: 'good', model: 'convnext-atto', options: ok.options, train: { imageSize: ok.size } },
      // Rejected by the model factory inside the child (unknown option), so the child exits with an error.
      { label: 'bad', model: 'resnet18', options: { notAnOption: 1 }, train: { imageSize: 32 } },
      {
        label: 'after',
        model: 'convnext-atto',
        options: { ...ok.options, dropPathRate: 0.1 },
        train: { imageSize: 32 },
      },
    ]),
  );
  const est = await estimateStudy(study, { probeSteps: 1 });
  const [good, bad, later] = est.cells;
  assert.ok(good.secondsPerStep! > 0 && later.secondsPerStep! > 0, 'the arms before and after the failure are probed');
  assert.equal(bad.secondsPerStep, null);
  assert.match(bad.problem!, /^probe of resnet18 at 32 px, batch 8 failed in its process \(exit 1\): .*notAnOption/);
  assert.doesNotMatch(bad.problem!, /\n/);
});

test('probeInChild returns the same kind of result as an in-process probe', () => {
  const r = modelMeta('swiftformer-xs').reducedConfig!;
  const study = loadStudy(
    writeStudy('one', [{ label: 'x', model: 'swiftformer-xs', options: r.options, train: { imageSize: r.size } }]),
  );
  const res = probeInChild(study.cells[0].config, 2, { warmup: 1, steps: 2 });
  assert.equal(res.steps, 2);
  assert.ok(res.secondsPerStep > 0 && res.secondsPerStep < 60);
});
