/**
 * Will a training step fit in the backend's memory? Measure, plan, and explain when it does not.
 *
 * The wasm backend keeps every tensor in one WebAssembly memory that cannot grow past 4 GiB (wasm32;
 * tfjs-backend-wasm's heap maximum is 4 GiB − 64 KiB). A training step that needs more ends in a trap
 * (`memory access out of bounds`, `Aborted()`) that says nothing about memory. So before training:
 *
 *   1. probe: one forward+backward pass of a throwaway copy of the model with batch 2 and batch 3 (with and
 *      without activation checkpointing, lib/models/checkpoint.ts), and one eval-mode forward at batch 1
 *      and 2, recording the peak of the tensor bytes tfjs holds (the engine's byte count, watched on every
 *      change). Activations grow linearly with the batch, so two points give `peak(b) = fixed + perImage · b`.
 *      The probe runs at the run's image size, or — where that probe could itself run out of memory — at
 *      64 px with the per-image part scaled by the pixel count (feature maps are (s/stride)²; within 1 %
 *      of the real size at 128 and 224 px, benchmarks/memory.md);
 *   2. estimate the heap of a step with micro-batch m: what stays resident (weights, Adam's two moments,
 *      the gradient accumulator, two input batches) + peak(m), times the allocator overhead measured
 *      against the real heap size (HEAP_PER_TENSOR_BYTE, benchmarks/memory.md);
 *   3. plan (`planMemory`): the full batch if it fits; else the largest micro-batch that fits, with
 *      activation checkpointing when that allows a larger one (checkpointing recomputes each block's
 *      forward, ~30 % more time, but BatchNorm statistics over 8 images are far less noisy than over 2);
 *      or refuse, naming the estimate, the limit and flags that fit.
 *
 * Gradient accumulation (lib/train/trainer.ts) splits each batch into micro-batches and sums their
 * gradients, each scaled by its share of the batch, so the optimizer sees the gradient of the full batch's
 * mean loss — the same effective batch. One difference remains: in training mode BatchNorm normalises with
 * the statistics of its micro-batch (and updates its running statistics once per micro-batch), not of the
 * whole batch, as in PyTorch with gradient accumulation.
 *
 * Inference alone (evaluate, predict) holds no optimizer state: `planInferenceBatch` probes the eval forward
 * pass the same way and picks the largest batch whose estimate stays under the limit.
 *
 * `memoryError` turns a wasm trap anywhere in training or evaluation into one line that names the backend,
 * the step and the likely cause, and what to do.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import type { Module } from '../nn/index';
import { Rng } from '../util/random';
import { crossEntropy } from './loss';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** tfjs-backend-wasm 4.22's heap maximum (`getHeapMax()` in its emscripten glue): 4 GiB − 64 KiB. */
export const WASM_HEAP_MAX = 4294901760;

/**
 * Heap bytes per tensor byte at the peak of a step. Below 1 because the engine's byte count counts every
 * tensor, also reshapes and other views that share one buffer; the allocator's overhead and fragmentation,
 * the heap kernels' scratch space and emscripten's growth policy (it over-allocates up to 96 MiB) are in it
 * too. Measured with `npx tsx scripts/bench-memory.ts` (benchmarks/memory.md): fresh processes, one Adam step each,
 * the real wasm heap size against the engine's peak tensor bytes: 0.62–0.67 at 64, 128 and 224 px, with
 * and without checkpointing; 0.7 keeps the estimate above every measurement.
 */
export const HEAP_PER_TENSOR_BYTE = 0.7;
/** Heap in use before any tensor exists (emscripten's initial memory, XNNPACK's caches). */
export const HEAP_BASE_BYTES = 64 * MiB;
/** The plan keeps this share of the limit free: fragmentation varies from step to step. */
export const HEADROOM = 0.1;
/** Image size of the cheap first probe (see `planForRun`). */
export const PROBE_SIZE = 64;
/** A real-size probe runs only when its predicted heap stays under this share of the budget. */
export const REAL_SIZE_PROBE_SHARE = 0.5;

export interface MemoryLimit {
  /** Bytes a step may use, or null where the kit knows no limit (WebGPU: the adapter decides). */
  bytes: number | null;
  /** What the limit is, for messages: 'the wasm heap maximum (4.0 GiB)'. */
  what: string;
}

