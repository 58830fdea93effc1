/**
 * Memory benchmark: does the training planner's estimate (lib/train/memory.ts) match the real wasm heap?
 *
 *   npx tsx scripts/bench-memory.ts                                      the default grid (64, 128, 224 px)
 *   npx tsx scripts/bench-memory.ts --jobs 224:8:on,224:4:off         size:batch:checkpointing[:microBatch]
 *
 * Each job runs in its own child process (a fresh 16 MiB wasm heap): the probe (batch 1 and 2 on a
 * throwaway copy of the model, as `npm run train` does), the estimate for the job's batch, then one real
 * Adam step with the Trainer. The heap never shrinks, so its size after the step is the step's high-water
 * mark (the probe's smaller steps stay below it); peak RSS is the child's getrusage maximum. A step that
 * traps is recorded as failed with the heap size reached. Writes benchmarks/memory.{json,md}.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { type ClassifierModel, createModel } from '../lib/models/index';
import { countParameters } from '../lib/nn/index';
import {
  HEAP_BASE_BYTES,
  HEAP_PER_TENSOR_BYTE,
  isMemoryTrap,
  linearPeak,
  microBatchSizes,
  peakAt,
  PROBE_SIZE,
  probeTrainStep,
  trainHeapEstimate,
  wasmHeapBytes,
  withPeakTensorBytes,
  type PlanInput,
} from '../lib/train/memory';
import { createOptimizer } from '../lib/train/optim';
import { namedTrainable, Trainer } from '../lib/train/trainer';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';
import { Rng } from '../lib/util/random';

interface Job {
  size: number;
  batch: number;
  checkpoint: boolean;
  microBatch: number;
}

interface Row extends Job {
  /** Engine tensor bytes resident before the step (weights, Adam moments after one step, the batch). */
  residentMiB: number;
  /** Peak tensor bytes of the real step above the resident ones. */
  stepPeakMiB: number;
  /** The probe's line: peak(b) = fixed + perImage · b. */
  probeFixedMiB: number;
  probePerImageMiB: number;
  /** The probe's prediction of the step's peak at the largest micro-batch. */
  predictedPeakMiB: number;
  /** The same from the PROBE_SIZE probe scaled by the pixel count. */
  scaledPeakMiB: number;
  estimateMiB: number;
  heapMiB: number;
  peakRssMiB: number;
  /** heap − base over resident + step peak: the measured HEAP_PER_TENSOR_BYTE. */
  heapPerTensorByte: number;
  seconds: number;
  error?: string;
}

const MiB = 2 ** 20;
const DEFAULT_JOBS =
  '64:8:off,64:32:off,128:4:off,128:8:off,128:8:on,224:2:off,224:4:off,224:4:on,224:8:on,224:58:on:8';

function parseJobs(spec: string): Job[] {
  return spec.split(',').map((j) => {
    const [size, batch, ck, micro] = j.split(':');
    return { size: +size, batch: +batch, checkpoint: ck === 'on', microBatch: micro ? +micro : +batch };
  });
}

function makeModel(checkpoint: boolean): ClassifierModel {
  return createModel('microscopic-mamba-t', { numClasses: 2, seed: 1, useCheckpoint: checkpoint });
}

