/**
 * The teaching notebooks 01–05 as committed: structure, imports, and the outputs of a full run.
 *
 * CI re-executes every notebook in smoke mode on a copy (scripts/run-notebooks.ts, `npm run test:notebooks`);
 * the committed files must instead carry the outputs of a real, full run, so that a reader sees the results
 * without running anything. Checked here, on the files themselves:
 *   - nbformat 4 with the `tslab` kernelspec;
 *   - every relative import names a .ts file under the repo root (the kernel's cwd), never a folder or `../`
 *     (tslab loads local modules by file; see scripts/tslab-kernel.sh and test/notebook.imports.test.ts);
 *   - the run reached the last cell without an error (tslab silently skips every cell after one), every cell
 *     that prints or displays something has outputs, and the run was a full one (`smoke mode: false`);
 *   - every cell that shows a figure holds a plotly bundle with data, every cell that shows a table an HTML table;
 *   - the files stay small (plotly.js linked, not inlined);
 *   - notebook 05 shows real malaria results and the parity cell's max logit difference (≤ 1e-4).
 * The checker itself is tested first, on notebooks built to fail each rule.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '..');
const NOTEBOOKS = [
  '01_selective_scan.ipynb',
  '02_ss2d_and_parallel_vssm.ipynb',
  '03_psffn.ipynb',
  '04_mifa.ipynb',
  '05_train_microscopic_mamba.ipynb',
  '06_ablations.ipynb',
  '07_accuracy_vs_parameters.ipynb',
  '08_where_the_model_looks.ipynb',
];
/** Committed notebooks link plotly.js (MSM_PLOTLY=link); one inlined copy alone is ~10 MB. */
const MAX_BYTES = 4 * 2 ** 20;

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
}
interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Output[];
}
interface Nb {
  nbformat?: number;
  metadata?: { kernelspec?: { name?: string } };
  cells: Cell[];
}

const join = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join('') : (t ?? ''));
const outText = (o: Output) =>
  o.output_type === 'stream' ? join(o.text) : join(o.data?.['text/plain'] as string | string[]);

/** Module specifiers left after transpiling a cell (type-only imports are erased, as in tslab). */
function runtimeImports(source: string): string[] {
  const js = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  return [...js.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]);
}

