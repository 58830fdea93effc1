/**
 * A study's results from its cell.json files alone (lib/study/cell.ts), so they can be recomputed on any
 * clone: per arm the mean ± sd and 95 % t interval over seeds of OA, AUC, weighted F1 and balanced
 * accuracy, parameters, MACs and wall time; per non-reference arm the paired comparison with the
 * reference arm (per-seed differences, and a paired bootstrap over the test images), each difference
 * marked when its interval contains 0 (lib/study/stats.ts).
 *
 * Outputs: results.json (everything), results.md (the tables; a function of the cells only, no dates,
 * so re-aggregating reproduces it byte for byte) and report.html (plotly: accuracy vs parameters and vs
 * MACs, log x, error bars, colour by family, Pareto front).
 */
import * as path from 'path';
import { atomicWriteFile, atomicWriteJson } from '../util/fs';
import { writeHtmlReport, type Figure, type ReportSection, type Trace } from '../report/index';
import type { CellRecord } from './cell';
import type { PaperNumbers, Study } from './definition';
import {
  containsZero,
  pairedBootstrap,
  PREDICTION_METRICS,
  summarize,
  type PairedBootstrap,
  type PredictionMetric,
  type Summary,
} from './stats';

export type StudyMetric = 'accuracy' | 'auc' | 'f1' | 'balancedAccuracy';
export const STUDY_METRICS: readonly StudyMetric[] = ['accuracy', 'auc', 'f1', 'balancedAccuracy'];

export interface ArmResult {
  label: string;
  model: string;
  family: string;
  imageSize: number;
  seeds: number[];
  /** Cells of this arm still missing (the summaries are over the finished ones). */
  missingSeeds: number[];
  metrics: Record<StudyMetric, Summary | null>;
  params: number;
  macs: { paper: number; full: number } | null;
  wallSeconds: Summary;
  paper?: PaperNumbers;
}

export interface PairedResult {
  arm: string;
  reference: string;
  /** Seeds both arms finished. */
  seeds: number[];
  perSeed: Record<StudyMetric, { differences: number[]; summary: Summary; containsZero: boolean } | null>;
  bootstrap: Record<PredictionMetric, (PairedBootstrap & { containsZero: boolean }) | null>;
}

export interface StudyResults {
  study: string;
  description?: string;
  dataset: { name: string; synthetic: boolean; counts: Record<string, number[]> } | null;
  recipe: string;
  seeds: number[];
  reference: string;
  cells: { total: number; finished: number };
  arms: ArmResult[];
  paired: PairedResult[];
  bootstrap: { samples: number; seed: number };
}

const metricOf = (c: CellRecord, m: StudyMetric): number | null => c.test[m];