/** The memory limit of a backend; `overrideMb` > 0 replaces it (the --memory-limit-mb flag). */
export function backendMemoryLimit(backend: string, overrideMb = 0): MemoryLimit {
  if (overrideMb > 0) return { bytes: overrideMb * MiB, what: `--memory-limit-mb ${overrideMb}` };
  switch (backend) {
    case 'wasm':
      return { bytes: WASM_HEAP_MAX, what: `the wasm heap maximum (${gib(WASM_HEAP_MAX)})` };
    case 'cpu':
    case 'tensorflow':
      // Tensors live in ordinary process memory: the machine's RAM is the limit.
      return { bytes: os.totalmem(), what: `this machine's memory (${gib(os.totalmem())})` };
    default:
      return { bytes: null, what: `no limit known for ${backend}` };
  }
}

/** The wasm backend's current heap size (its high-water mark: the heap never shrinks), else undefined. */
export function wasmHeapBytes(): number | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  return wasm?.HEAPU8?.buffer.byteLength;
}

/**
 * Run `f` and return its result with the peak of the tensor bytes tfjs held meanwhile, relative to the
 * bytes held before. The engine's byte counter is watched through an accessor for the duration.
 */
export function withPeakTensorBytes<T>(f: () => T): { result: T; peak: number } {
  const state = (tf.engine() as unknown as { state: { numBytes: number } }).state;
  const start = state.numBytes;
  let value = start;
  let peak = start;
  Object.defineProperty(state, 'numBytes', {
    configurable: true,
    enumerable: true,
    get: () => value,
    set: (v: number) => {
      value = v;
      if (v > peak) peak = v;
    },
  });
  try {
    return { result: f(), peak: peak - start };
  } finally {
    delete (state as { numBytes?: number }).numBytes;
    state.numBytes = value;
  }
}

/** Peak tensor bytes of one forward+backward pass (no optimizer update) of `model` on a random batch. */
export function probeTrainStep(
  model: Module & { forward(x: tf.Tensor, ctx?: object): tf.Tensor },
  size: number,
  batch: number,
): number {
  const vars = model
    .namedParameters()
    .filter(([, p]) => p.trainable && !p.dead)
    .map(([, p]) => p.variable);
  const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 1); // [b, s, s, 3]
  const y = tf.zeros([batch], 'int32'); // [b]
  const buffers = model.namedBuffers().map(([, b]) => [b, b.clone()] as const);
  model.train();
  try {
    const { peak } = withPeakTensorBytes(() => {
      const { value, grads } = tf.tidy(() =>
        tf.variableGrads(() => crossEntropy(model.forward(x, { training: true, rng: new Rng(0) }), y), vars),
      );
      tf.dispose([value, grads]);
    });
    return peak;
  } finally {
    for (const [b, before] of buffers) {
      b.assign(before); // the probe leaves the BatchNorm statistics as they were
      before.dispose();
    }
    tf.dispose([x, y]);
  }
}

/** Peak tensor bytes of one eval-mode forward pass (what evaluation holds per batch). */
export function probeForward(
  model: Module & { forward(x: tf.Tensor, ctx?: object): tf.Tensor },
  size: number,
  batch: number,
): number {
  const x = tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 1); // [b, s, s, 3]
  model.eval();
  try {
    return withPeakTensorBytes(() => tf.tidy(() => tf.softmax(model.forward(x, { training: false }))).dispose()).peak;
  } finally {
    x.dispose();
  }
}

/** Peak tensor bytes as a line in the batch size: peak(b) = fixed + perImage · b. */
export interface LinearPeak {
  fixed: number;
  perImage: number;
}

/** The line through the peaks measured at two batch sizes (by default 1 and 2; the slope never below 0). */
export function linearPeak(peakA: number, peakB: number, batchA = 1, batchB = 2): LinearPeak {
  const perImage = Math.max(0, (peakB - peakA) / (batchB - batchA));
  return { fixed: Math.max(0, peakA - perImage * batchA), perImage };
}

/**
 * Batch sizes the training-step probe measures: 2 and 3, not 1 and 2, because a training step at batch 1
 * is not defined for every model (BatchNorm1d over one value per channel, as in RepViT's head, rejects it —
 * PyTorch does too). Evaluation-mode probes keep batches 1 and 2.
 */
export const TRAIN_PROBE_BATCHES: readonly [number, number] = [2, 3];

export function peakAt(line: LinearPeak, batch: number): number {
  return line.fixed + line.perImage * batch;
}

