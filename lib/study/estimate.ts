/**
 * `study --dry-run`: each cell's estimated time and the total, from measured step times.
 *
 * A short probe per distinct (model, options, size, batch), each in its own process (./probe.ts: the fastest
 * of a few timed training steps on a random batch; a fresh process per probe because the wasm heap only
 * grows). A cell's estimate is
 *
 *   steps × t_step  +  (epochs × val images + test images) × t_step / (batch × 3)
 *
 * where steps = epochs × ceil(train images / batch) (or maxSteps) and a forward-only evaluation image
 * costs about a third of a training image (forward + backward ≈ 3 forwards). The train/val/test counts
 * come from the dataset's listing (no images are decoded). Early stopping can only make a cell shorter.
 *
 * A probe of a few steps measures this machine *now*: on a busy machine (load above the core count) it
 * overstates an idle run. When benchmarks/results.json holds a finished run of a probed configuration
 * (same model, model options, size and batch), its measured time per step (training minutes / steps, on an
 * idle machine) calibrates every probe by the same factor, and the estimates say so.
 *
 * `jobs`: the cells will run `jobs` side by side, each with its share of the cores (./local.ts
 * `cellThreadEnv`), so each probe runs with that share too, and the wall time is the total / jobs. The
 * benchmark runs used every core, so with jobs > 1 they calibrate nothing.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../backend/index';
import { openDataset } from '../data/index';
import { datasetSpec } from '../train/run';
import type { TrainConfig } from '../train/config';
import type { Cell, Study } from './definition';
import { cellThreadEnv } from './local';
import { probeInChild, probeStepTime, type ProbeResult } from './probe';

export interface CellEstimate {
  cell: Cell;
  steps: number | null;
  secondsPerStep: number | null;
  seconds: number | null;
  /** Why there is no estimate (unknown model, missing dataset, probe failure). */
  problem?: string;
  /** What the probe noticed although it has an estimate (./probe.ts `ProbeResult.note`). */
  note?: string;
}

export interface Calibration {
  /** The benchmark run, e.g. 'benchmarks/results.json bench-malaria-cpu (2026-11-26)'. */
  source: string;
  benchSecondsPerStep: number;
  probeSecondsPerStep: number;
  /** Every probe's step time is multiplied by this. */
  factor: number;
}

export interface StudyEstimate {
  counts: Record<string, number> | null;
  cells: CellEstimate[];
  totalSeconds: number;
  /** The threads the (first) probe ran with, e.g. 'wasm 1 thread (backend-reported), scan 1 (…), 2 cores'. */
  probeThreads?: string;
  /** Cells side by side (the study's --jobs) and the wall time that gives: totalSeconds / jobs. */
  jobs: number;
  wallSeconds: number;
  backend: string;
  probeSteps: number;
  /** 1-minute load average while probing, and the core count. */
  load: { average: number; cores: number };
  calibration?: Calibration;
}

interface BenchRecord {
  name: string;
  date: string;
  model: string;
  steps: number;
  trainMinutes: number;
  status: string;
  settings: Partial<TrainConfig>;
}

/** A finished benchmarks/results.json run with this configuration's model, options, size and batch. */
export function findBenchmark(
  cfg: TrainConfig,
  file = path.resolve('benchmarks', 'results.json'),
): BenchRecord | undefined {
  if (!fs.existsSync(file)) return undefined;
  let results: BenchRecord[];
  try {
    results = (JSON.parse(fs.readFileSync(file, 'utf8')) as { results?: BenchRecord[] }).results ?? [];
  } catch {
    return undefined;
  }
  return results.find(
    (r) =>
      r.status === 'finished' &&
      r.model === cfg.model &&
      r.steps > 0 &&
      r.settings?.imageSize === cfg.imageSize &&
      (r.settings?.batchSize ?? 32) === cfg.batchSize &&
      sameOptions(r.settings?.modelConfig ?? '', cfg.modelConfig),
  );
}

function sameOptions(a: string, b: string): boolean {
  const pa = a ? (JSON.parse(a) as Record<string, unknown>) : {};
  const pb = b ? (JSON.parse(b) as Record<string, unknown>) : {};
  const keys = new Set([...Object.keys(pa), ...Object.keys(pb)]);
  return [...keys].every((k) => JSON.stringify(pa[k]) === JSON.stringify(pb[k]));
}

const probeKey = (c: TrainConfig) => JSON.stringify([c.model, c.modelConfig, c.imageSize, c.batchSize]);

