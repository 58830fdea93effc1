/**
 * A study's results from its cell.json files alone (lib/study/cell.ts), so they can be recomputed on any
 * clone: per arm the mean ± sd and 95 % t interval over seeds of OA, AUC, weighted F1 and balanced
 * accuracy, parameters, MACs and wall time; per non-reference arm the paired comparison with the
 * reference arm (per-seed differences, and a paired bootstrap over the test images), each difference
 * marked when its interval contains 0 (lib/study/stats.ts).
 *
 * Outputs: results.json (everything), results.md (the tables; a function of the cells and the study file
 * only, no dates, so re-aggregating reproduces it byte for byte) and a self-contained report.html (the
 * tables, and the plotly figures of ./figures.ts: accuracy vs parameters and vs MACs, the paper's numbers
 * beside the kit's, training time per arm).
 */
import * as path from 'path';
import { atomicWriteFile, atomicWriteJson } from '../util/fs';
import { countParams, createModel } from '../models/index';
import { writeHtmlReport, type ReportSection } from '../report/index';
import type { CellRecord } from './cell';
import type { PaperNumbers, Study } from './definition';
import { accuracyFigure, paperPanelFigure, sizeEffectFigure, trainingTimeFigure } from './figures';
import { sizeEffects } from './size-effect';
import {
  containsZero,
  DIFFERENCE_RANGE,
  METRIC_RANGE,
  pairedBootstrap,
  PREDICTION_METRICS,
  summarize,
  type PairedBootstrap,
  type PredictionMetric,
  type Summary,
} from './stats';

export type StudyMetric = 'accuracy' | 'auc' | 'f1' | 'balancedAccuracy';
export const STUDY_METRICS: readonly StudyMetric[] = ['accuracy', 'auc', 'f1', 'balancedAccuracy'];

/** One finished cell of an arm. */
export interface SeedResult {
  seed: number;
  accuracy: number;
  auc: number | null;
  f1: number;
  balancedAccuracy: number;
  wallSeconds: number;
}

export interface ArmResult {
  label: string;
  model: string;
  family: string;
  imageSize: number;
  seeds: number[];
  /** Cells of this arm still missing (the summaries are over the finished ones). */
  missingSeeds: number[];
  metrics: Record<StudyMetric, Summary | null>;
  /** The finished cells, in the study's seed order. */
  perSeed: SeedResult[];
  params: number;
  /**
   * Parameters of the arm's model with a 1000-class head (the paper's convention in Tables I–III), counted
   * from the model registry (the arm's options and image size); undefined if the model cannot be built.
   */
  paramsPaperConvention?: number;
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
  /** The machines the finished cells ran on ('<cpu> × <cores>, <backend>'). */
  machines: string[];
  arms: ArmResult[];
  paired: PairedResult[];
  bootstrap: { samples: number; seed: number };
}

const metricOf = (c: CellRecord, m: StudyMetric): number | null => c.test[m];

const paramsCache = new Map<string, number | undefined>();