/** Measured peaks of one model at one image size, what `planMemory` works from. */
export interface MemoryProbe {
  imageSize: number;
  /** Training step without activation checkpointing. */
  train: LinearPeak;
  /** Training step with checkpointing; undefined when not measured or the model has no checkpointing. */
  trainCheckpointed?: LinearPeak;
  /** Eval-mode forward pass. */
  forward: LinearPeak;
  /** How each line was obtained (measured at the run's size, or scaled from a smaller probe). */
  sources?: string[];
}

export interface PlanInput {
  batchSize: number;
  evalBatchSize: number;
  imageSize: number;
  /** Trainable parameter bytes (Adam keeps two moments, accumulation one more copy). */
  paramBytes: number;
  /** All parameter and buffer bytes of the model. */
  modelBytes: number;
  probe: MemoryProbe;
  limit: MemoryLimit;
  /** 0 = choose; n = use micro-batches of at most n images. */
  microBatch: number;
  /** 0 = choose; n = evaluate in chunks of at most n images. */
  evalMicroBatch: number;
  checkpointing: 'auto' | 'on' | 'off';
}

export interface MemoryPlan {
  microBatch: number;
  /** Micro-batches per full batch. */
  microSteps: number;
  checkpointing: 'on' | 'off';
  evalMicroBatch: number;
  /** Estimated heap bytes of a training step and of an evaluation batch, with the plan's settings. */
  trainEstimate: number;
  evalEstimate: number;
  /** Estimate of the full batch without splitting or checkpointing (what the plan avoided). */
  fullBatchEstimate: number;
  limit: MemoryLimit;
  /** Bytes the plan stays under (the limit less the headroom). */
  budget: number;
  /** One line for the log: what was chosen and why. */
  reason: string;
}

/** Thrown when no plan fits: names the estimate, the limit and flags that would fit. */
export class MemoryPlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MemoryPlanError';
  }
}

/** Sizes of the micro-batches of a batch of n images split into pieces of at most m, as even as possible. */
export function microBatchSizes(n: number, m: number): number[] {
  const k = Math.max(1, Math.ceil(n / Math.max(1, m)));
  const base = Math.floor(n / k);
  const extra = n - base * k; // the first `extra` micro-batches get one image more
  return Array.from({ length: k }, (_, i) => base + (i < extra ? 1 : 0));
}

/** Heap estimate of a training step whose largest micro-batch holds m images. */
export function trainHeapEstimate(inp: PlanInput, line: LinearPeak, m: number, microSteps: number): number {
  const inputs = 2 * inp.batchSize * inp.imageSize * inp.imageSize * 3 * 4; // the batch in use and the next
  const resident = inp.modelBytes + 2 * inp.paramBytes + (microSteps > 1 ? inp.paramBytes : 0) + inputs;
  return HEAP_BASE_BYTES + HEAP_PER_TENSOR_BYTE * (resident + peakAt(line, m));
}

/** Heap estimate of an evaluation batch computed in chunks of m images. */
export function evalHeapEstimate(inp: PlanInput, m: number): number {
  const inputs = 2 * inp.evalBatchSize * inp.imageSize * inp.imageSize * 3 * 4;
  // Training state stays resident during validation (the optimizer is alive between epochs).
  const resident = inp.modelBytes + 2 * inp.paramBytes + inputs;
  return HEAP_BASE_BYTES + HEAP_PER_TENSOR_BYTE * (resident + peakAt(inp.probe.forward, m));
}

