/**
 * Plotly figures for notebooks and run reports, with no network access:
 *
 * - `figureHtml(fig)`: an HTML snippet (a div + a `Plotly.newPlot` script). The first snippet of a page /
 *   notebook kernel also inlines plotly.js itself (plotly.js-dist, or a `-min` build when installed), so
 *   the output works in a trusted classic Notebook and in an HTML export opened from disk
 *   (`MSM_PLOTLY=link` loads it from node_modules instead; see `plotlyLoaderTag`). Until plotly draws, the div
 *   shows a placeholder, which `npm run notebooks` replaces with the figure's static PNG (`withStaticImage`,
 *   rendered by ./figure-png.ts).
 * - `showFigure(fig)`: in tslab, ONE output carrying `text/html` (above, for classic Notebook / export)
 *   and `application/vnd.plotly.v1+json` (`{data, layout}` object, for JupyterLab / VS Code).
 * - `writeHtmlReport(file, {title, sections})`: a self-contained report.html (plotly inlined once), atomic.
 * - small typed builders: `lineChart`, `confusionMatrixFigure`, `rocFigure`, `scatterChart`, `barChart`.
 *
 * A figure is plotly's own `{data, layout, config}` JSON, so any trace plotly supports can be passed.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { atomicWriteFile } from '../util/fs';
import { tableHtml, type Row, type TableOptions } from './table';
import { displayBundle } from './tslab';

/** One plotly trace (`type`, `x`, `y`, ...); see plotly.js's reference for the keys. */
export interface Trace {
  type?: string;
  name?: string;
  [key: string]: unknown;
}

/** A plotly figure as plain JSON. */
export interface Figure {
  data: Trace[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------
// plotly.js source

let plotlySource: string | undefined;
let plotlyInlined = false; // has this process (notebook kernel / page) emitted plotly.js yet?
let figureCounter = 0;
const pageToken = randomBytes(4).toString('hex'); // keeps div ids unique across kernel restarts

/** Path of the plotly.js bundle to inline: `MSM_PLOTLY_JS`, else a `-min` build if installed, else plotly.js-dist. */
export function plotlyJsPath(): string {
  if (process.env.MSM_PLOTLY_JS) return process.env.MSM_PLOTLY_JS;
  for (const id of ['plotly.js-dist-min/plotly.min.js', 'plotly.js-dist/plotly.min.js', 'plotly.js-dist/plotly.js']) {
    try {
      return require.resolve(id);
    } catch {
      // try the next candidate
    }
  }
  throw new Error('plotly.js not found: install the plotly.js-dist package (npm ci) or set MSM_PLOTLY_JS');
}

/**
 * `<script>` that defines `window.Plotly`. The bundle is wrapped so its UMD header never sees a
 * CommonJS `module` / AMD `define` (classic Notebook ships require.js), and `</script` inside it is
 * escaped so the HTML parser cannot end the element early.
 */
export function plotlyScriptTag(): string {
  plotlySource ??= fs.readFileSync(plotlyJsPath(), 'utf8');
  const safe = plotlySource.replace(/<\/script/gi, '<\\/script');
  return `<script type="text/javascript" data-msm-plotly="inline">(function(){var module,exports,define;\n${safe}\n}).call(window);</script>`;
}

/** plotly.js as linked by committed notebooks: a path relative to the repository root. */
export const PLOTLY_LINK_PATH = 'node_modules/plotly.js-dist/plotly.js';

/**
 * `MSM_PLOTLY=link` (set by `npm run notebooks` for the committed notebooks): instead of inlining 10 MB of
 * plotly.js into every saved notebook, load the kit's own copy from node_modules (after `npm ci`):
 * - classic Notebook puts `data-base-url` and `data-notebook-path` on <body>: load it through Jupyter's
 *   `/files/` route (notebooks live in `notebooks/`, so the repo root is one folder up);
 * - anywhere else (an nbconvert HTML page written beside its notebook, `notebooks/NAME.html`, the default):
 *   document-relative `../node_modules/...`.
 * Where neither resolves (nbviewer, an HTML page written elsewhere, GitHub which runs no script) the figure's
 * static PNG, put in the placeholder by `scripts/run-notebooks.ts`, stays visible. JupyterLab / VS Code use the
 * plotly JSON bundle and need no script at all.
 */
export function plotlyLoaderTag(): string {
  const js =
    '(function(){if(window.Plotly||window.__msmPlotlyLoading)return;window.__msmPlotlyLoading=1;' +
    `var rel='../${PLOTLY_LINK_PATH}';var b=document.body&&document.body.dataset;var src=rel;` +
    "if(b&&b.notebookPath!==undefined){var dir=b.notebookPath.split('/').slice(0,-1).join('/');" +
    "src=(b.baseUrl||'/').replace(/\\/?$/,'/')+'files/'+(dir?dir+'/':'')+rel;}" +
    "var s=document.createElement('script');s.src=src;var d=window.define;window.define=undefined;" +
    's.onload=s.onerror=function(){window.define=d;};document.head.appendChild(s);})();';
  return `<script type="text/javascript" data-msm-plotly="link">${js}</script>`;
}

function plotlyMode(): 'inline' | 'link' {
  return process.env.MSM_PLOTLY === 'link' ? 'link' : 'inline';
}

/** Forget that plotly.js was emitted, so the next `figureHtml` inlines it again (e.g. a new page). */
export function resetPlotlyInline(): void {
  plotlyInlined = false;
}

// ---------------------------------------------------------------------------------------------------
// figure → HTML / notebook output

/** Deep copy as plain JSON values: typed arrays become arrays (JSON.stringify would make them objects). */
function toPlain(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>);
  if (Array.isArray(v)) return v.map(toPlain);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toPlain(x)]));
  }
  return v;
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** JSON that is safe inside a `<script>` element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

