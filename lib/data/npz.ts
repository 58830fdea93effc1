/**
 * NumPy `.npy` / `.npz` reading without loading whole arrays (docs/platform.md §Data in Node).
 *
 * An .npz is a ZIP of .npy files (stored by np.savez, deflated by np.savez_compressed). An .npy is
 *   "\x93NUMPY" · major · minor · header length (u16 for v1, u32 for v2/v3) · header · data,
 * where the header is a Python dict literal: {'descr': '|u1', 'fortran_order': False, 'shape': (n, 28, 28), }.
 * Only C-order arrays are supported (numpy never writes MedMNIST in Fortran order).
 *
 * Arrays are read record by record (one record = one sample = prod(shape[1:]) elements): stored entries by
 * random access, deflated ones by streaming, so TissueMNIST at 224 px (11.9 GB, beyond Node's 2^32-element
 * typed-array cap) never has to fit in memory.
 */
import { DataError } from './errors';
import { ZipReader, type ZipEntry } from './zip';

export interface NpyHeader {
  /** numpy dtype string, e.g. '|u1', '<i8'. */
  descr: string;
  kind: 'u' | 'i' | 'f' | 'b';
  itemBytes: number;
  shape: number[];
  /** Bytes before the data (magic + lengths + header). */
  dataOffset: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/**
 * Parse the header at the start of an .npy byte string. Returns undefined if `head` is too short to hold the
 * whole header (read more and retry); throws a DataError naming `name` for anything that is not valid .npy.
 */
export function parseNpyHeader(head: Uint8Array, name: string): NpyHeader | undefined {
  if (head.length < 10) return undefined;
  if (!MAGIC.every((b, i) => head[i] === b)) throw new DataError('not a .npy array (bad magic)', name);
  const major = head[6];
  if (major < 1 || major > 3) throw new DataError(`unsupported .npy version ${major}.${head[7]}`, name);
  const lenBytes = major === 1 ? 2 : 4;
  if (head.length < 8 + lenBytes) return undefined;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const dataOffset = 8 + lenBytes + headerLen;
  if (head.length < dataOffset) return undefined;
  const text = Buffer.from(head.subarray(8 + lenBytes, dataOffset)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (!descr || !fortran || shapeText === undefined)
    throw new DataError(`unreadable .npy header: ${text.trim()}`, name);
  if (fortran === 'True') throw new DataError('Fortran-order arrays are not supported', name);
  const m = /^([<>|=])([uifb])(\d+)$/.exec(descr);
  if (!m) throw new DataError(`unsupported dtype '${descr}'`, name);
  const itemBytes = Number(m[3]);
  if (m[1] === '>' && itemBytes > 1) throw new DataError(`big-endian dtype '${descr}' is not supported`, name);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new DataError(`bad shape (${shapeText})`, name);
  return { descr, kind: m[2] as NpyHeader['kind'], itemBytes, shape, dataOffset };
}

/** Decode little-endian integer elements (u1…u8, i1…i8, b1) of `bytes` into numbers. */
export function npyIntegers(bytes: Uint8Array, header: NpyHeader, name: string): number[] {
  const { kind, itemBytes } = header;
  if (kind === 'f') throw new DataError(`expected integer labels, found dtype '${header.descr}'`, name);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Math.floor(bytes.length / itemBytes);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const at = i * itemBytes;
    switch (itemBytes) {
      case 1:
        out[i] = kind === 'i' ? dv.getInt8(at) : dv.getUint8(at);
        break;
      case 2:
        out[i] = kind === 'i' ? dv.getInt16(at, true) : dv.getUint16(at, true);
        break;
      case 4:
        out[i] = kind === 'i' ? dv.getInt32(at, true) : dv.getUint32(at, true);
        break;
      case 8:
        out[i] = Number(kind === 'i' ? dv.getBigInt64(at, true) : dv.getBigUint64(at, true));
        break;
      default:
        throw new DataError(`unsupported integer width ${itemBytes} bytes`, name);
    }
  }
  return out;
}

/** One array inside an .npz. */
export interface NpzArray {
  key: string;
  entry: ZipEntry;
  header: NpyHeader;
  /** Elements per record (product of all dimensions after the first). */
  recordElements: number;
}

export class NpzFile {
  private dataStarts = new Map<string, number>();

