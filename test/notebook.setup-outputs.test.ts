/**
 * notebooks/00_setup.ipynb must prove the display path: after execution it holds ONE plotly
 * output with `text/html` (plotly.js inlined + Plotly.newPlot) and the `application/vnd.plotly.v1+json`
 * object, and an HTML table of a danfojs DataFrame. scripts/run-notebooks.ts applies `checkSetupOutputs` to
 * every executed copy (so `npm test` checks the real outputs); here the check itself is tested, against what
 * lib/report really emits and against outputs that must be rejected, and the notebook's own file is checked.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { figureHtml, lineChart, resetPlotlyInline } from '../lib/report/plot';
import { tableHtml, toDataFrame } from '../lib/report/table';
import { checkSetupOutputs, findCellProblems, type NbOutput, type Notebook } from '../scripts/run-notebooks';

const ROOT = path.resolve(__dirname, '..');
const display = (data: Record<string, unknown>): NbOutput => ({ output_type: 'display_data', data });
const nbWith = (...outputs: NbOutput[]): Notebook => ({ cells: [{ cell_type: 'code', source: 'x', outputs }] });

// What showFigure / showTable send, built from lib/report's own functions (outside a kernel they print instead).
const fig = lineChart([{ name: 'loss', y: [3, 2, 1.5] }], { title: 't' });
resetPlotlyInline();
const plotlyOutput = display({
  'text/html': figureHtml(fig),
  'application/vnd.plotly.v1+json': { data: fig.data, layout: fig.layout ?? {} },
  'text/plain': '<plotly figure>',
});
const tableOutput = display({
  'text/html': tableHtml(toDataFrame([{ a: 'x', b: 1 }])),
  'text/plain': 'a b',
});

test("lib/report's plotly figure and danfojs table pass the 00_setup check", () => {
  assert.deepEqual(checkSetupOutputs(nbWith(plotlyOutput, tableOutput)), []);
});

test('the check rejects a missing, stringified or split figure, and a missing table', () => {
  const html = plotlyOutput.data!['text/html'];
  const json = plotlyOutput.data!['application/vnd.plotly.v1+json'];
  assert.match(checkSetupOutputs(nbWith(tableOutput)).join('\n'), /no output carries an application\/vnd\.plotly/);
  assert.match(
    checkSetupOutputs(
      nbWith(display({ ...plotlyOutput.data, 'application/vnd.plotly.v1+json': JSON.stringify(json) }), tableOutput),
    ).join(),
    /not a JSON object/,
  );
  // html and json in two outputs: front-ends would render the figure twice, and the json one lacks html
  assert.match(
    checkSetupOutputs(
      nbWith(display({ 'text/html': html }), display({ 'application/vnd.plotly.v1+json': json }), tableOutput),
    ).join(),
    /no text\/html calling Plotly\.newPlot/,
  );
  // a figure drawn without plotly.js inlined only works where plotly is already loaded
  resetPlotlyInline();
  figureHtml(fig); // the first figure of a "page" carries plotly.js; the next one does not
  const second = display({ 'text/html': figureHtml(fig), 'application/vnd.plotly.v1+json': json });
  assert.match(checkSetupOutputs(nbWith(second, tableOutput)).join(), /does not inline plotly\.js/);
  assert.match(checkSetupOutputs(nbWith(plotlyOutput)).join(), /no text\/html output holds a <table>/);
});

test('notebooks/00_setup.ipynb: tslab kernelspec, ./lib imports, and any stored outputs pass the checks', () => {
  const nb = JSON.parse(fs.readFileSync(path.join(ROOT, 'notebooks', '00_setup.ipynb'), 'utf8')) as Notebook & {
    nbformat: number;
    metadata: { kernelspec: { name: string; language: string }; language_info: { name: string } };
  };
  assert.equal(nb.nbformat, 4);
  assert.equal(nb.metadata.kernelspec.name, 'tslab');
  assert.equal(nb.metadata.kernelspec.language, 'typescript');
  assert.equal(nb.metadata.language_info.name, 'typescript');
  const code = nb.cells.filter((c) => c.cell_type === 'code').map((c) => [c.source].flat().join(''));
  // the kernel's cwd is the repo root (scripts/tslab-kernel.sh): lib is './lib/...', never '../lib/...'
  for (const src of code) assert.doesNotMatch(src, /from '\.\.\/lib\//);
  assert.ok(code.some((src) => /from '\.\/lib\/report\/plot'/.test(src) && /showFigure\(/.test(src)));
  assert.ok(code.some((src) => /toDataFrame\(/.test(src) && /showTable\(/.test(src)));
  const hasOutputs = nb.cells.some((c) => (c.outputs ?? []).length > 0);
  if (hasOutputs) {
    // committed full-run outputs (npm run notebooks) must be those of a clean run
    assert.deepEqual(findCellProblems(nb), []);
    assert.deepEqual(checkSetupOutputs(nb), []);
  }
});