export interface FigureHtmlOptions {
  /** Inline plotly.js: 'auto' (default) = only if not yet emitted by this process; true / false to force. */
  includePlotly?: 'auto' | boolean;
  /** CSS height of the plot div (default: layout.height, else 450 px). */
  height?: number;
}

/** Class of the placeholder text inside a figure's div; `withStaticImage` swaps it for the PNG. */
export const PLACEHOLDER_CLASS = 'msm-figure-placeholder';

/**
 * A figure's `text/html` with its placeholder replaced by the static PNG (base64), so that a viewer that
 * runs no script, or cannot load plotly.js, still shows the figure; plotly clears it when it draws.
 */
export function withStaticImage(html: string, pngBase64: string, alt = 'plotly figure'): string {
  const span = new RegExp(`<span class="${PLACEHOLDER_CLASS}"[^>]*>[^<]*</span>`);
  return html.replace(
    span,
    `<img class="msm-figure-static" alt="${escapeHtml(alt)}" style="max-width:100%" ` +
      `src="data:image/png;base64,${pngBase64}">`,
  );
}

/** HTML for one figure: a uniquely-id'd div and a script that draws it once `window.Plotly` exists. */
export function figureHtml(fig: Figure, opts: FigureHtmlOptions = {}): string {
  const include = opts.includePlotly ?? 'auto';
  const inline = include === true || (include === 'auto' && !plotlyInlined);
  if (inline) plotlyInlined = true;
  const id = `msm-plot-${pageToken}-${++figureCounter}`;
  const plain = toPlain(fig) as Figure;
  const height = opts.height ?? (plain.layout?.height as number | undefined) ?? 450;
  const payload = {
    data: plain.data,
    layout: plain.layout ?? {},
    config: { responsive: true, ...(plain.config ?? {}) },
  };
  // The draw retries for a few seconds: in a reopened notebook outputs may render before the one that
  // carries plotly.js. The placeholder text stays visible where scripts do not run (untrusted notebook).
  const draw =
    `(function(){var fig=${scriptJson(payload)};var tries=0;function draw(){var el=document.getElementById('${id}');` +
    `if(!el)return;if(window.Plotly){el.innerHTML='';window.Plotly.newPlot(el,fig.data,fig.layout,fig.config);}` +
    `else if(tries++<100){setTimeout(draw,100);}}draw();})();`;
  return (
    (inline ? (plotlyMode() === 'link' ? plotlyLoaderTag() : plotlyScriptTag()) : '') +
    `<div id="${id}" class="msm-figure" style="width:100%;height:${height}px">` +
    `<span class="${PLACEHOLDER_CLASS}" style="font:12px sans-serif;color:#888">[plotly figure: shown when ` +
    'JavaScript runs and plotly.js loads (trusted notebook or saved HTML)]</span></div>' +
    `<script type="text/javascript">${draw}</script>`
  );
}

