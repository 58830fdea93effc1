/**
 * Plotly output: plotly.js inlined once per page / notebook and one `newPlot` per figure; the scripts
 * compile and draw the right data (run in a stub DOM); the tslab output is ONE display_data carrying
 * `text/html` and the plotly JSON bundle as an object; report.html is written atomically.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import * as vm from 'node:vm';
import {
  barChart,
  confusionMatrixFigure,
  figureHtml,
  lineChart,
  plotlyJsPath,
  reportHtml,
  resetPlotlyInline,
  rocFigure,
  scatterChart,
  showFigure,
  writeHtmlReport,
  type Figure,
} from '../lib/report/index';

const INLINE_MARK = 'data-msm-plotly="inline"';
const NEWPLOT = 'window.Plotly.newPlot(';
const count = (s: string, sub: string) => s.split(sub).length - 1;
const scripts = (html: string) => [...html.matchAll(/<script[^>]*>([\s\S]*?)<\/script>/g)].map((m) => m[1]);

/** Run the (non-library) scripts of a page against a stub DOM; returns the newPlot calls. */
function drawInStubDom(html: string): { id: string; data: unknown; layout: unknown }[] {
  const calls: { id: string; data: unknown; layout: unknown }[] = [];
  const elements = new Map<string, { id: string; innerHTML: string }>();
  for (const m of html.matchAll(/<div id="([^"]+)"/g)) elements.set(m[1], { id: m[1], innerHTML: 'placeholder' });
  const window = {
    Plotly: {
      newPlot: (el: { id: string }, data: unknown, layout: unknown) => calls.push({ id: el.id, data, layout }),
    },
  };
  const context = vm.createContext({ window, document: { getElementById: (id: string) => elements.get(id) ?? null } });
  for (const src of scripts(html)) if (!src.includes('plotly.js v')) vm.runInContext(src, context);
  return calls;
}

const fig = (name: string): Figure => lineChart([{ name, y: Float32Array.from([3, 2, 1]) }], { title: name });

describe('figureHtml', () => {
  it('inlines plotly.js once, then only newPlot calls with unique div ids', () => {
    resetPlotlyInline();
    const parts = [fig('a'), fig('b'), fig('c')].map((f) => figureHtml(f));
    const page = parts.join('\n');
    assert.equal(count(parts[0], INLINE_MARK), 1, 'first figure carries plotly.js');
    assert.equal(count(parts[1] + parts[2], INLINE_MARK), 0, 'later figures do not');
    assert.equal(count(page, NEWPLOT), 3);
    const ids = [...page.matchAll(/<div id="([^"]+)"/g)].map((m) => m[1]);
    assert.equal(new Set(ids).size, 3);
    const src = fs.readFileSync(plotlyJsPath(), 'utf8');
    assert.equal(count(src, NEWPLOT), 0, 'the marker counted above does not occur inside plotly.js itself');
  });

  it('emits scripts that compile, and that draw the figure data (typed arrays as plain arrays)', () => {
    resetPlotlyInline();
    const html = figureHtml(fig('loss'));
    for (const src of scripts(html)) new vm.Script(src); // the 10 MB library too: throws on a syntax error
    const calls = drawInStubDom(html);
    assert.equal(calls.length, 1);
    assert.deepEqual(JSON.parse(JSON.stringify(calls[0].data)), [
      { type: 'scatter', mode: 'lines', name: 'loss', x: [1, 2, 3], y: [3, 2, 1], line: {} },
    ]);
  });

  it('escapes text so a trace name cannot close the script element', () => {
    const html = figureHtml(lineChart([{ name: '</script><b>x</b>', y: [1] }]), { includePlotly: false });
    assert.equal(count(html, '</script>'), 1);
    assert.equal(drawInStubDom(html).length, 1);
  });
});

