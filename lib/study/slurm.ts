/**
 * The Slurm executor: one `sbatch --array` job, one array task per unfinished cell, each task running
 * `npm run study -- <file> --cell $SLURM_ARRAY_TASK_ID` in this checkout; the cells write their run
 * folders and cell.json files to the shared file system, and this process follows the job with
 * `squeue` / `scontrol show job` (`sacct` needs Slurm's accounting database, which small clusters often
 * lack), then aggregates the cell.json files as the local executor does.
 *
 * `--slurm-args` ('--partition=gpu --time=04:00:00 --mem=16G --gres=gpu:1 ...') become `#SBATCH` lines,
 * so the written script can be resubmitted by hand. Task output goes to <runsDir>/slurm/%A_%a.out.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { atomicWriteFile } from '../util/fs';
import type { Study } from './definition';

export interface SlurmScriptOptions {
  /** Cells to run (array task ids = cell indices). */
  cells: number[];
  /** Extra sbatch options, e.g. ['--partition=debug', '--time=01:00:00']. */
  slurmArgs?: string[];
  /** Repository root the tasks cd into (default the working directory). */
  repoRoot?: string;
  /** The command a task runs before its cell index (default `npm run -s study -- <study file>`). */
  taskCommand?: string;
}

/** `--slurm-args` text → sbatch options (whitespace-separated; quotes group). */
export function splitSlurmArgs(text: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2] ?? m[3]);
  for (const a of out)
    if (!a.startsWith('-'))
      throw new Error(`--slurm-args: '${a}' is not an sbatch option (write e.g. --partition=gpu --time=02:00:00)`);
  return out;
}

/** Slurm's array syntax for a list of indices: ranges joined by commas (0-3,7,9-10). */
export function arraySpec(indices: number[]): string {
  const s = [...new Set(indices)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    parts.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

const shellQuote = (s: string) => (/^[A-Za-z0-9_./=:@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The sbatch script's text. */
export function slurmScript(study: Study, opts: SlurmScriptOptions): string {
  if (opts.cells.length === 0) throw new Error('slurmScript: no cells to submit');
  const root = path.resolve(opts.repoRoot ?? process.cwd());
  const logDir = path.join(study.runsDir, 'slurm');
  const task =
    opts.taskCommand ??
    `npm run -s study -- ${shellQuote(path.relative(root, path.resolve(study.file)) || study.file)}`;
  return [
    '#!/bin/bash',
    `# Study ${study.def.name}: one array task per cell (written by npm run study -- ${path.relative(root, study.file)} --executor slurm).`,
    `#SBATCH --job-name=study-${study.def.name}`,
    `#SBATCH --array=${arraySpec(opts.cells)}`,
    `#SBATCH --output=${logDir}/%A_%a.out`,
    '#SBATCH --ntasks=1',
    ...(opts.slurmArgs ?? []).map((a) => `#SBATCH ${a}`),
    'set -euo pipefail',
    `cd ${shellQuote(root)}`,
    `exec ${task} --cell "$SLURM_ARRAY_TASK_ID"`,
    '',
  ].join('\n');
}

/** Run a Slurm client command (30 s timeout); errors name the command. */
function slurmCmd(cmd: string, args: string[], timeoutMs = 30000): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { code?: string; stderr?: string; message: string };
    if (err.code === 'ENOENT')
      throw new Error(`${cmd} not found: --executor slurm needs the Slurm client commands on PATH`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(err.stderr || err.message).trim().split('\n')[0]}`);
  }
}

/** Write the script to <runsDir>/slurm/study-<name>.sbatch and submit it; returns the job id. */
export function submitArray(study: Study, opts: SlurmScriptOptions): { jobId: string; script: string } {
  const script = path.join(study.runsDir, 'slurm', `study-${study.def.name}.sbatch`);
  fs.mkdirSync(path.dirname(script), { recursive: true });
  atomicWriteFile(script, slurmScript(study, opts));
  fs.chmodSync(script, 0o755);
  const out = slurmCmd('sbatch', ['--parsable', script]).trim();
  const jobId = out.split(';')[0];
  if (!/^\d+$/.test(jobId)) throw new Error(`sbatch: unexpected reply '${out}' (expected a job id)`);
  return { jobId, script };
}

/** Array task states of a job from squeue (finished tasks stay listed for MinJobAge). */
export function taskStates(jobId: string): Map<string, string> {
  const out = slurmCmd('squeue', ['-h', '-t', 'all', '-r', '-j', jobId, '-o', '%i %T']);
  const states = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [id, state] = line.trim().split(/\s+/);
    if (id && state) states.set(id, state);
  }
  return states;
}

/** Exit code per array task from `scontrol show job` ('0:0' = success). */
export function taskExitCodes(jobId: string): Map<string, { state: string; exitCode: string }> {
  const out = slurmCmd('scontrol', ['show', 'job', jobId]);
  const res = new Map<string, { state: string; exitCode: string }>();
  for (const block of out.split(/\n\s*\n/)) {
    const arrayJob = /ArrayJobId=(\d+)/.exec(block)?.[1];
    const task = /ArrayTaskId=(\S+)/.exec(block)?.[1];
    const state = /JobState=(\S+)/.exec(block)?.[1];
    const exitCode = /\bExitCode=(\S+)/.exec(block)?.[1];
    if (arrayJob && task && state && exitCode) res.set(`${arrayJob}_${task}`, { state, exitCode });
  }
  return res;
}

const ACTIVE = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'REQUEUED', 'RESIZING', 'SUSPENDED']);

/** Poll until no task of the job is active; `onPoll` gets the counts per state. Returns the final states. */
export async function followJob(
  jobId: string,
  opts: { pollSeconds?: number; timeoutSeconds?: number; onPoll?: (counts: Record<string, number>) => void } = {},
): Promise<Map<string, { state: string; exitCode: string }>> {
  const t0 = Date.now();
  let last = '';
  for (;;) {
    const states = taskStates(jobId);
    const counts: Record<string, number> = {};
    for (const s of states.values()) counts[s] = (counts[s] ?? 0) + 1;
    const text = JSON.stringify(counts);
    if (text !== last) opts.onPoll?.(counts);
    last = text;
    // A pending array is listed as one line '<id>_[0-3]' until its tasks start.
    const active = [...states.values()].some((s) => ACTIVE.has(s));
    if (!active) {
      try {
        return taskExitCodes(jobId);
      } catch {
        return new Map(); // already purged (older than MinJobAge): the cell.json files tell what finished
      }
    }
    if (opts.timeoutSeconds && Date.now() - t0 > opts.timeoutSeconds * 1000)
      throw new Error(`Slurm job ${jobId} still running after ${opts.timeoutSeconds} s (scancel ${jobId} to stop it)`);
    await new Promise((r) => setTimeout(r, (opts.pollSeconds ?? 2) * 1000));
  }
}
