/**
 * How much the input size moves each model, from a study whose arms train the same model at several sizes
 * (labels `<name> <size>px`, as in studies/zoo-malaria.json). The issue behind the zoo study: at 32 px
 * Microscopic-Mamba's 4× stem leaves 8 × 8 maps and its last stages scan 4 and 1 tokens, so a ranking at one
 * size is not a ranking.
 *
 * Per model (the label without its size): OA at each size, the paired gain from the smallest to the largest
 * size (per-seed differences on the seeds both arms finished, summarised like every other difference: mean,
 * 95 % t interval clipped to ±1, whether it contains 0) and the model's rank among all the study's arms at
 * each size (1 = the highest mean OA at that size).
 */
import type { ArmResult, StudyResults } from './aggregate';
import { containsZero, DIFFERENCE_RANGE, summarize, type Summary } from './stats';

export interface SizeEffect {
  /** The arms' label without the size suffix (`resnet18`, `microscopic-mamba-t`). */
  name: string;
  family: string;
  /** Sizes the model ran at, ascending, and the arm of each. */
  sizes: number[];
  arms: ArmResult[];
  /** Mean test OA at each size (fraction), null where that arm has no finished cell. */
  accuracy: (number | null)[];
  /** Rank of the arm among all arms of the study at the same size (1 = best), null without a cell. */
  rank: (number | null)[];
  /** OA(largest size) − OA(smallest size) on the seeds both finished; null without a common seed. */
  gain: { seeds: number[]; summary: Summary; containsZero: boolean } | null;
}

/** The label of an arm without a trailing ` <size>px` (the label itself when it has none). */
export function sizeFreeName(label: string): string {
  return label.replace(/\s+\d+\s*px$/, '');
}

/** Every model of `r` that ran at two or more sizes, ordered by its mean OA at the largest size (best first). */
export function sizeEffects(r: StudyResults): SizeEffect[] {
  const done = r.arms.filter((a) => a.metrics.accuracy);
  const rankAt = (a: ArmResult): number =>
    1 + done.filter((b) => b.imageSize === a.imageSize && b.metrics.accuracy!.mean > a.metrics.accuracy!.mean).length;
  const groups = new Map<string, ArmResult[]>();
  for (const a of r.arms) groups.set(sizeFreeName(a.label), [...(groups.get(sizeFreeName(a.label)) ?? []), a]);
  const effects: SizeEffect[] = [];
  for (const [name, arms] of groups) {
    const sorted = [...arms].sort((a, b) => a.imageSize - b.imageSize);
    const sizes = sorted.map((a) => a.imageSize);
    if (new Set(sizes).size < 2 || new Set(sizes).size !== sizes.length) continue;
    const small = sorted[0];
    const large = sorted[sorted.length - 1];
    const pairs = large.perSeed
      .map((l) => ({ seed: l.seed, l, s: small.perSeed.find((x) => x.seed === l.seed) }))
      .filter((p) => p.s);
    const d = pairs.map((p) => p.l.accuracy - p.s!.accuracy);
    const summary = d.length ? summarize(d, DIFFERENCE_RANGE) : null;
    effects.push({
      name,
      family: sorted.find((a) => a.perSeed.length)?.family ?? sorted[0].family,
      sizes,
      arms: sorted,
      accuracy: sorted.map((a) => a.metrics.accuracy?.mean ?? null),
      rank: sorted.map((a) => (a.metrics.accuracy ? rankAt(a) : null)),
      gain: summary
        ? { seeds: pairs.map((p) => p.seed), summary, containsZero: containsZero(summary.low, summary.high) }
        : null,
    });
  }
  const last = (e: SizeEffect) => e.accuracy[e.accuracy.length - 1] ?? -1;
  return effects.sort((a, b) => last(b) - last(a));
}
