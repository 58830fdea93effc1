/**
 * Model benchmark: forward (eval) and one training step (Adam) of registered models at batch 8, per
 * backend and input size; seconds, images/s and peak RSS. Writes benchmarks/model.json and
 * benchmarks/model.md.
 *
 *   npm run bench:model                                   microscopic-mamba-t (64, 224 px) + a CNN and a ViT (64 px)
 *   npm run bench:model -- --models resnet18,vit-tiny,swiftformer-xs --sizes 64 --merge
 *   npm run bench:model -- --backends wasm,webgpu --sizes 64
 *   npm run bench:model -- --profile --sizes 64           time per module type and per kernel, no files
 *
 * Every measurement runs in its own child process, so that its peak RSS (getrusage maxrss) is its own.
 * Every model gets the size as its shared `imageSize` option (ViT is built for it). For Microscopic-Mamba
 * the baseline measured in the same run is the same model with the portable `chunked` scan (tf ops only)
 * instead of `auto` (the fused kernel where the backend has one), at the smallest size; for scale, the
 * table also lists the official PyTorch 1.13 timings of microscopic-mamba-t on this machine.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend, threadsFromArgv } from '../lib/backend/index';
import { type ClassifierModel, createModel, listModels, type ModelOptions } from '../lib/models/index';
import * as mm from '../lib/models/microscopic-mamba/index';
import * as nn from '../lib/nn/index';
import type { ScanImpl } from '../lib/ops/selective-scan/index';
import { createOptimizer } from '../lib/train/optim';
import { namedTrainable, Trainer } from '../lib/train/trainer';
import { Rng } from '../lib/util/random';
import { atomicWriteFile, atomicWriteJson } from '../lib/util/fs';

interface Job {
  backend: string;
  size: number;
  batch: number;
  mode: 'forward' | 'train';
  impl: ScanImpl;
  reps: number;
  model: string;
  /** Activation checkpointing in the training step (`useCheckpoint`). */
  checkpoint: boolean;
  /** The model's family (rows written before the zoo have none: Microscopic-Mamba). */
  family?: string;
}

/** Microscopic-Mamba takes the scan implementation and activation checkpointing as options; the others do not. */
const hasScanOptions = (job: Pick<Job, 'family'>) => (job.family ?? 'microscopic-mamba') === 'microscopic-mamba';

interface Result extends Job {
  /** Set when the measurement failed (e.g. the wasm heap ran out); the numbers are then NaN. */
  error?: string;
  seconds: number; // median over reps
  all: number[];
  imagesPerSecond: number;
  peakRssMB: number;
  backendInfo: string;
  /** When and under what load this row was measured (rows kept by --merge carry their own). */
  measured?: { date: string; loadAverage: string; machine?: string };
}

const HELP = `Usage: npm run bench:model -- [options]
  --backends a,b     backends (default wasm; e.g. wasm,webgpu)
  --threads N        XNNPACK threads on wasm (sets MSM_THREADS; default MSM_THREADS or all cores)
  --sizes 64,224     input sizes (default 64,224 for Microscopic-Mamba, 64 for the other models)
  --sizes-NAME list  sizes for backend NAME only (e.g. --sizes-webgpu 64: llvmpipe is slow)
  --batch N          batch size (default 8)
  --reps N           timed repetitions after one warm-up (default 3 at ≤ 64 px, 2 above)
  --models a,b,c     registered models (npm run params -- --list); default microscopic-mamba-t plus
                     resnet18 (or the first CNN) and vit-tiny (or the first ViT) when registered
  --model NAME       one model (as --models NAME)
  --no-baseline      skip Microscopic-Mamba's chunked-scan baseline
  --checkpoint MODE  activation checkpointing in the training step: auto (default: on above 64 px, where
                     batch 8 does not fit wasm's 4 GB heap otherwise), on, off
  --profile          print time per module type and per kernel for one forward and one train step
                     (first backend and size only); writes no files
  --render           only rewrite model.md from model.json (no measurements)
  --merge            keep the rows of the existing model.json that this run does not re-measure
  --out DIR          output folder (default benchmarks)
`;

