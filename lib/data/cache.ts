/**
 * The decoded-sample cache: every sample of a dataset decoded once, eval-resized to size×size (PIL bilinear,
 * resample.ts) and stored as uint8 in one flat file, with a JSON index.
 *
 *   <dataset cache folder>/s<size>.bin    slot k = bytes [k·S·S·C, (k+1)·S·S·C): train slots, then val, then test;
 *                                          C = 3, or 1 for grey .npz sources (a third of the disk; RGB on read)
 *   <dataset cache folder>/s<size>.json   version, source fingerprint, classes, labels, skipped files, and the
 *                                          normalisation statistics (mean/std over all train pixels at this size)
 *
 * Built with bounded concurrency and a progress line; written to temp files and renamed into place (the .bin
 * first, the .json last), so a crash or a bad file never leaves a half-written cache that looks valid.
 * Reused while the fingerprint (every file's path, label, size and mtime) is unchanged; rebuilt otherwise.
 * Reads are positioned reads of single samples, so memory stays bounded for any dataset size; sets whose
 * file fits `memoryBudgetBytes` are read into memory once instead.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { atomicWriteJson, writeFully } from '../util/fs';
import type { RgbImage } from './decode';
import { DataError, type SkippedItem } from './errors';
import { pixelReader } from './pixels';
import { resizeBilinear } from './resample';
import { PixelHistogram, type ChannelStats } from './transforms';
import { SPLIT_NAMES, type SourceListing, type SplitName } from './types';
import { statusStream } from '../util/status-stream';

export const CACHE_VERSION = 1;

export interface CacheSplitIndex {
  /** First slot of this split in the .bin file. */
  slotOffset: number;
  /** Slots reserved (= samples the source listed, including skipped ones). */
  slots: number;
  /** Slot (relative to slotOffset) of each kept sample; null when nothing was skipped (identity). */
  kept: number[] | null;
  /** Label of each kept sample. */
  labels: number[];
}

export interface CacheIndex {
  version: number;
  format: 'u8-hwc';
  size: number;
  /** Channels stored per pixel: 3, or 1 for grey sources (MedMNIST grey sets), expanded to RGB on read. */
  channels: 1 | 3;
  sampleBytes: number;
  fingerprint: string;
  dataset: { name: string; kind: string; root: string; classes: string[]; synthetic: boolean };
  /** Normalisation statistics over all pixels of the train split at this size. */
  stats: ChannelStats;
  splits: Record<SplitName, CacheSplitIndex>;
  skipped: SkippedItem[];
  createdAt: string;
  buildSeconds: number;
}

export interface BuildOptions {
  size: number;
  /** Per-dataset cache folder (paths.datasetCacheFolder). */
  folder: string;
  fingerprint: string;
  skipBad: boolean;
  /** Decodes in flight (default: 2 × CPU count). */
  concurrency?: number;
  /** true/false, or a callback; default: a bar on a TTY, a few plain lines otherwise. */
  progress?: boolean | ((done: number, total: number) => void);
  /** Rebuild even if a valid cache exists. */
  rebuild?: boolean;
}

export function cachePaths(folder: string, size: number): { bin: string; json: string } {
  return { bin: path.join(folder, `s${size}.bin`), json: path.join(folder, `s${size}.json`) };
}

/** The index if a valid cache for this fingerprint and size exists, else undefined. */
export function readValidIndex(folder: string, size: number, fingerprint: string): CacheIndex | undefined {
  const { bin, json } = cachePaths(folder, size);
  try {
    const idx = JSON.parse(fs.readFileSync(json, 'utf8')) as CacheIndex;
    if (idx.version !== CACHE_VERSION || idx.size !== size || idx.fingerprint !== fingerprint) return undefined;
    const slots = SPLIT_NAMES.reduce((n, s) => n + idx.splits[s].slots, 0);
    if (fs.statSync(bin).size !== slots * idx.sampleBytes) return undefined;
    return idx;
  } catch {
    return undefined;
  }
}

/** A progress reporter: a redrawn bar on a TTY, otherwise a line every 20%. */
function progressReporter(label: string, option: BuildOptions['progress']): (done: number, total: number) => void {
  if (typeof option === 'function') return option;
  if (option === false) return () => undefined;
  const tty = statusStream().isTTY === true;
  const t0 = Date.now();
  let lastStep = -1;
  return (done, total) => {
    const frac = total ? done / total : 1;
    const rate = done / Math.max((Date.now() - t0) / 1000, 1e-3);
    if (tty) {
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      statusStream().write(
        `\r${label} [${bar}] ${done}/${total} ${rate.toFixed(0)} img/s${done === total ? '\n' : ''}`,
      );
    } else {
      const step = Math.floor(frac * 5);
      if (step !== lastStep) {
        lastStep = step;
        statusStream().write(
          `${label}: ${done}/${total} images (${(frac * 100).toFixed(0)}%, ${rate.toFixed(0)} img/s)\n`,
        );
      }
    }
  };
}