/** Aggregate the finished cells (`cells[i]` is cell i's record, or undefined while it is missing). */
export function aggregateStudy(study: Study, cells: ReadonlyArray<CellRecord | undefined>): StudyResults {
  const def = study.def;
  const bootstrap = def.bootstrap ?? { samples: 1000, seed: 0 };
  const byArm = (label: string) =>
    study.cells.filter((c) => c.arm.label === label).map((c) => ({ cell: c, rec: cells[c.index] }));
  const arms: ArmResult[] = def.arms.map((arm) => {
    const all = byArm(arm.label);
    const done = all.filter((x) => x.rec).map((x) => x.rec!);
    const summaryOf = (m: StudyMetric) => {
      const v = done.map((c) => metricOf(c, m)).filter((x): x is number => x !== null);
      return v.length ? summarize(v) : null;
    };
    return {
      label: arm.label,
      model: arm.model,
      family: done[0]?.family ?? 'unknown',
      imageSize: all[0].cell.config.imageSize,
      seeds: done.map((c) => c.seed),
      missingSeeds: all.filter((x) => !x.rec).map((x) => x.cell.seed),
      metrics: Object.fromEntries(
        STUDY_METRICS.map((m) => [m, done.length ? summaryOf(m) : null]),
      ) as ArmResult['metrics'],
      params: done[0]?.params.total ?? NaN,
      macs: done[0]?.macs ?? null,
      wallSeconds: done.length
        ? summarize(done.map((c) => c.training.wallSeconds))
        : { n: 0, mean: NaN, sd: null, low: null, high: null },
      ...(arm.paper ? { paper: arm.paper } : {}),
    };
  });
  const ref = byArm(def.reference);
  const paired: PairedResult[] = def.arms
    .filter((a) => a.label !== def.reference)
    .map((arm) => {
      const pairs = byArm(arm.label)
        .map((x) => ({ seed: x.cell.seed, a: x.rec, r: ref.find((y) => y.cell.seed === x.cell.seed)?.rec }))
        .filter((p): p is { seed: number; a: CellRecord; r: CellRecord } => !!p.a && !!p.r);
      const perSeed = Object.fromEntries(
        STUDY_METRICS.map((m) => {
          const d = pairs
            .map((p) => [metricOf(p.a, m), metricOf(p.r, m)])
            .filter((v): v is [number, number] => v[0] !== null && v[1] !== null)
            .map(([a, r]) => a - r);
          if (!d.length) return [m, null];
          const s = summarize(d);
          return [m, { differences: d, summary: s, containsZero: containsZero(s.low, s.high) }];
        }),
      ) as PairedResult['perSeed'];
      const sameImages =
        pairs.length > 0 &&
        pairs.every(
          (p) =>
            sameLabels(p.a.test.labels, pairs[0].r.test.labels) && sameLabels(p.r.test.labels, pairs[0].r.test.labels),
        );
      const boot = Object.fromEntries(
        PREDICTION_METRICS.map((m) => {
          if (!sameImages) return [m, null];
          const labels = Int32Array.from(pairs[0].r.test.labels);
          const b = pairedBootstrap(
            m,
            labels,
            pairs[0].r.test.classes.length,
            pairs.map((p) => Int32Array.from(p.a.test.predicted)),
            pairs.map((p) => Int32Array.from(p.r.test.predicted)),
            bootstrap,
          );
          return [m, { ...b, containsZero: containsZero(b.low, b.high) }];
        }),
      ) as PairedResult['bootstrap'];
      return { arm: arm.label, reference: def.reference, seeds: pairs.map((p) => p.seed), perSeed, bootstrap: boot };
    });
  const first = cells.find((c) => c);
  return {
    study: def.name,
    ...(def.description ? { description: def.description } : {}),
    dataset: first ? first.dataset : null,
    recipe: def.recipe || 'custom',
    seeds: def.seeds,
    reference: def.reference,
    cells: { total: study.cells.length, finished: cells.filter((c) => c).length },
    arms,
    paired,
    bootstrap,
  };
}

