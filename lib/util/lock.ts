/**
 * One writer per folder: a lock file holding who writes there (pid, host, start time, command).
 *
 *   const lock = acquireFolderLock(runDir, { command: 'train' });   // throws FolderLockedError if held
 *   try { ... } finally { lock.release(); }
 *
 * The lock file is created with O_EXCL ('wx'), so of two processes racing for it exactly one wins. A lock
 * left by a process that no longer exists on this host (kill -9, power cut) is stale: it is taken over,
 * with a warning. A lock from another host cannot be checked from here and is never taken over; the error
 * says which file to delete once that process is known to be gone. `train`/`--resume` take it on the run
 * folder (lib/train/run.ts); any other writer of a run folder (e.g. a study) takes the same lock.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const LOCK_FILE = '.lock';

/** What the lock file records. */
export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  startedAt: string;
  /** What holds it, e.g. 'train', 'train --resume', 'study'. */
  command: string;
}

export class FolderLockedError extends Error {
  constructor(
    readonly file: string,
    readonly holder: LockInfo,
  ) {
    super(
      `${path.dirname(file)} is in use by pid ${holder.pid} on ${holder.host} (${holder.command}, since ${holder.startedAt}); ` +
        `wait for it to finish, or, if that process is gone, delete ${file}`,
    );
    this.name = 'FolderLockedError';
  }
}

export interface FolderLock {
  readonly file: string;
  readonly info: LockInfo;
  /** Remove the lock (only if it is still ours); safe to call twice. */
  release(): void;
}

export interface AcquireOptions {
  command: string;
  /** Told when a stale lock is taken over (default console.warn). */
  warn?: (line: string) => void;
}

/**
 * Is process `pid` alive on this host? Signal 0 checks without sending anything (EPERM = alive, not ours).
 * A zombie — dead, but not yet reaped by its parent, as happens to orphans in containers whose init does
 * not reap — still answers signal 0, so on Linux its state in /proc/<pid>/stat counts too.
 */
export function processAlive(pid: number): boolean {
  if (!(Number.isInteger(pid) && pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3); // after "pid (comm) "
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (not Linux): signal 0 is all there is
  }
}

/** The lock's holder, or undefined when there is no lock file. An unreadable lock file is an error. */
export function readLock(dir: string): LockInfo | undefined {
  const file = path.join(dir, LOCK_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const info = JSON.parse(text) as LockInfo;
    if (typeof info.pid === 'number' && typeof info.host === 'string') return info;
  } catch {
    // fall through
  }
  // A half-written lock (the writer died between create and write) is treated as held by an unknown process
  // on this host: stale unless the pid is alive, which it cannot be checked for, so pid 0 = dead.
  return { pid: 0, host: os.hostname(), startedAt: 'unknown', command: 'unknown (unreadable lock file)' };
}

/** Take the lock on `dir` (created if missing) or throw FolderLockedError naming the holder. */
export function acquireFolderLock(dir: string, opts: AcquireOptions): FolderLock {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const info: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    startedAt: new Date().toISOString(),
    command: opts.command,
  };
  const warn = opts.warn ?? ((l: string) => console.warn(l));
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      try {
        fs.writeSync(fd, JSON.stringify(info) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return makeLock(file, info);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = readLock(dir);
    if (!holder) continue; // released between our attempt and the read: try again
    if (holder.host !== info.host || processAlive(holder.pid) || holder.pid === process.pid) {
      throw new FolderLockedError(file, holder);
    }
    warn(
      `warning: taking over the stale lock ${file} (pid ${holder.pid} on ${holder.host}, ${holder.command}, ` +
        `since ${holder.startedAt}, is no longer running)`,
    );
    // Move the stale file aside, then race for a fresh one with O_EXCL again. (Two processes taking over
    // the same stale lock at the same instant could still both get past this point; the window is the
    // time between reading the holder and the rename, microseconds, against human-started commands.)
    const aside = `${file}.stale.${process.pid}`;
    try {
      fs.renameSync(file, aside);
      fs.rmSync(aside, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  const holder = readLock(dir);
  throw holder ? new FolderLockedError(file, holder) : new Error(`${file}: could not take the lock`);
}

function makeLock(file: string, info: LockInfo): FolderLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener('exit', release);
    const current = readLock(path.dirname(file));
    if (current && current.pid === info.pid && current.startedAt === info.startedAt) fs.rmSync(file, { force: true });
  };
  // A process that exits without reaching `finally` (process.exit in a signal handler) still releases it.
  process.on('exit', release);
  return { file, info, release };
}
