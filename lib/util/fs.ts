/**
 * File helpers shared by every writer in the kit (checkpoints, caches, tables, reports).
 *
 * An atomic write is: temp file in the target's folder → every byte written (fs.writeSync may write fewer
 * bytes than asked, e.g. when the disk fills, so it is called until all are written or it throws) → fsync
 * of the file → rename over the final name → fsync of the folder (so the rename itself survives a power
 * cut). Any failure removes the temp file and leaves the previous file untouched: a full disk never puts a
 * fragment under a final name.
 *
 * Node built-ins are imported as 'node:fs' / 'node:path': tslab resolves a bare 'fs' inside a file named
 * fs.ts to the file itself (endless recursion), which the explicit scheme avoids.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** One file of a group written by `atomicWriteFiles`. */
export interface FileToWrite {
  file: string;
  data: Uint8Array | string;
}

/**
 * Write all of `bytes` to `fd` (at `position`, or the current offset), looping over short writes; a write
 * that makes no progress is an ENOSPC error naming `file`.
 */
export function writeFully(fd: number, bytes: Uint8Array, file = '<fd>', position?: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const at = position === undefined ? null : position + done;
    const n = fs.writeSync(fd, bytes, done, bytes.byteLength - done, at);
    if (!(n > 0)) {
      const err = new Error(
        `${file}: wrote ${done} of ${bytes.byteLength} bytes, then the system accepted no more (disk full?)`,
      ) as NodeJS.ErrnoException;
      err.code = 'ENOSPC';
      throw err;
    }
    done += n;
  }
}

/** fsync a folder so a rename inside it is durable (a no-op where folders cannot be opened, e.g. Windows). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

let tmpCounter = 0;

/** Write `data` to a fresh temp file next to `file` (fully, fsync'd) and return its name; removed on failure. */
function stage(file: string, data: Uint8Array | string): string {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.${tmpCounter++}.tmp`;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx');
    writeFully(fd, bytes, file);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    return tmp;
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    fs.rmSync(tmp, { force: true });
    throw withFile(e, file);
  }
}

/** The error with the final file's name in front (the temp name means nothing to a user). */
function withFile(e: unknown, file: string): Error {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error)) return new Error(`writing ${file}: ${String(e)}`);
  if (!err.message.includes(file)) err.message = `writing ${file}: ${err.message}`;
  if (err.code === 'ENOSPC') err.message += '; the previous version of the file is kept';
  return err;
}

/** Write `data` to `file` atomically (see the file doc): the file is either the old one or the new one. */
export function atomicWriteFile(file: string, data: Uint8Array | string): void {
  atomicWriteFiles([{ file, data }]);
}

/**
 * Write several files as one unit: every temp file is written and fsync'd first; only when all succeeded
 * are they renamed into place, in the given order (put the file that names the others last, e.g. weights
 * then the JSON that describes them). A failure while staging changes none of the final files.
 */
export function atomicWriteFiles(files: FileToWrite[]): void {
  const staged: Array<{ tmp: string; file: string }> = [];
  try {
    for (const f of files) staged.push({ tmp: stage(f.file, f.data), file: f.file });
  } catch (e) {
    for (const s of staged) fs.rmSync(s.tmp, { force: true });
    throw e;
  }
  const dirs = new Set<string>();
  for (let i = 0; i < staged.length; i++) {
    try {
      fs.renameSync(staged[i].tmp, staged[i].file);
    } catch (e) {
      for (const s of staged.slice(i)) fs.rmSync(s.tmp, { force: true });
      throw withFile(e, staged[i].file);
    }
    dirs.add(path.dirname(path.resolve(staged[i].file)));
  }
  for (const d of dirs) fsyncDir(d);
}

/** JSON with a trailing newline, written atomically. */
export function atomicWriteJson(file: string, value: unknown): void {
  atomicWriteFile(file, jsonText(value));
}

/** The JSON text the kit writes (two-space indent, trailing newline). */
export function jsonText(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}
