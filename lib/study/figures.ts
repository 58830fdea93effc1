/**
 * Plotly figures of a study's results (lib/study/aggregate.ts `StudyResults`), for report.html and the
 * notebooks 06–07:
 *
 * - `accuracyFigure(r, 'params' | 'macs')`: test OA (mean over seeds, 95 % t-interval error bars) against
 *   parameters or MACs on a log axis, one colour per model family, the Pareto front dotted;
 * - `paperPanelFigure(r)`: two panels on the same axes, the paper's numbers (each arm's `paper` field, plus
 *   Table I's other methods in grey when asked) and the kit's, both with parameters counted the paper's way
 *   (1000-class head, training-time form): where the two agree and where they differ. The panel titles say
 *   that the paper's numbers come from other datasets and another recipe;
 * - `trainingTimeFigure(r)`: wall time per cell, mean ± sd over seeds and every seed as a dot;
 * - `sizeEffectFigure(r)`: each model that ran at several sizes as a row, its OA at each size joined by a
 *   line (lib/study/size-effect.ts): how far the input size moves a model, and the ranking with it.
 *
 * Colours follow the family (cnn, vit, hybrid, mamba, microscopic-mamba), which is also the paper's
 * grouping of Table I (CNNs, ViTs, Hybrid-CNN-ViT, Mambas, Ours), so both panels colour alike.
 */
import type { Figure, Trace } from '../report/index';
import type { ArmResult, StudyResults } from './aggregate';
import { PAPER_TABLE_I, type PaperDataset, type PaperTableRow } from './paper-table1';
import { sizeEffects } from './size-effect';

/** A colour per model family (the paper's Table I groups map onto them). */
export const FAMILY_COLOURS: Record<string, string> = {
  cnn: '#1f77b4',
  vit: '#ff7f0e',
  hybrid: '#2ca02c',
  mamba: '#9467bd',
  'microscopic-mamba': '#d62728',
};
const OTHER_COLOURS = ['#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

/** Table I's group of methods → the kit's family. */
export const PAPER_GROUP_FAMILY: Record<PaperTableRow['group'], string> = {
  CNNs: 'cnn',
  ViTs: 'vit',
  'Hybrid-CNN-ViT': 'hybrid',
  Mambas: 'mamba',
  Ours: 'microscopic-mamba',
};

export function familyColour(family: string, i = 0): string {
  return FAMILY_COLOURS[family] ?? OTHER_COLOURS[i % OTHER_COLOURS.length];
}

/** Arms on the Pareto front of (cost ↓, accuracy ↑): no other arm is at most as costly and more accurate. */
export function paretoFront(points: ReadonlyArray<{ x: number; y: number }>): number[] {
  return points
    .map((p, i) => ({ p, i }))
    .filter(({ p, i }) => !points.some((q, j) => j !== i && q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)))
    .sort((a, b) => a.p.x - b.p.x)
    .map(({ i }) => i);
}

/** Where a point's label may go, in order of preference. */
export const LABEL_POSITIONS = [
  'top center',
  'bottom center',
  'middle right',
  'middle left',
  'top right',
  'top left',
  'bottom right',
  'bottom left',
] as const;
export type LabelPosition = (typeof LABEL_POSITIONS)[number];

/**
 * A text position per point so that labels overlap each other (and other markers) as little as possible:
 * plotly places marker labels without looking at their neighbours, and a study's arms crowd (two sizes
 * of a model share its parameter count). Greedy, highest point first: the first position whose box is
 * free, else the one with the least overlap. Boxes are estimated in pixels of a `width` × `height` plot
 * area whose axes span the points, `xRange` (log units when `logX`) and `yRange` (what else is drawn,
 * e.g. error bars), 6 px per character of a 10-px font. Covering another point, or reaching past the
 * figure's left edge or over the legend, counts four times as much as covering a label. The traces
 * draw text unclipped (`cliponaxis: false`), so a label may use the margins.
 */
