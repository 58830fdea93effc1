/**
 * `npm run bench:threads [-- flags]`: the wasm backend on 1 thread and on several, side by side in one
 * process: XNNPACK's kernels on its pthread workers (lib/backend/wasm-threads.ts, docs/platform.md §wasm
 * in Node) and the kit's own heap kernels (GEMMs of the conv gradients, im2col / col2im, MaxPoolGrad,
 * matMul) on the process's worker pool (lib/backend/heap-threads.ts).
 *
 * Workload: one training step of a conv stack at 64 px, batch 32 (3×3 conv 32→64, ReLU, 3×3 depthwise,
 * 1×1 conv 64→64, ReLU, global mean; gradients for the input and every filter), the two gradient kernels
 * of a ResNet-18 layer-1 conv alone (Conv2DBackpropFilter and Conv2DBackpropInput, 3×3 64→64 at 16 px for
 * 64 px inputs, batch 32: im2col / col2im + GEMM, the kit's kernels only), a 2-D matMul
 * [4096, 256]·[256, 256] with its gradients, and the kit's training step of a model (`--model`, default
 * microscopic-mamba-t, 64 px, batch 8: forward, cross-entropy, backward, Adam; as `npm run bench:model`). For each round every thread count is started in turn (which
 * re-creates the backend), warmed up once and timed `--reps` times; rounds alternate the order, so a load
 * change hits all counts alike. Prints the median over rounds of each count's fastest rep, the speedup over
 * 1 thread, the load average, and (on Linux) how the CPU time of the timed steps split between the main
 * thread, XNNPACK's pthread workers and the pool's workers: the evidence that work reaches the other
 * threads even when a busy machine hides the speedup. 'vs heap on 1': on the same backend start, the conv
 * gradients and the model step timed again with MSM_HEAP_THREADS=1 (XNNPACK still threaded, the kit's
 * heap kernels on the calling thread), as that time over the threaded one: above 1, the pool helps.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../lib/backend/index';
import { availableCores, MAX_WASM_THREADS } from '../lib/backend/wasm-threads';
import { workerPool } from '../lib/backend/worker-pool';
import { createModel } from '../lib/models/index';
import { createOptimizer } from '../lib/train/optim';
import { namedTrainable, Trainer } from '../lib/train/trainer';
import { Rng } from '../lib/util/random';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run bench:threads --',
  summary: 'wasm backend: XNNPACK convs and matMul on 1 thread and on several, side by side in one process.',
  backend: false,
  flags: [
    {
      key: 'counts',
      type: 'string',
      default: '',
      help: `thread counts to compare, e.g. 1,2,4 (default 1 and all cores, at most ${MAX_WASM_THREADS})`,
    },
    { key: 'rounds', type: 'number', default: 3, help: 'rounds (each times every count)' },
    { key: 'reps', type: 'number', default: 3, help: 'timed steps per count and round (the fastest counts)' },
    { key: 'batch', type: 'number', default: 32, help: 'batch of the conv stack' },
    { key: 'size', type: 'number', default: 64, help: 'image size of the conv stack and the model (px)' },
    {
      key: 'model',
      type: 'string',
      default: 'microscopic-mamba-t',
      help: "model whose training step is timed ('' = none)",
    },
    { key: 'modelBatch', type: 'number', default: 8, help: 'batch of the model step' },
  ],
};

interface Inputs {
  x: tf.Tensor4D;
  w1: tf.Tensor4D;
  dw: tf.Tensor4D;
  w2: tf.Tensor4D;
  a: tf.Tensor2D;
  b: tf.Tensor2D;
  /** the layer-1 conv of the gradient row: its input, output gradient and filter */
  gx: tf.Tensor4D;
  gdy: tf.Tensor4D;
  gw: tf.Tensor4D;
}

/** ResNet-18 layer 1 at 64 px inputs: 16 × 16 maps of 64 channels (after the stem's stride 4). */
const GRAD_CONV = { side: 16, channels: 64 };