async function worker(job: Job): Promise<void> {
  await initBackend('wasm', { quiet: true });
  const t0 = Date.now();
  // Probe exactly as lib/train/run.ts does, on a throwaway model.
  const probeModel = makeModel(job.checkpoint);
  const line = linearPeak(probeTrainStep(probeModel, job.size, 1), probeTrainStep(probeModel, job.size, 2));
  // The cheap probe `npm run train` uses where a real-size one could run out of memory: PROBE_SIZE, scaled.
  const small = linearPeak(probeTrainStep(probeModel, PROBE_SIZE, 1), probeTrainStep(probeModel, PROBE_SIZE, 2));
  const scaled = { fixed: small.fixed, perImage: small.perImage * (job.size / PROBE_SIZE) ** 2 };
  probeModel.dispose();

  const model = makeModel(job.checkpoint);
  const named = namedTrainable(model);
  const paramBytes = named.reduce((s, [, v]) => s + v.size * 4, 0);
  const modelBytes = countParameters(model).total * 4 + model.namedBuffers().reduce((s, [, b]) => s + b.size * 4, 0);
  const inp: PlanInput = {
    batchSize: job.batch,
    evalBatchSize: job.batch,
    imageSize: job.size,
    paramBytes,
    modelBytes,
    probe: { imageSize: job.size, train: line, forward: line },
    limit: { bytes: null, what: '' },
    microBatch: job.microBatch,
    evalMicroBatch: 0,
    checkpointing: job.checkpoint ? 'on' : 'off',
  };
  const sizes = microBatchSizes(job.batch, job.microBatch);
  const estimate = trainHeapEstimate(inp, line, sizes[0], sizes.length);
  const optimizer = createOptimizer(named, { kind: 'adam', lr: 1e-4 });
  const trainer = new Trainer(model, optimizer, {
    lr: 1e-4,
    schedule: { stepsPerEpoch: 1, epochs: 1, warmupEpochs: 0, warmupFactor: 1, endFactor: 1 },
    rng: new Rng(2),
    microBatch: job.microBatch,
  });
  const x = tf.randomNormal([job.batch, job.size, job.size, 3], 0, 1, 'float32', 3) as tf.Tensor4D; // [b, s, s, 3]
  const y = tf.tensor1d(
    Array.from({ length: job.batch }, (_, i) => i % 2),
    'int32',
  );
  // Adam creates its moments at the first update: count them as resident, as in a running training.
  const resident = tf.memory().numBytes + 2 * paramBytes;
  const pre: Partial<Row> = {
    ...job,
    residentMiB: resident / MiB,
    stepPeakMiB: NaN,
    probeFixedMiB: line.fixed / MiB,
    probePerImageMiB: line.perImage / MiB,
    predictedPeakMiB: peakAt(line, sizes[0]) / MiB,
    scaledPeakMiB: peakAt(scaled, sizes[0]) / MiB,
    estimateMiB: estimate / MiB,
    heapMiB: NaN,
    peakRssMiB: NaN,
    heapPerTensorByte: NaN,
    seconds: NaN,
  };
  process.stdout.write(`\nPRE ${JSON.stringify(pre)}\n`);
  let error: string | undefined;
  let stepPeak = NaN;
  try {
    stepPeak = withPeakTensorBytes(() => trainer.trainStep({ x, y }, 0)).peak;
  } catch (e) {
    if (!isMemoryTrap(e)) throw e;
    error = `out of wasm memory: ${(e as Error).message.split('\n')[0].slice(0, 60)}`;
  }
  const heap = wasmHeapBytes() ?? NaN;
  const row: Row = {
    ...job,
    residentMiB: resident / MiB,
    stepPeakMiB: stepPeak / MiB,
    probeFixedMiB: line.fixed / MiB,
    probePerImageMiB: line.perImage / MiB,
    predictedPeakMiB: peakAt(line, sizes[0]) / MiB,
    scaledPeakMiB: peakAt(scaled, sizes[0]) / MiB,
    estimateMiB: estimate / MiB,
    heapMiB: heap / MiB,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    heapPerTensorByte: (heap - HEAP_BASE_BYTES) / (resident + stepPeak),
    seconds: (Date.now() - t0) / 1000,
    ...(error ? { error } : {}),
  };
  process.stdout.write(`\nROW ${JSON.stringify(row)}\n`);
  process.exit(0); // after a trap the wasm runtime may be unusable: do not tear it down
}