function arg(name: string): string | undefined {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(name);
  if (i >= 0) return argv[i + 1];
  const eq = argv.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}
const flag = (name: string) => process.argv.slice(2).includes(name);

function randomBatch(b: number, size: number, classes: number, seed: number) {
  const rng = new Rng(seed);
  const x = tf.tensor4d(rng.fillNormal(b * size * size * 3), [b, size, size, 3]);
  const labels = tf.oneHot(
    tf.tensor1d(
      Array.from({ length: b }, () => rng.int(classes)),
      'int32',
    ),
    classes,
  );
  return { x, labels };
}

/**
 * The kit's own training step (what `npm run train` runs): forward, cross-entropy, backward, the
 * PyTorch-exact Adam update, and the host read of loss and accuracy. Each call is the next step.
 */
function kitTrainStep(model: ClassifierModel, x: tf.Tensor4D, labels: tf.Tensor, seed: number): () => void {
  const trainer = new Trainer(model, createOptimizer(namedTrainable(model), { lr: 1e-4 }), {
    lr: 1e-4,
    schedule: { stepsPerEpoch: 1000, epochs: 1, warmupEpochs: 0 },
    rng: new Rng(seed),
  });
  const y = tf.argMax(labels, 1) as tf.Tensor1D; // [b] int32
  let step = 0;
  return () => void trainer.trainStep({ x, y }, step++);
}

/** The options a job builds its model with: shared ones, plus the scan options where the model has them. */
function modelOptions(job: Job, numClasses: number): ModelOptions {
  const scan = hasScanOptions(job) ? { scanImpl: job.impl, useCheckpoint: job.checkpoint } : {};
  return { numClasses, seed: 0, imageSize: job.size, ...scan };
}

/** One measurement, run inside a child process. */
async function worker(job: Job): Promise<Result> {
  const info = await initBackend(job.backend, { quiet: true });
  const classes = 2;
  const model = createModel(job.model, modelOptions(job, classes));
  model.checkInput([job.batch, job.size, job.size, 3], 'float32');
  const { x, labels } = randomBatch(job.batch, job.size, classes, 1);
  const trainStep = kitTrainStep(model, x, labels, 2);
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    if (job.mode === 'forward') {
      model.eval();
      const y = model.forward(x, { training: false });
      await y.data();
      y.dispose();
    } else {
      trainStep();
    }
    return (performance.now() - t0) / 1000;
  };
  await once(); // warm-up: kernel compilation, Adam's moment variables, heap growth
  const all: number[] = [];
  for (let i = 0; i < job.reps; i++) all.push(await once());
  const sorted = [...all].sort((a, b) => a - b);
  const seconds = sorted[Math.floor(sorted.length / 2)];
  return {
    ...job,
    seconds,
    all,
    imagesPerSecond: job.batch / seconds,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
    backendInfo: describeBackend(info),
  };
}