function makeInputs(batch: number, size: number): Inputs {
  const t4 = (shape: [number, number, number, number], seed: number, scale: number) =>
    tf.tensor4d(
      new Rng(seed).fillNormal(
        shape.reduce((p, v) => p * v, 1),
        0,
        scale,
      ),
      shape,
    );
  return {
    x: t4([batch, size, size, 32], 1, 1), // [b, h, w, 32]
    w1: t4([3, 3, 32, 64], 2, 0.06),
    dw: t4([3, 3, 64, 1], 3, 0.3),
    w2: t4([1, 1, 64, 64], 4, 0.12),
    a: tf.tensor2d(new Rng(5).fillNormal(4096 * 256), [4096, 256]),
    b: tf.tensor2d(new Rng(6).fillNormal(256 * 256, 0, 0.06), [256, 256]),
    ...(() => {
      const [s, c] = [Math.max(1, Math.round((GRAD_CONV.side * size) / 64)), GRAD_CONV.channels];
      return { gx: t4([batch, s, s, c], 7, 1), gdy: t4([batch, s, s, c], 8, 1), gw: t4([3, 3, c, c], 9, 0.05) };
    })(),
  };
}

/** The two gradient kernels of a 3×3 'same' conv alone (no forward): dW = Conv2DBackpropFilter, dx = Conv2DBackpropInput. */
function convGradStep(t: Inputs): void {
  const attrs = { strides: [1, 1], pad: 'same', dataFormat: 'NHWC', dimRoundingMode: undefined };
  tf.tidy(() => {
    const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: t.gx, dy: t.gdy }, {
      ...attrs,
      filterShape: t.gw.shape,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
    const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy: t.gdy, filter: t.gw }, {
      ...attrs,
      inputShape: t.gx.shape,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
    dw.dataSync();
    dx.dataSync();
  });
}

/** One training step of the conv stack: forward, then gradients for the input and the three filters. */
function convStep(t: Inputs): void {
  tf.tidy(() => {
    const loss = (x: tf.Tensor, w1: tf.Tensor, dw: tf.Tensor, w2: tf.Tensor) => {
      const h1 = tf.relu(tf.conv2d(x as tf.Tensor4D, w1 as tf.Tensor4D, 1, 'same')); // [b, h, w, 64]
      const h2 = tf.depthwiseConv2d(h1, dw as tf.Tensor4D, 1, 'same'); // [b, h, w, 64]
      const h3 = tf.relu(tf.conv2d(h2, w2 as tf.Tensor4D, 1, 'same')); // [b, h, w, 64]
      return tf.mean(h3);
    };
    const grads = tf.grads(loss)([t.x, t.w1, t.dw, t.w2]);
    for (const g of grads) g.dataSync();
  });
}

/** A 2-D matMul and both its gradients. */
function matMulStep(t: Inputs): void {
  tf.tidy(() => {
    const [ga, gb] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.matMul(a, b)))([t.a, t.b]); // [4096, 256] · [256, 256]
    ga.dataSync();
    gb.dataSync();
  });
}

/** The kit's training step of `name` (forward, cross-entropy, backward, Adam), as bench:model times it. */
function modelStep(name: string, batch: number, size: number): { step: () => void; dispose: () => void } {
  const model = createModel(name, { numClasses: 2, seed: 0, imageSize: size });
  const rng = new Rng(7);
  const x = tf.tensor4d(rng.fillNormal(batch * size * size * 3), [batch, size, size, 3]); // [b, h, w, 3]
  const y = tf.tensor1d(
    Array.from({ length: batch }, () => rng.int(2)),
    'int32',
  ); // [b]
  const trainer = new Trainer(model, createOptimizer(namedTrainable(model), { lr: 1e-4 }), {
    lr: 1e-4,
    schedule: { stepsPerEpoch: 1000, epochs: 1, warmupEpochs: 0 },
    rng: new Rng(8),
  });
  let n = 0;
  return {
    step: () => void trainer.trainStep({ x, y }, n++),
    dispose: () => {
      tf.dispose([x, y]);
      model.dispose();
    },
  };
}

const PROC_TASKS = '/proc/self/task';

