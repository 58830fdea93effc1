/**
 * One cell of a study = one (arm, seed) run, trained as an ordinary run folder, summarised in a small
 * `studies/<name>/cells/<label>-s<seed>/cell.json` that is committed: the study's results are a function
 * of these files alone, so a clone re-aggregates (and continues) a study without the checkpoints.
 *
 * Running a cell (`runCell`): take the cell folder's lock (lib/util/lock.ts; a second process on the same
 * cell — another --jobs slot, a Slurm task — is refused), skip it if cell.json exists, else train (a run
 * interrupted earlier resumes from its last checkpoint; a finished run is only collected), then write cell.json
 * last. Writes are atomic, so a killed cell leaves either no cell.json or a whole one.
 */
import * as fs from 'fs';
import * as path from 'path';
import { countMacs, listModels } from '../models/index';
import { atomicWriteJson } from '../util/fs';
import { acquireFolderLock } from '../util/lock';
import type { TrainConfig } from '../train/config';
import { buildModel, trainRun, type RunInfo, type TestPredictions, type TrainRunOptions } from '../train/run';
import type { Cell, Study } from './definition';

export const CELL_FILE = 'cell.json';

/** What cell.json holds. */
export interface CellRecord {
  study: string;
  index: number;
  arm: string;
  seed: number;
  model: string;
  family: string;
  run: string;
  /** The run's full effective training configuration (config.json). */
  config: TrainConfig;
  /** Every model option, defaults included, where the model exposes them. */
  modelConfig?: Record<string, unknown>;
  imageSize: number;
  params: { total: number; used: number };
  /** MACs of one image at the run's size (ptflops convention, and with the extra work); null if not countable. */
  macs: { paper: number; full: number } | null;
  test: {
    n: number;
    accuracy: number;
    auc: number | null;
    /** Weighted F1 (the official test.py's average). */
    f1: number;
    balancedAccuracy: number;
    classes: string[];
    labels: number[];
    predicted: number[];
  };
  training: { status: string; epochs: number; steps: number; trainSeconds: number; wallSeconds: number };
  machine: { cpu: string; cores: number; backend: string };
  /** The kit's git commit the cell trained with (cells written before it was recorded lack it). */
  code?: { commit: string; dirty: boolean };
  dataset: { name: string; synthetic: boolean; counts: Record<string, number[]> };
}

export function cellFile(cell: Cell): string {
  return path.join(cell.cellDir, CELL_FILE);
}

export function readCell(cell: Cell): CellRecord | undefined {
  const file = cellFile(cell);
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as CellRecord;
  } catch (e) {
    throw new Error(`${file}: unreadable cell record (${(e as Error).message}); delete it to run the cell again`);
  }
}

const readJson = <T>(file: string): T | undefined =>
  fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as T) : undefined;

/** The finished run's files, or undefined while the run has not finished (no summary / test predictions yet). */
function finishedRun(runDir: string) {
  const summary = readJson<{
    status: string;
    epochs: number;
    steps: number;
    trainSeconds: number;
    wallSeconds: number;
    backend?: string;
  }>(path.join(runDir, 'summary.json'));
  const metrics = readJson<{
    metrics: {
      n: number;
      accuracy: number;
      balancedAccuracy: number;
      auc: { headline: number | null };
      f1: { weighted: number };
    };
  }>(path.join(runDir, 'metrics.json'));
  const predictions = readJson<TestPredictions>(path.join(runDir, 'test-predictions.json'));
  const run = readJson<RunInfo>(path.join(runDir, 'run.json'));
  const config = readJson<TrainConfig>(path.join(runDir, 'config.json'));
  if (!summary || !metrics || !predictions || !run || !config) return undefined;
  return { summary, metrics: metrics.metrics, predictions, run, config };
}

/** MACs of the cell's model at its image size (null where the model cannot count them). */
function cellMacs(config: TrainConfig, numClasses: number): { paper: number; full: number } | null {
  let model: ReturnType<typeof buildModel> | undefined;
  try {
    model = buildModel(config, numClasses);
    const r = countMacs(model as never, config.imageSize);
    return { paper: r.paper, full: r.full };
  } catch {
    return null;
  } finally {
    model?.dispose();
  }
}

/** cell.json's record from a finished run folder. */
export function collectCell(study: Study, cell: Cell): CellRecord {
  const f = finishedRun(cell.runDir);
  if (!f)
    throw new Error(
      `${cell.runDir}: the run has not finished (no summary.json, metrics.json or test-predictions.json)`,
    );
  const family = listModels().find((m) => m.name === cell.arm.model)?.family ?? 'unknown';
  return {
    study: study.def.name,
    index: cell.index,
    arm: cell.arm.label,
    seed: cell.seed,
    model: cell.arm.model,
    family: String(family),
    run: path.basename(cell.runDir),
    config: { ...f.config, runsDir: path.relative(process.cwd(), f.config.runsDir) || '.' },
    modelConfig: f.run.model.resolved,
    imageSize: f.config.imageSize,
    params: { total: f.run.model.parameters.total, used: f.run.model.parameters.used },
    macs: cellMacs(f.config, f.run.dataset.classes.length),
    test: {
      n: f.metrics.n,
      accuracy: f.metrics.accuracy,
      auc: f.metrics.auc.headline,
      f1: f.metrics.f1.weighted,
      balancedAccuracy: f.metrics.balancedAccuracy,
      classes: f.predictions.classes,
      labels: f.predictions.labels,
      predicted: f.predictions.predicted,
    },
    training: {
      status: f.summary.status,
      epochs: f.summary.epochs,
      steps: f.summary.steps,
      trainSeconds: f.summary.trainSeconds,
      wallSeconds: f.summary.wallSeconds,
    },
    machine: { cpu: f.run.machine.cpu, cores: f.run.machine.cores, backend: f.run.backend },
    ...(f.run.code ? { code: f.run.code } : {}),
    dataset: { name: f.run.dataset.name, synthetic: f.run.dataset.synthetic, counts: f.run.dataset.counts },
  };
}

export type CellOutcome = 'skipped' | 'collected' | 'trained';

/**
 * Run one cell (see the file doc). 'skipped': cell.json was there; 'collected': the run had finished
 * (only cell.json was missing); 'trained': it trained (from scratch or from its last checkpoint).
 */
export async function runCell(study: Study, cell: Cell, opts: TrainRunOptions = {}): Promise<CellOutcome> {
  const lock = acquireFolderLock(cell.cellDir, { command: `study --cell ${cell.index}`, warn: opts.log });
  try {
    if (readCell(cell)) return 'skipped';
    let outcome: CellOutcome = 'collected';
    if (!finishedRun(cell.runDir)) {
      await trainRun(cell.config, opts, { ...cell.overrides, name: cell.config.name });
      outcome = 'trained';
    }
    atomicWriteJson(cellFile(cell), collectCell(study, cell));
    return outcome;
  } finally {
    lock.release();
  }
}
