/**
 * Seeded, reproducible train/val/test splits, saved to a split file.
 *
 *   by sample  stratified: each class is shuffled on its own and cut by the ratios, so every split keeps
 *              the class proportions (sklearn's stratified split in spirit).
 *   by group   group-disjoint: whole groups (a smear image, a slide/patient, a WSI) go to one split, so no
 *              group straddles splits; groups are shuffled and each goes to the split that is furthest
 *              below its target sample count, which keeps split sizes close to the ratios.
 *
 * Both depend only on the seed and the sorted sample keys, not on directory listing order. The assignment
 * is written to a JSON split file; later opens reuse it, and refuse to continue if the file list no longer
 * matches it (so a changed folder cannot silently reshuffle a test set).
 */
import * as fs from 'fs';
import { atomicWriteJson } from '../util/fs';
import { Rng } from '../util/random';
import { DataError } from './errors';
import type { SplitName, SplitRatios } from './types';

export const DEFAULT_RATIOS: SplitRatios = { train: 0.7, val: 0.15, test: 0.15 };

/** A 32-bit seed from any list of parts (FNV-1a, then a murmur3 finaliser). */
export function mixSeed(...parts: Array<string | number>): number {
  let h = 2166136261;
  const text = parts.join('\u0000');
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface SplitCandidate {
  /** Stable identity of the sample (relative path). */
  key: string;
  label: number;
  group?: string;
}

function checkRatios(r: SplitRatios): void {
  const sum = r.train + r.val + r.test;
  if ([r.train, r.val, r.test].some((x) => x < 0 || !Number.isFinite(x)) || Math.abs(sum - 1) > 1e-6) {
    throw new DataError(`split ratios must be ≥ 0 and sum to 1, got ${JSON.stringify(r)}`);
  }
}

const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Stratified by class: returns the split of each candidate (same order as `items`). */
export function stratifiedSplit(items: SplitCandidate[], ratios: SplitRatios, seed: number): SplitName[] {
  checkRatios(ratios);
  const out = new Array<SplitName>(items.length);
  const classes = [...new Set(items.map((it) => it.label))].sort((a, b) => a - b);
  for (const label of classes) {
    const members = items.map((it, i) => ({ key: it.key, i, label: it.label })).filter((m) => m.label === label);
    members.sort(byKey);
    new Rng(mixSeed(seed, 'stratified', label)).shuffle(members);
    const n = members.length;
    const nVal = Math.round(n * ratios.val);
    const nTest = Math.min(Math.round(n * ratios.test), n - nVal);
    members.forEach((m, k) => (out[m.i] = k < nVal ? 'val' : k < nVal + nTest ? 'test' : 'train'));
  }
  return out;
}

/** Group-disjoint: every group lands in exactly one split. */
export function groupSplit(items: SplitCandidate[], ratios: SplitRatios, seed: number): SplitName[] {
  checkRatios(ratios);
  const groups = new Map<string, number[]>();
  items.forEach((it, i) => {
    const g = it.group ?? it.key;
    const list = groups.get(g);
    if (list) list.push(i);
    else groups.set(g, [i]);
  });
  const order = [...groups.keys()].sort();
  new Rng(mixSeed(seed, 'group')).shuffle(order);
  const names: SplitName[] = ['train', 'val', 'test'];
  const target = names.map((s) => ratios[s] * items.length);
  const filled = [0, 0, 0];
  const out = new Array<SplitName>(items.length);
  for (const g of order) {
    // The split with the largest remaining deficit relative to its target takes the next group.
    let best = -1;
    let bestDeficit = -Infinity;
    names.forEach((_, s) => {
      if (target[s] <= 0) return;
      const deficit = (target[s] - filled[s]) / target[s];
      if (deficit > bestDeficit) {
        best = s;
        bestDeficit = deficit;
      }
    });
    const members = groups.get(g) as number[];
    for (const i of members) out[i] = names[best];
    filled[best] += members.length;
  }
  return out;
}

/** The JSON split file. */
export interface SplitFile {
  version: 1;
  dataset: string;
  seed: number;
  ratios: SplitRatios;
  by: string;
  counts: Record<SplitName, number>;
  /** Sample key → split. */
  assignment: Record<string, SplitName>;
}

export interface SplitRequest {
  dataset: string;
  items: SplitCandidate[];
  ratios: SplitRatios;
  seed: number;
  /** 'sample' for a stratified split, anything else means group-disjoint by `items[i].group`. */
  by: string;
  /** Where to store / find the assignment. */
  file: string;
  /** Overwrite a split file that no longer matches the samples (otherwise that is an error). */
  resplit?: boolean;
}

/**
 * Load the split file if it exists and matches, otherwise compute the split and save it atomically.
 * Returns each item's split, in `items` order.
 */
export function loadOrMakeSplit(req: SplitRequest): SplitName[] {
  const { items, file } = req;
  if (fs.existsSync(file) && !req.resplit) {
    let saved: SplitFile;
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8')) as SplitFile;
    } catch (e) {
      throw new DataError(`unreadable split file (${(e as Error).message}); delete it to re-split`, file);
    }
    const missing = items.filter((it) => !(it.key in saved.assignment));
    const extra = Object.keys(saved.assignment).length - (items.length - missing.length);
    if (missing.length > 0 || extra > 0) {
      throw new DataError(
        `split file no longer matches the dataset: ${missing.length} sample(s) not in it` +
          (missing.length ? ` (e.g. ${missing[0].key})` : '') +
          `, ${extra} listed sample(s) gone. Delete it or pass resplit: true to make a new split`,
        file,
      );
    }
    return items.map((it) => saved.assignment[it.key]);
  }
  const splits =
    req.by === 'sample' ? stratifiedSplit(items, req.ratios, req.seed) : groupSplit(items, req.ratios, req.seed);
  const assignment: Record<string, SplitName> = {};
  const counts: Record<SplitName, number> = { train: 0, val: 0, test: 0 };
  const order = items.map((it, i) => ({ key: it.key, i })).sort(byKey);
  for (const { key, i } of order) {
    assignment[key] = splits[i];
    counts[splits[i]]++;
  }
  const doc: SplitFile = {
    version: 1,
    dataset: req.dataset,
    seed: req.seed,
    ratios: req.ratios,
    by: req.by,
    counts,
    assignment,
  };
  atomicWriteJson(file, doc);
  return splits;
}