/** CPU clock ticks of each thread of this process (empty where /proc is unavailable). */
function threadTicks(): Map<string, number> {
  const ticks = new Map<string, number>();
  if (!fs.existsSync(PROC_TASKS)) return ticks;
  for (const tid of fs.readdirSync(PROC_TASKS)) {
    try {
      const stat = fs.readFileSync(`${PROC_TASKS}/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks.set(tid, Number(fields[11]) + Number(fields[12])); // utime + stime
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return ticks;
}

interface Sample {
  conv: number;
  convGrad: number;
  /** conv gradients and model step on the same backend with the heap kernels kept on the calling thread (MSM_HEAP_THREADS=1) */
  convGradHeap1: number;
  modelHeap1: number;
  matMul: number;
  /** the model's training step (NaN without --model) */
  model: number;
  /** CPU ticks of the timed steps: main thread, the threads that started with this backend, the pool's workers */
  mainTicks: number;
  workerTicks: number;
  poolTicks: number;
}

interface Workload {
  reps: number;
  batch: number;
  size: number;
  model: string;
  modelBatch: number;
}

async function measure(threads: number, w: Workload, poolTids: string[]): Promise<Sample> {
  const { reps, batch, size } = w;
  const before = new Set(threadTicks().keys());
  const info = await initBackend('wasm', { threads, quiet: true });
  if (info.details.threads !== threads) throw new Error(`asked for ${threads} threads, ${describeBackend(info)}`);
  const workers = [...threadTicks().keys()].filter((tid) => !before.has(tid));
  const inputs = makeInputs(batch, size);
  const trained = w.model ? modelStep(w.model, w.modelBatch, size) : undefined;
  try {
    convStep(inputs); // warm-up: XNNPACK packs the filters, V8 tiers up, Adam creates its moments
    convGradStep(inputs);
    matMulStep(inputs);
    trained?.step();
    const t0 = threadTicks();
    const fastest = (step: () => void) => {
      let best = Infinity;
      for (let r = 0; r < reps; r++) {
        const start = process.hrtime.bigint();
        step();
        best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
      }
      return best;
    };
    const conv = fastest(() => convStep(inputs));
    const convGrad = fastest(() => convGradStep(inputs));
    const matMul = fastest(() => matMulStep(inputs));
    const model = trained ? fastest(trained.step) : NaN;
    // The kit's heap kernels on the calling thread only, XNNPACK still on `threads` (not in the CPU columns).
    const t1 = threadTicks();
    const [convGradHeap1, modelHeap1] =
      threads === 1
        ? [convGrad, model]
        : heapOnOneThread(() => [fastest(() => convGradStep(inputs)), trained ? fastest(trained.step) : NaN]);
    const used = (tid: string) => (t1.get(tid) ?? 0) - (t0.get(tid) ?? 0);
    return {
      conv,
      convGrad,
      convGradHeap1,
      modelHeap1,
      matMul,
      model,
      mainTicks: used(String(process.pid)),
      workerTicks: workers.reduce((s, tid) => s + used(tid), 0),
      poolTicks: poolTids.reduce((s, tid) => s + used(tid), 0),
    };
  } finally {
    tf.dispose(Object.values(inputs));
    trained?.dispose();
  }
}

/** Runs `f` with MSM_HEAP_THREADS=1 (lib/backend/heap-threads.ts): the kit's heap kernels on the calling thread. */
function heapOnOneThread<T>(f: () => T): T {
  const saved = process.env.MSM_HEAP_THREADS;
  process.env.MSM_HEAP_THREADS = '1';
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.MSM_HEAP_THREADS;
    else process.env.MSM_HEAP_THREADS = saved;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs(process.argv.slice(2), SPEC);
  const cores = availableCores();
  const counts = ((values.counts as string) || `1,${Math.min(cores, MAX_WASM_THREADS)}`)
    .split(',')
    .map((s) => Number(s.trim()));
  for (const c of counts) {
    if (!Number.isInteger(c) || c < 1 || c > MAX_WASM_THREADS)
      throw new CliError(`flag --counts: '${c}' is not a thread count from 1 to ${MAX_WASM_THREADS}`);
  }
  const unique = [...new Set(counts)];
  const [rounds, reps, batch, size, modelBatch] = ['rounds', 'reps', 'batch', 'size', 'modelBatch'].map(
    (k) => values[k] as number,
  );
  const model = values.model as string;
  for (const [k, v] of Object.entries({ rounds, reps, batch, size, modelBatch })) {
    if (!Number.isInteger(v) || v < 1) throw new CliError(`flag --${k} needs a whole number ≥ 1, got '${v}'`);
  }
  const load0 = os.loadavg();
  const gs = Math.max(1, Math.round((GRAD_CONV.side * size) / 64));
  console.log(
    `conv stack ${batch}×${size}×${size}×32 (3×3 conv → 64, depthwise 3×3, 1×1 conv) training step; conv ` +
      `gradients (filter + input) of a 3×3 ${GRAD_CONV.channels}→${GRAD_CONV.channels} conv on ${batch}×${gs}×${gs}; matMul ` +
      `[4096, 256]·[256, 256] with gradients${model ? `; ${model} training step, ${size} px, batch ${modelBatch}` : ''}. ` +
      `${cores} cores available; thread counts ${unique.join(', ')}; ` +
      `${rounds} rounds × ${reps} reps (fastest rep per round, median over rounds).`,
  );
  // The process's worker pool (the kit's heap kernels and the selective scan) starts its threads at first
  // use and keeps them; start as many as the largest count needs now, so its threads are told apart from
  // those that come with each backend start (XNNPACK's pthread workers).
  const beforePool = new Set(threadTicks().keys());
  workerPool().prestart(Math.max(...unique) - 1);
  await new Promise((r) => setTimeout(r, 200)); // let their OS threads appear
  const poolTids = [...threadTicks().keys()].filter((tid) => !beforePool.has(tid));
  if (model) {
    // The selective scan's threads are the pool's (started above); its first call compiles and sizes it.
    await initBackend('wasm', { threads: unique[0], quiet: true });
    const warm = modelStep(model, modelBatch, size);
    warm.step();
    warm.dispose();
  }
  const samples = new Map<number, Sample[]>(unique.map((c) => [c, []]));
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? unique : [...unique].reverse();
    for (const c of order) {
      const s = await measure(c, { reps, batch, size, model, modelBatch }, poolTids);
      samples.get(c)!.push(s);
      console.log(
        `  round ${round + 1}, ${c} thread${c > 1 ? 's' : ''}: conv step ${s.conv.toFixed(0)} ms, conv ` +
          `gradients ${s.convGrad.toFixed(1)} ms (heap kernels on 1 thread: ${s.convGradHeap1.toFixed(1)} ms), matMul ` +
          `${s.matMul.toFixed(1)} ms${model ? `, ${model} step ${s.model.toFixed(0)} ms` : ''}`,
      );
    }
  }
  const load1 = os.loadavg();
  const base = samples.get(unique[0])!;
  const rows = unique.map((c) => {
    const ss = samples.get(c)!;
    const conv = median(ss.map((s) => s.conv));
    const convGrad = median(ss.map((s) => s.convGrad));
    const convGradHeap1 = median(ss.map((s) => s.convGradHeap1));
    const stepHeap1 = median(ss.map((s) => s.modelHeap1));
    const matMul = median(ss.map((s) => s.matMul));
    const step = median(ss.map((s) => s.model));
    const main = ss.reduce((a, s) => a + s.mainTicks, 0);
    const workers = ss.reduce((a, s) => a + s.workerTicks, 0);
    const pool = ss.reduce((a, s) => a + s.poolTicks, 0);
    const all = main + workers + pool;
    const share = (t: number) => (all > 0 ? `${Math.round((100 * t) / all)} %` : 'n/a');
    return [
      String(c),
      conv.toFixed(0),
      (median(base.map((s) => s.conv)) / conv).toFixed(2),
      convGrad.toFixed(1),
      (median(base.map((s) => s.convGrad)) / convGrad).toFixed(2),
      (convGradHeap1 / convGrad).toFixed(2),
      matMul.toFixed(1),
      (median(base.map((s) => s.matMul)) / matMul).toFixed(2),
      ...(model
        ? [step.toFixed(0), (median(base.map((s) => s.model)) / step).toFixed(2), (stepHeap1 / step).toFixed(2)]
        : []),
      share(workers),
      share(pool),
    ];
  });
  const header = [
    'threads',
    'conv step ms',
    'speedup',
    'conv grads ms',
    'speedup',
    'vs heap on 1',
    'matMul ms',
    'speedup',
    ...(model ? [`${model} step ms`, 'speedup', 'vs heap on 1'] : []),
    'CPU on pthread workers',
    'CPU on pool workers',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padStart(widths[i])).join(' | ') + ' |';
  console.log('');
  console.log(line(header));
  console.log('|' + widths.map((w) => '-'.repeat(w + 1) + ':').join('|') + '|');
  for (const r of rows) console.log(line(r));
  console.log(
    `\nload average (1, 5, 15 min): ${load0.map((l) => l.toFixed(2)).join(', ')} at start, ` +
      `${load1.map((l) => l.toFixed(2)).join(', ')} at end; speedups are over ${unique[0]} thread(s).`,
  );
}

runMain(main);
