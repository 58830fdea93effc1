/**
 * Model benchmark: forward (eval) and one training step (Adam) of registered models at batch 8, per
 * backend and input size; seconds, images/s, peak RSS, and the threads, backend, machine and load they ran
 * with. Writes benchmarks/model.json and benchmarks/model.md.
 *
 *   npm run bench:model                                   every registered model at 64 px (microscopic-mamba-t
 *                                                         also 224 px), resnet18 also at batch 32, and PyTorch
 *   npm run bench:model -- --official ../Microscopic-Mamba   ... with the official model's PyTorch rows
 *   npm run bench:model -- --models resnet18,vit-tiny,swiftformer-xs --sizes 64 --merge
 *   npm run bench:model -- --backends wasm,webgpu --sizes 64
 *   npm run bench:model -- --profile --sizes 64           time per module type and per kernel, no files
 *
 * Every measurement runs in its own child process, so that its peak RSS (getrusage maxrss) is its own.
 * Every model gets the size as its shared `imageSize` option (ViT is built for it). For Microscopic-Mamba
 * the baseline measured in the same run is the same model with the portable `chunked` scan (tf ops only)
 * instead of `auto` (the fused kernel where the backend has one), at the smallest size.
 *
 * PyTorch side by side: after the kit's rows, the same run calls scripts/bench-pytorch.py (Debian's
 * /usr/bin/python3 with torch 1.13 / torchvision 0.14; MSM_PYTHON overrides) with the kit's thread count:
 * the official Microscopic-Mamba (`--official` or MSM_OFFICIAL_MM: its checkout or microscopicmamba.py;
 * reference and vectorised chunked scans) at 64 px batch 8, and torchvision's ResNet-18 at 64 px batch 32,
 * denormals flushed. The ratio column compares rows of this one run; without Python, torch or the official
 * file the PyTorch rows are skipped and the table says why.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend, threadsFromArgv } from '../lib/backend/index';
import { type ThreadInfo, threadInfo } from '../lib/backend/thread-info';
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
  /** The threads the measurement ran with (rows measured before this field have none). */
  threads?: ThreadInfo;
  /** When and under what load this row was measured (rows kept by --merge carry their own). */
  measured?: { date: string; loadAverage: string; machine?: string };
}

/** What scripts/bench-pytorch.py prints (the fields the table uses). */
interface PytorchRow {
  model: string;
  scan?: string;
  size: number;
  batch: number;
  forward?: number;
  train?: number;
}
interface PytorchResult {
  torch?: string;
  threads?: number;
  flushDenormal?: boolean;
  flushDenormalNote?: string;
  loadAverage?: { start: number; end?: number };
  machine?: { cpu: string; cores: number };
  rows: PytorchRow[];
  skipped: Array<{ what: string; reason: string }>;
}

