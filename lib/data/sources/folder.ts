/**
 * Image-folder sources (torchvision `ImageFolder` layouts, what the official code reads:
 * docs/architecture.md §Datasets):
 *
 *   split layout   root/{train, val|valid|validation, test}/<class>/**\/<image>   splits given by the folders
 *   class layout   root/<class>/**\/<image>                                       seeded split, saved to a file
 *
 * As in ImageFolder, classes are the sorted class-folder names (union over splits) and files are sorted by
 * path; images in nested folders belong to their top class folder. Files at the root or split level that
 * are not images (README, manifest.csv, LICENSE) are ignored; OS metadata (dotfiles, Thumbs.db) everywhere.
 * Problems (non-image or empty files, unreadable files, empty class folders, images outside a class
 * folder) are reported through the ProblemSink: an error naming the path, or a skip with `skipBad`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { IMAGE_EXTENSIONS, isIgnorableName } from '../decode';
import { DataError, ProblemSink, describeError } from '../errors';
import { DEFAULT_RATIOS, loadOrMakeSplit, stratifiedSplit } from '../split';
import {
  SPLIT_ALIASES,
  SPLIT_NAMES,
  type SampleRef,
  type SplitName,
  type SplitRatios,
  type SourceListing,
} from '../types';

/** One usable image file found by the scan. */
export interface ScannedFile {
  abs: string;
  /** Path relative to the dataset root, with forward slashes (the stable key for split files). */
  rel: string;
  className: string;
  split?: SplitName;
  bytes: number;
  mtimeMs: number;
}

export interface FolderScan {
  layout: 'split' | 'class';
  files: ScannedFile[];
  /** Sorted class names (before any class is dropped for having no usable files). */
  classNames: string[];
  notes: string[];
}

function statOrThrow(p: string, what: string): fs.Stats {
  try {
    return fs.statSync(p);
  } catch (e) {
    throw new DataError(`${what} not found or unreadable (${describeError(e)})`, p);
  }
}

function listDir(dir: string, sink: ProblemSink): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true }).filter((d) => !isIgnorableName(d.name));
  } catch (e) {
    sink.report(dir, `cannot list folder (${describeError(e)})`);
    return [];
  }
}

/** A Dirent's kind, following symbolic links. */
function kindOf(dir: string, d: fs.Dirent): 'dir' | 'file' | 'other' {
  if (d.isDirectory()) return 'dir';
  if (d.isFile()) return 'file';
  if (d.isSymbolicLink()) {
    try {
      const st = fs.statSync(path.join(dir, d.name));
      return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    } catch {
      return 'other';
    }
  }
  return 'other';
}

const isImageName = (name: string) => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Check one candidate image file; returns its stat or reports why it cannot be used. */
function checkFile(abs: string, sink: ProblemSink): fs.Stats | undefined {
  if (!isImageName(abs)) {
    sink.report(
      abs,
      `not an image file (extension '${path.extname(abs) || '(none)'}' is not one of ${IMAGE_EXTENSIONS.join(' ')})`,
    );
    return undefined;
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
    fs.accessSync(abs, fs.constants.R_OK);
  } catch (e) {
    sink.report(abs, `unreadable (${describeError(e)})`);
    return undefined;
  }
  if (st.size === 0) {
    sink.report(abs, 'empty file (0 bytes)');
    return undefined;
  }
  return st;
}

/** All files under a class folder, recursively, sorted by path. */
function walkClass(dir: string, sink: ProblemSink, out: string[]): void {
  for (const d of listDir(dir, sink)) {
    const p = path.join(dir, d.name);
    const k = kindOf(dir, d);
    if (k === 'dir') walkClass(p, sink, out);
    else if (k === 'file') out.push(p);
    else sink.report(p, 'not a regular file (broken link, socket or device)');
  }
}