function sameLabels(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ---------------------------------------------------------------------------------------------------
// results.md

const pct = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : (100 * v).toFixed(digits);
const signedPct = (v: number | null | undefined) =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : `${v >= 0 ? '+' : '−'}${(100 * Math.abs(v)).toFixed(2)}`;

function cellText(s: Summary | null): string {
  if (!s) return '–';
  const sd = s.sd === null ? '' : ` ± ${pct(s.sd)}`;
  const ci = s.low === null ? '' : ` [${pct(s.low)}, ${pct(s.high)}]`;
  return `${pct(s.mean)}${sd}${ci}`;
}

const millions = (n: number) => (Number.isFinite(n) ? (n / 1e6).toFixed(2) : '–');
const giga = (n: number | undefined) => (n === undefined ? '–' : (n / 1e9).toFixed(3));

/** The study's tables as Markdown (no timestamps: a function of the cells only). */
export function resultsMarkdown(r: StudyResults): string {
  const lines: string[] = [];
  lines.push(`# Study ${r.study}`, '');
  if (r.description) lines.push(r.description, '');
  const ds = r.dataset;
  lines.push(
    `Dataset: ${ds ? `${ds.name}${ds.synthetic ? ' (SYNTHETIC: says nothing about real microscopy)' : ''}` : '–'}` +
      (ds
        ? ` (${Object.entries(ds.counts)
            .map(([k, v]) => `${k} ${v.reduce((a, b) => a + b, 0)}`)
            .join(', ')} images)`
        : '') +
      `; recipe ${r.recipe}; seeds ${r.seeds.join(', ')}; ${r.cells.finished} of ${r.cells.total} cells finished.`,
    '',
    'Test metrics in %: mean ± sd over seeds [95 % t interval]. F1 is weighted (the official test.py). ' +
      "Params in millions, MACs in G (ptflops convention) for one image at the arm's size; wall time per cell in minutes.",
    '',
  );
  lines.push('| arm | model | size | seeds | OA | AUC | F1 | balanced acc. | params (M) | GMACs | wall (min) |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const a of r.arms) {
    lines.push(
      `| ${a.label}${a.label === r.reference ? ' (reference)' : ''} | ${a.model} | ${a.imageSize} | ${a.seeds.length}${a.missingSeeds.length ? ` (missing ${a.missingSeeds.join(', ')})` : ''} | ` +
        `${cellText(a.metrics.accuracy)} | ${cellText(a.metrics.auc)} | ${cellText(a.metrics.f1)} | ${cellText(a.metrics.balancedAccuracy)} | ` +
        `${millions(a.params)} | ${giga(a.macs?.paper)} | ${Number.isFinite(a.wallSeconds.mean) ? (a.wallSeconds.mean / 60).toFixed(1) : '–'} |`,
    );
  }
  lines.push('');
  const withPaper = r.arms.filter((a) => a.paper);
  if (withPaper.length) {
    lines.push(
      "## The paper's numbers for the same arms",
      '',
      "A DIFFERENT dataset and recipe (the paper's own, 224 px, 200 epochs): shown for orientation, not comparable number for number.",
      '',
      '| arm | paper source | paper OA | paper AUC | paper F1 | paper params (M) | kit OA (this study) |',
      '|---|---|---|---|---|---|---|',
    );
    for (const a of withPaper) {
      const p = a.paper!;
      lines.push(
        `| ${a.label} | ${p.source} | ${pct(p.oa)} | ${pct(p.auc)} | ${pct(p.f1)} | ${p.params === undefined ? '–' : millions(p.params)} | ${pct(a.metrics.accuracy?.mean)} |`,
      );
    }
    lines.push('');
  }
  if (r.paired.length) {
    lines.push(
      `## Paired comparison with the reference arm (${r.reference})`,
      '',
      'Differences arm − reference in percentage points. Per seed: mean [95 % t interval] of the per-seed differences. ' +
        `Images: paired bootstrap over the test images (${r.bootstrap.samples} resamples, seed ${r.bootstrap.seed}), ` +
        'mean over seeds [2.5 %, 97.5 % percentiles]. ° marks an interval that contains 0 (no difference at this level).',
      '',
      '| arm | seeds | OA per seed | AUC per seed | F1 per seed | bal. acc. per seed | OA images | F1 images | bal. acc. images |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const p of r.paired) {
      const ps = (m: StudyMetric) => {
        const x = p.perSeed[m];
        if (!x) return '–';
        const s = x.summary;
        return `${signedPct(s.mean)}${s.low === null ? '' : ` [${signedPct(s.low)}, ${signedPct(s.high)}]`}${x.containsZero ? ' °' : ''}`;
      };
      const bs = (m: PredictionMetric) => {
        const b = p.bootstrap[m];
        return b
          ? `${signedPct(b.estimate)} [${signedPct(b.low)}, ${signedPct(b.high)}]${b.containsZero ? ' °' : ''}`
          : '–';
      };
      lines.push(
        `| ${p.arm} | ${p.seeds.join(', ') || '–'} | ${ps('accuracy')} | ${ps('auc')} | ${ps('f1')} | ${ps('balancedAccuracy')} | ` +
          `${bs('accuracy')} | ${bs('f1')} | ${bs('balancedAccuracy')} |`,
      );
    }
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// report.html

const FAMILY_COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

/** Arms on the Pareto front of (cost ↓, accuracy ↑): no other arm is at most as costly and more accurate. */
export function paretoFront(points: ReadonlyArray<{ x: number; y: number }>): number[] {
  return points
    .map((p, i) => ({ p, i }))
    .filter(({ p, i }) => !points.some((q, j) => j !== i && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)))
    .sort((a, b) => a.p.x - b.p.x)
    .map(({ i }) => i);
}

/** Accuracy (mean, t-interval error bars) against `cost` (log x), one trace per family, plus the Pareto front. */
export function accuracyFigure(r: StudyResults, cost: 'params' | 'macs'): Figure {
  const arms = r.arms.filter((a) => a.metrics.accuracy && (cost === 'params' ? Number.isFinite(a.params) : a.macs));
  const x = (a: ArmResult) => (cost === 'params' ? a.params : a.macs!.paper);
  const families = [...new Set(arms.map((a) => a.family))];
  const data: Trace[] = families.map((fam, i) => {
    const mine = arms.filter((a) => a.family === fam);
    return {
      type: 'scatter',
      mode: 'markers+text',
      name: fam,
      x: mine.map(x),
      y: mine.map((a) => 100 * a.metrics.accuracy!.mean),
      text: mine.map((a) => a.label),
      textposition: 'top center',
      marker: { size: 10, color: FAMILY_COLOURS[i % FAMILY_COLOURS.length] },
      error_y: {
        type: 'data',
        symmetric: false,
        array: mine.map((a) =>
          a.metrics.accuracy!.high === null ? 0 : 100 * (a.metrics.accuracy!.high - a.metrics.accuracy!.mean),
        ),
        arrayminus: mine.map((a) =>
          a.metrics.accuracy!.low === null ? 0 : 100 * (a.metrics.accuracy!.mean - a.metrics.accuracy!.low),
        ),
      },
    };
  });
  const pts = arms.map((a) => ({ x: x(a), y: a.metrics.accuracy!.mean }));
  const front = paretoFront(pts);
  data.push({
    type: 'scatter',
    mode: 'lines',
    name: 'Pareto front',
    x: front.map((i) => pts[i].x),
    y: front.map((i) => 100 * pts[i].y),
    line: { dash: 'dot', color: '#444' },
  });
  return {
    data,
    layout: {
      title: `${r.study}: test OA vs ${cost === 'params' ? 'parameters' : 'MACs'} (mean and 95 % t interval over seeds)`,
      xaxis: { type: 'log', title: cost === 'params' ? 'parameters' : 'MACs per image (ptflops convention)' },
      yaxis: { title: 'test OA (%)' },
      height: 520,
    },
  };
}

export interface StudyOutputs {
  json: string;
  md: string;
  html: string;
}

/** Write results.json, results.md and report.html into the study's folder. */
export function writeStudyResults(study: Study, r: StudyResults): StudyOutputs {
  const out = {
    json: path.join(study.outDir, 'results.json'),
    md: path.join(study.outDir, 'results.md'),
    html: path.join(study.outDir, 'report.html'),
  };
  atomicWriteJson(out.json, r);
  const md = resultsMarkdown(r);
  atomicWriteFile(out.md, md);
  const sections: ReportSection[] = [
    { html: markdownTablesAsPre(md) },
    { heading: 'Accuracy vs parameters', figure: accuracyFigure(r, 'params') },
  ];
  if (r.arms.some((a) => a.macs)) sections.push({ heading: 'Accuracy vs MACs', figure: accuracyFigure(r, 'macs') });
  writeHtmlReport(out.html, { title: `Study ${r.study}`, sections });
  return out;
}

/** results.md shown verbatim in the page (the tables stay readable without a Markdown renderer). */
function markdownTablesAsPre(md: string): string {
  const esc = md.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<pre style="white-space:pre-wrap;font-size:12px">${esc}</pre>`;
}
