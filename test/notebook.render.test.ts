/**
 * The committed notebooks as a reader sees them: converted with `jupyter nbconvert --to html` and opened in
 * headless Chromium (Debian package `chromium`).
 *   - every plotly figure draws in the HTML page: its div holds plotly's SVG with data traces, not the
 *     placeholder (plotly.js is linked from node_modules, as in a clone after `npm ci`; the pages are written
 *     beside their notebooks' folder layout, `<tmp>/notebooks/NAME.html` with `<tmp>/node_modules` linked);
 *   - every figure output carries a static `image/png` (what GitHub and other script-free viewers show) and
 *     its `text/html` shows that image until plotly draws.
 * One nbconvert call for all notebooks and one Chromium run per page (~5 s each). Skips, with the reason,
 * where Chromium or nbconvert is missing. `MSM_RENDER_NOTEBOOKS=00_setup.ipynb,…` checks only those. The PNGs and the linked loader come from `npm run notebooks`
 * (scripts/run-notebooks.ts --inplace): notebooks saved before it was in place fail here until re-executed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { findChromium, headlessFlags } from '../lib/report/figure-png';

const ROOT = path.resolve(__dirname, '..');
const PYTHON = process.env.MSM_JUPYTER_PYTHON ?? '/usr/bin/python3';
const PLOTLY_MIME = 'application/vnd.plotly.v1+json';

interface Output {
  output_type: string;
  data?: Record<string, unknown>;
}
interface Nb {
  cells: { cell_type: string; outputs?: Output[] }[];
}
const join = (t: unknown) => (Array.isArray(t) ? t.join('') : typeof t === 'string' ? t : '');

/** Problems of one figure's `<div id="msm-plot-…">…` slice of the rendered DOM. */
export function figureDomProblems(slice: string): string[] {
  const id = /id="(msm-plot-[^"]+)"/.exec(slice)?.[1] ?? '?';
  if (!slice.includes('class="main-svg"'))
    return [`${id}: not drawn (no plotly SVG; placeholder or static image only)`];
  // Data traces: scatter / bar / heatmap layers are `<g class="trace …">`; heatmaps draw into `<g class="hm">`.
  if (!/class="(trace\b[^"]*|hm)"/.test(slice)) return [`${id}: plotly drew axes but no data trace`];
  return [];
}

/** Split a dumped DOM into one slice per figure div. */
export function figureSlices(dom: string): string[] {
  const starts = [...dom.matchAll(/<div id="msm-plot-/g)].map((m) => m.index);
  return starts.map((s, i) => dom.slice(s, starts[i + 1] ?? dom.length));
}

/** Problems of a notebook's figure outputs as stored (PNG present, placeholder replaced by it). */
export function figureOutputProblems(nb: Nb): string[] {
  const problems: string[] = [];
  nb.cells.forEach((c, ci) =>
    (c.outputs ?? []).forEach((o) => {
      if (!o.data?.[PLOTLY_MIME]) return;
      const png = join(o.data['image/png']).replace(/\s/g, '');
      if (!png) problems.push(`cell ${ci + 1}: figure output has no image/png`);
      else if (
        !Buffer.from(png, 'base64')
          .subarray(0, 8)
          .equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]))
      )
        problems.push(`cell ${ci + 1}: image/png is not a PNG`);
      if (!join(o.data['text/html']).includes('class="msm-figure-static"'))
        problems.push(`cell ${ci + 1}: text/html has no static image in place of the placeholder`);
    }),
  );
  return problems;
}