/** Choose micro-batch, checkpointing and evaluation chunk for a step that fits (see the file doc). */
export function planMemory(inp: PlanInput): MemoryPlan {
  const B = inp.batchSize;
  const limitBytes = inp.limit.bytes ?? Infinity;
  const budget = limitBytes * (1 - HEADROOM);
  const full = trainHeapEstimate(inp, inp.probe.train, B, 1);
  const modes: Array<'off' | 'on'> =
    inp.checkpointing === 'auto' ? ['off', 'on'] : [inp.checkpointing === 'on' ? 'on' : 'off'];
  const lineOf = (mode: 'off' | 'on') => (mode === 'on' ? inp.probe.trainCheckpointed : inp.probe.train);
  const fits = (mode: 'off' | 'on', m: number) =>
    trainHeapEstimate(inp, lineOf(mode)!, m, microBatchSizes(B, m).length) <= budget;
  /** The largest micro-batch ≤ B that fits in `mode` (0 = none). */
  const largest = (mode: 'off' | 'on'): number => {
    if (!lineOf(mode)) return 0;
    for (let m = B; m >= 1; m--) if (fits(mode, m)) return microBatchSizes(B, m)[0];
    return 0;
  };

  // ---- evaluation chunk ----
  let evalMicro = inp.evalMicroBatch > 0 ? Math.min(inp.evalMicroBatch, inp.evalBatchSize) : 0;
  if (evalMicro === 0) {
    evalMicro = 0;
    for (let m = inp.evalBatchSize; m >= 1; m--) {
      if (evalHeapEstimate(inp, m) <= budget) {
        evalMicro = microBatchSizes(inp.evalBatchSize, m)[0];
        break;
      }
    }
  }
  const evalOk = evalMicro > 0 && evalHeapEstimate(inp, evalMicro) <= budget;

  // ---- training micro-batch ----
  let chosen: { mode: 'off' | 'on'; m: number } | undefined;
  if (inp.microBatch > 0) {
    const m = Math.min(inp.microBatch, B);
    const mode = modes.find((md) => lineOf(md) && fits(md, m));
    if (mode) chosen = { mode, m: microBatchSizes(B, m)[0] };
  } else {
    for (const mode of modes) {
      const m = largest(mode);
      // Checkpointing only when it buys a larger micro-batch (it costs a recomputed forward pass).
      if (m > 0 && (!chosen || m > chosen.m)) chosen = { mode, m };
    }
  }

  if (!chosen || !evalOk) {
    throw new MemoryPlanError(refusal(inp, full, budget, !chosen, evalOk));
  }
  const microSteps = microBatchSizes(B, chosen.m).length;
  const trainEstimate = trainHeapEstimate(inp, lineOf(chosen.mode)!, chosen.m, microSteps);
  const evalEstimate = evalHeapEstimate(inp, evalMicro);
  const lim = inp.limit.what;
  let reason: string;
  if (microSteps === 1 && chosen.mode === 'off') {
    reason = `batch ${B} fits: estimated ${gib(trainEstimate)} of ${lim}`;
  } else if (microSteps === 1) {
    reason =
      `batch ${B} needs ~${gib(full)} without activation checkpointing, more than ${gib(budget)} ` +
      `(${lim} less ${HEADROOM * 100} % headroom): checkpointing on, estimated ${gib(trainEstimate)}`;
  } else {
    const sizes = microBatchSizes(B, chosen.m);
    reason =
      `batch ${B} needs ~${gib(full)}${inp.probe.trainCheckpointed && chosen.mode === 'on' ? ' without checkpointing' : ''}, ` +
      `more than ${gib(budget)} (${lim} less ${HEADROOM * 100} % headroom): gradient accumulation over ` +
      `${microSteps} micro-batches of ${sizes[0]}${sizes[sizes.length - 1] !== sizes[0] ? `–${sizes[sizes.length - 1]}` : ''} ` +
      `images${chosen.mode === 'on' ? ' with activation checkpointing' : ''}, estimated ${gib(trainEstimate)}; ` +
      `the optimizer still sees batch ${B}, but BatchNorm normalises with each micro-batch's statistics`;
  }
  if (evalMicro < inp.evalBatchSize) {
    reason += `; evaluation in chunks of ${evalMicro} of the eval batch ${inp.evalBatchSize} (estimated ${gib(evalEstimate)})`;
  }
  return {
    microBatch: chosen.m,
    microSteps,
    checkpointing: chosen.mode,
    evalMicroBatch: evalMicro,
    trainEstimate,
    evalEstimate,
    fullBatchEstimate: full,
    limit: inp.limit,
    budget,
    reason,
  };
}

