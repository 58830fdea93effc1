/**
 * MedMNIST .npz sources (TissueMNIST is the paper's fourth dataset; docs/architecture.md §Datasets,
 * docs/platform.md §Data in Node).
 *
 * Layout of `<flag>.npz` / `<flag>_<size>.npz`: arrays train_images, train_labels, val_images, val_labels,
 * test_images, test_labels; images uint8 (N, S, S) grey or (N, S, S, 3) RGB; labels integer (N, 1) or (N,).
 * Grey images become 3 identical channels when decoded (as ImageFolder's `convert('RGB')` does). Only
 * single-label tasks are loaded (ChestMNIST, multi-label, is refused).
 *
 * Opening reads only the .npy headers and the label arrays; images are read per sample later (random access
 * for np.savez files, streaming for np.savez_compressed ones), so arrays larger than memory are fine.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DataError, ProblemSink, describeError } from '../errors';
import { MEDMNIST } from '../medmnist-info';
import { NpzFile, npyIntegers } from '../npz';
import { SPLIT_NAMES, type SampleRef, type SourceListing, type SplitName } from '../types';

/** `bloodmnist_64.npz` → { flag: 'bloodmnist', size: 64 }; undefined for other names. */
export function parseMedMnistFileName(file: string): { flag: string; size: number } | undefined {
  const m = /^([a-z0-9]+?)(?:_(64|128|224))?\.npz$/.exec(path.basename(file).toLowerCase());
  return m ? { flag: m[1], size: m[2] ? Number(m[2]) : 28 } : undefined;
}

export interface NpzSourceOptions {
  name: string;
  /** Class names; default: the MedMNIST catalogue's for a known flag, else '0', '1', ... */
  classes?: string[];
  /** Skip (and report) samples whose label is out of range instead of failing. */
  skipBad?: boolean;
}

export async function medmnistSource(file: string, opts: NpzSourceOptions): Promise<SourceListing> {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new DataError(`npz file not found or unreadable (${describeError(e)})`, file);
  }
  const npz = await NpzFile.open(file);
  try {
    const known = parseMedMnistFileName(file);
    const info = known ? MEDMNIST[known.flag] : undefined;
    if (info && info.task.startsWith('multi-label')) {
      throw new DataError(`${info.flag} is a multi-label task; only single-label classification is supported`, file);
    }
    const keys = [...npz.arrays.keys()];
    const arrays: NonNullable<SourceListing['npz']>['arrays'] = {};
    const labelsBySplit: Partial<Record<SplitName, number[]>> = {};
    let side = 0;
    let channels = 0;
    for (const split of SPLIT_NAMES) {
      const imagesKey = `${split}_images`;
      const labelsKey = `${split}_labels`;
      const hasImages = npz.arrays.has(imagesKey);
      const hasLabels = npz.arrays.has(labelsKey);
      if (!hasImages && !hasLabels) continue;
      if (hasImages !== hasLabels) {
        throw new DataError(
          `'${hasImages ? imagesKey : labelsKey}' has no matching '${hasImages ? labelsKey : imagesKey}' (keys: ${keys.join(', ')})`,
          file,
        );
      }
      const img = npz.get(imagesKey);
      const lab = npz.get(labelsKey);
      const where = `${file}:${imagesKey}`;
      const shape = img.header.shape;
      if (img.header.descr !== '|u1')
        throw new DataError(`images must be uint8, found dtype '${img.header.descr}'`, where);
      if (
        !(shape.length === 3 || (shape.length === 4 && (shape[3] === 3 || shape[3] === 1))) ||
        shape[1] !== shape[2]
      ) {
        throw new DataError(`images must have shape (N, S, S) or (N, S, S, 3), found (${shape.join(', ')})`, where);
      }
      const ch = shape.length === 4 ? shape[3] : 1;
      if (side && (side !== shape[1] || channels !== ch)) {
        throw new DataError(
          `image size ${shape[1]}×${shape[2]}×${ch} differs from the other splits' ${side}×${side}×${channels}`,
          where,
        );
      }
      side = shape[1];
      channels = ch;
      const ls = lab.header.shape;
      if (!(ls.length === 1 || (ls.length === 2 && ls[1] === 1))) {
        throw new DataError(
          `labels must have shape (N,) or (N, 1) (single-label), found (${ls.join(', ')})`,
          `${file}:${labelsKey}`,
        );
      }
      if (ls[0] !== shape[0]) {
        throw new DataError(`${imagesKey} has ${shape[0]} samples but ${labelsKey} has ${ls[0]}`, file);
      }
      labelsBySplit[split] = npyIntegers(await npz.readAll(labelsKey), lab.header, `${file}:${labelsKey}`);
      arrays[split] = { images: imagesKey, labels: labelsKey };
    }
    if (!arrays.train)
      throw new DataError(`no train_images/train_labels arrays (keys: ${keys.join(', ') || 'none'})`, file);

    const all = Object.values(labelsBySplit).flat();
    const numClasses = opts.classes?.length ?? info?.labels.length ?? all.reduce((a, b) => Math.max(a, b), 0) + 1;
    const classes = opts.classes ?? info?.labels ?? Array.from({ length: numClasses }, (_, i) => String(i));
    const sink = new ProblemSink(opts.skipBad ?? false);
    const splits: Record<SplitName, SampleRef[]> = { train: [], val: [], test: [] };
    for (const split of SPLIT_NAMES) {
      const labels = labelsBySplit[split];
      if (!labels) continue;
      const key = (arrays[split] as { images: string }).images;
      labels.forEach((label, i) => {
        if (!Number.isInteger(label) || label < 0 || label >= numClasses) {
          return sink.report(`${file}:${split}_labels[${i}]`, `label ${label} is out of range [0, ${numClasses})`);
        }
        splits[split].push({ path: `${file}:${key}[${i}]`, label, record: i, bytes: st.size, mtimeMs: st.mtimeMs });
      });
    }
    if (new Set(splits.train.map((r) => r.label)).size < 2) {
      throw new DataError('train labels contain a single class; classification needs at least two', file);
    }
    return {
      kind: 'medmnist',
      name: opts.name,
      root: file,
      classes,
      synthetic: false,
      description: info
        ? `MedMNIST ${info.python_class} (${side}×${side}, ${channels === 1 ? 'grey → RGB' : 'RGB'})`
        : `npz arrays (${side}×${side}×${channels})`,
      splits,
      split: { method: 'npz' },
      skipped: sink.skipped,
      notes: [],
      npz: { file, arrays, side, channels },
    };
  } finally {
    npz.close();
  }
}
