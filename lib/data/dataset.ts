/**
 * `openDataset(spec)`: one entry point for every source, and the Dataset → PreparedDataset → DataLoader chain.
 *
 *   const ds = await openDataset({ kind: 'malaria', root: 'data/nih-malaria' }); // after npm run download -- malaria
 *   const data = await ds.prepare({ size: 64 });         // decodes once into the cache (or reuses it)
 *   const train = data.loader('train', { batchSize: 8, seed: 0 });
 *   for await (const { x, y, indices } of train.epoch(0)) { ...; x.dispose(); }
 *
 * Sources (in brackets: the paper's names, docs/architecture.md §Datasets):
 *   folder       image folder, split or class layout                      (the official ImageFolder layout)
 *   medmnist     MedMNIST .npz, 28/64/128/224                             (TissueMnist)
 *   malaria      NIH/NLM cell_images or a split copy, split by cell/image/patient   ("SARS")
 *   mhist        images/ + annotations.csv                                (MHIST)
 *   medfm-colon  MedFMC_train|val/colon tables                            (MedFM Colon)
 *   rpe          class folders (published layout assumed: <class>/<images>), seeded split  (RPE)
 *   synthetic    procedurally rendered cells, generated on first use      (kit default; not real data)
 */
import { createHash } from 'crypto';
import * as path from 'path';
import { buildCache, cachePaths, readValidIndex, SampleStore, type CacheIndex } from './cache';
import type { RgbImage } from './decode';
import { DataError, type SkippedItem } from './errors';
import { DataLoader, type LoaderOptions } from './loader';
import { datasetCacheFolder, defaultCacheDir, defaultDataRoot } from './paths';
import { pixelReader, type PixelReader } from './pixels';
import { folderSource } from './sources/folder';
import { malariaSource, type MalariaSplitBy } from './sources/malaria';
import { medmnistSource, parseMedMnistFileName } from './sources/medmnist';
import { medfmColonSource, mhistSource } from './sources/tables';
import { readSyntheticInfo, writeSyntheticDataset, SYNTHETIC_DEFAULTS, type SyntheticOptions } from './synthetic';
import type { ChannelStats } from './transforms';
import {
  SPLIT_NAMES,
  type SampleRef,
  type SourceListing,
  type SplitName,
  type SplitProvenance,
  type SplitRatios,
} from './types';

/** Options every source accepts. */
export interface CommonSpec {
  /** Display and cache name (default: the folder or file name). */
  name?: string;
  /** Where caches and split files go (default data/.cache, or MSM_DATA_CACHE). */
  cacheDir?: string;
  /** Skip undecodable / unreadable / non-image files and report them, instead of failing on the first. */
  skipBad?: boolean;
  /** Seed of seeded splits (default 0). */
  seed?: number;
  /** Ratios of seeded splits (default 0.7 / 0.15 / 0.15). */
  ratios?: SplitRatios;
  /** Split file of seeded splits (default: in the dataset's cache folder, named after seed, ratios and rule). */
  splitFile?: string;
  /** Replace a split file that no longer matches the files (default: refuse). */
  resplit?: boolean;
  /** Folder sources in the split layout without a val folder: carve this fraction of train out as val. */
  valSplit?: number;
}

export type DatasetSpec =
  | ({ kind: 'folder'; root: string; classes?: string[] } & CommonSpec)
  | ({ kind: 'medmnist'; file?: string; flag?: string; size?: number; root?: string; classes?: string[] } & CommonSpec)
  | ({ kind: 'malaria'; root: string; splitBy?: MalariaSplitBy } & CommonSpec)
  | ({ kind: 'mhist'; root: string; valFraction?: number } & CommonSpec)
  | ({ kind: 'medfm-colon'; root: string; valFraction?: number } & CommonSpec)
  | ({ kind: 'rpe'; root: string; groupPattern?: string } & CommonSpec)
  | ({ kind: 'synthetic'; root?: string } & Partial<Omit<SyntheticOptions, 'root' | 'onProgress'>> & CommonSpec);