/**
 * Show a figure in a tslab notebook as ONE output with `text/html` + `application/vnd.plotly.v1+json`
 * (+ a `text/plain` summary). Does nothing outside a notebook (`inTslab()` tells which); returns nothing,
 * so a cell ending in `showFigure(fig)` prints no extra value.
 */
export function showFigure(fig: Figure, opts: FigureHtmlOptions = {}): void {
  const plain = toPlain(fig) as Figure;
  const title = (plain.layout?.title as { text?: string } | undefined)?.text ?? '';
  displayBundle({
    'text/html': figureHtml(plain, opts),
    'application/vnd.plotly.v1+json': { data: plain.data, layout: plain.layout ?? {}, config: plain.config ?? {} },
    'text/plain': `<plotly figure${title ? ` "${title}"` : ''}: ${plain.data.length} trace(s)>`,
  });
}

// ---------------------------------------------------------------------------------------------------
// report.html

/** One section of a report: a heading plus any of prose, raw HTML, a figure and a table. */
export interface ReportSection {
  heading?: string;
  text?: string;
  html?: string;
  figure?: Figure;
  table?: readonly Row[];
  tableOptions?: TableOptions;
}

/** The whole report page as a string (plotly.js inlined once, in `<head>`, only if a figure is present). */
export function reportHtml(report: { title: string; sections: ReportSection[] }): string {
  const hasFigure = report.sections.some((s) => s.figure);
  const body = report.sections.map((s) => {
    const parts = ['<section>'];
    if (s.heading) parts.push(`<h2>${escapeHtml(s.heading)}</h2>`);
    if (s.text) parts.push(`<p>${escapeHtml(s.text)}</p>`);
    if (s.html) parts.push(s.html);
    if (s.figure) parts.push(figureHtml(s.figure, { includePlotly: false }));
    if (s.table) parts.push(tableHtml(s.table, s.tableOptions));
    parts.push('</section>');
    return parts.join('\n');
  });
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${escapeHtml(report.title)}</title>`,
    '<style>body{font:14px/1.5 sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}' +
      'h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}' +
      '.meta{color:#777}section{margin-bottom:2em}</style>',
    hasFigure ? plotlyScriptTag() : '',
    '</head><body>',
    `<h1>${escapeHtml(report.title)}</h1>`,
    `<p class="meta">generated ${new Date().toISOString()}</p>`,
    ...body,
    '</body></html>',
    '',
  ].join('\n');
}

/** Write a self-contained report.html (opens offline in any browser) atomically. */
export function writeHtmlReport(file: string, report: { title: string; sections: ReportSection[] }): void {
  atomicWriteFile(file, reportHtml(report));
}

// ---------------------------------------------------------------------------------------------------
// figure builders

interface AxisOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  logX?: boolean;
  logY?: boolean;
  height?: number;
}

function baseLayout(o: AxisOptions): Record<string, unknown> {
  return {
    title: { text: o.title ?? '' },
    xaxis: { title: { text: o.xTitle ?? '' }, type: o.logX ? 'log' : '-' },
    yaxis: { title: { text: o.yTitle ?? '' }, type: o.logY ? 'log' : '-' },
    margin: { l: 60, r: 20, t: o.title ? 50 : 20, b: 50 },
    ...(o.height ? { height: o.height } : {}),
  };
}

/** One line of a line chart; x defaults to 1..n (e.g. epochs). */
export interface Series {
  name: string;
  y: ArrayLike<number>;
  x?: ArrayLike<number>;
  dash?: boolean;
}

/** Curves over a shared x axis (loss / accuracy per epoch, lr per step, ...). */
export function lineChart(series: Series[], opts: AxisOptions = {}): Figure {
  return {
    data: series.map((s) => ({
      type: 'scatter',
      mode: 'lines',
      name: s.name,
      x: s.x ? Array.from(s.x) : Array.from({ length: s.y.length }, (_, i) => i + 1),
      y: Array.from(s.y),
      line: s.dash ? { dash: 'dash' } : {},
    })),
    layout: baseLayout(opts),
  };
}

/**
 * Confusion-matrix heatmap (rows = true class top to bottom, columns = predicted class). With
 * `normalize` (default true) colour = row-normalised rate (per-class recall on the diagonal) and each cell
 * shows "count (rate)"; otherwise colour = count.
 */
export function confusionMatrixFigure(
  matrix: number[][],
  classNames?: string[],
  opts: { title?: string; normalize?: boolean; height?: number } = {},
): Figure {
  const k = matrix.length;
  const names = classNames ?? matrix.map((_, c) => String(c));
  const normalize = opts.normalize ?? true;
  const rate = matrix.map((row) => {
    const s = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (s > 0 ? v / s : 0));
  });
  const z = normalize ? rate : matrix;
  const text = matrix.map((row, i) =>
    row.map((v, j) => (normalize ? `${v} (${(100 * rate[i][j]).toFixed(1)}%)` : `${v}`)),
  );
  const side = Math.max(350, Math.min(900, 60 * k + 150));
  return {
    data: [
      {
        type: 'heatmap',
        x: names,
        y: names,
        z,
        text,
        texttemplate: '%{text}',
        hovertemplate: 'true %{y}<br>predicted %{x}<br>%{text}<extra></extra>',
        // plotly's 'Blues' runs dark → light; reversed, high rates (the correct diagonal) are dark.
        colorscale: 'Blues',
        reversescale: true,
        zmin: 0,
        ...(normalize ? { zmax: 1 } : {}),
      },
    ],
    layout: {
      title: { text: opts.title ?? 'Confusion matrix' },
      xaxis: { title: { text: 'Predicted class' }, type: 'category' },
      yaxis: { title: { text: 'True class' }, type: 'category', autorange: 'reversed' },
      height: opts.height ?? side,
      margin: { l: 100, r: 20, t: 50, b: 80 },
    },
  };
}

/** One ROC curve to plot (`rocCurve` / `rocCurves` output plus a name and optional AUC for the legend). */
export interface RocSeries {
  name: string;
  fpr: ArrayLike<number>;
  tpr: ArrayLike<number>;
  auc?: number;
}

/** ROC curves with the chance diagonal. */
export function rocFigure(curves: RocSeries[], opts: { title?: string; height?: number } = {}): Figure {
  return {
    data: [
      ...curves.map((c) => ({
        type: 'scatter',
        mode: 'lines',
        name: c.auc === undefined ? c.name : `${c.name} (AUC ${c.auc.toFixed(4)})`,
        x: Array.from(c.fpr),
        y: Array.from(c.tpr),
        line: { shape: 'linear' },
      })),
      { type: 'scatter', mode: 'lines', name: 'chance', x: [0, 1], y: [0, 1], line: { dash: 'dot', color: '#999' } },
    ],
    layout: {
      ...baseLayout({ title: opts.title ?? 'ROC', xTitle: 'False positive rate', yTitle: 'True positive rate' }),
      xaxis: { title: { text: 'False positive rate' }, range: [0, 1] },
      yaxis: { title: { text: 'True positive rate' }, range: [0, 1.02] },
      height: opts.height ?? 480,
    },
  };
}

/** One labelled point (e.g. a model: x = parameters, y = accuracy); `group` picks its trace / colour. */
export interface ScatterPoint {
  x: number;
  y: number;
  label?: string;
  group?: string;
}

/** Labelled scatter plot, one trace per group (e.g. accuracy vs parameters per model family). */
export function scatterChart(points: ScatterPoint[], opts: AxisOptions = {}): Figure {
  const groups = new Map<string, ScatterPoint[]>();
  for (const p of points) {
    const g = p.group ?? '';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(p);
  }
  return {
    data: [...groups].map(([g, ps]) => ({
      type: 'scatter',
      mode: ps.some((p) => p.label) ? 'markers+text' : 'markers',
      name: g,
      showlegend: g !== '',
      x: ps.map((p) => p.x),
      y: ps.map((p) => p.y),
      text: ps.map((p) => p.label ?? ''),
      textposition: 'top center',
      marker: { size: 9 },
    })),
    layout: baseLayout(opts),
  };
}

/** Grouped bar chart: one bar per category and series. */
export function barChart(
  categories: string[],
  series: { name: string; values: ArrayLike<number> }[],
  opts: AxisOptions & { horizontal?: boolean } = {},
): Figure {
  return {
    data: series.map((s) => {
      if (s.values.length !== categories.length) {
        throw new Error(
          `barChart: series "${s.name}" has ${s.values.length} values for ${categories.length} categories`,
        );
      }
      const v = Array.from(s.values);
      return opts.horizontal
        ? { type: 'bar', name: s.name, orientation: 'h', y: categories, x: v }
        : { type: 'bar', name: s.name, x: categories, y: v };
    }),
    layout: { ...baseLayout(opts), barmode: 'group' },
  };
}