/** Scan a folder dataset (either layout). `classes` fixes the class list and order when given. */
export function scanImageFolder(root: string, sink: ProblemSink, classes?: string[]): FolderScan {
  const st = statOrThrow(root, 'dataset root');
  if (!st.isDirectory()) throw new DataError('dataset root is not a folder', root);
  const notes: string[] = [];
  const top = listDir(root, sink);
  const topDirs = top.filter((d) => kindOf(root, d) === 'dir');
  const splitDirs = new Map<SplitName, string>();
  for (const d of topDirs) {
    const split = SPLIT_ALIASES[d.name.toLowerCase()];
    if (!split) continue;
    const prev = splitDirs.get(split);
    if (prev) throw new DataError(`both '${prev}' and '${d.name}' look like the ${split} split; keep one`, root);
    splitDirs.set(split, d.name);
  }
  const layout = splitDirs.size > 0 ? 'split' : 'class';
  if (layout === 'split') {
    const others = topDirs.filter((d) => !SPLIT_ALIASES[d.name.toLowerCase()]).map((d) => d.name);
    if (others.length) notes.push(`ignored folders next to the split folders: ${others.join(', ')}`);
    if (!splitDirs.has('train'))
      throw new DataError(`split folders found (${[...splitDirs.values()].join(', ')}) but no train folder`, root);
  }

  // (split, class folder) pairs to walk.
  const classDirs: Array<{ split?: SplitName; className: string; dir: string }> = [];
  const parents: Array<{ split?: SplitName; dir: string }> =
    layout === 'split'
      ? SPLIT_NAMES.filter((s) => splitDirs.has(s)).map((s) => ({
          split: s,
          dir: path.join(root, splitDirs.get(s) as string),
        }))
      : [{ dir: root }];
  for (const parent of parents) {
    for (const d of listDir(parent.dir, sink)) {
      const p = path.join(parent.dir, d.name);
      const k = kindOf(parent.dir, d);
      if (k === 'dir') classDirs.push({ split: parent.split, className: d.name, dir: p });
      else if (k === 'file' && layout === 'split' && isImageName(d.name)) {
        sink.report(p, 'image outside a class folder (expected <split>/<class>/<image>)');
      }
    }
  }

  if (layout === 'split' && !classes) {
    // A class folder under val/ or test/ only would become an extra class (ImageFolder takes the union) that
    // the model never trains on, and shift the label of every class sorted after it.
    const inTrain = new Set(classDirs.filter((c) => c.split === 'train').map((c) => c.className));
    const orphans = classDirs.filter((c) => c.split !== 'train' && !inTrain.has(c.className));
    if (orphans.length > 0) {
      const o = orphans[0];
      throw new DataError(
        `class folder '${o.className}' exists under ${splitDirs.get(o.split as SplitName)}/ but not under ` +
          `${splitDirs.get('train')}/ (classes come from the train folder; add ${splitDirs.get('train')}/${o.className} or remove it)` +
          (orphans.length > 1
            ? `; also: ${orphans
                .slice(1)
                .map((c) => path.relative(root, c.dir))
                .join(', ')}`
            : ''),
        o.dir,
      );
    }
  }
  const classNames = classes ? [...classes] : [...new Set(classDirs.map((c) => c.className))].sort(byString);
  if (classes) {
    for (const c of classDirs) {
      if (!classes.includes(c.className)) {
        throw new DataError(
          `folder '${c.className}' is not one of the expected classes (${classes.join(', ')})`,
          c.dir,
        );
      }
    }
  }
  const files: ScannedFile[] = [];
  for (const c of classDirs) {
    const found: string[] = [];
    walkClass(c.dir, sink, found);
    found.sort(byString);
    let usable = 0;
    for (const abs of found) {
      const fst = checkFile(abs, sink);
      if (!fst) continue;
      usable++;
      const rel = path.relative(root, abs).split(path.sep).join('/');
      files.push({ abs, rel, className: c.className, split: c.split, bytes: fst.size, mtimeMs: fst.mtimeMs });
    }
    if (found.length === 0) sink.report(c.dir, 'empty class folder (no files)');
    else if (usable === 0) notes.push(`class folder ${c.dir} has no usable images`);
  }
  files.sort((a, b) => byString(a.rel, b.rel));
  return { layout, files, classNames, notes };
}

/**
 * Turn scanned files into labels: drops classes that ended up with no usable image (only possible with
 * skipBad) and refuses datasets with fewer than two classes.
 */