/** What a Dataset is, for reports and notebooks. */
export interface DatasetInfo {
  name: string;
  kind: string;
  root: string;
  description: string;
  classes: string[];
  numClasses: number;
  /** true for generated data (the synthetic set); never mix up with real results. */
  synthetic: boolean;
  split: SplitProvenance;
  /** Samples per split and class: counts[split][class]. */
  counts: Record<SplitName, number[]>;
  skipped: SkippedItem[];
  notes: string[];
  /** Folder holding this dataset's caches (and default split files). */
  cacheFolder: string;
}

export interface PrepareOptions {
  /** Image side of the cache and of every batch. */
  size: number;
  /** Decodes in flight while building (default 2 × CPUs). */
  concurrency?: number;
  /** Progress while building: default a bar on a TTY, a few lines otherwise; false for silence. */
  progress?: boolean | ((done: number, total: number) => void);
  /** Rebuild even when a valid cache exists. */
  rebuild?: boolean;
  /** Cache files up to this size are read into memory (default 256 MiB); bigger ones are read per sample. */
  memoryBudgetBytes?: number;
}

const ratioTag = (r?: SplitRatios) => (r ? `${r.train}-${r.val}-${r.test}` : 'default');

/** Open a dataset: list its samples and splits (nothing is decoded yet). A string is a folder or .npz path. */
export async function openDataset(specOrPath: DatasetSpec | string): Promise<Dataset> {
  const spec: DatasetSpec =
    typeof specOrPath !== 'string'
      ? specOrPath
      : specOrPath.toLowerCase().endsWith('.npz')
        ? { kind: 'medmnist', file: specOrPath }
        : { kind: 'folder', root: specOrPath };
  const cacheDir = path.resolve(spec.cacheDir ?? defaultCacheDir());
  const skipBad = spec.skipBad ?? false;
  const seed = spec.seed ?? 0;
  // A default split file per (rule, seed, ratios), inside the dataset's cache folder.
  const splitFileFor = (kind: string, name: string, root: string, rule: string) =>
    spec.splitFile ??
    path.join(
      datasetCacheFolder(cacheDir, kind, name, root),
      `split-${rule}-seed${seed}-${ratioTag(spec.ratios)}.json`,
    );
  const common = { seed, ratios: spec.ratios, resplit: spec.resplit, skipBad };

  let listing: SourceListing;
  switch (spec.kind) {
    case 'folder': {
      const root = path.resolve(spec.root);
      const name = spec.name ?? path.basename(root);
      const synth = readSyntheticInfo(root);
      listing = folderSource(root, {
        ...common,
        name,
        // A synthetic set keeps its generator's class order (uninfected first), whichever way it is opened.
        classes: spec.classes ?? synth?.classes,
        valSplit: spec.valSplit,
        splitFile: splitFileFor('folder', name, root, 'sample'),
        synthetic: synth !== undefined,
        description: synth?.description,
      });
      break;
    }
    case 'synthetic': {
      const parent = path.resolve(spec.root ?? defaultDataRoot());
      const dir = await writeSyntheticDataset({
        root: parent,
        numClasses: spec.numClasses,
        size: spec.size,
        perClass: spec.perClass,
        seed: spec.seed ?? SYNTHETIC_DEFAULTS.seed,
        force: spec.force,
      });
      const name = spec.name ?? path.basename(dir);
      const synth = readSyntheticInfo(dir);
      listing = folderSource(dir, {
        ...common,
        name,
        kind: 'synthetic',
        classes: synth?.classes,
        splitFile: splitFileFor('synthetic', name, dir, 'sample'),
        synthetic: true,
        description: synth?.description,
      });
      break;
    }
    case 'medmnist': {
      let file = spec.file;
      if (!file) {
        if (!spec.flag) throw new DataError("medmnist spec needs 'file' or 'flag' (+ 'size', 'root')");
        const size = spec.size ?? 28;
        file = path.join(
          spec.root ?? defaultDataRoot(),
          'medmnist',
          size === 28 ? `${spec.flag}.npz` : `${spec.flag}_${size}.npz`,
        );
      }
      file = path.resolve(file);
      const parsed = parseMedMnistFileName(file);
      const name = spec.name ?? (parsed ? `${parsed.flag}_${parsed.size}` : path.basename(file, '.npz'));
      listing = await medmnistSource(file, { name, classes: spec.classes, skipBad });
      break;
    }
    case 'malaria': {
      const root = path.resolve(spec.root);
      const name = spec.name ?? path.basename(root);
      const rule = spec.splitBy ?? 'auto';
      listing = malariaSource(root, {
        ...common,
        name,
        splitBy: spec.splitBy,
        splitFile: splitFileFor('malaria', name, root, rule),
      });
      break;
    }
    case 'mhist': {
      const root = path.resolve(spec.root);
      const name = spec.name ?? 'mhist';
      const vf = spec.valFraction ?? 0.1;
      listing = mhistSource(root, {
        ...common,
        name,
        valFraction: vf,
        splitFile: splitFileFor('mhist', name, root, `val${vf}`),
      });
      break;
    }
    case 'medfm-colon': {
      const root = path.resolve(spec.root);
      const name = spec.name ?? 'medfm-colon';
      const vf = spec.valFraction ?? 0.1;
      listing = medfmColonSource(root, {
        ...common,
        name,
        valFraction: vf,
        splitFile: splitFileFor('medfm-colon', name, root, `val${vf}`),
      });
      break;
    }
    case 'rpe': {
      const root = path.resolve(spec.root);
      const name = spec.name ?? 'rpe';
      const pattern = spec.groupPattern ? new RegExp(spec.groupPattern) : undefined;
      listing = folderSource(root, {
        ...common,
        name,
        kind: 'rpe',
        splitFile: splitFileFor('rpe', name, root, pattern ? 'group' : 'sample'),
        // Optional: keep sub-windows of one source image together; group = class folder + first capture of the
        // pattern on the file name.
        groupBy: pattern
          ? {
              name: 'group',
              of: (rel) =>
                `${path.posix.dirname(rel)}/${pattern.exec(path.posix.basename(rel))?.[1] ?? path.posix.basename(rel)}`,
            }
          : undefined,
        description: 'RPE maturation (class-folder layout assumed; seeded split)',
      });
      break;
    }
    default:
      throw new DataError(`unknown dataset kind '${(spec as { kind: string }).kind}'`);
  }
  return new Dataset(listing, datasetCacheFolder(cacheDir, listing.kind, listing.name, listing.root), skipBad);
}