/** Estimate every cell (probing each distinct configuration once). */
export async function estimateStudy(
  study: Study,
  opts: {
    probeSteps?: number;
    log?: (line: string) => void;
    /** Probe each configuration in its own process (default true; false probes in this one, see ./probe.ts). */
    isolate?: boolean;
    /** Cells side by side (default 1; see the file doc). */
    jobs?: number;
  } = {},
): Promise<StudyEstimate> {
  const log = opts.log ?? (() => {});
  const jobs = Math.max(1, opts.jobs ?? 1);
  const env = cellThreadEnv(jobs);
  const runProbe = (cfg: TrainConfig, classes: number, o: { steps?: number }) =>
    opts.isolate === false ? probeStepTime(cfg, classes, o) : probeInChild(cfg, classes, { ...o, env });
  const backend = await initBackend(study.cells[0].config.backend || undefined, { quiet: true });
  let counts: Record<string, number> | null = null;
  let numClasses = 2;
  let datasetProblem: string | undefined;
  try {
    const ds = await openDataset(datasetSpec(study.cells[0].config));
    const c = ds.info.counts as Record<string, number[]>;
    counts = Object.fromEntries(Object.entries(c).map(([k, v]) => [k, v.reduce((a, b) => a + b, 0)]));
    numClasses = ds.info.classes.length;
  } catch (e) {
    datasetProblem = `dataset: ${(e as Error).message.split('\n')[0]}`;
  }
  const probes = new Map<string, ProbeResult | Error>();
  const cells: CellEstimate[] = [];
  for (const cell of study.cells) {
    const cfg = cell.config;
    const key = probeKey(cfg);
    if (!probes.has(key)) {
      log(`probing ${cell.arm.label} (${cfg.model}, ${cfg.imageSize} px, batch ${cfg.batchSize}) ...`);
      try {
        probes.set(key, runProbe(cfg, numClasses, { steps: opts.probeSteps }));
      } catch (e) {
        probes.set(key, e as Error);
      }
    }
    const probe = probes.get(key)!;
    if (probe instanceof Error) {
      cells.push({ cell, steps: null, secondsPerStep: null, seconds: null, problem: probe.message.split(/\n|\. /)[0] });
      continue;
    }
    if (!counts) {
      cells.push({ cell, steps: null, secondsPerStep: probe.secondsPerStep, seconds: null, problem: datasetProblem });
      continue;
    }
    const perEpoch = Math.ceil((counts.train ?? 0) / cfg.batchSize);
    const steps = cfg.maxSteps > 0 ? Math.min(cfg.maxSteps, perEpoch * cfg.epochs) : perEpoch * cfg.epochs;
    const epochsRun = Math.ceil(steps / Math.max(1, perEpoch));
    const evalImages = epochsRun * (counts.val ?? 0) + (cfg.evalTest ? (counts.test ?? 0) : 0);
    const seconds = steps * probe.secondsPerStep + (evalImages * probe.secondsPerStep) / (cfg.batchSize * 3);
    cells.push({
      cell,
      steps,
      secondsPerStep: probe.secondsPerStep,
      seconds,
      ...(probe.note ? { note: probe.note } : {}),
    });
  }
  const load = { average: os.loadavg()[0], cores: os.cpus().length };
  // Calibrate against the first probed configuration a benchmark run measured (see the file doc).
  let calibration: Calibration | undefined;
  for (const cell of jobs > 1 ? [] : study.cells) {
    const bench = findBenchmark(cell.config);
    const probe = probes.get(probeKey(cell.config));
    if (bench && probe && !(probe instanceof Error)) {
      const benchSecondsPerStep = (bench.trainMinutes * 60) / bench.steps;
      calibration = {
        source: `benchmarks/results.json ${bench.name} (${bench.date.slice(0, 10)})`,
        benchSecondsPerStep,
        probeSecondsPerStep: probe.secondsPerStep,
        factor: benchSecondsPerStep / probe.secondsPerStep,
      };
      break;
    }
  }
  if (calibration) {
    const f = calibration.factor;
    for (const c of cells) {
      if (c.secondsPerStep !== null) c.secondsPerStep *= f;
      if (c.seconds !== null) c.seconds *= f;
    }
  }
  const totalSeconds = cells.reduce((s, c) => s + (c.seconds ?? 0), 0);
  const probeThreads = [...probes.values()].find((p): p is ProbeResult => !(p instanceof Error))?.threads;
  return {
    ...(probeThreads ? { probeThreads } : {}),
    counts,
    cells,
    totalSeconds,
    jobs,
    wallSeconds: totalSeconds / jobs,
    backend: backend.name,
    probeSteps: opts.probeSteps ?? 3,
    load,
    calibration,
  };
}