/** --profile: exclusive wall time per module class (forward) and kernel time per kernel name. */
async function profile(job: Job): Promise<void> {
  console.log(describeBackend(await initBackend(job.backend, { quiet: true })));
  const model = createModel(job.model, modelOptions(job, 2));
  const { x, labels } = randomBatch(job.batch, job.size, 2, 1);
  const times = new Map<string, number>();
  const stack: number[] = [];
  const classes = { ...mm, ...nn } as Record<string, unknown>;
  for (const [name, cls] of Object.entries(classes)) {
    const proto = (cls as { prototype?: { forward?: (...a: unknown[]) => unknown } }).prototype;
    if (typeof cls !== 'function' || !proto?.forward || ['Sequential', 'Layer'].includes(name)) continue;
    const original = proto.forward;
    proto.forward = function (this: unknown, ...args: unknown[]) {
      const t0 = performance.now();
      stack.push(0);
      const out = original.apply(this, args);
      const dt = performance.now() - t0;
      const inner = stack.pop()!;
      times.set(name, (times.get(name) ?? 0) + dt - inner);
      if (stack.length) stack[stack.length - 1] += dt;
      return out;
    };
  }
  const forward = () => tf.tidy(() => model.forward(x, { training: false }).dataSync());
  const train = kitTrainStep(model, x, labels, 0);
  forward();
  train();
  // Exclusive time per kernel: every kernel of the backend wrapped with a timer that subtracts the time
  // of kernels it runs itself (the kit's composite kernels call other kernels; tf.profile would count
  // those twice, and it also reads every output back, which inflates the wasm figures).
  const kernelTimes = new Map<string, { ms: number; calls: number }>();
  const kernelStack: number[] = [];
  let timing = false;
  for (const k of tf.getKernelsForBackend(job.backend)) {
    const original = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, job.backend);
    tf.registerKernel({
      ...k,
      setupFunc: undefined, // already run at backend initialisation
      kernelFunc: (args) => {
        if (!timing) return original(args);
        const t0 = performance.now();
        kernelStack.push(0);
        const out = original(args);
        const dt = performance.now() - t0;
        const inner = kernelStack.pop()!;
        if (kernelStack.length) kernelStack[kernelStack.length - 1] += dt;
        const e = kernelTimes.get(k.kernelName) ?? { ms: 0, calls: 0 };
        e.ms += dt - inner;
        e.calls++;
        kernelTimes.set(k.kernelName, e);
        return out;
      },
    });
  }
  for (const [label, fn] of [
    ['forward (eval)', forward],
    ["train step (the trainer's, Adam)", train],
  ] as const) {
    times.clear();
    const t0 = performance.now();
    fn();
    const total = performance.now() - t0;
    console.log(
      `\n${label}: ${total.toFixed(0)} ms; exclusive time in each module's forward (wasm/cpu run synchronously):`,
    );
    for (const [k, v] of [...times].sort((a, b) => b[1] - a[1]))
      console.log(`  ${k.padEnd(24)} ${v.toFixed(1).padStart(8)} ms`);
    kernelTimes.clear();
    timing = true;
    const t1 = performance.now();
    fn();
    const timed = performance.now() - t1;
    timing = false;
    const inKernels = [...kernelTimes.values()].reduce((a, e) => a + e.ms, 0);
    console.log(
      `  kernels, exclusive time (a second run, ${timed.toFixed(0)} ms: ${inKernels.toFixed(0)} ms inside kernels, ` +
        `${(timed - inKernels).toFixed(0)} ms outside: engine, tape, JS):`,
    );
    for (const [k, v] of [...kernelTimes].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30)) {
      console.log(`  ${k.padEnd(36)} ${v.ms.toFixed(1).padStart(8)} ms  ${String(v.calls).padStart(5)} calls`);
    }
  }
}