/** Parameters of `model` with `options` at `imageSize` and a 1000-class head (undefined if it cannot be built). */
export function paramsAt1000Classes(
  model: string,
  options: Record<string, unknown> = {},
  imageSize?: number,
): number | undefined {
  const key = JSON.stringify([model, options, imageSize]);
  if (!paramsCache.has(key)) {
    let count: number | undefined;
    try {
      const m = createModel(model, { ...(imageSize ? { imageSize } : {}), ...options, numClasses: 1000 });
      count = countParams(m).total;
      m.dispose();
    } catch {
      count = undefined;
    }
    paramsCache.set(key, count);
  }
  return paramsCache.get(key);
}

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
      return v.length ? summarize(v, METRIC_RANGE) : null;
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
      perSeed: done.map((c) => ({
        seed: c.seed,
        accuracy: c.test.accuracy,
        auc: c.test.auc,
        f1: c.test.f1,
        balancedAccuracy: c.test.balancedAccuracy,
        wallSeconds: c.training.wallSeconds,
      })),
      params: done[0]?.params.total ?? NaN,
      paramsPaperConvention: paramsAt1000Classes(arm.model, arm.options, all[0].cell.config.imageSize),
      macs: done[0]?.macs ?? null,
      wallSeconds: done.length
        ? summarize(
            done.map((c) => c.training.wallSeconds),
            [0, Infinity],
          )
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
          const s = summarize(d, DIFFERENCE_RANGE);
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
    machines: [
      ...new Set(
        cells
          .filter((c): c is CellRecord => !!c)
          .map((c) => `${c.machine.cpu} × ${c.machine.cores}, ${c.machine.backend}`),
      ),
    ],
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
    ...(r.machines.length ? [`Machines: ${r.machines.join('; ')}.`, ''] : []),
    'Test metrics in %: mean ± sd over seeds [95 % t interval, clipped to 0–100]. F1 is weighted (the official test.py). ' +
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
  lines.push(...sizeEffectMarkdown(r));
  const withPaper = r.arms.filter((a) => a.paper);
  if (withPaper.length) {
    lines.push(
      "## The paper's numbers for the same arms",
      '',
      "A DIFFERENT dataset and recipe (the paper's own, 224 px, 200 epochs): shown for orientation, not comparable number for number.",
      '',
      "Params in M with a 1000-class head, as the paper counts them; the kit column counts the arm's own model (its options and image size) the same way.",
      '',
      '| arm | paper source | paper OA | paper AUC | paper F1 | paper params (M) | kit params (M), 1000 classes | kit OA (this study) | kit AUC (this study) |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const a of withPaper) {
      const p = a.paper!;
      lines.push(
        `| ${a.label} | ${p.source} | ${pct(p.oa)} | ${pct(p.auc)} | ${pct(p.f1)} | ${p.params === undefined ? '–' : millions(p.params)} | ` +
          `${a.paramsPaperConvention === undefined ? '–' : millions(a.paramsPaperConvention)} | ${pct(a.metrics.accuracy?.mean)} | ${pct(a.metrics.auc?.mean)} |`,
      );
    }
    lines.push('');
  }
  if (r.arms.some((a) => a.perSeed.length)) {
    lines.push(
      '## Per seed',
      '',
      `Test metrics in % of every finished cell; OA − reference in percentage points against the reference arm (${r.reference}) of the same seed.`,
      '',
      '| arm | seed | OA | AUC | F1 | balanced acc. | OA − reference | wall (min) |',
      '|---|---|---|---|---|---|---|---|',
    );
    const ref = r.arms.find((a) => a.label === r.reference);
    for (const a of r.arms) {
      for (const s of a.perSeed) {
        const rs = ref?.perSeed.find((x) => x.seed === s.seed);
        const diff = a.label === r.reference ? '' : rs ? signedPct(s.accuracy - rs.accuracy) : '–';
        lines.push(
          `| ${a.label} | ${s.seed} | ${pct(s.accuracy)} | ${pct(s.auc)} | ${pct(s.f1)} | ${pct(s.balancedAccuracy)} | ${diff} | ${(s.wallSeconds / 60).toFixed(1)} |`,
        );
      }
    }
    lines.push('');
  }
  if (r.paired.length) {
    lines.push(
      `## Paired comparison with the reference arm (${r.reference})`,
      '',
      'Differences arm − reference in percentage points. Per seed: mean [95 % t interval, clipped to ±100] of the per-seed differences. ' +
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

/** The input-size section of results.md (nothing when no model ran at two sizes). */
function sizeEffectMarkdown(r: StudyResults): string[] {
  const effects = sizeEffects(r);
  if (!effects.length) return [];
  const sizes = [...new Set(effects.flatMap((e) => e.sizes))].sort((a, b) => a - b);
  const lines = [
    '## Input size',
    '',
    'Models that ran at several sizes: mean test OA (%) and rank among all arms at each size (1 = best), and the ' +
      'gain from the smallest to the largest size in percentage points, mean [95 % t interval, clipped to ±100] of the ' +
      'per-seed differences on the seeds both finished. ° marks an interval that contains 0.',
    '',
    `| model | family | ${sizes.map((z) => `OA ${z} px (rank)`).join(' | ')} | gain ${sizes[0]} → ${sizes[sizes.length - 1]} px | seeds |`,
    `|---|---|${sizes.map(() => '---|').join('')}---|---|`,
  ];
  for (const e of effects) {
    const at = sizes.map((z) => {
      const i = e.sizes.indexOf(z);
      return i < 0 || e.accuracy[i] === null ? '–' : `${pct(e.accuracy[i])} (${e.rank[i]})`;
    });
    const g = e.gain;
    const gain = g
      ? `${signedPct(g.summary.mean)}${g.summary.low === null ? '' : ` [${signedPct(g.summary.low)}, ${signedPct(g.summary.high)}]`}${g.containsZero ? ' °' : ''}`
      : '–';
    lines.push(`| ${e.name} | ${e.family} | ${at.join(' | ')} | ${gain} | ${g ? g.seeds.join(', ') : '–'} |`);
  }
  lines.push('');
  return lines;
}

// ---------------------------------------------------------------------------------------------------
// report.html

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
  if (r.arms.some((a) => a.paper?.oa !== undefined && a.metrics.accuracy))
    sections.push({
      heading: "The paper's numbers beside the kit's (different datasets and recipes)",
      figure: paperPanelFigure(r),
    });
  if (sizeEffects(r).length) sections.push({ heading: 'Accuracy by input size', figure: sizeEffectFigure(r) });
  if (r.arms.some((a) => a.perSeed.length))
    sections.push({ heading: 'Training time per arm', figure: trainingTimeFigure(r) });
  writeHtmlReport(out.html, { title: `Study ${r.study}`, sections });
  return out;
}

/** results.md shown verbatim in the page (the tables stay readable without a Markdown renderer). */
function markdownTablesAsPre(md: string): string {
  const esc = md.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<pre style="white-space:pre-wrap;font-size:12px">${esc}</pre>`;
}