export function placeLabels(
  points: ReadonlyArray<{ x: number; y: number; text: string }>,
  opts: { logX?: boolean; width?: number; height?: number; xRange?: [number, number]; yRange?: [number, number] } = {},
): LabelPosition[] {
  const { logX = true, width = 650, height = 340 } = opts;
  const xs = points.map((p) => (logX ? Math.log10(p.x) : p.x));
  const span = (v: number[]) => {
    const lo = Math.min(...v);
    const hi = Math.max(...v);
    return [lo, hi - lo || 1];
  };
  const [x0, dx] = span([...xs, ...(opts.xRange ?? [])]);
  const [y0, dy] = span([...points.map((p) => p.y), ...(opts.yRange ?? [])]);
  const px = points.map((_, i) => ({ x: ((xs[i] - x0) / dx) * width, y: ((points[i].y - y0) / dy) * height }));
  type Box = [number, number, number, number]; // left, bottom, right, top (pixels, y up)
  const boxOf = (i: number, pos: LabelPosition): Box => {
    const w = 6 * points[i].text.length;
    const h = 12;
    const { x, y } = px[i];
    if (pos === 'top center') return [x - w / 2, y + 6, x + w / 2, y + 6 + h];
    if (pos === 'bottom center') return [x - w / 2, y - 6 - h, x + w / 2, y - 6];
    if (pos === 'middle right') return [x + 7, y - h / 2, x + 7 + w, y + h / 2];
    if (pos === 'middle left') return [x - 7 - w, y - h / 2, x - 7, y + h / 2];
    const [left, right] = pos.endsWith('right') ? [x + 2, x + 2 + w] : [x - 2 - w, x - 2];
    return pos.startsWith('top') ? [left, y + 6, right, y + 6 + h] : [left, y - 6 - h, right, y - 6];
  };
  const overlap = (a: Box, b: Box) =>
    Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0])) * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const markers: Box[] = px.map(({ x, y }) => [x - 5, y - 5, x + 5, y + 5]);
  const placed: Box[] = [];
  const out: LabelPosition[] = new Array(points.length).fill('top center');
  const order = points.map((_, i) => i).sort((a, b) => points[b].y - points[a].y || points[a].x - points[b].x);
  for (const i of order) {
    let best: { pos: LabelPosition; cost: number } | undefined;
    for (const pos of LABEL_POSITIONS) {
      const box = boxOf(i, pos);
      const cost =
        // past the figure's left edge (a 60-px margin is free) or over the legend on the right
        (Math.max(0, -60 - box[0]) + Math.max(0, box[2] - width - 10)) * 12 * 4 +
        placed.reduce((c, b) => c + overlap(box, b), 0) +
        4 * markers.reduce((c, b, j) => c + (j === i ? 0 : overlap(box, b)), 0); // a hidden point is worse
      if (!best || cost < best.cost) best = { pos, cost };
      if (cost === 0) break;
    }
    out[i] = best?.pos ?? 'top center';
    placed.push(boxOf(i, out[i]));
  }
  return out;
}

/**
 * An arm's 95 % t interval of OA in percent, clipped to the possible 0–100 % as `summarize` does (again here
 * for results aggregated before it did); mean ± 0 where there is one seed.
 */
function interval(a: ArmResult): [number, number] {
  const acc = a.metrics.accuracy!;
  const clip = (v: number | null) => Math.min(100, Math.max(0, 100 * (v ?? acc.mean)));
  return [clip(acc.low), clip(acc.high)];
}

/** A log10 axis range over `values`, widened by `frac` of its span on each side; undefined when empty. */
function paddedLogRange(values: number[], frac: number): [number, number] | undefined {
  if (!values.length) return undefined;
  const logs = values.map(Math.log10);
  const [lo, hi] = [Math.min(...logs), Math.max(...logs)];
  const pad = frac * (hi - lo || 1);
  return [lo - pad, hi + pad];
}

/** Asymmetric error bars (percentage points) from `interval`. */
function errorBars(arms: readonly ArmResult[]) {
  return {
    type: 'data',
    symmetric: false,
    array: arms.map((a) => interval(a)[1] - 100 * a.metrics.accuracy!.mean),
    arrayminus: arms.map((a) => 100 * a.metrics.accuracy!.mean - interval(a)[0]),
  };
}

const seedsNote = (a: ArmResult) => `${a.label}: ${a.seeds.length} seed(s)`;