function render(rows: Row[], when: string): string {
  const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '–');
  const lines = [
    "# Memory benchmark: the training planner's estimate against the real wasm heap",
    '',
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.cpus().length} cores; Node ${process.version}; tfjs ${tf.version.tfjs}; measured ${when}.`,
    '',
    'microscopic-mamba-t, 2 classes, one Adam step per fresh process (`npx tsx scripts/bench-memory.ts`). "probe" is the line',
    'through the peak tensor bytes of a forward+backward pass at batch 1 and 2 at the job\'s size; "from the 64-px probe" is',
    'the same probe at 64 px scaled by the pixel count (what `npm run train` uses where a real-size probe could itself',
    'run out of memory); "estimate" is the planner\'s heap estimate (lib/train/memory.ts: base ' +
      `${HEAP_BASE_BYTES / MiB} MiB + ${HEAP_PER_TENSOR_BYTE} × tensor bytes); "heap" is the wasm heap size after the step`,
    '(its high-water mark); the wasm heap maximum is 4096 MiB.',
    '',
    '| size | batch | micro-batch | checkpointing | probe: fixed + per image (MiB) | predicted step peak (MiB) | from the 64-px probe (MiB) | real step peak (MiB) | resident (MiB) | estimate (MiB) | heap (MiB) | heap / tensor bytes | peak RSS (MiB) | seconds |',
    '|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.size} | ${r.batch} | ${r.microBatch} | ${r.checkpoint ? 'on' : 'off'} | ${f(r.probeFixedMiB)} + ${f(r.probePerImageMiB)} | ` +
        `${f(r.predictedPeakMiB)} | ${f(r.scaledPeakMiB)} | ${r.error ? `failed: ${r.error}` : f(r.stepPeakMiB)} | ${f(r.residentMiB)} | ${f(r.estimateMiB)} | ` +
        `${f(r.heapMiB)} | ${r.error ? '–' : f(r.heapPerTensorByte, 2)} | ${f(r.peakRssMiB)} | ${f(r.seconds, 1)} |`,
    );
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--worker') return worker(JSON.parse(argv[1]) as Job);
  if (argv.includes('--help')) {
    console.log(
      'Usage: npx tsx scripts/bench-memory.ts [--jobs size:batch:on|off[:microBatch],...] [--out DIR]\n' +
        `default jobs: ${DEFAULT_JOBS}`,
    );
    return;
  }
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const jobs = parseJobs(get('--jobs') ?? DEFAULT_JOBS);
  const out = get('--out') ?? 'benchmarks';
  const rows: Row[] = [];
  for (const job of jobs) {
    let text: string;
    try {
      text = execFileSync(process.execPath, ['--import', 'tsx', __filename, '--worker', JSON.stringify(job)], {
        encoding: 'utf8',
        maxBuffer: 64 * MiB,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      // A wasm abort kills the child (emscripten rethrows it as an unhandled rejection): keep its last words.
      const err = e as { stdout?: string; stderr?: string };
      text = err.stdout ?? '';
      const why = (err.stderr ?? '').split('\n').find((l) => isMemoryTrap(l)) ?? 'the child failed';
      const pre = text.split('\n').find((l) => l.startsWith('PRE '));
      if (!pre) throw new Error(`bench-memory: job ${JSON.stringify(job)} failed before the step: ${err.stderr ?? ''}`);
      text += `\nROW ${JSON.stringify({ ...JSON.parse(pre.slice(4)), error: `out of wasm memory (${why.trim().slice(0, 50)})` })}\n`;
    }
    const line = text.split('\n').find((l) => l.startsWith('ROW '));
    if (!line) throw new Error(`bench-memory: job ${JSON.stringify(job)} printed no result`);
    const row = JSON.parse(line.slice(4)) as Row;
    console.log(
      `${row.size} px batch ${row.batch} micro ${row.microBatch} ckpt ${row.checkpoint ? 'on' : 'off'}: ` +
        `predicted peak ${row.predictedPeakMiB.toFixed(0)} MiB, real ${row.error ?? row.stepPeakMiB.toFixed(0)}; ` +
        `estimate ${row.estimateMiB.toFixed(0)} MiB, heap ${row.heapMiB.toFixed(0)} MiB, rss ${row.peakRssMiB.toFixed(0)} MiB, ${row.seconds.toFixed(1)} s`,
    );
    rows.push(row);
  }
  const when = new Date().toISOString();
  fs.mkdirSync(out, { recursive: true });
  atomicWriteJson(path.join(out, 'memory.json'), { measured: when, rows });
  atomicWriteFile(path.join(out, 'memory.md'), render(rows, when));
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
