/**
 * The local executor: run a study's unfinished cells on this machine, `jobs` at a time, and report
 * progress (cells done / running / left, with an ETA).
 *
 * jobs = 1 runs the cells one after another in this process. jobs > 1 starts each cell as its own
 * process (`cellCommand(i)`, e.g. `npm run study -- <file> --cell i`) with the cores split between them:
 * each child gets MSM_THREADS (the wasm backend's XNNPACK threads), MSM_SCAN_THREADS (the selective
 * scan's worker threads) and OMP/TF intra-op thread counts of floor(cores / jobs), at least 1.
 *
 * ETA: the mean wall time of the cells finished in this session × the cells left / jobs; before any has
 * finished, the dry-run estimate when one is given.
 */
import { spawn } from 'child_process';
import * as os from 'os';
import { readCell, runCell, type CellOutcome } from './cell';
import type { Cell, Study } from './definition';

export interface LocalOptions {
  jobs?: number;
  /** Only these cells (default all). */
  cells?: number[];
  /** The command that runs one cell in its own process (needed for jobs > 1). */
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
  const durations: number[] = [];
  const remaining = new Set(todo); // not finished yet (queued or running)
  let running = 0;
  let done = selected.length - todo.length;
  const total = selected.length;
  const progress = () => {
    const left = total - done - running;
    const mean = durations.length ? durations.reduce((a, b) => a + b, 0) / durations.length : undefined;
    const estimate =
      mean !== undefined
        ? (mean * remaining.size) / jobs
        : [...remaining].reduce((s, c) => s + (opts.estimateSeconds?.(c) ?? NaN), 0) / jobs;
    log(`study ${study.def.name}: ${done} done, ${running} running, ${left} left; ETA ${formatDuration(estimate)}`);
  };
  progress();
  const queue = [...todo];
  const runOne = async (cell: Cell) => {
    const t0 = Date.now();
    running++;
    log(`cell ${cell.index} (${cell.id}) → ${cell.runDir}`);
    progress();
    try {
      if (jobs === 1) {
        outcomes[cell.index] = await runCell(study, cell, { log, progress: opts.progress ?? 'plain' });
      } else {
        await runChild(cell, opts, jobs, log);
        outcomes[cell.index] = readCell(cell) ? 'trained' : 'failed';
        if (!readCell(cell)) throw new Error(`cell ${cell.index}: the process ended without writing cell.json`);
      }
      durations.push((Date.now() - t0) / 1000);
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

function runChild(cell: Cell, opts: LocalOptions, jobs: number, log: (l: string) => void): Promise<void> {
  if (!opts.cellCommand) throw new Error('runLocal: jobs > 1 needs cellCommand (how to run one cell in a process)');
  const { command, args } = opts.cellCommand(cell.index);
  const threads = String(threadsPerJob(jobs));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        MSM_THREADS: threads,
        MSM_SCAN_THREADS: threads,
        OMP_NUM_THREADS: threads,
        TF_NUM_INTRAOP_THREADS: threads,
        TF_NUM_INTEROP_THREADS: '1',
        MSM_PROGRESS: 'plain',
      },
    });
    const prefix = `[cell ${cell.index}] `;
    const relay = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) log(prefix + line);
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`exited with ${signal ?? `code ${code}`} (see the lines prefixed ${prefix.trim()})`)),
    );
  });
}

export type { CellOutcome };
