/**
 * Pixel access for a listing: decode sample i of a split, or visit a whole split with bounded concurrency.
 *
 *   files  sharp decodes on libuv's thread pool, so `concurrency` decodes run in parallel;
 *   npz    stored arrays are read record by record at random; deflated arrays are inflated as a stream
 *          (sequential only: random access to sample i re-inflates up to i, so use the cache for that).
 * Grey npz records are expanded to RGB here (R = G = B).
 */
import type { RgbImage } from './decode';
import { decodeImage } from './decode';
import { DataError, describeError } from './errors';
import { NpzFile } from './npz';
import type { NpzListing, SourceListing, SplitName } from './types';

/** Called for each sample: either the image or the reason it could not be decoded. */
export type SampleVisitor = (index: number, image: RgbImage | undefined, problem?: string) => void | Promise<void>;

export interface PixelReader {
  read(split: SplitName, index: number): Promise<RgbImage>;
  forEach(split: SplitName, concurrency: number, visit: SampleVisitor): Promise<void>;
  close(): void;
}

export function pixelReader(listing: SourceListing): PixelReader {
  return listing.npz ? new NpzPixels(listing.npz) : new FilePixels(listing);
}

class FilePixels implements PixelReader {
  constructor(private readonly listing: SourceListing) {}

  read(split: SplitName, index: number): Promise<RgbImage> {
    const ref = this.listing.splits[split][index];
    if (!ref) throw new RangeError(`${split}[${index}] does not exist (${this.listing.splits[split].length} samples)`);
    return decodeImage(ref.path);
  }

  async forEach(split: SplitName, concurrency: number, visit: SampleVisitor): Promise<void> {
    const refs = this.listing.splits[split];
    let next = 0;
    let failure: unknown;
    const worker = async () => {
      while (failure === undefined && next < refs.length) {
        const i = next++;
        let img: RgbImage | undefined;
        let problem: string | undefined;
        try {
          img = await decodeImage(refs[i].path);
        } catch (e) {
          problem = describeError(e);
        }
        try {
          await visit(i, img, problem);
        } catch (e) {
          failure ??= e; // stop the other workers, report the first error
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, refs.length)) }, worker));
    if (failure !== undefined) throw failure;
  }

  close(): void {}
}

/** Grey (S·S) or RGB (S·S·3) uint8 record → RgbImage. */
function recordToRgb(rec: Uint8Array, side: number, channels: number): RgbImage {
  if (channels === 3) return { data: rec, width: side, height: side };
  const out = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = rec[i];
  return { data: out, width: side, height: side };
}

class NpzPixels implements PixelReader {
  private npz?: NpzFile;
  constructor(private readonly info: NpzListing) {}

  private async open(): Promise<NpzFile> {
    return (this.npz ??= await NpzFile.open(this.info.file));
  }

  private key(split: SplitName): string {
    const a = this.info.arrays[split];
    if (!a) throw new DataError(`no ${split} arrays`, this.info.file);
    return a.images;
  }

  async read(split: SplitName, index: number): Promise<RgbImage> {
    const npz = await this.open();
    const key = this.key(split);
    if (npz.isRandomAccess(key)) return recordToRgb(npz.readRecord(key, index), this.info.side, this.info.channels);
    let i = 0;
    for await (const rec of npz.records(key)) {
      if (i++ === index) return recordToRgb(rec, this.info.side, this.info.channels);
    }
    throw new RangeError(`${split}[${index}] does not exist in ${this.info.file}`);
  }

  async forEach(split: SplitName, _concurrency: number, visit: SampleVisitor): Promise<void> {
    const npz = await this.open();
    let i = 0;
    for await (const rec of npz.records(this.key(split))) {
      await visit(i++, recordToRgb(rec, this.info.side, this.info.channels));
    }
  }

  close(): void {
    this.npz?.close();
    this.npz = undefined;
  }
}