/** Decode, resize and store every sample; returns the new index. Never leaves partial files behind. */
export async function buildCache(listing: SourceListing, opts: BuildOptions): Promise<CacheIndex> {
  const { size, folder } = opts;
  const t0 = Date.now();
  const channels: 1 | 3 = listing.npz?.channels === 1 ? 1 : 3;
  const sampleBytes = size * size * channels;
  const grey = new Uint8Array(size * size);
  const { bin, json } = cachePaths(folder, size);
  fs.mkdirSync(folder, { recursive: true });
  const stamp = `${process.pid}.${Date.now()}`;
  const tmpBin = `${bin}.${stamp}.tmp`;
  const splits = {} as Record<SplitName, CacheSplitIndex>;
  let slot = 0;
  for (const s of SPLIT_NAMES) {
    const n = listing.splits[s].length;
    splits[s] = { slotOffset: slot, slots: n, kept: null, labels: [] };
    slot += n;
  }
  const total = slot;
  const report = progressReporter(`caching ${listing.name} at ${size}px`, opts.progress);
  const reader = pixelReader(listing);
  const skipped: SkippedItem[] = [];
  const hist = new PixelHistogram();
  const concurrency = opts.concurrency ?? Math.max(2, 2 * os.cpus().length);
  const fd = fs.openSync(tmpBin, 'w');
  let done = 0;
  try {
    fs.ftruncateSync(fd, total * sampleBytes);
    report(0, total);
    for (const s of SPLIT_NAMES) {
      const refs = listing.splits[s];
      const ok = new Uint8Array(refs.length);
      await reader.forEach(s, concurrency, (i, img, problem) => {
        if (!img) {
          if (!opts.skipBad) throw new DataError(problem ?? 'cannot decode', refs[i].path);
          skipped.push({ file: refs[i].path, problem: problem ?? 'cannot decode' });
        } else {
          const sized: RgbImage = img.width === size && img.height === size ? img : resizeBilinear(img, size, size);
          let bytes = sized.data;
          if (channels === 1) {
            for (let p = 0; p < grey.length; p++) grey[p] = sized.data[3 * p]; // R = G = B for grey sources
            bytes = grey;
          }
          writeFully(fd, bytes.subarray(0, sampleBytes), bin, (splits[s].slotOffset + i) * sampleBytes);
          if (s === 'train') hist.add(sized.data);
          ok[i] = 1;
        }
        report(++done, total);
      });
      const kept: number[] = [];
      ok.forEach((v, i) => v && kept.push(i));
      splits[s].labels = kept.map((i) => refs[i].label);
      splits[s].kept = kept.length === refs.length ? null : kept;
    }
    if (splits.train.labels.length === 0) throw new DataError('no decodable train images', listing.root);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmpBin, { force: true });
    reader.close();
    throw e;
  }
  fs.closeSync(fd);
  reader.close();
  const index: CacheIndex = {
    version: CACHE_VERSION,
    format: 'u8-hwc',
    size,
    channels,
    sampleBytes,
    fingerprint: opts.fingerprint,
    dataset: {
      name: listing.name,
      kind: listing.kind,
      root: listing.root,
      classes: listing.classes,
      synthetic: listing.synthetic,
    },
    stats: hist.stats(),
    splits,
    skipped,
    createdAt: new Date().toISOString(),
    buildSeconds: (Date.now() - t0) / 1000,
  };
  // Invalidate the old index before replacing the data it describes; the new index goes in last.
  fs.rmSync(json, { force: true });
  fs.renameSync(tmpBin, bin);
  atomicWriteJson(json, index);
  return index;
}

/** Read access to a built cache. */
export class SampleStore {
  private fd: number | undefined;
  private memory: Uint8Array | undefined;

  constructor(
    readonly file: string,
    readonly index: CacheIndex,
    memoryBudgetBytes: number,
  ) {
    const bytes = fs.statSync(file).size;
    if (bytes <= memoryBudgetBytes) {
      const buf = fs.readFileSync(file);
      this.memory = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
    } else {
      this.fd = fs.openSync(file, 'r');
    }
  }

  /** Number of (kept) samples in a split. */
  count(split: SplitName): number {
    return this.index.splits[split].labels.length;
  }

  /** Slot of kept sample i (the position in the .bin file). */
  slotOf(split: SplitName, i: number): number {
    const s = this.index.splits[split];
    if (!(i >= 0 && i < s.labels.length))
      throw new RangeError(`${split}[${i}] does not exist (${s.labels.length} samples)`);
    return s.slotOffset + (s.kept ? s.kept[i] : i);
  }

  /** Sample i of a split as RGB: size·size·3 bytes (a fresh copy the caller may modify). */
  async read(split: SplitName, i: number): Promise<Uint8Array> {
    const n = this.index.sampleBytes;
    const at = this.slotOf(split, i) * n;
    let buf: Uint8Array;
    if (this.memory) {
      buf = this.memory.slice(at, at + n);
    } else {
      if (this.fd === undefined) throw new Error('SampleStore is closed');
      buf = new Uint8Array(n);
      const fd = this.fd;
      const got = await new Promise<number>((resolve, reject) =>
        fs.read(fd, buf, 0, n, at, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead))),
      );
      if (got !== n) throw new DataError(`short read of ${split}[${i}] (cache file truncated?)`, this.file);
    }
    if (this.index.channels === 3) return buf;
    const rgb = new Uint8Array(n * 3);
    for (let p = 0; p < n; p++) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = buf[p];
    return rgb;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    this.memory = undefined;
  }
}