/** Accuracy (mean, t-interval error bars) against `cost` (log x), one trace per family, plus the Pareto front. */
export function accuracyFigure(r: StudyResults, cost: 'params' | 'macs', opts: { height?: number } = {}): Figure {
  const arms = r.arms.filter((a) => a.metrics.accuracy && (cost === 'params' ? Number.isFinite(a.params) : a.macs));
  const x = (a: ArmResult) => (cost === 'params' ? a.params : a.macs!.paper);
  const families = [...new Set(arms.map((a) => a.family))];
  const bars = arms.flatMap(interval);
  // x range set here, padded by a tenth of the span each side, so edge labels fit in the plot
  const xRange = paddedLogRange(arms.map(x), 0.1);
  const positions = placeLabels(
    arms.map((a) => ({ x: x(a), y: 100 * a.metrics.accuracy!.mean, text: a.label })),
    { xRange, yRange: [Math.min(...bars), Math.max(...bars)] },
  );
  const data: Trace[] = families.map((fam, i) => {
    const mine = arms.filter((a) => a.family === fam);
    return {
      type: 'scatter',
      mode: 'markers+text',
      name: fam,
      x: mine.map(x),
      y: mine.map((a) => 100 * a.metrics.accuracy!.mean),
      text: mine.map((a) => a.label),
      hovertext: mine.map(seedsNote),
      textposition: mine.map((a) => positions[arms.indexOf(a)]),
      cliponaxis: false,
      textfont: { size: 10 },
      marker: { size: 10, color: familyColour(fam, i) },
      error_y: errorBars(mine),
    };
  });
  const pts = arms.map((a) => ({ x: x(a), y: a.metrics.accuracy!.mean }));
  const front = paretoFront(pts);
  data.push({
    type: 'scatter',
    mode: 'lines+markers', // a front of one arm is a point: an open ring around it
    name: 'Pareto front',
    x: front.map((i) => pts[i].x),
    y: front.map((i) => 100 * pts[i].y),
    line: { dash: 'dot', color: '#444' },
    marker: { size: 16, symbol: 'circle-open', color: '#444' },
  });
  const what = cost === 'params' ? 'parameters' : 'MACs';
  return {
    data,
    layout: {
      title: { text: `${r.study}: test OA vs ${what} (mean and 95 % t interval over seeds, clipped to 0–100 %)` },
      xaxis: {
        type: 'log',
        range: xRange,
        title: {
          text:
            cost === 'params'
              ? `parameters (this study's ${r.dataset ? `${r.dataset.counts.train?.length ?? '?'}-class ` : ''}head)`
              : "MACs per image at the arm's size (ptflops convention)",
        },
      },
      yaxis: { title: { text: 'test OA (%)' } },
      height: opts.height ?? 520,
    },
  };
}

export interface PaperPanelOptions {
  /** Table I's other methods in grey on the paper's panel, on this dataset's OA (e.g. 'SARS'). */
  tableI?: PaperDataset;
  height?: number;
}

/**
 * Left: the paper's OA against its parameter counts (1000-class head), one point per distinct paper number
 * of the study's arms (and, with `tableI`, Table I's other methods in grey). Right: the kit's OA (mean and
 * 95 % t interval over seeds) against the same convention's count of the arm's own model. Same axes, so a
 * reader compares positions; the titles say the datasets and recipes differ.
 */