  private constructor(
    readonly file: string,
    readonly zip: ZipReader,
    readonly arrays: Map<string, NpzArray>,
  ) {}

  /** Open an .npz and parse every member's .npy header (deflated members: only their first bytes are inflated). */
  static async open(file: string): Promise<NpzFile> {
    const zip = ZipReader.open(file);
    try {
      const arrays = new Map<string, NpzArray>();
      for (const entry of zip.entries) {
        if (!entry.name.endsWith('.npy')) continue;
        const key = entry.name.slice(0, -4);
        const label = `${file}:${key}`;
        let head = new Uint8Array(0);
        let header: NpyHeader | undefined;
        for await (const chunk of zip.stream(entry, 1 << 16)) {
          const grown = new Uint8Array(head.length + chunk.length);
          grown.set(head);
          grown.set(chunk, head.length);
          head = grown;
          header = parseNpyHeader(head, label);
          if (header) break; // stops the stream early: the rest stays on disk
        }
        if (!header) throw new DataError('truncated .npy header', label);
        const recordElements = header.shape.slice(1).reduce((a, b) => a * b, 1);
        const expected = header.dataOffset + header.shape.reduce((a, b) => a * b, 1) * header.itemBytes;
        if (expected !== entry.uncompressedSize) {
          throw new DataError(
            `array of shape (${header.shape.join(', ')}) needs ${expected} bytes but the member holds ${entry.uncompressedSize}`,
            label,
          );
        }
        arrays.set(key, { key, entry, header, recordElements });
      }
      return new NpzFile(file, zip, arrays);
    } catch (e) {
      zip.close();
      throw e;
    }
  }

  close(): void {
    this.zip.close();
  }

  get(key: string): NpzArray {
    const a = this.arrays.get(key);
    if (!a) {
      throw new DataError(`missing array '${key}' (found: ${[...this.arrays.keys()].join(', ') || 'none'})`, this.file);
    }
    return a;
  }

  /** The whole array's data bytes (for small arrays, e.g. labels). */
  async readAll(key: string): Promise<Uint8Array> {
    const a = this.get(key);
    const all = await this.zip.readAll(a.entry);
    return all.subarray(a.header.dataOffset);
  }

  /** Whether records of `key` can be read at random (stored member). */
  isRandomAccess(key: string): boolean {
    return this.get(key).entry.method === 0;
  }

  /** Record `i` of a stored member (random access). */
  readRecord(key: string, i: number): Uint8Array {
    const a = this.get(key);
    const bytes = a.recordElements * a.header.itemBytes;
    let start = this.dataStarts.get(key);
    if (start === undefined) this.dataStarts.set(key, (start = this.zip.dataOffset(a.entry)));
    return this.zip.readStored(a.entry, a.header.dataOffset + i * bytes, bytes, start);
  }

  /**
   * Every record of `key` in order, each as its own Uint8Array of prod(shape[1:])·itemBytes bytes, streamed
   * from disk (memory: one read chunk plus one record).
   */
  async *records(key: string): AsyncGenerator<Uint8Array> {
    const a = this.get(key);
    const recBytes = a.recordElements * a.header.itemBytes;
    let skip = a.header.dataOffset; // header bytes still to drop
    let rec = new Uint8Array(recBytes);
    let fill = 0;
    for await (const chunk of this.zip.stream(a.entry)) {
      let p = 0;
      if (skip > 0) {
        p = Math.min(skip, chunk.length);
        skip -= p;
      }
      while (p < chunk.length) {
        const n = Math.min(recBytes - fill, chunk.length - p);
        rec.set(chunk.subarray(p, p + n), fill);
        fill += n;
        p += n;
        if (fill === recBytes) {
          yield rec;
          rec = new Uint8Array(recBytes);
          fill = 0;
        }
      }
    }
  }
}