function refusal(inp: PlanInput, full: number, budget: number, trainFails: boolean, evalOk: boolean): string {
  const lim = `${inp.limit.what} (plans stay under ${gib(budget)})`;
  // Flags that would fit, found by asking the planner itself without the user's constraints.
  const free = { ...inp, microBatch: 0, evalMicroBatch: 0, checkpointing: 'auto' as const };
  let hint = '';
  try {
    const p = planMemory(free);
    hint =
      ` Flags that fit: --micro-batch ${p.microBatch} --checkpointing ${p.checkpointing}` +
      (p.evalMicroBatch < inp.evalBatchSize ? ` --eval-micro-batch ${p.evalMicroBatch}` : '') +
      ' (or leave them at auto).';
  } catch {
    hint =
      ` Even one image per micro-batch does not fit at ${inp.imageSize} px: use a smaller --image-size, ` +
      'or a backend with more memory (--backend webgpu on a GPU).';
  }
  const what = trainFails
    ? `a training step (batch ${inp.batchSize}${inp.microBatch > 0 ? `, --micro-batch ${inp.microBatch}` : ''}` +
      `${inp.checkpointing !== 'auto' ? `, --checkpointing ${inp.checkpointing}` : ''}) needs ~${gib(
        inp.microBatch > 0
          ? trainHeapEstimate(
              inp,
              (inp.checkpointing === 'on' ? inp.probe.trainCheckpointed : undefined) ?? inp.probe.train,
              Math.min(inp.microBatch, inp.batchSize),
              microBatchSizes(inp.batchSize, inp.microBatch).length,
            )
          : full,
      )}`
    : `evaluation (batch ${inp.evalBatchSize}${inp.evalMicroBatch > 0 ? `, --eval-micro-batch ${inp.evalMicroBatch}` : ''}) needs ~${gib(
        evalHeapEstimate(inp, inp.evalMicroBatch > 0 ? inp.evalMicroBatch : inp.evalBatchSize),
      )}`;
  void evalOk;
  return `out of memory before training: ${what} at ${inp.imageSize} px, more than ${lim}.${hint}`;
}

