/**
 * Datasets described by an annotation table next to an image folder: MHIST and MedFM-Colon
 * (docs/architecture.md §Datasets).
 *
 * MHIST (Wei et al. 2021; bmirds.github.io/MHIST, after a data-use agreement), as distributed:
 *   <root>/images/<Image Name>            224×224 PNG H&E patches (the zip `images.zip` unpacks to images/)
 *   <root>/annotations.csv                columns: Image Name, Majority Vote Label (HP | SSA),
 *                                         Number of Annotators who Selected SSA (Out of 7), Partition (train | test)
 * The official partition gives train (2,175) and test (977); there is no validation split, so `valFraction`
 * of the train partition (default 0.1, stratified, seeded, saved to the split file) becomes val.
 *
 * MedFM-Colon (MedFMC ColonPath, NeurIPS'23 MedFM challenge; medfm2023.grand-challenge.org), as released:
 *   <root>/MedFMC_train/colon/{images|image}/*.png + colon_train.csv      (5,654 patches)
 *   <root>/MedFMC_val/colon/{images|image}/*.png   + colon_val.csv        (4,355 patches)
 * (or `<root>` = a colon folder holding `colon_train.csv` / `colon_val.csv` and `images/`). The CSVs have an
 * `img_id` column (file name) and a `tumor` column (0/1); classes are ['non-tumor', 'tumor']. The
 * challenge's labelled test set is not public, so MedFMC_val is used as *test* and `valFraction` (default
 * 0.1) of the train patches becomes val, disjoint by whole-slide image (file-name prefix before `-lv1-`).
 * If a `colon_test.csv` is present (with its images), it is the test split instead and MedFMC_val is val.
 * These are assumptions (the paper's own split is not published: docs/architecture.md §Datasets).
 */
import * as fs from 'fs';
import * as path from 'path';
import { DataError, ProblemSink, describeError } from '../errors';
import { loadOrMakeSplit } from '../split';
import type { SampleRef, SourceListing, SplitName } from '../types';

/** RFC 4180 CSV: quoted fields, doubled quotes, CRLF or LF line ends, optional UTF-8 BOM. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"'; // an escaped quote
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      if (row.some((f) => f.length > 0)) rows.push(row);
      row = [];
      field = '';
    } else {
      field += c;
    }
  }
  row.push(field);
  if (row.some((f) => f.length > 0)) rows.push(row);
  return rows;
}

/** Read a CSV with a header row into records keyed by (trimmed) column name. */
export function readCsvTable(file: string): Array<Record<string, string>> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`cannot read annotation table (${describeError(e)})`, file);
  }
  const rows = parseCsv(text);
  if (rows.length === 0) throw new DataError('annotation table is empty', file);
  const header = rows[0].map((h) => h.trim());
  return rows.slice(1).map((r) => Object.fromEntries(header.map((h, k) => [h, (r[k] ?? '').trim()])));
}

/** Find a column by any of its usual names (case-insensitive). */
function column(file: string, rows: Array<Record<string, string>>, names: string[]): string {
  const keys = rows.length ? Object.keys(rows[0]) : [];
  const hit = keys.find((k) => names.some((n) => k.toLowerCase() === n.toLowerCase()));
  if (!hit)
    throw new DataError(
      `no column named ${names.map((n) => `'${n}'`).join(' or ')} (columns: ${keys.join(', ')})`,
      file,
    );
  return hit;
}

/** Stat an image named by a table row; reports missing / empty / unreadable files. */
function refFor(abs: string, label: number, sink: ProblemSink, table: string, group?: string): SampleRef | undefined {
  try {
    const st = fs.statSync(abs);
    fs.accessSync(abs, fs.constants.R_OK);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size === 0) {
      sink.report(abs, 'empty file (0 bytes)');
      return undefined;
    }
    return { path: abs, label, group, bytes: st.size, mtimeMs: st.mtimeMs };
  } catch (e) {
    sink.report(abs, `listed in ${path.basename(table)} but missing or unreadable (${describeError(e)})`);
    return undefined;
  }
}

interface TableSplitOptions {
  name: string;
  skipBad: boolean;
  seed: number;
  valFraction?: number;
  splitFile: string;
  resplit?: boolean;
}

/** Carve a val split out of `train` (stratified, or group-disjoint when refs carry groups). */
function carveVal(
  root: string,
  train: SampleRef[],
  opts: TableSplitOptions,
  by: string,
): { train: SampleRef[]; val: SampleRef[] } {
  const valFraction = opts.valFraction ?? 0.1;
  if (valFraction <= 0) return { train, val: [] };
  const items = train.map((r) => ({
    key: path.relative(root, r.path).split(path.sep).join('/'),
    label: r.label,
    group: r.group,
  }));
  const assigned = loadOrMakeSplit({
    dataset: opts.name,
    items,
    ratios: { train: 1 - valFraction, val: valFraction, test: 0 },
    seed: opts.seed,
    by,
    file: opts.splitFile,
    resplit: opts.resplit,
  });
  return { train: train.filter((_, i) => assigned[i] === 'train'), val: train.filter((_, i) => assigned[i] === 'val') };
}

export const MHIST_CLASSES = ['HP', 'SSA'];

