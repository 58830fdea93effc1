/**
 * File helpers shared by every writer in the kit (checkpoints, caches, tables, reports).
 *
 * Node built-ins are imported as 'node:fs' / 'node:path': tslab resolves a bare 'fs' inside a file named
 * fs.ts to the file itself (endless recursion), which the explicit scheme avoids.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Write `data` to `file` via a temp file + fsync + rename, so a crash never leaves a half-written file. */
export function atomicWriteFile(file: string, data: Uint8Array | string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** JSON with a trailing newline, written atomically. */
export function atomicWriteJson(file: string, value: unknown): void {
  atomicWriteFile(file, JSON.stringify(value, null, 2) + '\n');
}
