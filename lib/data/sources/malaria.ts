/**
 * NIH/NLM malaria cell images (the paper's "SARS" dataset, docs/architecture.md §Datasets): segmented red blood cells
 * from Giemsa-stained thin smears, Parasitized vs Uninfected, 27,558 cells.
 *
 * Accepted layouts:
 *   - the official archive: `<root>/cell_images/{Parasitized,Uninfected}/*.png` (or `<root>` = cell_images);
 *   - an already split copy: `<root>/{train,validation|val,test}/{Parasitized,Uninfected}/*.png`
 *     (e.g. ../shared/data/nih-malaria-cells-128).
 *
 * File names carry the provenance: `C100P61ThinF_IMG_20150918_144104_cell_163.png` is cell 163 of smear
 * image `C100P61ThinF_IMG_20150918_144104` from slide/patient `C100P61`. Splits (`splitBy`):
 *   given    keep the copy's own train/val/test folders (split layouts only);
 *   cell     stratified random split of cells (common practice, and what the shared subset did; cells of
 *            one smear then appear in several splits);
 *   image    group-disjoint by smear image (prefix before `_cell_`);
 *   patient  group-disjoint by the leading slide/patient code `C<n>[A-Z]?P<n>` (e.g. C100P61, C37BP2; codes
 *            without a P number, such as C12N or C201, are their own group). Leakage-free, recommended.
 * NLM also publishes patient-ID ↔ cell mapping CSVs; the slide code in the file name is used here instead.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DataError, ProblemSink } from '../errors';
import { DEFAULT_RATIOS } from '../split';
import type { SampleRef, SourceListing, SplitName, SplitRatios } from '../types';
import { assignLabels, scanImageFolder, seededSplits, toRef, type ScannedFile } from './folder';

export const MALARIA_CLASSES = ['Parasitized', 'Uninfected'];
export type MalariaSplitBy = 'given' | 'cell' | 'image' | 'patient';

/** Smear image of a cell file: the name before `_cell_`. */
export function malariaSmearOf(fileName: string): string {
  const base = path.basename(fileName);
  const at = base.indexOf('_cell_');
  return at > 0 ? base.slice(0, at) : base.replace(/\.[^.]*$/, '');
}

/** Slide/patient code of a cell file: the leading `C<n>[A-Z]?P<n>` or `C<n>[N]` (falls back to the smear image). */
export function malariaSlideOf(fileName: string): string {
  const base = path.basename(fileName);
  const m = /^C\d+(?:[A-Z]?P\d+|N)?/.exec(base);
  return m ? m[0] : malariaSmearOf(base);
}

export interface MalariaOptions {
  name: string;
  skipBad: boolean;
  splitBy?: MalariaSplitBy;
  seed: number;
  ratios?: SplitRatios;
  splitFile: string;
  resplit?: boolean;
}

export function malariaSource(root: string, opts: MalariaOptions): SourceListing {
  const base = fs.existsSync(path.join(root, 'cell_images')) ? path.join(root, 'cell_images') : root;
  const sink = new ProblemSink(opts.skipBad);
  const scan = scanImageFolder(base, sink, MALARIA_CLASSES);
  const splitBy = opts.splitBy ?? (scan.layout === 'split' ? 'given' : 'cell');
  if (splitBy === 'given' && scan.layout !== 'split') {
    throw new DataError(`splitBy 'given' needs train/val/test folders; use 'cell', 'image' or 'patient'`, base);
  }
  const { classes, labelOf } = assignLabels(base, scan.files, MALARIA_CLASSES, sink);
  const files = scan.files.filter((f) => classes.includes(f.className));
  let splits: Record<SplitName, SampleRef[]>;
  let provenance: SourceListing['split'];
  const groupOf =
    splitBy === 'patient'
      ? (f: ScannedFile) => malariaSlideOf(f.rel)
      : splitBy === 'image'
        ? (f: ScannedFile) => malariaSmearOf(f.rel)
        : undefined;
  if (splitBy === 'given') {
    splits = { train: [], val: [], test: [] };
    for (const f of files) splits[f.split as SplitName].push(toRef(f, labelOf(f), malariaSlideOf(f.rel)));
    provenance = { method: 'folders' };
  } else {
    const by = splitBy === 'cell' ? 'sample' : splitBy;
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
  return {
    kind: 'malaria',
    name: opts.name,
    root,
    classes,
    synthetic: false,
    description: `NIH/NLM malaria cell images (${scan.layout === 'split' ? 'pre-split copy' : 'cell_images layout'}), split by ${splitBy}`,
    splits,
    split: provenance,
    skipped: sink.skipped,
    notes: scan.notes,
  };
}