/** Everything wrong with one committed notebook (empty when it is fine). */
export function notebookProblems(nb: Nb, name: string, root = ROOT): string[] {
  const problems: string[] = [];
  if (nb.nbformat !== 4) problems.push(`${name}: nbformat ${nb.nbformat}, expected 4`);
  if (nb.metadata?.kernelspec?.name !== 'tslab') problems.push(`${name}: kernelspec is not tslab`);
  const code = nb.cells.map((c, i) => ({ c, i })).filter(({ c }) => c.cell_type === 'code' && join(c.source).trim());
  if (code.length === 0) problems.push(`${name}: no code cells`);
  for (const { c, i } of code) {
    const src = join(c.source);
    const where = `${name} cell ${i + 1}`;
    for (const spec of runtimeImports(src)) {
      if (!spec.startsWith('.')) continue;
      if (spec.startsWith('..')) problems.push(`${where}: '${spec}' leaves the repo root (the kernel's cwd)`);
      else if (!fs.existsSync(path.join(root, spec + '.ts'))) {
        const folder = fs.existsSync(path.join(root, spec, 'index.ts'));
        problems.push(`${where}: '${spec}' ${folder ? `is a folder: import '${spec}/index'` : 'is not a .ts file'}`);
      }
    }
    const outputs = c.outputs ?? [];
    // tslab leaves execution_count null, so "executed" is read from outputs: a cell that prints or displays has some.
    const speaks =
      /\b(console\.log|showFigure|showTable|showImages|drawCurves)\(/.test(src) || c === code[code.length - 1].c;
    if (speaks && outputs.length === 0) problems.push(`${where}: no outputs (not executed)`);
    if (
      outputs.some((o) => o.output_type === 'error' || (o.name === 'stderr' && /Error|Exception/.test(join(o.text))))
    ) {
      problems.push(`${where}: has an error output`);
    }
    const bundles = outputs.map((o) => o.data).filter((d): d is Record<string, unknown> => !!d);
    if (/\bshowFigure\(|\bdrawCurves\(/.test(src)) {
      const ok = bundles.some((b) => {
        const fig = b['application/vnd.plotly.v1+json'] as { data?: unknown[] } | undefined;
        return typeof fig === 'object' && Array.isArray(fig.data) && fig.data.length > 0;
      });
      if (!ok) problems.push(`${where}: shows a figure but holds no plotly bundle with data`);
    }
    if (/\bshowTable\(/.test(src) && !bundles.some((b) => /<table[\s>]/.test(join(b['text/html'] as string[])))) {
      problems.push(`${where}: shows a table but holds no HTML table`);
    }
  }
  const first = code[0] ? (code[0].c.outputs ?? []).map(outText).join('') : '';
  if (!/smoke mode: false/.test(first))
    problems.push(`${name}: the committed outputs are not from a full run (no 'smoke mode: false')`);
  return problems;
}

/** Notebook 05 must show the parity result and real (not synthetic) malaria results. */
export function trainingNotebookProblems(nb: Nb): string[] {
  const text = nb.cells.flatMap((c) => (c.outputs ?? []).map(outText)).join('\n');
  const problems: string[] = [];
  const parity = /max \|logit difference\| vs the official model = ([-+0-9.e]+)/.exec(text);
  if (!parity) problems.push('05: the parity cell shows no max logit difference');
  else if (!(Number(parity[1]) <= 1e-4)) problems.push(`05: max logit difference ${parity[1]} > 1e-4`);
  if (!/NIH\/NLM malaria/.test(text)) problems.push('05: no NIH/NLM malaria dataset in the outputs');
  if (/SYNTHETIC/.test(text)) problems.push('05: the committed run used the synthetic set');
  if (!/OA \(accuracy\)/.test(text)) problems.push('05: no test metrics table');
  return problems;
}

// ---- the checker rejects what it should ----

const ok = (src: string, ...outputs: Output[]): Cell => ({ cell_type: 'code', source: src, outputs });
const stream = (text: string): Output => ({ output_type: 'stream', name: 'stdout', text });
const display = (data: Record<string, unknown>): Output => ({ output_type: 'display_data', data });
const plotly = display({ 'application/vnd.plotly.v1+json': { data: [{ type: 'scatter' }], layout: {} } });
const table = display({ 'text/html': '<table><tr><td>1</td></tr></table>', 'text/plain': '1' });
const good = (): Nb => ({
  nbformat: 4,
  metadata: { kernelspec: { name: 'tslab' } },
  cells: [
    ok(
      "import { isSmoke } from './lib/notebook';\nconsole.log(`smoke mode: ${isSmoke()}`);",
      stream('smoke mode: false\n'),
    ),
    ok('showFigure(fig);', plotly),
    ok('showTable(rows);', table),
  ],
});

test('a well-formed, fully executed notebook passes', () => {
  assert.deepEqual(notebookProblems(good(), 'x'), []);
});

test('the checker rejects folder imports, ../ imports, missing outputs, errors, smoke runs and missing plots', () => {
  const cases: Array<[string, (nb: Nb) => void, RegExp]> = [
    [
      'folder import',
      (nb) => (nb.cells[0].source = "import { x } from './lib/models';\nx();"),
      /is a folder: import '\.\/lib\/models\/index'/,
    ],
    [
      'parent import',
      (nb) => (nb.cells[0].source = "import { x } from '../lib/notebook';\nx();"),
      /leaves the repo root/,
    ],
    ['not executed', (nb) => (nb.cells[1].outputs = []), /cell 2: no outputs/],
    ['run stopped early', (nb) => nb.cells.push(ok('const last = 1;')), /cell 4: no outputs/],
    ['error', (nb) => nb.cells[1].outputs!.push({ output_type: 'error' }), /error output/],
    ['smoke run', (nb) => (nb.cells[0].outputs = [stream('smoke mode: true\n')]), /not from a full run/],
    ['figure lost', (nb) => (nb.cells[1].outputs = [stream('x')]), /no plotly bundle/],
    ['table lost', (nb) => (nb.cells[2].outputs = [stream('x')]), /no HTML table/],
    ['kernel', (nb) => (nb.metadata = { kernelspec: { name: 'python3' } }), /kernelspec/],
  ];
  for (const [what, spoil, expected] of cases) {
    const nb = good();
    spoil(nb);
    assert.match(notebookProblems(nb, 'x').join('\n'), expected, what);
  }
  const bad05: Nb = { cells: [ok('x', stream('max |logit difference| vs the official model = 3.2e-3\nSYNTHETIC'))] };
  const found = trainingNotebookProblems(bad05).join('\n');
  assert.match(found, /3\.2e-3 > 1e-4/);
  assert.match(found, /synthetic set/);
  assert.match(found, /no test metrics/);
});

// ---- the committed notebooks ----

for (const name of NOTEBOOKS) {
  test(`${name}: committed with the outputs of a full run, imports that load in tslab, every plot present`, (t) => {
    const file = path.join(ROOT, 'notebooks', name);
    assert.ok(fs.existsSync(file), `${file} is missing`);
    const committed = JSON.parse(fs.readFileSync(file, 'utf8')) as Nb;
    if (committed.cells.every((c) => c.cell_type !== 'code' || (c.outputs ?? []).length === 0)) {
      // Not yet executed in full mode (outputs arrive when `npm run notebooks` is run and committed);
      // CI still executes it in smoke mode through scripts/run-notebooks.ts.
      t.todo(`${name} has no outputs yet: run \`npm run notebooks\` and commit the executed file`);
      return;
    }
    const bytes = fs.statSync(file).size;
    assert.ok(
      bytes < MAX_BYTES,
      `${name} is ${(bytes / 2 ** 20).toFixed(1)} MiB: commit it with \`npm run notebooks\` (plotly linked)`,
    );
    const nb = JSON.parse(fs.readFileSync(file, 'utf8')) as Nb;
    const problems = [...notebookProblems(nb, name), ...(name.startsWith('05_') ? trainingNotebookProblems(nb) : [])];
    assert.deepEqual(problems, [], '\n' + problems.join('\n'));
  });
}