export class Dataset {
  readonly info: DatasetInfo;
  private reader?: PixelReader;

  constructor(
    private readonly listing: SourceListing,
    cacheFolder: string,
    private readonly skipBad: boolean,
  ) {
    const counts = {} as Record<SplitName, number[]>;
    for (const s of SPLIT_NAMES) {
      counts[s] = new Array<number>(listing.classes.length).fill(0);
      for (const r of listing.splits[s]) counts[s][r.label]++;
    }
    this.info = {
      name: listing.name,
      kind: listing.kind,
      root: listing.root,
      description: listing.description,
      classes: listing.classes,
      numClasses: listing.classes.length,
      synthetic: listing.synthetic,
      split: listing.split,
      counts,
      skipped: listing.skipped,
      notes: listing.notes,
      cacheFolder,
    };
  }

  get classes(): string[] {
    return this.listing.classes;
  }

  /** The samples of a split as listed (paths, labels, groups); nothing decoded. */
  samples(split: SplitName): readonly SampleRef[] {
    return this.listing.splits[split];
  }

  /** A hash of everything the cache depends on: every sample's path, label, size and mtime, and the classes. */
  fingerprint(): string {
    const h = createHash('sha256');
    h.update(JSON.stringify({ kind: this.listing.kind, classes: this.listing.classes, npz: this.listing.npz ?? null }));
    for (const s of SPLIT_NAMES) {
      h.update(`\u0001${s}`);
      for (const r of this.listing.splits[s])
        h.update(`\u0000${r.path}|${r.label}|${r.bytes ?? ''}|${r.mtimeMs ?? ''}`);
    }
    return h.digest('hex');
  }

  /** Decode sample i of a split at its native resolution (for notebooks; training reads the cache). */
  readOriginal(split: SplitName, i: number): Promise<RgbImage> {
    this.reader ??= pixelReader(this.listing);
    return this.reader.read(split, i);
  }