describe('showFigure in tslab', () => {
  const jupyter = require('tslab/dist/jupyter') as { lastWriteDisplayData: unknown };
  const g = globalThis as { __tslab__?: unknown };
  after(() => {
    jupyter.lastWriteDisplayData = null;
    delete g.__tslab__;
  });

  it('sends nothing outside a notebook', () => {
    const sent: unknown[] = [];
    jupyter.lastWriteDisplayData = (msg: unknown) => sent.push(msg);
    showFigure(fig('x')); // no globalThis.__tslab__: not inside a kernel cell
    assert.equal(sent.length, 0);
  });

  it('sends ONE display_data with text/html and the plotly JSON bundle as an object', () => {
    const sent: { msg: { data: Record<string, unknown> }; update: boolean }[] = [];
    jupyter.lastWriteDisplayData = (msg: { data: Record<string, unknown> }, update: boolean) =>
      sent.push({ msg, update });
    g.__tslab__ = {}; // what tslab's executor defines in a kernel
    resetPlotlyInline();
    showFigure(fig('acc'));
    showFigure(fig('acc2'));
    assert.equal(sent.length, 2, 'one message per figure');
    const [first, second] = sent.map((s) => s.msg.data);
    assert.equal(sent[0].update, false);
    const bundle = first['application/vnd.plotly.v1+json'] as { data: { y: unknown }[]; layout: object };
    assert.equal(typeof bundle, 'object');
    assert.deepEqual(bundle.data[0].y, [3, 2, 1]);
    assert.deepEqual((bundle.layout as { title: unknown }).title, { text: 'acc' });
    assert.equal(typeof first['text/html'], 'string');
    assert.equal(count(first['text/html'] as string, INLINE_MARK), 1);
    assert.equal(count(second['text/html'] as string, INLINE_MARK), 0, 'plotly.js once per notebook');
    assert.equal(count(second['text/html'] as string, NEWPLOT), 1);
    assert.match(first['text/plain'] as string, /plotly figure "acc": 1 trace/);
  });
});

describe('report.html and figure builders', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-report-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes a self-contained page atomically: plotly.js once, one newPlot per figure, the table', () => {
    const figures = [
      lineChart(
        [
          { name: 'train', y: [1, 0.5] },
          { name: 'val', y: [1.1, 0.7], dash: true },
        ],
        { title: 'loss' },
      ),
      confusionMatrixFigure(
        [
          [5, 1],
          [2, 7],
        ],
        ['neg', 'pos'],
      ),
      rocFigure([{ name: 'pos', fpr: [0, 0.5, 1], tpr: [0, 0.9, 1], auc: 0.7 }]),
      scatterChart([{ x: 1e6, y: 0.9, label: 'tiny', group: 'mamba' }], { logX: true }),
      barChart(['a', 'b'], [{ name: 'OA', values: [0.9, 0.8] }]),
    ];
    const file = path.join(dir, 'run', 'report.html');
    writeHtmlReport(file, {
      title: 'Run <1>',
      sections: [
        ...figures.map((f, i) => ({ heading: `figure ${i}`, figure: f })),
        { heading: 'metrics', table: [{ metric: 'OA', value: 0.97312 }] },
      ],
    });
    const html = fs.readFileSync(file, 'utf8');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['report.html'], 'no temp file left behind');
    assert.equal(count(html, INLINE_MARK), 1);
    assert.equal(count(html, NEWPLOT), figures.length);
    assert.ok(html.indexOf(INLINE_MARK) < html.indexOf(NEWPLOT), 'library before the first figure');
    assert.match(html, /<title>Run &lt;1&gt;<\/title>/);
    assert.match(html, /<td>OA<\/td><td style="text-align:right">0\.9731<\/td>/);
    const calls = drawInStubDom(html);
    assert.equal(calls.length, figures.length);
    assert.deepEqual(JSON.parse(JSON.stringify(calls[1].data))[0].z, [
      [5 / 6, 1 / 6],
      [2 / 9, 7 / 9],
    ]);
  });

  it('a page without figures does not carry plotly.js', () => {
    assert.equal(count(reportHtml({ title: 't', sections: [{ text: 'hi' }] }), INLINE_MARK), 0);
  });

  it('confusion matrix shows counts with row rates; bar chart checks lengths', () => {
    const f = confusionMatrixFigure([
      [3, 1],
      [0, 0],
    ]);
    assert.deepEqual(f.data[0].text, [
      ['3 (75.0%)', '1 (25.0%)'],
      ['0 (0.0%)', '0 (0.0%)'],
    ]);
    assert.throws(() => barChart(['a'], [{ name: 's', values: [1, 2] }]), /series "s" has 2 values for 1 categories/);
  });
});