/** True for the errors a wasm (or JS) allocation failure produces. */
export function isMemoryTrap(e: unknown): boolean {
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return /memory access out of bounds|Aborted\(|WebAssembly\.Memory|Cannot enlarge memory|Out of memory|Array buffer allocation failed|Invalid typed array length|OOM/i.test(
    msg,
  );
}

/** Where a trap happened, for the message: 'training step 3 (epoch 1, batch 3)', 'validation after epoch 2'. */
export type MemoryWhere = string;

/** Thrown instead of a raw wasm trap: names the backend, where, the likely cause and what to do. */
export class OutOfMemoryError extends Error {
  constructor(
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'OutOfMemoryError';
  }
}

/**
 * `e` as an OutOfMemoryError if it is a memory trap (else `e` unchanged). After a wasm trap the backend's
 * memory may be corrupt, so the message says to restart, not to continue.
 */
export function memoryError(
  e: unknown,
  ctx: {
    backend: string;
    where: MemoryWhere;
    plan?: { microBatch: number; checkpointing: string; evalMicroBatch: number };
  },
): unknown {
  if (e instanceof OutOfMemoryError || !isMemoryTrap(e)) return e;
  const raw = (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 120);
  const plan = ctx.plan
    ? ` (planned: micro-batch ${ctx.plan.microBatch}, checkpointing ${ctx.plan.checkpointing}, eval chunks of ${ctx.plan.evalMicroBatch})`
    : '';
  const limit = ctx.backend === 'wasm' ? 'the 4 GiB wasm heap' : `the ${ctx.backend} backend's memory`;
  const heap = wasmHeapBytes();
  return new OutOfMemoryError(
    `out of memory on the ${ctx.backend} backend during ${ctx.where}${plan}: the likely cause is that ${limit} is full ` +
      `${heap ? `(heap at ${gib(heap)}) ` : ''}— "${raw}". ` +
      (/^(training|validation)/.test(ctx.where)
        ? 'Restart (the last checkpoint is kept; --resume continues) with a smaller --micro-batch or --eval-micro-batch, ' +
          '--checkpointing on, a smaller --image-size, or a --memory-limit-mb below the limit so that the planner leaves more room.'
        : 'Restart with smaller batches (--batch-size), a smaller image size, or another backend.'),
    e,
  );
}

function gib(bytes: number): string {
  if (!Number.isFinite(bytes)) return '∞';
  return bytes >= GiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${Math.round(bytes / MiB)} MiB`;
}
export { gib as formatBytes };

/** What `planForRun` needs to know about the run (a subset of TrainConfig). */
export interface RunMemoryOptions {
  batchSize: number;
  evalBatchSize: number;
  imageSize: number;
  microBatch: number;
  evalMicroBatch: number;
  checkpointing: 'auto' | 'on' | 'off';
  memoryLimitMb: number;
}

type ProbeModel = Module & { forward(x: tf.Tensor, ctx?: object): tf.Tensor };

/**
 * Probe and plan for a run (see the file doc). `makeModel(checkpointing)` builds a throwaway copy of the
 * run's model, or returns undefined when the model has no activation checkpointing. Backends without a
 * known limit are not probed: the run uses what it was given (auto = the full batch, no checkpointing).
 * A trap during the probe itself becomes an OutOfMemoryError.
 */
export function planForRun(
  opts: RunMemoryOptions,
  backend: string,
  makeModel: (checkpointing: boolean) => ProbeModel | undefined,
): MemoryPlan & { probe?: MemoryProbe; input?: PlanInput; probeSeconds: number } {
  const limit = backendMemoryLimit(backend, opts.memoryLimitMb);
  const B = opts.batchSize;
  if (limit.bytes === null) {
    const micro = opts.microBatch > 0 ? Math.min(opts.microBatch, B) : B;
    const evalMicro = opts.evalMicroBatch > 0 ? Math.min(opts.evalMicroBatch, opts.evalBatchSize) : opts.evalBatchSize;
    const checkpointing = opts.checkpointing === 'on' ? 'on' : 'off';
    return {
      microBatch: microBatchSizes(B, micro)[0],
      microSteps: microBatchSizes(B, micro).length,
      checkpointing,
      evalMicroBatch: microBatchSizes(opts.evalBatchSize, evalMicro)[0],
      trainEstimate: NaN,
      evalEstimate: NaN,
      fullBatchEstimate: NaN,
      limit,
      budget: Infinity,
      reason: `${limit.what}: batch ${B} as given (micro-batch ${micro}, checkpointing ${checkpointing}); no estimate`,
      probeSeconds: 0,
    };
  }
  const t0 = Date.now();
  const s = opts.imageSize;
  const budget = limit.bytes * (1 - HEADROOM);
  const measure = <T>(what: string, size: number, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw memoryError(e, { backend, where: `the memory probe (${what} at ${size} px, before training)` });
    }
  };
  /**
   * The line of one pass at the run's size. Activations grow with the pixel count (every feature map is
   * (s/stride)²), so a probe at PROBE_SIZE scaled by (s/PROBE_SIZE)² predicts the real size; when that
   * prediction for batch 2 stays well inside the budget, the real size is measured (exact), else the
   * scaled line is used (a real-size probe could itself run out of memory). Models that only run at
   * their own size are probed at it.
   */
  const sources: string[] = [];
  const lineFor = (
    what: string,
    pass: (size: number, batch: number) => number,
    [b1, b2]: readonly [number, number] = [1, 2],
  ): LinearPeak => {
    const line = (size: number) => linearPeak(pass(size, b1), pass(size, b2), b1, b2);
    let small: LinearPeak | undefined;
    if (s > PROBE_SIZE) {
      try {
        small = measure(what, PROBE_SIZE, () => line(PROBE_SIZE));
      } catch (e) {
        if (e instanceof OutOfMemoryError) throw e;
        small = undefined; // the model does not take PROBE_SIZE inputs
      }
    }
    if (small) {
      const scaled = { fixed: small.fixed, perImage: small.perImage * (s / PROBE_SIZE) ** 2 };
      if (HEAP_BASE_BYTES + HEAP_PER_TENSOR_BYTE * peakAt(scaled, 2) > REAL_SIZE_PROBE_SHARE * budget) {
        sources.push(`${what}: ${PROBE_SIZE}-px probe scaled by (${s}/${PROBE_SIZE})²`);
        return scaled;
      }
    }
    sources.push(`${what}: measured at ${s} px`);
    return measure(what, s, () => line(s));
  };
  const plain = makeModel(false);
  if (!plain) throw new Error('planForRun: makeModel(false) must build the model');
  let train: LinearPeak;
  let forward: LinearPeak;
  const paramBytes = plain
    .namedParameters()
    .filter(([, p]) => p.trainable && !p.dead)
    .reduce((sum, [, p]) => sum + p.variable.size * 4, 0);
  const modelBytes =
    plain.namedParameters().reduce((sum, [, p]) => sum + p.variable.size * 4, 0) +
    plain.namedBuffers().reduce((sum, [, b]) => sum + b.size * 4, 0);
  try {
    train = lineFor('training step', (size, b) => probeTrainStep(plain, size, b), TRAIN_PROBE_BATCHES);
    forward = lineFor('evaluation', (size, b) => probeForward(plain, size, b));
  } finally {
    plain.dispose();
  }
  const probe: MemoryProbe = { imageSize: s, train, forward };
  const input: PlanInput = { ...opts, paramBytes, modelBytes, probe, limit };
  // Checkpointing is measured only when it may be used: asked for, or auto and the full batch does not fit.
  const fullFits = trainHeapEstimate(input, train, B, 1) <= budget;
  if (opts.checkpointing === 'on' || (opts.checkpointing === 'auto' && !fullFits)) {
    const ck = makeModel(true);
    if (ck) {
      try {
        probe.trainCheckpointed = lineFor(
          'checkpointed training step',
          (size, b) => probeTrainStep(ck, size, b),
          TRAIN_PROBE_BATCHES,
        );
      } finally {
        ck.dispose();
      }
    } else if (opts.checkpointing === 'on') {
      throw new Error('--checkpointing on: this model has no activation checkpointing (use auto or off)');
    }
  }
  probe.sources = sources;
  return { ...planMemory(input), probe, input, probeSeconds: (Date.now() - t0) / 1000 };
}

/** Largest batch `planInferenceBatch` chooses: beyond it images/s no longer grows on a CPU backend. */
export const MAX_INFERENCE_BATCH = 256;

/**
 * Heap estimate of one inference forward pass at batch m: the model (no optimizer state: nothing trains),
 * the batch in use and the next, and the forward pass's peak.
 */
export function inferenceHeapEstimate(modelBytes: number, imageSize: number, line: LinearPeak, m: number): number {
  const inputs = 2 * m * imageSize * imageSize * 3 * 4;
  return HEAP_BASE_BYTES + HEAP_PER_TENSOR_BYTE * (modelBytes + inputs + peakAt(line, m));
}

export interface InferenceBatchPlan {
  /** Images per forward pass. */
  batch: number;
  /** Heap estimate at that batch (NaN where the backend has no known limit). */
  estimate: number;
  limit: MemoryLimit;
  /** One line for the log: what was chosen and why. */
  reason: string;
}

/**
 * The largest inference batch (≤ `max`, default MAX_INFERENCE_BATCH) whose forward pass fits the backend's
 * memory, from an eval-mode probe of `model` at batch 1 and 2 at `imageSize` (the line of `probeForward`,
 * as the training planner's). Backends without a known limit get `fallback`. A model that does not fit
 * even one image is an error naming the estimate and the limit.
 */
export function planInferenceBatch(
  model: ProbeModel,
  imageSize: number,
  backend: string,
  opts: { max?: number; fallback?: number; memoryLimitMb?: number } = {},
): InferenceBatchPlan {
  const max = Math.max(1, opts.max ?? MAX_INFERENCE_BATCH);
  const limit = backendMemoryLimit(backend, opts.memoryLimitMb ?? 0);
  if (limit.bytes === null) {
    const batch = Math.min(max, opts.fallback ?? 32);
    return { batch, estimate: NaN, limit, reason: `batch ${batch} (${limit.what}: not probed)` };
  }
  const budget = limit.bytes * (1 - HEADROOM);
  let line: LinearPeak;
  try {
    line = linearPeak(probeForward(model, imageSize, 1), probeForward(model, imageSize, 2));
  } catch (e) {
    throw memoryError(e, { backend, where: `the memory probe (inference at ${imageSize} px)` });
  }
  const modelBytes =
    model.namedParameters().reduce((sum, [, p]) => sum + p.variable.size * 4, 0) +
    model.namedBuffers().reduce((sum, [, b]) => sum + b.size * 4, 0);
  const fits = (m: number) => inferenceHeapEstimate(modelBytes, imageSize, line, m) <= budget;
  if (!fits(1)) {
    throw new OutOfMemoryError(
      `out of memory before inference: one ${imageSize}-px image needs ~${gib(inferenceHeapEstimate(modelBytes, imageSize, line, 1))}, ` +
        `more than ${limit.what} less ${HEADROOM * 100} % headroom; use a smaller image size or another backend`,
    );
  }
  // The estimate grows linearly in m: bisect for the largest batch that fits.
  let [lo, hi] = [1, max];
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  const estimate = inferenceHeapEstimate(modelBytes, imageSize, line, lo);
  const why =
    lo === max
      ? `the most asked for (${max})`
      : `the largest under ${gib(budget)} (${limit.what} less ${HEADROOM * 100} % headroom)`;
  return { batch: lo, estimate, limit, reason: `batch ${lo}: ${why}, estimated ${gib(estimate)}` };
}