export function paperPanelFigure(r: StudyResults, opts: PaperPanelOptions = {}): Figure {
  const data: Trace[] = [];
  // Table I's other methods, drawn in grey when asked for
  const others = opts.tableI
    ? PAPER_TABLE_I.filter((row) => !r.arms.some((a) => a.model === row.kitModel && a.paper))
    : [];
  if (opts.tableI) {
    data.push({
      type: 'scatter',
      mode: 'markers',
      name: `Table I, other methods (${opts.tableI})`,
      x: others.map((row) => row.params * 1e6),
      y: others.map((row) => 100 * row.oa[opts.tableI!]),
      hovertext: others.map((row) => `${row.method} (${row.group})`),
      marker: { size: 7, color: '#bbb' },
      xaxis: 'x',
      yaxis: 'y',
    });
  }
  const withPaper = r.arms.filter((a) => a.paper?.oa !== undefined && a.paper.params !== undefined);
  const seen = new Set<string>();
  const paperPoints = withPaper.filter((a) => {
    const key = JSON.stringify([a.model, a.paper]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const kitArms = r.arms.filter((a) => a.metrics.accuracy && a.paramsPaperConvention !== undefined);
  const families = [...new Set([...paperPoints, ...kitArms].map((a) => a.family))];
  // One padded log-x range for both panels (positions compare across them), and labels placed per panel
  // (each about 280 × 380 px beside the legend).
  const paperLabel = (a: ArmResult) => (a.model === a.label.split(' ')[0] ? a.model : a.label);
  const xRange = paddedLogRange(
    [
      ...others.map((row) => row.params * 1e6),
      ...paperPoints.map((a) => a.paper!.params!),
      ...kitArms.map((a) => a.paramsPaperConvention!),
    ],
    0.12,
  );
  const bars = kitArms.flatMap(interval);
  const panel = {
    width: 280,
    height: 380,
    xRange,
    yRange: bars.length ? ([Math.min(...bars), 100] as [number, number]) : undefined,
  };
  const paperPos = placeLabels(
    paperPoints.map((a) => ({ x: a.paper!.params!, y: 100 * a.paper!.oa!, text: paperLabel(a) })),
    panel,
  );
  const kitPos = placeLabels(
    kitArms.map((a) => ({ x: a.paramsPaperConvention!, y: 100 * a.metrics.accuracy!.mean, text: a.label })),
    panel,
  );
  families.forEach((fam, i) => {
    const colour = familyColour(fam, i);
    const paperMine = paperPoints.filter((a) => a.family === fam);
    if (paperMine.length)
      data.push({
        type: 'scatter',
        mode: 'markers+text',
        name: `${fam} (paper)`,
        legendgroup: fam,
        x: paperMine.map((a) => a.paper!.params!),
        y: paperMine.map((a) => 100 * a.paper!.oa!),
        text: paperMine.map(paperLabel),
        hovertext: paperMine.map((a) => a.paper!.source),
        textposition: paperMine.map((a) => paperPos[paperPoints.indexOf(a)]),
        cliponaxis: false,
        textfont: { size: 9 },
        marker: { size: 9, color: colour, symbol: 'diamond' },
        xaxis: 'x',
        yaxis: 'y',
      });
    const kitMine = kitArms.filter((a) => a.family === fam);
    if (kitMine.length)
      data.push({
        type: 'scatter',
        mode: 'markers+text',
        name: `${fam} (kit)`,
        legendgroup: fam,
        x: kitMine.map((a) => a.paramsPaperConvention!),
        y: kitMine.map((a) => 100 * a.metrics.accuracy!.mean),
        text: kitMine.map((a) => a.label),
        hovertext: kitMine.map(seedsNote),
        textposition: kitMine.map((a) => kitPos[kitArms.indexOf(a)]),
        cliponaxis: false,
        textfont: { size: 9 },
        marker: { size: 9, color: colour },
        error_y: errorBars(kitMine),
        xaxis: 'x2',
        yaxis: 'y2',
      });
  });
  const sources = [...new Set(withPaper.map((a) => a.paper!.source))];
  const ds = r.dataset ? `${r.dataset.name}${r.dataset.synthetic ? ' (SYNTHETIC)' : ''}` : 'this study';
  const ys = data.flatMap((t) => (t.y as number[]).filter(Number.isFinite));
  const yRange = ys.length
    ? [Math.floor(Math.min(...ys) - 2), Math.min(100.5, Math.ceil(Math.max(...ys) + 2))]
    : undefined;
  return {
    data,
    layout: {
      title: {
        text:
          `Paper (left: ${sources.join('; ') || 'no paper numbers'}${opts.tableI ? `; Table I ${opts.tableI}` : ''}) vs ` +
          `kit (right: ${ds}, recipe ${r.recipe})<br>DIFFERENT datasets and recipes`,
        font: { size: 12 },
      },
      grid: { rows: 1, columns: 2, pattern: 'independent' },
      xaxis: {
        type: 'log',
        title: { text: 'parameters, 1000-class head (paper)' },
        ...(xRange ? { range: xRange } : {}),
      },
      xaxis2: {
        type: 'log',
        title: { text: 'parameters, 1000-class head (kit count of the arm)' },
        ...(xRange ? { range: xRange } : {}),
      },
      yaxis: { title: { text: 'test OA (%), paper' }, ...(yRange ? { range: yRange } : {}) },
      yaxis2: { title: { text: 'test OA (%), kit' }, ...(yRange ? { range: yRange } : {}) },
      height: opts.height ?? 540,
      legend: { font: { size: 10 } },
    },
  };
}

/** Wall time per cell in minutes: a bar per arm (mean, ± sd over seeds) and each seed as a dot. */
export function trainingTimeFigure(r: StudyResults, opts: { height?: number } = {}): Figure {
  const arms = r.arms.filter((a) => a.perSeed.length);
  const families = [...new Set(arms.map((a) => a.family))];
  const colours = arms.map((a) => familyColour(a.family, families.indexOf(a.family)));
  const machines = r.machines?.length ? ` on ${r.machines.join('; ')}` : '';
  return {
    data: [
      {
        type: 'bar',
        orientation: 'h',
        name: 'mean over seeds',
        y: arms.map((a) => a.label),
        x: arms.map((a) => a.wallSeconds.mean / 60),
        error_x: { type: 'data', array: arms.map((a) => (a.wallSeconds.sd === null ? 0 : a.wallSeconds.sd / 60)) },
        marker: { color: colours, opacity: 0.7 },
      },
      {
        type: 'scatter',
        mode: 'markers',
        name: 'one seed',
        y: arms.flatMap((a) => a.perSeed.map(() => a.label)),
        x: arms.flatMap((a) => a.perSeed.map((s) => s.wallSeconds / 60)),
        hovertext: arms.flatMap((a) => a.perSeed.map((s) => `seed ${s.seed}`)),
        marker: { color: '#222', size: 6 },
      },
    ],
    layout: {
      title: { text: `${r.study}: wall time per cell (training + evaluation)${machines}` },
      xaxis: { title: { text: 'minutes' }, rangemode: 'tozero' },
      yaxis: { automargin: true, autorange: 'reversed', type: 'category' },
      height: opts.height ?? Math.max(300, 60 + 28 * arms.length),
      margin: { l: 200 },
    },
  };
}

/** Marker per size, smallest first (hollow → filled), so the direction of a change reads without colour. */
const SIZE_SYMBOLS = ['circle-open', 'circle', 'diamond', 'square'];

/**
 * One row per model that ran at several sizes (best at the largest size on top): its mean OA at each size
 * joined by a line in the family's colour, and each seed as a small marker (with two or three seeds the t
 * intervals are wider than the axis and would hide the shift; results.md gives them). Empty (no traces) when
 * no model ran at two sizes.
 */
export function sizeEffectFigure(r: StudyResults, opts: { height?: number } = {}): Figure {
  const effects = sizeEffects(r);
  const families = [...new Set(effects.map((e) => e.family))];
  const sizes = [...new Set(effects.flatMap((e) => e.sizes))].sort((a, b) => a - b);
  const lines: Trace[] = effects.map((e) => {
    const shown = e.arms.filter((a) => a.metrics.accuracy);
    return {
      type: 'scatter',
      mode: 'lines',
      showlegend: false,
      hoverinfo: 'skip',
      y: shown.map(() => e.name),
      x: shown.map((a) => 100 * a.metrics.accuracy!.mean),
      line: { color: familyColour(e.family, families.indexOf(e.family)), width: 3 },
    };
  });
  const colourOf = (e: (typeof effects)[number]) => familyColour(e.family, families.indexOf(e.family));
  const points: Trace[] = sizes.flatMap((size, k) => {
    const at = effects
      .map((e) => ({ e, a: e.arms.find((a) => a.imageSize === size && a.metrics.accuracy) }))
      .filter((x): x is { e: (typeof effects)[number]; a: ArmResult } => !!x.a);
    const symbol = SIZE_SYMBOLS[k % SIZE_SYMBOLS.length];
    return [
      {
        type: 'scatter',
        mode: 'markers',
        name: `${size} px, mean`,
        legendgroup: `${size}`,
        y: at.map((x) => x.e.name),
        x: at.map((x) => 100 * x.a.metrics.accuracy!.mean),
        hovertext: at.map((x) => `${x.a.label}: mean of ${x.a.seeds.length} seed(s)`),
        marker: {
          symbol,
          size: 12,
          color: at.map((x) => colourOf(x.e)),
          line: { width: 2, color: at.map((x) => colourOf(x.e)) },
        },
      },
      {
        type: 'scatter',
        mode: 'markers',
        name: `${size} px, one seed`,
        legendgroup: `${size}`,
        y: at.flatMap((x) => x.a.perSeed.map(() => x.e.name)),
        x: at.flatMap((x) => x.a.perSeed.map((s) => 100 * s.accuracy)),
        hovertext: at.flatMap((x) => x.a.perSeed.map((s) => `${x.a.label}, seed ${s.seed}`)),
        marker: {
          symbol,
          size: 6,
          opacity: 0.6,
          color: at.flatMap((x) => x.a.perSeed.map(() => colourOf(x.e))),
          line: { width: 1, color: at.flatMap((x) => x.a.perSeed.map(() => colourOf(x.e))) },
        },
      },
    ];
  });
  return {
    data: [...lines, ...points],
    layout: {
      title: {
        text: `${r.study}: test OA by input size (large: mean over seeds; small: each seed; colour: family)`,
        font: { size: 13 },
      },
      xaxis: { title: { text: 'test OA (%)' } },
      yaxis: { automargin: true, autorange: 'reversed', type: 'category' },
      height: opts.height ?? Math.max(300, 90 + 30 * effects.length),
      legend: { title: { text: 'input size' } },
    },
  };
}