export function assignLabels(
  root: string,
  files: ScannedFile[],
  classNames: string[],
  sink: ProblemSink,
): { classes: string[]; labelOf: (f: ScannedFile) => number } {
  const counts = new Map<string, number>();
  for (const f of files) counts.set(f.className, (counts.get(f.className) ?? 0) + 1);
  const classes = classNames.filter((c) => (counts.get(c) ?? 0) > 0);
  for (const c of classNames)
    if (!counts.get(c) && !sink.skipBad) throw new DataError(`class '${c}' has no images`, root);
  if (classes.length < 2) {
    throw new DataError(
      classes.length === 0
        ? 'no images found (expected <class>/<image> or <split>/<class>/<image>)'
        : `only one class found ('${classes[0]}'); classification needs at least two`,
      root,
    );
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  return { classes, labelOf: (f) => index.get(f.className) as number };
}

export interface SeededSplitOptions {
  dataset: string;
  seed: number;
  ratios?: SplitRatios;
  /** 'sample' or the name of the group rule. */
  by: string;
  groupOf?: (f: ScannedFile) => string;
  file: string;
  resplit?: boolean;
}

/** Split scanned files by a seeded (stratified or group-disjoint) split stored in a split file. */
export function seededSplits(
  files: ScannedFile[],
  labelOf: (f: ScannedFile) => number,
  opts: SeededSplitOptions,
): Record<SplitName, SampleRef[]> {
  const ratios = opts.ratios ?? DEFAULT_RATIOS;
  const items = files.map((f) => ({ key: f.rel, label: labelOf(f), group: opts.groupOf?.(f) }));
  const assigned = loadOrMakeSplit({
    dataset: opts.dataset,
    items,
    ratios,
    seed: opts.seed,
    by: opts.by,
    file: opts.file,
    resplit: opts.resplit,
  });
  const splits: Record<SplitName, SampleRef[]> = { train: [], val: [], test: [] };
  files.forEach((f, i) => splits[assigned[i]].push(toRef(f, labelOf(f), items[i].group)));
  return splits;
}

export function toRef(f: ScannedFile, label: number, group?: string): SampleRef {
  return { path: f.abs, label, group, bytes: f.bytes, mtimeMs: f.mtimeMs };
}

export interface FolderSourceOptions {
  name: string;
  kind?: string;
  skipBad: boolean;
  classes?: string[];
  seed: number;
  ratios?: SplitRatios;
  splitFile: string;
  resplit?: boolean;
  /** Group rule for seeded splits of class layouts (e.g. RPE source image); by sample when absent. */
  groupBy?: { name: string; of: (relPath: string) => string };
  /** Split layout without a val folder: carve this fraction of train out as validation (default 0 = none). */
  valSplit?: number;
  synthetic?: boolean;
  description?: string;
}

/** The generic image-folder source. */
export function folderSource(root: string, opts: FolderSourceOptions): SourceListing {
  const sink = new ProblemSink(opts.skipBad);
  const scan = scanImageFolder(root, sink, opts.classes);
  const { classes, labelOf } = assignLabels(root, scan.files, scan.classNames, sink);
  const files = scan.files.filter((f) => classes.includes(f.className));
  let splits: Record<SplitName, SampleRef[]>;
  let provenance: SourceListing['split'];
  if (scan.layout === 'split') {
    splits = { train: [], val: [], test: [] };
    for (const f of files) splits[f.split as SplitName].push(toRef(f, labelOf(f)));
    provenance = { method: 'folders' };
    const valSplit = opts.valSplit ?? 0;
    if (splits.val.length === 0 && valSplit > 0) {
      // No val folder: carve a stratified, seeded fraction of train out (depends only on seed + file names).
      const train = splits.train;
      const ratios = { train: 1 - valSplit, val: valSplit, test: 0 };
      const assigned = stratifiedSplit(
        train.map((r) => ({ key: path.relative(root, r.path), label: r.label })),
        ratios,
        opts.seed,
      );
      splits.train = train.filter((_, i) => assigned[i] === 'train');
      splits.val = train.filter((_, i) => assigned[i] === 'val');
      provenance = { method: 'mixed', seed: opts.seed, ratios, by: 'sample' };
      scan.notes.push(
        `no val folder: ${splits.val.length} of ${train.length} train images carved out as validation (--val-split ${valSplit}, seed ${opts.seed})`,
      );
    }
  } else {
    const by = opts.groupBy?.name ?? 'sample';
    const groupOf = opts.groupBy
      ? (f: ScannedFile) => (opts.groupBy as { of: (r: string) => string }).of(f.rel)
      : undefined;
    splits = seededSplits(files, labelOf, {
      dataset: opts.name,
      seed: opts.seed,
      ratios: opts.ratios,
      by,
      groupOf,
      file: opts.splitFile,
      resplit: opts.resplit,
    });
    provenance = { method: 'seeded', file: opts.splitFile, seed: opts.seed, ratios: opts.ratios ?? DEFAULT_RATIOS, by };
  }
  if (splits.train.length === 0) throw new DataError('the train split has no images', root);
  return {
    kind: opts.kind ?? 'folder',
    name: opts.name,
    root,
    classes,
    synthetic: opts.synthetic ?? false,
    description: opts.description ?? `image folder (${scan.layout} layout)`,
    splits,
    split: provenance,
    skipped: sink.skipped,
    notes: scan.notes,
  };
}
