/**
 * A study's results as flat rows and danfojs DataFrames, for notebooks (`showTable(studyFrame(r))`) and
 * any further analysis (filter, sort, group by family):
 *
 * - `armRows(r)`: one row per arm: mean, sd and 95 % t interval of OA, AUC, F1, balanced accuracy (in %),
 *   parameters (the study's head and the paper's 1000-class convention), MACs, wall time;
 * - `seedRows(r)`: one row per finished cell (arm, seed), with the OA difference to the reference arm's same seed;
 * - `pairedRows(r)`: one row per non-reference arm: per-seed differences and the image bootstrap (percentage
 *   points), and whether each interval contains 0.
 *
 * Percentages are rounded to 0.01 and counts kept whole, so tables print without noise digits.
 */
import type { DataFrame } from 'danfojs-node';
import { toDataFrame, type Row } from '../report/table';
import { STUDY_METRICS, type StudyResults, type StudyMetric } from './aggregate';
import type { Summary } from './stats';

const SHORT: Record<StudyMetric, string> = { accuracy: 'OA', auc: 'AUC', f1: 'F1', balancedAccuracy: 'bal. acc.' };

/** A fraction in % rounded to 0.01 (null stays null). */
const pct = (v: number | null | undefined): number | null =>
  v === null || v === undefined || !Number.isFinite(v) ? null : Math.round(1e4 * v) / 100;

function summaryColumns(prefix: string, s: Summary | null): Row {
  return {
    [`${prefix} mean`]: pct(s?.mean),
    [`${prefix} sd`]: pct(s?.sd),
    [`${prefix} low`]: pct(s?.low),
    [`${prefix} high`]: pct(s?.high),
  };
}

export function armRows(r: StudyResults): Row[] {
  return r.arms.map((a) => ({
    arm: a.label,
    reference: a.label === r.reference,
    model: a.model,
    family: a.family,
    size: a.imageSize,
    seeds: a.seeds.length,
    ...Object.assign({}, ...STUDY_METRICS.map((m) => summaryColumns(SHORT[m], a.metrics[m]))),
    params: Number.isFinite(a.params) ? a.params : null,
    'params (1000 classes)': a.paramsPaperConvention ?? null,
    MACs: a.macs?.paper ?? null,
    'wall (min)': Number.isFinite(a.wallSeconds.mean) ? Math.round(a.wallSeconds.mean / 6) / 10 : null,
    'paper OA': pct(a.paper?.oa),
    'paper source': a.paper?.source ?? null,
  }));
}

export function seedRows(r: StudyResults): Row[] {
  const ref = r.arms.find((a) => a.label === r.reference);
  return r.arms.flatMap((a) =>
    a.perSeed.map((s) => {
      const rs = ref?.perSeed.find((x) => x.seed === s.seed);
      return {
        arm: a.label,
        family: a.family,
        seed: s.seed,
        OA: pct(s.accuracy),
        AUC: pct(s.auc),
        F1: pct(s.f1),
        'bal. acc.': pct(s.balancedAccuracy),
        'OA − reference': a.label === r.reference || !rs ? null : pct(s.accuracy - rs.accuracy),
        'wall (min)': Math.round(s.wallSeconds / 6) / 10,
      };
    }),
  );
}

export function pairedRows(r: StudyResults): Row[] {
  return r.paired.map((p) => {
    const row: Row = { arm: p.arm, reference: p.reference, seeds: p.seeds.join(', ') };
    for (const m of STUDY_METRICS) {
      const x = p.perSeed[m];
      row[`${SHORT[m]} Δ per seed`] = pct(x?.summary.mean);
      row[`${SHORT[m]} Δ low`] = pct(x?.summary.low);
      row[`${SHORT[m]} Δ high`] = pct(x?.summary.high);
      row[`${SHORT[m]} contains 0`] = x ? x.containsZero : null;
    }
    for (const [m, b] of Object.entries(p.bootstrap)) {
      const name = SHORT[m as StudyMetric];
      row[`${name} Δ images`] = pct(b?.estimate);
      row[`${name} Δ images low`] = pct(b?.low);
      row[`${name} Δ images high`] = pct(b?.high);
      row[`${name} images contains 0`] = b ? b.containsZero : null;
    }
    return row;
  });
}

/** The results as a danfojs DataFrame: per arm (default), per seed, or the paired comparisons. */
export function studyFrame(r: StudyResults, which: 'arms' | 'seeds' | 'paired' = 'arms'): DataFrame {
  const rows = which === 'arms' ? armRows(r) : which === 'seeds' ? seedRows(r) : pairedRows(r);
  if (rows.length === 0) throw new Error(`studyFrame: study ${r.study} has no ${which} rows yet (no finished cells)`);
  return toDataFrame(rows);
}
