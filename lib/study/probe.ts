/**
 * A study's step-time probe (`study --dry-run`, ./estimate.ts): build a cell's model, run `warmup` training
 * steps (not timed: the first compiles wasm kernels and allocates) and then `steps` timed training steps on
 * a random batch, on this machine's backend; the fastest timed step counts (other processes only ever add
 * time, so on a shared machine the minimum is the steadiest estimate of the step itself).
 *
 * Each probe runs in its own process (`probeInChild`). The wasm backend's heap (a WebAssembly.Memory) grows to
 * the peak a model needs and never shrinks, and different models fragment it differently: probing the 26
 * configurations of studies/zoo-malaria.json in one process grew it from 0.96 GB (the first model) to the 4 GB
 * wasm32 limit after 16 configurations, and every later probe died with "memory access out of bounds" although
 * no tensor leaked (tf.memory().numTensors was 0 after each). A fresh process starts with a fresh heap, and a
 * probe that crashes its process (an Emscripten `Aborted()`) takes only its own estimate with it.
 *
 * The child is this file run as a script: `node --import tsx lib/study/probe.ts '<job JSON>'`; it prints one
 * `MSM_PROBE <result JSON>` line.
 */
import { spawnSync } from 'child_process';
import { pathToFileURL } from 'url';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index';
import { threadInfo } from '../backend/thread-info';
import { createOptimizer } from '../train/optim';
import { buildModel, planRunMemory } from '../train/run';
import { runRngs } from '../train/fit';
import { namedTrainable, Trainer } from '../train/trainer';
import type { TrainConfig } from '../train/config';

export interface ProbeResult {
  secondsPerStep: number;
  steps: number;
  /** Something the estimate's reader should know (e.g. the memory plan failed: the full batch was timed). */
  note?: string;
  /** The threads the probe ran with (lib/backend/thread-info.ts; set by `probeInChild`). */
  threads?: string;
}

export interface ProbeOptions {
  /**
   * Plan the step's memory first, as a training run does (lib/train/run.ts `planRunMemory`: micro-batches,
   * activation checkpointing), and time the step so planned (default true). Without it a configuration whose
   * whole batch does not fit the wasm heap fails although its training would run.
   */
  planMemory?: boolean;
  /** Untimed steps first (default 1). */
  warmup?: number;
  /** Timed steps; the fastest counts (default 3). */
  steps?: number;
}

/** Fastest of `steps` timed training steps (seconds) of `cfg`'s model at its size and batch on the current backend. */
export function probeStepTime(given: TrainConfig, numClasses: number, opts: ProbeOptions = {}): ProbeResult {
  const warmup = opts.warmup ?? 1;
  const steps = opts.steps ?? 3;
  let cfg = given;
  let note: string | undefined;
  if (opts.planMemory !== false) {
    try {
      cfg = planRunMemory(given, numClasses, tf.getBackend(), () => {}).config;
    } catch (e) {
      // The training run plans the same way, so it would stop here too: say so, and time the full batch.
      note = `the training run's memory plan fails: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  const model = buildModel(cfg, numClasses);
  const optimizer = createOptimizer(namedTrainable(model), { kind: cfg.optimizer, lr: cfg.lr });
  const trainer = new Trainer(model, optimizer, {
    lr: cfg.lr,
    ...(cfg.microBatch > 0 ? { microBatch: cfg.microBatch } : {}),
    schedule: { stepsPerEpoch: 10, epochs: 1, warmupEpochs: 0, warmupFactor: 1, endFactor: 1 },
    rng: runRngs(cfg.seed).dropPath,
  });
  const x = tf.randomUniform([cfg.batchSize, cfg.imageSize, cfg.imageSize, 3]) as tf.Tensor4D; // [b, s, s, 3]
  const y = tf.tensor1d(
    Array.from({ length: cfg.batchSize }, (_, i) => i % numClasses),
    'int32',
  ); // [b]
  try {
    const times: number[] = [];
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      trainer.trainStep({ x, y }, i);
      if (i >= warmup) times.push((performance.now() - t0) / 1000);
    }
    return { secondsPerStep: Math.min(...times), steps, ...(note ? { note } : {}) };
  } finally {
    x.dispose();
    y.dispose();
    optimizer.dispose?.();
    model.dispose();
  }
}

/** What the parent sends the child. */
interface ProbeJob {
  config: TrainConfig;
  numClasses: number;
  opts: ProbeOptions;
}

const RESULT_PREFIX = 'MSM_PROBE ';

/**
 * `probeStepTime` in a fresh process (see the file doc), on the backend the cell names (else MSM_BACKEND,
 * else the kit's default). Throws one line: the child's own error, or how its process ended.
 */
export function probeInChild(
  cfg: TrainConfig,
  numClasses: number,
  opts: ProbeOptions & { timeoutSeconds?: number; env?: NodeJS.ProcessEnv } = {},
): ProbeResult {
  const { timeoutSeconds = 900, env = process.env, ...probeOpts } = opts;
  const job: ProbeJob = { config: cfg, numClasses, opts: probeOpts };
  const r = spawnSync(
    process.execPath,
    ['--import', pathToFileURL(require.resolve('tsx')).href, __filename, JSON.stringify(job)],
    {
      encoding: 'utf8',
      timeout: timeoutSeconds * 1000,
      maxBuffer: 16 << 20,
      env: { ...env, MSM_PROGRESS: 'off' },
    },
  );
  const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith(RESULT_PREFIX));
  if (r.status === 0 && line) return JSON.parse(line.slice(RESULT_PREFIX.length)) as ProbeResult;
  const said = `${r.stderr ?? ''}\n${r.stdout ?? ''}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('at ') && !l.startsWith('Node.js v'));
  const why = r.error
    ? String(r.error.message)
    : (said.find((l) => /error|out of bounds|abort/i.test(l)) ?? said.pop() ?? 'no output');
  throw new Error(
    `probe of ${cfg.model} at ${cfg.imageSize} px, batch ${cfg.batchSize} failed in its process ` +
      `(${r.signal ? `signal ${r.signal}` : `exit ${r.status}`}): ${why}`,
  );
}

async function childMain(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as ProbeJob;
  await initBackend(job.config.backend || undefined, { quiet: true });
  const result: ProbeResult = { ...probeStepTime(job.config, job.numClasses, job.opts), threads: threadInfo().text };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  childMain().catch((e: Error) => {
    process.stderr.write(`probe error: ${e.message.split('\n')[0]}\n`);
    process.exit(1);
  });
}
