/**
 * The local executor: run a study's unfinished cells on this machine, `jobs` at a time, and report
 * progress (cells done / running / left, with an ETA).
 *
 * Each cell runs as its own process (`cellCommand(i)`, e.g. `npm run study -- <file> --cell i`), also at
 * jobs = 1: the wasm heap of a process only grows, and a study of many different models fragments it
 * until it hits the 4 GiB wasm32 limit (a zoo study failed after ~16 models in one process). Without a
 * `cellCommand` (notebooks, tests) the cells run in this process, one after another. With jobs > 1 the
 * cores are split between the side-by-side cells:
 * each child gets MSM_THREADS (the wasm backend's XNNPACK threads; unless MSM_THREADS is set, which every
 * cell then inherits), MSM_SCAN_THREADS (the selective scan's worker threads) and OMP/TF intra-op thread
 * counts of floor(cores / jobs), at least 1. At jobs = 1 a cell uses the backend's default thread count.
 *
 * ETA: the expected seconds of every unfinished cell, / jobs. A cell is expected to take its arm's mean
 * whole-run wall time over finished cells (cell.json, from this or an earlier sitting: the arms of a zoo
 * differ 30-fold, so one mean over all cells misleads, and a resumed cell's short last call says nothing).
 * An arm with no finished cell yet takes the same model's finished cells at other image sizes, scaled by
 * the pixel count; else the dry-run estimate when one is given; else all finished cells, scaled so.
 */
import { spawn } from 'child_process';
import * as os from 'os';
import { readCell, runCell, type CellOutcome } from './cell';
import type { Cell, Study } from './definition';

export interface LocalOptions {
  jobs?: number;
  /** Only these cells (default all). */
  cells?: number[];
  /** The command that runs one cell in its own process (needed for jobs > 1; used at jobs = 1 too when given). */
  cellCommand?: (index: number) => { command: string; args: string[] };
  /** Estimated seconds per cell (dry-run), for the ETA before the first cell finishes. */
  estimateSeconds?: (cell: Cell) => number | undefined;
  log?: (line: string) => void;
  /** Training progress of an in-process cell (default 'plain'). */
  progress?: 'auto' | 'tty' | 'plain' | 'off';
}

export interface LocalSummary {
  outcomes: Record<number, CellOutcome | 'failed'>;
  failed: Array<{ index: number; message: string }>;
}

/** Threads per side-by-side cell: floor(cores / jobs), at least 1. */
export function threadsPerJob(jobs: number, cores = os.cpus().length): number {
  return Math.max(1, Math.floor(cores / Math.max(1, jobs)));
}

/**
 * The environment of a cell process when `jobs` cells run side by side (see the file doc): this process's,
 * with each backend's thread counts set to threadsPerJob(jobs). The dry run probes with it too.
 */
export function cellThreadEnv(jobs: number): NodeJS.ProcessEnv {
  const threads = String(threadsPerJob(jobs));
  return {
    ...process.env,
    ...(process.env.MSM_THREADS || jobs > 1 ? { MSM_THREADS: process.env.MSM_THREADS || threads } : {}),
    MSM_SCAN_THREADS: threads,
    OMP_NUM_THREADS: threads,
    TF_NUM_INTRAOP_THREADS: threads,
    TF_NUM_INTEROP_THREADS: '1',
  };
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** Run the unfinished cells (see the file doc). Failures are collected, not thrown: the other cells go on. */
export async function runLocal(study: Study, opts: LocalOptions = {}): Promise<LocalSummary> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const jobs = Math.max(1, opts.jobs ?? 1);
  const selected = (opts.cells ?? study.cells.map((c) => c.index)).map((i) => study.cells[i]);
  const todo = selected.filter((c) => !readCell(c));
  const outcomes: LocalSummary['outcomes'] = {};
  for (const c of selected) if (!todo.includes(c)) outcomes[c.index] = 'skipped';
  const failed: LocalSummary['failed'] = [];
  const remaining = new Set(todo); // not finished yet (queued or running)
  let running = 0;
  let done = selected.length - todo.length;
  const total = selected.length;
  const progress = () => {
    const left = total - done - running;
    const byArm = finishedSeconds(study);
    const estimate =
      [...remaining].reduce((s, c) => s + expectedSeconds(study, c, byArm, opts.estimateSeconds), 0) / jobs;
    log(`study ${study.def.name}: ${done} done, ${running} running, ${left} left; ETA ${formatDuration(estimate)}`);
  };
  progress();
  const queue = [...todo];
  const runOne = async (cell: Cell) => {
    running++;
    log(`cell ${cell.index} (${cell.id}) → ${cell.runDir}`);
    progress();
    try {
      if (!opts.cellCommand) {
        if (jobs > 1) throw new Error('runLocal: jobs > 1 needs cellCommand (how to run one cell in a process)');
        outcomes[cell.index] = await runCell(study, cell, { log, progress: opts.progress ?? 'plain' });
      } else {
        await runChild(cell, opts, jobs, log);
        outcomes[cell.index] = readCell(cell) ? 'trained' : 'failed';
        if (!readCell(cell)) throw new Error(`cell ${cell.index}: the process ended without writing cell.json`);
      }
    } catch (e) {
      outcomes[cell.index] = 'failed';
      failed.push({ index: cell.index, message: (e as Error).message });
      log(`cell ${cell.index} (${cell.id}) FAILED: ${(e as Error).message}`);
    } finally {
      running--;
      done++;
      remaining.delete(cell);
      progress();
    }
  };
  const workers = Array.from({ length: Math.min(jobs, queue.length) }, async () => {
    for (let cell = queue.shift(); cell; cell = queue.shift()) await runOne(cell);
  });
  await Promise.all(workers);
  return { outcomes, failed };
}