test('the DOM checks tell a drawn figure from a placeholder', () => {
  const placeholder = '<div id="msm-plot-a-1" class="msm-figure"><img class="msm-figure-static" src="data:"></div>';
  const drawn =
    '<div id="msm-plot-a-2" class="msm-figure"><div class="plot-container"><svg class="main-svg">' +
    '<g class="trace scatter"></g></svg></div></div>';
  const axesOnly = '<div id="msm-plot-a-3"><svg class="main-svg"><g class="xaxislayer-above"></g></svg></div>';
  const slices = figureSlices(`<body>${placeholder}<p>x</p>${drawn}${axesOnly}</body>`);
  assert.equal(slices.length, 3);
  assert.match(figureDomProblems(slices[0]).join(), /msm-plot-a-1: not drawn/);
  assert.deepEqual(figureDomProblems(slices[1]), []);
  assert.match(figureDomProblems(slices[2]).join(), /no data trace/);
  const withPng = {
    cells: [
      {
        cell_type: 'code',
        outputs: [
          {
            output_type: 'display_data',
            data: {
              [PLOTLY_MIME]: { data: [] },
              'image/png': Buffer.from([137, 80, 78, 71, 13, 10, 26, 10, 0]).toString('base64'),
              'text/html': '<img class="msm-figure-static">',
            },
          },
        ],
      },
    ],
  };
  assert.deepEqual(figureOutputProblems(withPng), []);
  (withPng.cells[0].outputs[0].data as Record<string, unknown>)['image/png'] = undefined;
  assert.match(figureOutputProblems(withPng).join(), /no image\/png/);
});

const chromium = findChromium();
const nbconvert = spawnSync(PYTHON, ['-m', 'nbconvert', '--version'], { encoding: 'utf8' });
const skip = !chromium
  ? 'no Chromium: apt-get install chromium (scripts/bootstrap.sh)'
  : nbconvert.status !== 0
    ? `no nbconvert for ${PYTHON} (scripts/bootstrap.sh)`
    : false;
/** All committed notebooks, or those named in MSM_RENDER_NOTEBOOKS (comma-separated file names). */
const only = process.env.MSM_RENDER_NOTEBOOKS?.split(',').filter(Boolean);
const notebooks = fs
  .readdirSync(path.join(ROOT, 'notebooks'))
  .filter((f) => f.endsWith('.ipynb') && (!only || only.includes(f)))
  .sort();

test('committed notebooks: every figure draws in nbconvert HTML (headless Chromium) and has a PNG', { skip }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-render-'));
  try {
    const pages = path.join(tmp, 'notebooks');
    fs.mkdirSync(pages);
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(tmp, 'node_modules'));
    const conv = spawnSync(
      PYTHON,
      [
        '-m',
        'nbconvert',
        '--to',
        'html',
        '--output-dir',
        pages,
        ...notebooks.map((f) => path.join(ROOT, 'notebooks', f)),
      ],
      { encoding: 'utf8', timeout: 300_000 },
    );
    assert.equal(conv.status, 0, `nbconvert failed:\n${conv.stderr}`);
    const problems: string[] = [];
    let figures = 0;
    for (const name of notebooks) {
      const nb = JSON.parse(fs.readFileSync(path.join(ROOT, 'notebooks', name), 'utf8')) as Nb;
      const expected = nb.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[PLOTLY_MIME]).length;
      const stored = figureOutputProblems(nb);
      const page = path.join(pages, name.replace(/\.ipynb$/, '.html'));
      const r = spawnSync(
        chromium!,
        [
          ...headlessFlags(),
          `--user-data-dir=${path.join(tmp, 'profile')}`,
          '--virtual-time-budget=20000',
          '--dump-dom',
          pathToFileURL(page).href,
        ],
        { encoding: 'utf8', maxBuffer: 512 << 20, timeout: 180_000 },
      );
      assert.equal(r.status, 0, `chromium on ${page}: ${r.stderr.split('\n').slice(-3).join(' | ')}`);
      const slices = figureSlices(r.stdout);
      const drawn = slices.flatMap(figureDomProblems);
      if (slices.length !== expected)
        problems.push(`${name}: ${expected} figure output(s) but ${slices.length} figure div(s)`);
      problems.push(...[...stored, ...drawn].map((p) => `${name}: ${p}`));
      figures += expected;
    }
    assert.deepEqual(problems, [], `\n${problems.join('\n')}\n(re-execute with \`npm run notebooks\`)`);
    assert.ok(figures > 0, 'no committed notebook shows a plotly figure');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