const HELP = `Usage: npm run bench:model -- [options]
  --backends a,b     backends (default wasm; e.g. wasm,webgpu)
  --threads N        XNNPACK threads on wasm (sets MSM_THREADS; default MSM_THREADS, else see docs/platform.md)
  --sizes 64,224     input sizes (default 64,224 for microscopic-mamba-t, 64 for the other models)
  --sizes-NAME list  sizes for backend NAME only (e.g. --sizes-webgpu 64: llvmpipe is slow)
  --batch N          batch size (default 8)
  --resnet-batch N   also time resnet18 at the smallest size with batch N (default 32, the speed target's
                     ResNet-18 config; 0 = no)
  --reps N           timed repetitions after one warm-up (default 3 at ≤ 64 px, 2 above)
  --models a,b,c     registered models (npm run params -- --list), or all (the default: every registered model)
  --model NAME       one model (as --models NAME)
  --baseline-passes P  the baseline's passes: forward,train (default) or forward (its 64-px training step
                     runs for many minutes on a full 4 GB wasm heap)
  --job-timeout S    a measurement (one child process) that runs longer is stopped and reported as such
                     (default 1800)
  --no-baseline      skip Microscopic-Mamba's chunked-scan baseline (by default: microscopic-mamba-t only,
                     or every Microscopic-Mamba variant named in --models)
  --official PATH    the official Microscopic-Mamba checkout (or its microscopicmamba.py) for the PyTorch rows
                     (default MSM_OFFICIAL_MM; without it only torchvision's ResNet-18 is timed in PyTorch)
  --no-pytorch       skip scripts/bench-pytorch.py
  --pytorch-reps N   PyTorch timed repetitions (default --reps or 3)
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
    threads: threadInfo(),
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
    const calls = [...kernelTimes.values()].reduce((a, e) => a + e.calls, 0);
    console.log(
      `  kernels, exclusive time (a second run, ${timed.toFixed(0)} ms: ${inKernels.toFixed(0)} ms inside kernels, ` +
        `${(timed - inKernels).toFixed(0)} ms outside: engine, tape, JS; ${calls} kernel calls):`,
    );
    for (const [k, v] of [...kernelTimes].sort((a, b) => b[1].ms - a[1].ms).slice(0, 30)) {
      console.log(`  ${k.padEnd(36)} ${v.ms.toFixed(1).padStart(8)} ms  ${String(v.calls).padStart(5)} calls`);
    }
  }
}

function runChild(job: Job, timeoutS: number): Result {
  try {
    const out = execFileSync(process.execPath, ['--import', 'tsx', __filename, '--worker', JSON.stringify(job)], {
      encoding: 'utf8',
      env: { ...process.env, MSM_QUIET: '1' },
      maxBuffer: 1 << 24,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutS * 1000,
      killSignal: 'SIGKILL',
    });
    const line = out.trim().split('\n').pop()!;
    return JSON.parse(line) as Result;
  } catch (e) {
    // Keep going: a configuration that cannot run (e.g. out of wasm heap) is itself a result.
    const stderr = String((e as { stderr?: string }).stderr ?? (e as Error).message);
    const line = stderr.split('\n').find((l) => l.startsWith('bench-model worker failed: '));
    const rss = Number(/peak RSS (\d+) MB/.exec(line ?? '')?.[1] ?? NaN);
    let reason = line?.replace('bench-model worker failed: ', '').replace(/ \(peak RSS \d+ MB\)$/, '');
    const signal = (e as { signal?: string }).signal;
    if ((e as { code?: string }).code === 'ETIMEDOUT') reason ??= `did not finish in ${timeoutS} s (--job-timeout)`;
    reason ??=
      stderr.split('\n').find((l) => /Error|Abort/.test(l)) ??
      (signal ? `child process killed by ${signal} (the system's out-of-memory killer sends SIGKILL)` : undefined) ??
      'child process failed';
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

/** The Python that runs scripts/bench-pytorch.py: MSM_PYTHON, else Debian's (it has python3-torch), else python3. */
function pythonPath(): string {
  if (process.env.MSM_PYTHON) return process.env.MSM_PYTHON;
  return fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** Run scripts/bench-pytorch.py; a missing Python, torch or official file becomes a `skipped` reason. */
function runPytorch(args: string[]): PytorchResult {
  const script = path.join(__dirname, 'bench-pytorch.py');
  const python = pythonPath();
  process.stderr.write(`PyTorch: ${python} scripts/bench-pytorch.py ${args.join(' ')} ...\n`);
  try {
    const out = execFileSync(python, [script, ...args], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return JSON.parse(out) as PytorchResult;
  } catch (e) {
    const err = e as { code?: string; message: string; stderr?: string };
    const reason =
      err.code === 'ENOENT'
        ? `${python} not found (install Debian's python3-torch python3-torchvision, or set MSM_PYTHON)`
        : `scripts/bench-pytorch.py failed: ${err.message.split('\n')[0].slice(0, 200)}`;
    return { rows: [], skipped: [{ what: 'all', reason }] };
  }
}

/** One measurement session: date, load and machine of a row. */
function sessionKey(r: Result): string {
  return `${r.measured?.date}|${r.measured?.loadAverage ?? 'not recorded'}|${r.measured?.machine ?? 'a machine not recorded'}`;
}

/**
 * The PyTorch seconds a kit row is compared with (same run, same size and batch): for microscopic-mamba-t the
 * official model with the faster of its two scans for that pass (reference or vectorised chunked), for
 * resnet18 torchvision's.
 */
function pytorchSeconds(r: Result, pytorch: PytorchResult | undefined): number | undefined {
  const prefix = r.model === 'microscopic-mamba-t' ? 'microscopic-mamba-t' : r.model === 'resnet18' ? 'resnet18' : '';
  if (!prefix || r.impl === 'chunked') return undefined;
  const times = (pytorch?.rows ?? [])
    .filter((p) => p.model.startsWith(prefix) && p.size === r.size && p.batch === r.batch)
    .map((p) => (r.mode === 'forward' ? p.forward : p.train))
    .filter((t): t is number => typeof t === 'number');
  return times.length ? Math.min(...times) : undefined;
}

function markdown(results: Result[], meta: Record<string, string | number>, pytorch?: PytorchResult): string {
  const threadLines = [...new Set(results.filter((r) => r.threads).map((r) => `${r.backend}: ${r.threads!.text}`))];
  const lines = [
    '# Model benchmark: forward and training step',
    '',
    `Latest run: ${meta.cpu}, ${meta.cores} cores; Node ${meta.node}; tfjs ${meta.tfjs}.`,
    `Threads: ${threadLines.length ? threadLines.join('; ') : 'not recorded'}.`,
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
    `2 classes, float32, default model options (imageSize = the size). Seconds are the median of`,
    'the timed repetitions after one warm-up; peak RSS is the child process maximum (getrusage), including the wasm heap.',
    'The scan column applies to Microscopic-Mamba only. "vs PyTorch" compares with the PyTorch row of the same run',
    '(table below): microscopic-mamba-t with the official model and the faster of its two scans for that pass,',
    'resnet18 with torchvision.',
    '',
    '| model | backend | size | batch | pass | scan | seconds | images/s | peak RSS (MB) | vs chunked scan | vs PyTorch |',
    '|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|',
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
        `| ${r.model} | ${r.backend} | ${r.size} | ${r.batch} | ${pass} | ${scan(r)} | failed: ${r.error.replace(/\|/g, '/')} | | ${rss} | | |`,
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
    const torchSeconds = pytorchSeconds(r, pytorch);
    const torch = torchSeconds ? ratio(torchSeconds, r.seconds) : '';
    lines.push(
      `| ${r.model} | ${r.backend} | ${r.size} | ${r.batch} | ${pass} | ${scan(r)} | ` +
        `${r.seconds.toFixed(3)} | ${r.imagesPerSecond.toFixed(1)} | ${r.peakRssMB.toFixed(0)} | ` +
        `${base ? ratio(base.seconds, r.seconds) : ''} | ${torch} |`,
    );
  }
  lines.push('', '## PyTorch on the same machine, same run (scripts/bench-pytorch.py)', '');
  if (!pytorch) lines.push('Not measured in this run (--no-pytorch, or rows from before the PyTorch script).');
  else {
    if (pytorch.torch) {
      lines.push(
        `PyTorch ${pytorch.torch}, ${pytorch.threads} threads (torch.set_num_threads, the kit's count), ` +
          `${pytorch.flushDenormalNote ?? ''}; load average ${pytorch.loadAverage?.start.toFixed(1)} → ` +
          `${pytorch.loadAverage?.end?.toFixed(1) ?? '?'}.`,
        '',
        '| model | scan | size | batch | forward (s) | train step, Adam (s) |',
        '|---|---|---:|---:|---:|---:|',
        ...pytorch.rows.map(
          (p) =>
            `| ${p.model} | ${p.scan ?? '–'} | ${p.size} | ${p.batch} | ${p.forward?.toFixed(3) ?? ''} | ${p.train?.toFixed(3) ?? ''} |`,
        ),
      );
    }
    for (const sk of pytorch.skipped) lines.push('', `Skipped ${sk.what}: ${sk.reason}`);
  }
  lines.push(
    '',
    'Targets (this 2-core machine, wasm): 64 px batch 8 training step ≤ 0.45 s, forward ≤ 0.12 s, 224 px',
    'training step ≤ 4.5 s, peak RSS ≤ 3 GB at 64 px; resnet18 at 64 px batch 32 ≥ 0.5× PyTorch (the ratio column).',
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
  const named = arg('--models') ?? arg('--model');
  // Every registered model by default (so every model's step time is known), Microscopic-Mamba-t first.
  const all = ['microscopic-mamba-t', ...registered.map((m) => m.name).filter((n) => n !== 'microscopic-mamba-t')];
  const models = (!named || named === 'all' ? all : named.split(',')).filter(Boolean);
  const familyOf = (name: string) => {
    const meta = registered.find((m) => m.name === name);
    if (!meta)
      throw new Error(`--models: unknown model '${name}'. Registered: ${registered.map((m) => m.name).join(', ')}`);
    return meta.family;
  };
  const defaultSizes = (model: string) => (model === 'microscopic-mamba-t' ? '64,224' : '64');
  const sizesOf = (model: string) => (arg('--sizes') ?? defaultSizes(model)).split(',').map(Number);
  const resnetBatch = Number(arg('--resnet-batch') ?? 32);
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
      pytorch?: PytorchResult;
    };
    atomicWriteFile(path.join(out, 'model.md'), markdown(saved.results, saved.meta, saved.pytorch));
    return;
  }
  if (flag('--profile')) {
    const family = familyOf(models[0]);
    await profile({
      backend: backends[0],
      size: sizesOf(models[0])[0],
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
      const own = arg(`--sizes-${backend}`)?.split(',').map(Number) ?? sizesOf(model);
      // The fused (`auto`) scan at every size, then Microscopic-Mamba's `chunked` baseline at the smallest one
      // (by default for microscopic-mamba-t only: the other variants share its kernels).
      const runs: Array<[ScanImpl, number[], number]> = [['auto', own, batch]];
      const baseline = hasScanOptions({ family }) && (model === 'microscopic-mamba-t' || Boolean(named));
      if (!flag('--no-baseline') && baseline) runs.push(['chunked', [Math.min(...own)], batch]);
      // Issue 15's ResNet-18 config (64 px, batch 32), the one compared with torchvision.
      if (model === 'resnet18' && resnetBatch > 0 && resnetBatch !== batch) {
        runs.push(['auto', [Math.min(...own)], resnetBatch]);
      }
      const baselinePasses = (arg('--baseline-passes') ?? 'forward,train').split(',');
      for (const [impl, implSizes, b] of runs) {
        for (const size of implSizes) {
          for (const mode of ['forward', 'train'] as const) {
            if (impl === 'chunked' && !baselinePasses.includes(mode)) continue;
            jobs.push({
              backend,
              size,
              batch: b,
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
  const jobTimeoutS = Number(arg('--job-timeout') ?? 1800);
  const results: Result[] = [];
  for (const job of jobs) {
    const scan = hasScanOptions(job) ? ` (${job.impl} scan${job.checkpoint ? ', checkpointing' : ''})` : '';
    process.stderr.write(`${job.model} ${job.backend} ${job.size}px batch ${job.batch} ${job.mode}${scan} ... `);
    const r = runChild(job, jobTimeoutS);
    process.stderr.write(
      r.error
        ? `failed: ${r.error}\n`
        : `${r.seconds.toFixed(3)} s, ${r.imagesPerSecond.toFixed(1)} img/s, peak RSS ${r.peakRssMB.toFixed(0)} MB` +
            ` (${r.threads?.text ?? 'threads not reported'})\n`,
    );
    results.push(r);
  }
  // PyTorch in the same run, with as many threads as the kit used (the most any kit row ran with).
  let pytorch: PytorchResult | undefined;
  if (!flag('--no-pytorch')) {
    const threads = Math.max(1, ...results.map((r) => r.threads?.threads ?? 0));
    const size = results.some((r) => r.size === 64) ? 64 : Math.min(...results.map((r) => r.size));
    const official = arg('--official') ?? process.env.MSM_OFFICIAL_MM ?? '';
    pytorch = runPytorch([
      ...(official && models.includes('microscopic-mamba-t') ? ['--official', official] : []),
      '--threads',
      String(threads),
      '--size',
      String(size),
      '--batch',
      String(batch),
      '--resnet-batch',
      String(resnetBatch > 0 ? resnetBatch : batch),
      '--reps',
      String(Number(arg('--pytorch-reps') ?? arg('--reps') ?? 3)),
      ...(models.includes('resnet18') ? [] : ['--no-resnet']),
    ]);
    for (const sk of pytorch.skipped) process.stderr.write(`PyTorch: skipped ${sk.what}: ${sk.reason}\n`);
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
      pytorch?: PytorchResult;
    };
    pytorch ??= previous.pytorch; // --no-pytorch keeps the PyTorch rows of the run that measured them
    const sameRow = (a: Result, b: Result) =>
      a.model === b.model &&
      a.backend === b.backend &&
      a.size === b.size &&
      a.mode === b.mode &&
      a.impl === b.impl &&
      a.checkpoint === b.checkpoint &&
      a.batch === b.batch;
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
      r.batch,
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
  atomicWriteJson(path.join(out, 'model.json'), { meta, results, ...(pytorch ? { pytorch } : {}) });
  const md = markdown(results, meta, pytorch);
  atomicWriteFile(path.join(out, 'model.md'), md);
  console.log(md);
}

main().catch((e: Error) => {
  console.error(`bench-model: ${e.stack ?? e.message}`);
  process.exit(1);
});