/** Whole-run wall seconds of a study's finished cells, by arm index. */
export function finishedSeconds(study: Study): Map<number, number[]> {
  const byArm = new Map<number, number[]>();
  for (const c of study.cells) {
    const seconds = readCell(c)?.training.wallSeconds;
    if (seconds === undefined || !Number.isFinite(seconds)) continue;
    byArm.set(c.armIndex, [...(byArm.get(c.armIndex) ?? []), seconds]);
  }
  return byArm;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** The seconds `cell` is expected to take (see the file doc); NaN when nothing is known. */
export function expectedSeconds(
  study: Study,
  cell: Cell,
  byArm: Map<number, number[]>,
  estimate?: (cell: Cell) => number | undefined,
): number {
  const arm = byArm.get(cell.armIndex);
  if (arm) return mean(arm);
  const armCell = (i: number) => study.cells.find((c) => c.armIndex === i)!;
  const pixels = (c: Cell) => c.config.imageSize ** 2;
  /** finished cells of these arms, rescaled to this cell's image size */
  const scaled = (arms: Array<[number, number[]]>) =>
    mean(arms.flatMap(([i, s]) => s.map((v) => (v * pixels(cell)) / pixels(armCell(i)))));
  const sameModel = [...byArm].filter(([i]) => armCell(i).arm.model === cell.arm.model);
  if (sameModel.length) return scaled(sameModel);
  return estimate?.(cell) ?? scaled([...byArm]);
}

function runChild(cell: Cell, opts: LocalOptions, jobs: number, log: (l: string) => void): Promise<void> {
  if (!opts.cellCommand) throw new Error('runLocal: jobs > 1 needs cellCommand (how to run one cell in a process)');
  const { command, args } = opts.cellCommand(cell.index);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...cellThreadEnv(jobs), [PARENT_PID_ENV]: String(process.pid), MSM_PROGRESS: 'plain' },
    });
    const prefix = `[cell ${cell.index}] `;
    const relay = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) log(prefix + line);
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    // Ctrl-C / kill of the study reaches the cell (a training run resumes from its last checkpoint), and
    // the study ends with it.
    const forward = (sig: NodeJS.Signals) => {
      log(`${prefix}${sig}: stopping the cell (it keeps its last checkpoint; run the study again to resume)`);
      child.kill(sig);
      process.exitCode = 130;
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      if (process.exitCode === 130) process.exit(130);
      if (code === 0) resolve();
      else reject(new Error(`exited with ${signal ?? `code ${code}`} (see the lines prefixed ${prefix.trim()})`));
    });
  });
}

/** Set in a cell's process: the pid of the study that started it (see `exitWhenOrphaned`). */
export const PARENT_PID_ENV = 'MSM_STUDY_PARENT_PID';

/**
 * In a cell started by `runLocal`: end this process when the study that started it is gone (killed with
 * SIGKILL, its terminal closed), so that no orphaned cell goes on training beside a restarted study. The
 * run lock would refuse the second writer anyway; this frees the cores. Polls twice a second.
 */
export function exitWhenOrphaned(): void {
  const parent = Number(process.env[PARENT_PID_ENV]);
  if (!Number.isInteger(parent) || parent <= 1) return;
  const alive = () => {
    try {
      process.kill(parent, 0);
      return process.ppid === parent;
    } catch {
      return false;
    }
  };
  setInterval(() => {
    if (!alive()) {
      console.error(`the study (pid ${parent}) is gone: this cell stops here (its last checkpoint is kept)`);
      process.kill(process.pid, 'SIGKILL');
    }
  }, 500).unref();
}

export type { CellOutcome };
