/**
 * A small ZIP reader for .npz files and downloaded archives, built for files larger than memory:
 *   - the central directory is read from the end of the file (ZIP64 records understood, which numpy
 *     writes for every array via `force_zip64`), and no entry is loaded whole unless asked;
 *   - stored entries (np.savez) allow random access: `readStored(entry, offset, length)`;
 *   - deflated entries (np.savez_compressed) stream through Node's native raw-inflate: `stream(entry)`;
 *   - `stream` checks each entry's CRC-32 and size at its end, so a damaged archive is refused.
 * Format: PKWARE APPNOTE.TXT §4.3 (local header, central directory, end-of-central-directory, ZIP64).
 */
import * as fs from 'fs';
import { pipeline } from 'stream';
import * as zlib from 'zlib';
import { DataError, describeError } from './errors';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  uncompressedSize: number;
  crc32: number;
  /** Offset of the entry's local header in the file. */
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** CRC-32 (IEEE 802.3, the ZIP/PNG polynomial), incremental: pass the previous value to continue. */
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(data: Uint8Array, previous = 0): number {
  let c = ~previous;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Read a little-endian u64 as a JS number (exact below 2^53, far beyond any real file). */
function u64(dv: DataView, at: number): number {
  return dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 2 ** 32;
}

export class ZipReader {
  private constructor(
    readonly file: string,
    private readonly fd: number,
    readonly size: number,
    readonly entries: ZipEntry[],
  ) {}

  /** Open `file` and read its central directory. Throws a DataError for anything that is not a ZIP. */
  static open(file: string): ZipReader {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new DataError(`cannot open (${describeError(e)})`, file);
    }
    try {
      const size = fs.fstatSync(fd).size;
      return new ZipReader(file, fd, size, readCentralDirectory(file, fd, size));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.find((e) => e.name === name);
  }

  /** File offset where the entry's (possibly compressed) data starts. */
  dataOffset(entry: ZipEntry): number {
    const head = this.read(entry.localHeaderOffset, 30);
    const dv = new DataView(head.buffer, head.byteOffset, 30);
    if (dv.getUint32(0, true) !== SIG_LOCAL) {
      throw new DataError(`corrupt zip: no local header for entry '${entry.name}'`, this.file);
    }
    return entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
  }

  /** Random access into a stored (uncompressed) entry: `length` bytes from `offset` within the entry. */
  readStored(entry: ZipEntry, offset: number, length: number, dataStart = this.dataOffset(entry)): Uint8Array {
    if (entry.method !== 0) throw new Error(`entry '${entry.name}' is compressed; use stream()`);
    if (offset + length > entry.uncompressedSize) {
      throw new DataError(`read past the end of entry '${entry.name}'`, this.file);
    }
    return this.read(dataStart + offset, length);
  }

  /** Read `length` bytes at `position` of the file (throws on a short read: the file was truncated). */
  read(position: number, length: number): Uint8Array {
    const buf = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, got, length - got, position + got);
      if (n === 0) throw new DataError(`truncated: wanted ${length} bytes at offset ${position}`, this.file);
      got += n;
    }
    return buf;
  }

  /**
   * The entry's uncompressed bytes as a sequence of chunks (any sizes), read from disk as they are consumed.
   * The CRC-32 and size are verified when the last chunk has been produced.
   */
  async *stream(entry: ZipEntry, chunkBytes = 1 << 20): AsyncGenerator<Uint8Array> {
    if (entry.method !== 0 && entry.method !== 8) {
      throw new DataError(
        `entry '${entry.name}' uses compression method ${entry.method} (only stored/deflate)`,
        this.file,
      );
    }
    const start = this.dataOffset(entry);
    if (start + entry.compressedSize > this.size) {
      throw new DataError(`truncated: entry '${entry.name}' runs past the end of the file`, this.file);
    }
    let crc = 0;
    let total = 0;
    if (entry.compressedSize > 0) {
      const raw = fs.createReadStream(this.file, {
        start,
        end: start + entry.compressedSize - 1,
        highWaterMark: chunkBytes,
      });
      let source: AsyncIterable<Buffer> = raw;
      if (entry.method === 8) {
        const inflater = zlib.createInflateRaw({ chunkSize: chunkBytes });
        // pipeline() forwards a read error on the file into the inflater, so the loop below sees it.
        pipeline(raw, inflater, () => undefined);
        source = inflater;
      }
      try {
        for await (const chunk of source) {
          const u8 = chunk as Uint8Array;
          crc = crc32(u8, crc);
          total += u8.length;
          yield u8;
        }
      } catch (e) {
        throw new DataError(`corrupt data in entry '${entry.name}' (${describeError(e)})`, this.file);
      } finally {
        raw.destroy(); // also when the consumer stops early
      }
    }
    if (total !== entry.uncompressedSize) {
      throw new DataError(
        `entry '${entry.name}' inflated to ${total} bytes, the directory says ${entry.uncompressedSize}`,
        this.file,
      );
    }
    if (crc !== entry.crc32)
      throw new DataError(`CRC-32 mismatch in entry '${entry.name}' (damaged archive)`, this.file);
  }

  /** The whole entry in memory (for small entries such as label arrays). */
  async readAll(entry: ZipEntry): Promise<Uint8Array> {
    const out = new Uint8Array(entry.uncompressedSize);
    let at = 0;
    for await (const chunk of this.stream(entry)) {
      if (at + chunk.length > out.length) {
        throw new DataError(`entry '${entry.name}' is larger than its directory record`, this.file);
      }
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

/** Locate the end-of-central-directory record (and its ZIP64 twin), then read every central entry. */
function readCentralDirectory(file: string, fd: number, size: number): ZipEntry[] {
  const read = (pos: number, len: number) => {
    const b = Buffer.alloc(len);
    const n = fs.readSync(fd, b, 0, len, pos);
    return b.subarray(0, n);
  };
  const notZip = (why: string) => new DataError(`not a valid zip archive (${why})`, file);
  if (size < 22) throw notZip(`only ${size} bytes`);
  const tailLen = Math.min(size, 22 + 0xffff);
  const tail = read(size - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw notZip('no end-of-central-directory record; truncated download?');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdPos = size - tailLen + eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = read(eocdPos - 20, 20);
    if (loc.length < 20 || loc.readUInt32LE(0) !== SIG_EOCD64_LOCATOR) throw notZip('missing ZIP64 locator');
    const rec = read(u64(new DataView(loc.buffer, loc.byteOffset, 20), 8), 56);
    const dv = new DataView(rec.buffer, rec.byteOffset, rec.length);
    if (rec.length < 56 || dv.getUint32(0, true) !== SIG_EOCD64) throw notZip('bad ZIP64 end record');
    count = u64(dv, 32);
    cdSize = u64(dv, 40);
    cdOffset = u64(dv, 48);
  }
  if (cdOffset + cdSize > size) throw notZip('central directory lies past the end of the file; truncated?');
  const cd = read(cdOffset, cdSize);
  const dv = new DataView(cd.buffer, cd.byteOffset, cd.length);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || dv.getUint32(p, true) !== SIG_CENTRAL) throw notZip(`bad central entry #${i}`);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    const e: ZipEntry = {
      name: cd.subarray(p + 46, p + 46 + nameLen).toString('utf8'),
      method: dv.getUint16(p + 10, true),
      crc32: dv.getUint32(p + 16, true),
      compressedSize: dv.getUint32(p + 20, true),
      uncompressedSize: dv.getUint32(p + 24, true),
      localHeaderOffset: dv.getUint32(p + 42, true),
    };
    // ZIP64 extended information (tag 0x0001): 8-byte values for whichever 32-bit fields are saturated.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const tag = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (tag === 0x0001) {
        let q = x + 4;
        if (e.uncompressedSize === 0xffffffff) {
          e.uncompressedSize = u64(dv, q);
          q += 8;
        }
        if (e.compressedSize === 0xffffffff) {
          e.compressedSize = u64(dv, q);
          q += 8;
        }
        if (e.localHeaderOffset === 0xffffffff) e.localHeaderOffset = u64(dv, q);
      }
      x += 4 + len;
    }
    entries.push(e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}