  /** Class counts per split as a text table. */
  report(): string {
    const { classes, counts } = this.info;
    const w = Math.max(8, ...classes.map((c) => c.length));
    const head = `${'class'.padEnd(w)} ${SPLIT_NAMES.map((s) => s.padStart(7)).join(' ')}`;
    const rows = classes.map(
      (c, k) => `${c.padEnd(w)} ${SPLIT_NAMES.map((s) => String(counts[s][k]).padStart(7)).join(' ')}`,
    );
    const totals = `${'total'.padEnd(w)} ${SPLIT_NAMES.map((s) => String(this.listing.splits[s].length).padStart(7)).join(' ')}`;
    const title = `${this.info.name}${this.info.synthetic ? ' (SYNTHETIC)' : ''}: ${this.info.description}`;
    const skipped = this.info.skipped.length ? [`skipped ${this.info.skipped.length} bad input(s)`] : [];
    return [title, head, ...rows, totals, ...skipped, ...this.info.notes].join('\n');
  }

  /** Decode everything once at `size` (or reuse a valid cache) and return batch-ready access. */
  async prepare(opts: PrepareOptions): Promise<PreparedDataset> {
    const { size } = opts;
    if (!(Number.isInteger(size) && size >= 1)) throw new RangeError(`size must be a positive integer, got ${size}`);
    const folder = this.info.cacheFolder;
    const fingerprint = this.fingerprint();
    let index = opts.rebuild ? undefined : readValidIndex(folder, size, fingerprint);
    if (!index) {
      index = await buildCache(this.listing, {
        size,
        folder,
        fingerprint,
        skipBad: this.skipBad,
        concurrency: opts.concurrency,
        progress: opts.progress,
      });
    } else if (index.skipped.length > 0 && !this.skipBad) {
      // The cache was built with skipBad; without it the same files are errors.
      const first = index.skipped[0];
      throw new DataError(
        `${first.problem} (${index.skipped.length} bad file(s); pass skipBad: true to skip them)`,
        first.file,
      );
    }
    const store = new SampleStore(cachePaths(folder, size).bin, index, opts.memoryBudgetBytes ?? 256 * 2 ** 20);
    return new PreparedDataset(this, store);
  }

  close(): void {
    this.reader?.close();
    this.reader = undefined;
  }
}

/** A dataset decoded at one size: samples, labels, statistics and loaders. */
export class PreparedDataset {
  constructor(
    readonly dataset: Dataset,
    private readonly store: SampleStore,
  ) {}

  get index(): CacheIndex {
    return this.store.index;
  }

  get size(): number {
    return this.store.index.size;
  }

  get classes(): string[] {
    return this.store.index.dataset.classes;
  }

  get synthetic(): boolean {
    return this.store.index.dataset.synthetic;
  }

  /** Mean/std per channel over all train pixels at this size (what the loaders normalise with). */
  get stats(): ChannelStats {
    return this.store.index.stats;
  }

  /** Files skipped while decoding (skipBad). */
  get skipped(): SkippedItem[] {
    return this.store.index.skipped;
  }

  /** Number of samples of a split (after skipped files). */
  count(split: SplitName): number {
    return this.store.count(split);
  }

  /** Labels of a split, in sample order. */
  labels(split: SplitName): Int32Array {
    return Int32Array.from(this.store.index.splits[split].labels);
  }

  /** File path (or npz record) of each sample of a split, in sample order. */
  paths(split: SplitName): string[] {
    const refs = this.dataset.samples(split);
    const kept = this.store.index.splits[split].kept;
    return kept ? kept.map((k) => refs[k].path) : refs.map((r) => r.path);
  }

  /** Sample i as stored: size×size RGB uint8 (eval-resized, not augmented or normalised). */
  async image(split: SplitName, i: number): Promise<RgbImage> {
    return { data: await this.store.read(split, i), width: this.size, height: this.size };
  }

  /** A loader over one split (see loader.ts for options and determinism). */
  loader(split: SplitName, opts: LoaderOptions): DataLoader {
    if (this.count(split) === 0 && opts.balanced)
      throw new DataError(`the ${split} split is empty`, this.dataset.info.root);
    return new DataLoader(this.store, split, this.classes, opts);
  }

  close(): void {
    this.store.close();
  }
}