export function mhistSource(root: string, opts: TableSplitOptions): SourceListing {
  const table = path.join(root, 'annotations.csv');
  const images = path.join(root, 'images');
  if (!fs.existsSync(table))
    throw new DataError('MHIST annotations.csv not found (expected <root>/annotations.csv)', root);
  if (!fs.existsSync(images)) throw new DataError('MHIST images folder not found (expected <root>/images/)', root);
  const rows = readCsvTable(table);
  const nameCol = column(table, rows, ['Image Name']);
  const labelCol = column(table, rows, ['Majority Vote Label']);
  const partCol = column(table, rows, ['Partition']);
  const sink = new ProblemSink(opts.skipBad);
  const given: Record<'train' | 'test', SampleRef[]> = { train: [], test: [] };
  rows.forEach((r, i) => {
    const where = `${table} row ${i + 2}`;
    const label = MHIST_CLASSES.indexOf(r[labelCol]);
    if (label < 0) return sink.report(where, `label '${r[labelCol]}' is not one of ${MHIST_CLASSES.join(', ')}`);
    const part = r[partCol].toLowerCase();
    if (part !== 'train' && part !== 'test')
      return sink.report(where, `partition '${r[partCol]}' is not train or test`);
    const ref = refFor(path.join(images, r[nameCol]), label, sink, table);
    if (ref) given[part].push(ref);
  });
  const { train, val } = carveVal(root, given.train, opts, 'sample');
  const splits: Record<SplitName, SampleRef[]> = { train, val, test: given.test };
  checkClasses(root, splits, MHIST_CLASSES);
  return {
    kind: 'mhist',
    name: opts.name,
    root,
    classes: MHIST_CLASSES,
    synthetic: false,
    description: 'MHIST colorectal polyps (HP vs SSA), official train/test partition, val carved from train',
    splits,
    split: { method: 'mixed', file: opts.splitFile, seed: opts.seed, by: 'sample' },
    skipped: sink.skipped,
    notes: [],
  };
}

export const MEDFM_COLON_CLASSES = ['non-tumor', 'tumor'];

/** Whole-slide image of a MedFM-Colon patch: the file name before `-lv1-`. */
export function medfmSlideOf(fileName: string): string {
  const base = path.basename(fileName);
  const at = base.indexOf('-lv1-');
  return at > 0 ? base.slice(0, at) : base;
}

/** Locate `<stem>.csv` and its image folder under the accepted layouts. */
function findColonTable(root: string, stem: 'train' | 'val' | 'test'): { table: string; images: string } | undefined {
  const dirs = [path.join(root, `MedFMC_${stem}`, 'colon'), path.join(root, 'colon'), root];
  for (const dir of dirs) {
    const table = path.join(dir, `colon_${stem}.csv`);
    if (!fs.existsSync(table)) continue;
    const images = ['images', 'image'].map((d) => path.join(dir, d)).find((d) => fs.existsSync(d));
    if (!images) throw new DataError(`found ${table} but no images/ (or image/) folder next to it`, dir);
    return { table, images };
  }
  return undefined;
}

export function medfmColonSource(root: string, opts: TableSplitOptions): SourceListing {
  const sink = new ProblemSink(opts.skipBad);
  const read = (stem: 'train' | 'val' | 'test'): SampleRef[] | undefined => {
    const found = findColonTable(root, stem);
    if (!found) return undefined;
    const rows = readCsvTable(found.table);
    const idCol = column(found.table, rows, ['img_id', 'image', 'filename', 'file']);
    const labelCol = column(found.table, rows, ['tumor', 'label']);
    const refs: SampleRef[] = [];
    rows.forEach((r, i) => {
      const label = Number(r[labelCol]);
      if (!(label === 0 || label === 1)) {
        return sink.report(`${found.table} row ${i + 2}`, `label '${r[labelCol]}' is not 0 or 1`);
      }
      const ref = refFor(path.join(found.images, r[idCol]), label, sink, found.table, medfmSlideOf(r[idCol]));
      if (ref) refs.push(ref);
    });
    return refs;
  };
  const trainAll = read('train');
  if (!trainAll) {
    throw new DataError(
      'MedFM-Colon colon_train.csv not found (expected <root>/MedFMC_train/colon/colon_train.csv)',
      root,
    );
  }
  const valTable = read('val');
  const testTable = read('test');
  let splits: Record<SplitName, SampleRef[]>;
  if (testTable) {
    splits = { train: trainAll, val: valTable ?? [], test: testTable };
  } else {
    const { train, val } = carveVal(root, trainAll, opts, 'slide');
    splits = { train, val, test: valTable ?? [] };
  }
  checkClasses(root, splits, MEDFM_COLON_CLASSES);
  return {
    kind: 'medfm-colon',
    name: opts.name,
    root,
    classes: MEDFM_COLON_CLASSES,
    synthetic: false,
    description: testTable
      ? 'MedFM-Colon (ColonPath): train / val / test tables'
      : 'MedFM-Colon (ColonPath): MedFMC_val as test, val carved from train by slide',
    splits,
    split: { method: 'mixed', file: opts.splitFile, seed: opts.seed, by: 'slide' },
    skipped: sink.skipped,
    notes: [],
  };
}

/** A table dataset must still have images of at least two classes in train. */
function checkClasses(root: string, splits: Record<SplitName, SampleRef[]>, classes: string[]): void {
  const seen = new Set(splits.train.map((r) => r.label));
  if (splits.train.length === 0) throw new DataError('the train split has no images', root);
  if (seen.size < 2) throw new DataError(`train has only class '${classes[[...seen][0]]}'; need at least two`, root);
}