function runChild(job: Job): Result {
  try {
    const out = execFileSync(process.execPath, ['--import', 'tsx', __filename, '--worker', JSON.stringify(job)], {
      encoding: 'utf8',
      env: { ...process.env, MSM_QUIET: '1' },
      maxBuffer: 1 << 24,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const line = out.trim().split('\n').pop()!;
    return JSON.parse(line) as Result;
  } catch (e) {
    // Keep going: a configuration that cannot run (e.g. out of wasm heap) is itself a result.
    const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message);
    const line = stderr.split('\n').find((l) => l.startsWith('bench-model worker failed: '));
    const rss = Number(/peak RSS (\d+) MB/.exec(line ?? '')?.[1] ?? NaN);
    let reason = line?.replace('bench-model worker failed: ', '').replace(/ \(peak RSS \d+ MB\)$/, '');
    reason ??= stderr.split('\n').find((l) => /Error|Abort/.test(l)) ?? 'child process failed';
    // wasm32's heap ends at 4 GiB: tfjs-backend-wasm's allocator then fails inside malloc
    if (rss > 3800) reason = `out of wasm memory (the 4 GB heap is full; ${reason.trim()})`;
    return {
      ...job,
      error: reason.trim().slice(0, 200),
      seconds: NaN,
      all: [],
      imagesPerSecond: NaN,
      peakRssMB: rss,
      backendInfo: '',
    };
  }
}

const PYTORCH = {
  note: 'official model, PyTorch 1.13, 2 threads, on the machine of the microscopic-mamba-t rows, 64 px, batch 8',
  trainReferenceScan: 19.9,
  trainVectorisedScan: 4.9,
  forward: 1.06,
};

/** One measurement session: date, load and machine of a row. */
function sessionKey(r: Result): string {
  return `${r.measured?.date}|${r.measured?.loadAverage ?? 'not recorded'}|${r.measured?.machine ?? 'a machine not recorded'}`;
}

function markdown(results: Result[], meta: Record<string, string | number>): string {
  const lines = [
    '# Model benchmark: forward and training step',
    '',
    `Latest run: ${meta.cpu}, ${meta.cores} cores; Node ${meta.node}; tfjs ${meta.tfjs}.`,
    // One line per measurement session (a --merge keeps older rows with their own date, load and machine).
    ...[...new Set(results.map(sessionKey))].map((key) => {
      const [date, load, machine] = key.split('|');
      const rows = results.filter((r) => sessionKey(r) === key);
      const what = [
        ...new Set(rows.map((r) => `${r.model} ${r.backend} ${r.size} px${r.impl === 'chunked' ? ' (chunked)' : ''}`)),
      ].join(', ');
      return `- ${what}: measured ${date} on ${machine}, 1-minute load average ${load}`;
    }),
    '',
    `2 classes, batch ${meta.batch}, float32, default model options (imageSize = the size). Seconds are the median of`,
    'the timed repetitions after one warm-up; peak RSS is the child process maximum (getrusage), including the wasm heap.',
    'The scan column applies to Microscopic-Mamba only.',
    '',
    '| model | backend | size | pass | scan | seconds | images/s | peak RSS (MB) | vs chunked scan | vs PyTorch 1.13 |',
    '|---|---|---:|---|---|---:|---:|---:|---:|---:|',
  ];
  const scan = (r: Result) => (hasScanOptions(r) ? r.impl : '–');
  /** "3.2× faster" / "2.0× slower": the reference's time over ours. */
  const ratio = (reference: number, ours: number) =>
    reference >= ours ? `${(reference / ours).toFixed(1)}× faster` : `${(ours / reference).toFixed(1)}× slower`;
  for (const r of results) {
    const pass =
      (r.mode === 'forward' ? 'forward (eval)' : 'train step (Adam)') + (r.checkpoint ? ', checkpointing' : '');
    if (r.error) {
      const rss = Number.isFinite(r.peakRssMB) ? r.peakRssMB.toFixed(0) : '';
      lines.push(
        `| ${r.model} | ${r.backend} | ${r.size} | ${pass} | ${scan(r)} | failed: ${r.error.replace(/\|/g, '/')} | | ${rss} | | |`,
      );
      continue;
    }
    const base = results.find(
      (b) =>
        b.impl === 'chunked' &&
        !b.error &&
        b.backend === r.backend &&
        b.size === r.size &&
        b.mode === r.mode &&
        b.model === r.model &&
        r.impl !== 'chunked',
    );
    const torch =
      r.size === 64 && r.batch === 8 && r.model === 'microscopic-mamba-t'
        ? ratio(r.mode === 'forward' ? PYTORCH.forward : PYTORCH.trainVectorisedScan, r.seconds)
        : '';
    lines.push(
      `| ${r.model} | ${r.backend} | ${r.size} | ${pass} | ${scan(r)} | ` +
        `${r.seconds.toFixed(3)} | ${r.imagesPerSecond.toFixed(1)} | ${r.peakRssMB.toFixed(0)} | ` +
        `${base ? ratio(base.seconds, r.seconds) : ''} | ${torch} |`,
    );
  }
  lines.push(
    '',
    `PyTorch reference (microscopic-mamba-t, ${PYTORCH.note}): training step ${PYTORCH.trainReferenceScan} s with the reference scan, ` +
      `${PYTORCH.trainVectorisedScan} s with a vectorised scan (the ratio column uses this one); forward ${PYTORCH.forward} s.`,
    'Targets (this 2-core machine, 64 px, batch 8, wasm): training step ≤ 1.0 s, forward ≤ 0.3 s, peak RSS ≤ 3 GB.',
    '"checkpointing": activation checkpointing per block (`useCheckpoint`, the official `use_checkpoint`): without it a',
    '224-px batch of 8 needs ~7 GB of saved activations, more than the wasm heap (4 GB) holds.',
    '',
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--worker') {
    try {
      console.log(JSON.stringify(await worker(JSON.parse(argv[1]) as Job)));
    } catch (e) {
      // The parent records the failure as the row's result; the peak RSS tells out-of-heap apart.
      const rss = Math.round(process.resourceUsage().maxRSS / 1024);
      console.error(`bench-model worker failed: ${(e as Error).message.split('\n')[0]} (peak RSS ${rss} MB)`);
      process.exit(1);
    }
    return;
  }
  if (flag('--help')) {
    process.stdout.write(HELP);
    return;
  }
  const threads = threadsFromArgv(); // reaches the measuring processes as MSM_THREADS
  if (threads !== undefined) process.env.MSM_THREADS = String(threads);
  const backends = (arg('--backends') ?? 'wasm').split(',');
  const registered = listModels();
  const pick = (preferred: string, family: string) =>
    registered.find((m) => m.name === preferred)?.name ?? registered.find((m) => m.family === family)?.name;
  const models = (
    arg('--models')?.split(',') ??
    (arg('--model') ? [arg('--model')!] : ['microscopic-mamba-t', pick('resnet18', 'cnn'), pick('vit-tiny', 'vit')])
  ).filter((m): m is string => Boolean(m));
  const familyOf = (name: string) => {
    const meta = registered.find((m) => m.name === name);
    if (!meta)
      throw new Error(`--models: unknown model '${name}'. Registered: ${registered.map((m) => m.name).join(', ')}`);
    return meta.family;
  };
  const defaultSizes = (family: string) => (family === 'microscopic-mamba' ? '64,224' : '64');
  const sizesOf = (family: string) => (arg('--sizes') ?? defaultSizes(family)).split(',').map(Number);
  const batch = Number(arg('--batch') ?? 8);
  const repsFor = (size: number) => Number(arg('--reps') ?? (size <= 64 ? 3 : 2));
  const checkpointMode = arg('--checkpoint') ?? 'auto';
  const checkpointFor = (size: number, mode: 'forward' | 'train', family: string) =>
    hasScanOptions({ family }) &&
    mode === 'train' &&
    (checkpointMode === 'on' || (checkpointMode === 'auto' && size > 64));
  if (flag('--render')) {
    // Only rewrite model.md from model.json (no measurements).
    const out = arg('--out') ?? path.resolve(__dirname, '../benchmarks');
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')) as {
      meta: Record<string, string | number>;
      results: Result[];
    };
    atomicWriteFile(path.join(out, 'model.md'), markdown(saved.results, saved.meta));
    return;
  }
  if (flag('--profile')) {
    const family = familyOf(models[0]);
    await profile({
      backend: backends[0],
      size: sizesOf(family)[0],
      batch,
      mode: 'forward',
      impl: 'auto',
      reps: 1,
      model: models[0],
      checkpoint: false,
      family,
    });
    return;
  }
  const jobs: Job[] = [];
  for (const model of models) {
    const family = familyOf(model);
    for (const backend of backends) {
      const own = arg(`--sizes-${backend}`)?.split(',').map(Number) ?? sizesOf(family);
      // The fused (`auto`) scan at every size, then Microscopic-Mamba's `chunked` baseline at the smallest one.
      const runs: Array<[ScanImpl, number[]]> = [['auto', own]];
      if (!flag('--no-baseline') && hasScanOptions({ family })) runs.push(['chunked', [Math.min(...own)]]);
      for (const [impl, implSizes] of runs) {
        for (const size of implSizes) {
          for (const mode of ['forward', 'train'] as const) {
            jobs.push({
              backend,
              size,
              batch,
              mode,
              impl,
              reps: repsFor(size),
              model,
              checkpoint: checkpointFor(size, mode, family),
              family,
            });
          }
        }
      }
    }
  }
  const loadBefore = os.loadavg()[0];
  const results: Result[] = [];
  for (const job of jobs) {
    const scan = hasScanOptions(job) ? ` (${job.impl} scan${job.checkpoint ? ', checkpointing' : ''})` : '';
    process.stderr.write(`${job.model} ${job.backend} ${job.size}px ${job.mode}${scan} ... `);
    const r = runChild(job);
    process.stderr.write(
      r.error
        ? `failed: ${r.error}\n`
        : `${r.seconds.toFixed(3)} s, ${r.imagesPerSecond.toFixed(1)} img/s, peak RSS ${r.peakRssMB.toFixed(0)} MB\n`,
    );
    results.push(r);
  }
  const measured = {
    date: new Date().toISOString(),
    loadAverage: `${loadBefore.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after`,
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'} (${os.cpus().length} cores)`,
  };
  for (const r of results) r.measured = measured;
  const out = arg('--out') ?? path.resolve(__dirname, '../benchmarks');
  if (flag('--merge') && fs.existsSync(path.join(out, 'model.json'))) {
    const previous = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')) as {
      meta: { date: string; loadAverage: string };
      results: Result[];
    };
    const sameRow = (a: Result, b: Result) =>
      a.model === b.model &&
      a.backend === b.backend &&
      a.size === b.size &&
      a.mode === b.mode &&
      a.impl === b.impl &&
      a.checkpoint === b.checkpoint;
    const kept = previous.results
      .filter((r) => !results.some((n) => sameRow(n, r)))
      .map((r) => ({
        ...r,
        measured: r.measured ?? { date: previous.meta.date, loadAverage: previous.meta.loadAverage ?? 'not recorded' },
      }));
    results.push(...kept);
    // Table order: backend as measured first, then the fused/auto rows before the chunked baseline, by size and pass.
    const order = (r: Result) => [
      models.indexOf(r.model) < 0 ? 99 : models.indexOf(r.model),
      backends.indexOf(r.backend) < 0 ? 99 : backends.indexOf(r.backend),
      r.impl === 'chunked' ? 1 : 0,
      r.size,
      r.mode === 'forward' ? 0 : 1,
    ];
    results.sort((a, b) => {
      const [x, y] = [order(a), order(b)];
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
      return 0;
    });
  }
  const meta = {
    cpu: os.cpus()[0]?.model ?? 'unknown CPU',
    cores: os.cpus().length,
    node: process.version,
    tfjs: tf.version.tfjs,
    date: new Date().toISOString(),
    // Other processes share the cores: the 1-minute load average before and after the run says how much.
    loadAverage: `${loadBefore.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after`,
    models: models.join(', '),
    batch,
  };
  atomicWriteJson(path.join(out, 'model.json'), { meta, pytorchReference: PYTORCH, results });
  const md = markdown(results, meta);
  atomicWriteFile(path.join(out, 'model.md'), md);
  console.log(md);
}

main().catch((e: Error) => {
  console.error(`bench-model: ${e.stack ?? e.message}`);
  process.exit(1);
});
