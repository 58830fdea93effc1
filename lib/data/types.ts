/**
 * Shared data-pipeline types: split names, sample references and a source's listing.
 *
 * A *source* (image folder, MedMNIST .npz, NIH malaria, MHIST, MedFM-Colon, RPE, synthetic) lists its
 * samples per split without decoding anything; the cache (cache.ts) decodes them once; the loader
 * (loader.ts) serves batches from the cache.
 */
import type { SkippedItem } from './errors';

export type SplitName = 'train' | 'val' | 'test';
export const SPLIT_NAMES: readonly SplitName[] = ['train', 'val', 'test'];

/** Folder names accepted for each split (the shared malaria set uses `validation`). */
export const SPLIT_ALIASES: Readonly<Record<string, SplitName>> = {
  train: 'train',
  training: 'train',
  val: 'val',
  valid: 'val',
  validation: 'val',
  test: 'test',
  testing: 'test',
};

/** One sample as the source knows it, before decoding. */
export interface SampleRef {
  /** Absolute path of the image file; for .npz samples `<file>:<key>[<index>]`. */
  path: string;
  /** Class index into `classes`. */
  label: number;
  /** What the sample must be kept together with when splitting (smear, slide, patient...), if known. */
  group?: string;
  /** File size and modification time (ms), for the cache fingerprint. */
  bytes?: number;
  mtimeMs?: number;
  /** Record index inside an .npz array. */
  record?: number;
}

/** Where a dataset's train/val/test assignment came from. */
export interface SplitProvenance {
  /** 'folders': given by the layout; 'table': by an annotation file; 'seeded': made here (and saved). */
  method: 'folders' | 'table' | 'npz' | 'seeded' | 'mixed';
  /** The split file that stores a seeded assignment. */
  file?: string;
  seed?: number;
  ratios?: SplitRatios;
  /** What was kept together: 'sample' (stratified by class) or a group rule such as 'patient'. */
  by?: string;
}

export interface SplitRatios {
  train: number;
  val: number;
  test: number;
}

/** Everything a source found, ready to be wrapped in a Dataset. */
export interface SourceListing {
  kind: string;
  name: string;
  root: string;
  classes: string[];
  synthetic: boolean;
  description: string;
  splits: Record<SplitName, SampleRef[]>;
  split: SplitProvenance;
  skipped: SkippedItem[];
  /** Layout remarks worth showing (ignored folders, assumptions). */
  notes: string[];
  /** For .npz sources: the file and, per split, its image/label arrays. */
  npz?: NpzListing;
}

export interface NpzListing {
  file: string;
  arrays: Partial<Record<SplitName, { images: string; labels: string }>>;
  /** Native image side (28/64/128/224) and channels (1 grey, 3 RGB). */
  side: number;
  channels: number;
}
