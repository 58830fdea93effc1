/**
 * Execute notebooks headless with the kit's tslab kernel and fail on any cell error.
 *
 *   tsx scripts/run-notebooks.ts [--smoke] [--inplace] [--timeout SECONDS] [--keep] [NOTEBOOK.ipynb ...]
 *
 *   (no names)   every notebooks/*.ipynb, in name order
 *   --smoke      MSM_SMOKE=1 in the kernel's environment: notebooks shrink their work (lib/notebook.ts `smoke`).
 *                This is what `npm test` / CI runs (`npm run test:notebooks`).
 *   --inplace    write the executed notebooks back over the originals (`npm run notebooks`: developers commit
 *                full-run outputs this way). Without it the repository's notebooks are left untouched.
 *   --timeout S  per-cell limit (default 900 s with --smoke, 7200 s without)
 *   --keep       keep the executed copies (their folder is printed) instead of deleting them
 *
 * With --inplace every figure output also gets a static `image/png` (drawn by headless Chromium,
 * lib/report/figure-png.ts; `apt-get install chromium`), and its `text/html` placeholder becomes that image:
 * GitHub and other viewers that run no script show the PNG, nbconvert HTML draws the live figure with
 * plotly.js linked from node_modules, JupyterLab / VS Code draw the plotly JSON bundle.
 *
 * Execution is nbconvert's ExecutePreprocessor (what `jupyter nbconvert --to notebook --execute` runs), driven
 * from a few lines of Python so that the partly executed notebook survives a failure: tslab reports a cell's
 * error only as a stderr stream (the CellExecutionError nbconvert prints is an empty `<Error>:`), so the
 * message printed here is that cell's own output. Errors are never allowed (no `--allow-errors`: after an
 * error tslab silently skips every later cell, docs/platform.md §Headless notebook execution). The executed notebook is
 * also inspected: an `error` output, an error tslab only logged (uncaught exceptions and unhandled rejections of async
 * work), and per-notebook expectations (00_setup must hold the plotly figure and the table) all fail the run.
 *
 * Kernel: a private kernelspec (JUPYTER_PATH) that starts scripts/tslab-kernel.sh of this checkout, so a
 * `tslab` kernel registered for another checkout cannot be picked up; the kernel's cwd is the repo root.
 * Prerequisites (Debian Jupyter packages, node_modules) come from scripts/bootstrap.sh.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compactPng, figurePng, findChromium } from '../lib/report/figure-png';
import { withStaticImage, type Figure } from '../lib/report/plot';

const ROOT = path.resolve(__dirname, '..');
const PYTHON = process.env.MSM_JUPYTER_PYTHON ?? '/usr/bin/python3';

/** The parts of nbformat 4 this script reads. */
export interface NbOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}
export interface NbCell {
  cell_type: string;
  source: string | string[];
  outputs?: NbOutput[];
}
export interface Notebook {
  cells: NbCell[];
  metadata?: Record<string, unknown>;
}

const joinText = (t: string | string[] | undefined): string => (Array.isArray(t) ? t.join('') : (t ?? ''));
const stripAnsi = (s: string): string => s.replace(/\u001b\[[0-9;]*m/g, '');
/** Stack frames of tslab's and Node's own machinery (and the cell wrapper's line numbers, meaningless to a reader). */
const MACHINERY_FRAME =
  /^\s+at .*(node:vm|node:internal|tslab[\\/]dist|sigintHandlersWrap|evalmachine\.<anonymous>:\d+:\d+\)?$)/;
/** Drop those frames: what is left points at the notebook and lib code. */
const trimStack = (s: string): string =>
  s
    .split('\n')
    .filter((l) => !MACHINERY_FRAME.test(l))
    .join('\n');

/** What tslab prints (console.error) for errors that escape a cell: async work that throws or rejects later. */
const ESCAPED_ERROR = /^(UncaughtException|UnhandledPromiseRejection):/m;

/** Human-readable text of one output (streams, errors, and the text/plain of rich outputs). */
export function outputText(o: NbOutput): string {
  if (o.output_type === 'stream') return joinText(o.text);
  if (o.output_type === 'error') {
    const tb = (o.traceback ?? []).map(stripAnsi).join('\n');
    return tb || `${o.ename ?? 'Error'}: ${o.evalue ?? ''}`;
  }
  const plain = o.data?.['text/plain'];
  return typeof plain === 'string' || Array.isArray(plain) ? joinText(plain as string | string[]) : '';
}

/** Does this output show an error? (`error` outputs; errors tslab only logged to stderr.) */
export function isErrorOutput(o: NbOutput): boolean {
  return (
    o.output_type === 'error' ||
    (o.output_type === 'stream' && o.name === 'stderr' && ESCAPED_ERROR.test(joinText(o.text)))
  );
}

/** `cell N (first source line)` with N counted from 1 over all cells, as a reader scrolls. */
export function describeCell(nb: Notebook, index: number): string {
  const first = joinText(nb.cells[index]?.source).split('\n')[0]?.trim() ?? '';
  return `cell ${index + 1} (${first.length > 60 ? first.slice(0, 57) + '...' : first})`;
}

/**
 * Problems visible in an executed notebook, whatever the kernel replied: the first cell with an error
 * output, and the code cells after it that came back without outputs (tslab skips them silently).
 */
export function findCellProblems(nb: Notebook): string[] {
  const first = nb.cells.findIndex((c) => c.cell_type === 'code' && (c.outputs ?? []).some(isErrorOutput));
  if (first < 0) return [];
  const text = (nb.cells[first].outputs ?? []).filter(isErrorOutput).map(outputText).join('\n');
  const skipped = nb.cells
    .slice(first + 1)
    .filter((c) => c.cell_type === 'code' && joinText(c.source).trim() !== '' && (c.outputs ?? []).length === 0).length;
  const problems = [`${describeCell(nb, first)} failed:\n${indent(trimStack(stripAnsi(text)))}`];
  if (skipped > 0) problems.push(`${skipped} later code cell(s) have no outputs (skipped by tslab after the error)`);
  return problems;
}

/** Every rich output's MIME bundle, in order. */
function bundles(nb: Notebook): Record<string, unknown>[] {
  return nb.cells.flatMap((c) => (c.outputs ?? []).map((o) => o.data).filter((d): d is Record<string, unknown> => !!d));
}

/**
 * 00_setup proves the display path every later notebook uses: a plotly figure as ONE output
 * carrying both `text/html` that inlines (or, in committed notebooks, links) plotly.js (classic Notebook) and the
 * `application/vnd.plotly.v1+json` bundle as a JSON object (JupyterLab, VS Code), and an HTML table.
 */
export function checkSetupOutputs(nb: Notebook): string[] {
  const problems: string[] = [];
  const all = bundles(nb);
  const plotly = all.find((b) => b['application/vnd.plotly.v1+json'] !== undefined);
  if (!plotly) {
    problems.push('no output carries an application/vnd.plotly.v1+json bundle (showFigure)');
  } else {
    const fig = plotly['application/vnd.plotly.v1+json'] as { data?: unknown } | string;
    if (typeof fig !== 'object' || !Array.isArray(fig.data) || fig.data.length === 0) {
      problems.push('the plotly bundle is not a JSON object with a non-empty `data` array');
    }
    const html = joinText(plotly['text/html'] as string | string[] | undefined);
    if (!/Plotly\.newPlot|Plotly\.react/.test(html)) {
      problems.push('the plotly output has no text/html calling Plotly.newPlot (classic Notebook fallback)');
    }
    // Inlined plotly.js (live kernels), or the loader that `npm run notebooks` commits (MSM_PLOTLY=link).
    if (html.length < 100_000 && !html.includes('data-msm-plotly="link"')) {
      problems.push(`the plotly text/html (${html.length} chars) does not inline plotly.js`);
    }
  }
  const table = all.find((b) => /<table[\s>][\s\S]*<\/table>/.test(joinText(b['text/html'] as string | string[])));
  if (!table) problems.push('no text/html output holds a <table> (showTable of a danfojs DataFrame)');
  return problems;
}

/** Checks that apply to one notebook only, by file name. */
export const EXPECTATIONS: Record<string, (nb: Notebook) => string[]> = {
  '00_setup.ipynb': checkSetupOutputs,
};

/**
 * Give every plotly output of `nb` a static PNG: `image/png` in its bundle and the image in place of the
 * `text/html` placeholder (palette-compacted: lib/report/figure-png.ts `compactPng`). Returns how many figures
 * were rendered. `render` is injectable for tests.
 */
export async function addStaticImages(
  nb: Notebook,
  render: (fig: Figure) => Buffer | Promise<Buffer> = (fig) => compactPng(figurePng(fig)),
): Promise<number> {
  let n = 0;
  for (const cell of nb.cells) {
    for (const o of cell.outputs ?? []) {
      const fig = o.data?.['application/vnd.plotly.v1+json'] as Figure | undefined;
      if (!o.data || !fig || typeof fig !== 'object' || !Array.isArray(fig.data)) continue;
      const png = (await render(fig)).toString('base64');
      o.data['image/png'] = png;
      const html = o.data['text/html'];
      if (html !== undefined) {
        const title = (fig.layout?.title as { text?: string } | undefined)?.text;
        o.data['text/html'] = withStaticImage(joinText(html as string | string[]), png, title || 'plotly figure');
      }
      n++;
    }
  }
  return n;
}

function indent(s: string, pad = '    '): string {
  return s
    .trimEnd()
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

/**
 * Runs one notebook with nbconvert's ExecutePreprocessor. argv: source, destination, kernel cwd, per-cell
 * timeout. Always writes the (possibly partly) executed notebook, then prints one JSON status line.
 */
const DRIVER = String.raw`
import json, sys
import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
src, dst, cwd, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
nb = nbformat.read(src, as_version=4)
state = {"cell": None, "error": None, "kind": None}
def on_cell_start(cell, cell_index):
    state["cell"] = cell_index
ep = ExecutePreprocessor(kernel_name="tslab", timeout=timeout, startup_timeout=300,
                         record_timing=False, on_cell_start=on_cell_start)
try:
    ep.preprocess(nb, {"metadata": {"path": cwd}})
    state["cell"] = None
except Exception as e:
    state["kind"] = type(e).__name__
    state["error"] = str(e).strip().splitlines()[0] if str(e).strip() else ""
finally:
    nbformat.write(nb, dst)
    print("MSM_STATUS " + json.dumps(state))
`;

export interface RunResult {
  notebook: string;
  ok: boolean;
  seconds: number;
  problems: string[];
  executedPath: string;
}

/** Execute one notebook into `outDir`; never throws for notebook errors (they are in `problems`). */
export function runNotebook(file: string, outDir: string, env: NodeJS.ProcessEnv, timeoutS: number): RunResult {
  const name = path.basename(file);
  const executedPath = path.join(outDir, name);
  const t0 = Date.now();
  const proc = spawnSync(PYTHON, ['-c', DRIVER, file, executedPath, path.dirname(file), String(timeoutS)], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const seconds = (Date.now() - t0) / 1000;
  const problems: string[] = [];
  const statusLine = (proc.stdout ?? '').split('\n').find((l) => l.startsWith('MSM_STATUS '));
  const status = statusLine
    ? (JSON.parse(statusLine.slice('MSM_STATUS '.length)) as {
        cell: number | null;
        error: string | null;
        kind: string | null;
      })
    : undefined;
  let nb: Notebook | undefined;
  if (fs.existsSync(executedPath)) nb = JSON.parse(fs.readFileSync(executedPath, 'utf8')) as Notebook;

  if (!status || !nb) {
    // The driver itself failed (no Jupyter, unreadable notebook, ...): show what Python said.
    const why = proc.error ? String(proc.error) : (proc.stderr ?? '').trim().split('\n').slice(-15).join('\n');
    problems.push(
      `nbconvert did not run (exit ${proc.status}):\n${indent(why)}\n    (missing Jupyter? run: bash scripts/bootstrap.sh)`,
    );
  } else {
    if (status.kind) {
      const where = status.cell !== null ? describeCell(nb, status.cell) : 'kernel start';
      // The failing cell's stderr / error outputs (tslab's error text), else all its output; at most 40 lines.
      const outputs = status.cell !== null ? (nb.cells[status.cell].outputs ?? []) : [];
      const errors = outputs.filter((o) => o.output_type === 'error' || o.name === 'stderr');
      const lines = trimStack(stripAnsi((errors.length > 0 ? errors : outputs).map(outputText).join('')))
        .trimEnd()
        .split('\n');
      if (lines.length > 40) lines.splice(40, lines.length - 40, `... ${lines.length - 40} more lines`);
      const detail = lines.join('\n').trim() ? lines.join('\n') : `${status.kind}: ${status.error}`;
      problems.push(`${where} failed:\n${indent(detail)}`);
      if (status.kind !== 'CellExecutionError') {
        const kernelLog = (proc.stderr ?? '').trim().split('\n').slice(-10).join('\n');
        if (kernelLog) problems.push(`kernel / nbconvert log (last lines):\n${indent(kernelLog)}`);
      }
    } else {
      problems.push(...findCellProblems(nb));
    }
    if (problems.length === 0) problems.push(...(EXPECTATIONS[name]?.(nb) ?? []));
  }
  return { notebook: file, ok: problems.length === 0, seconds, problems, executedPath };
}

/** Write `nb` with nbformat (sorted keys, multi-line strings as lists, validation), as Jupyter saves it. */
export function writeNotebook(nb: Notebook, file: string): void {
  const py = 'import sys, nbformat\nnbformat.write(nbformat.reads(sys.stdin.read(), as_version=4), sys.argv[1])';
  const r = spawnSync(PYTHON, ['-c', py, file], { input: JSON.stringify(nb), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0)
    throw new Error(`run-notebooks: could not write ${file}: ${(r.stderr ?? '').trim().split('\n').pop()}`);
}

interface Options {
  smoke: boolean;
  inplace: boolean;
  keep: boolean;
  timeoutS?: number;
  files: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { smoke: false, inplace: false, keep: false, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--smoke') o.smoke = true;
    else if (a === '--inplace') o.inplace = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--timeout' || a.startsWith('--timeout=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      o.timeoutS = Number(v);
      if (!(o.timeoutS > 0)) throw new Error(`--timeout needs a number of seconds, got '${v}'`);
    } else if (a.startsWith('--')) throw new Error(`unknown option ${a} (see the header of scripts/run-notebooks.ts)`);
    else o.files.push(path.resolve(a));
  }
  if (o.smoke && o.inplace) throw new Error('--inplace with --smoke would commit smoke outputs; run --inplace alone');
  return o;
}

function listNotebooks(): string[] {
  const dir = path.join(ROOT, 'notebooks');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.ipynb') && !f.startsWith('.'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** A kernelspec dir for JUPYTER_PATH whose `tslab` kernel is this checkout's wrapper. */
function privateKernelspec(tmp: string): string {
  const dir = path.join(tmp, 'jupyter');
  fs.mkdirSync(path.join(dir, 'kernels', 'tslab'), { recursive: true });
  const spec = {
    argv: [path.join(ROOT, 'scripts', 'tslab-kernel.sh'), 'kernel', '--config-path', '{connection_file}'],
    display_name: 'TypeScript',
    language: 'typescript',
  };
  fs.writeFileSync(path.join(dir, 'kernels', 'tslab', 'kernel.json'), JSON.stringify(spec));
  return dir;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const files = opts.files.length > 0 ? opts.files : listNotebooks();
  if (files.length === 0) {
    console.log('run-notebooks: no notebooks found in notebooks/');
    return 0;
  }
  for (const f of files) if (!fs.existsSync(f)) throw new Error(`run-notebooks: ${f} does not exist`);
  const timeoutS = opts.timeoutS ?? (opts.smoke ? 900 : 7200);
  if (opts.inplace && !findChromium()) {
    throw new Error(
      'run-notebooks --inplace: saved figures need static PNGs: apt-get install chromium (or set MSM_CHROMIUM)',
    );
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-notebooks-'));
  const outDir = path.join(tmp, 'executed');
  fs.mkdirSync(outDir);
  const jupyterPath = privateKernelspec(tmp);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JUPYTER_PATH: [jupyterPath, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
    PYDEVD_DISABLE_FILE_VALIDATION: '1', // Debian's ipykernel/debugpy "frozen modules" warnings
    MSM_SMOKE: opts.smoke ? '1' : '0',
    // Committed notebooks link plotly.js from node_modules instead of carrying 10 MB each (lib/report/plot.ts).
    ...(opts.inplace ? { MSM_PLOTLY: 'link' } : {}),
  };
  const mode = opts.smoke ? 'smoke' : 'full';
  console.log(`run-notebooks: ${files.length} notebook(s), ${mode} mode, per-cell timeout ${timeoutS} s`);
  const t0 = Date.now();
  const results: RunResult[] = [];
  for (const file of files) {
    const r = runNotebook(file, outDir, env, timeoutS);
    results.push(r);
    const rel = path.relative(ROOT, file);
    console.log(`${r.ok ? 'ok  ' : 'FAIL'}  ${rel}  ${r.seconds.toFixed(1)} s`);
    for (const p of r.problems) console.log(indent(p, '      '));
    if (r.ok && opts.inplace) {
      const nb = JSON.parse(fs.readFileSync(r.executedPath, 'utf8')) as Notebook;
      const t1 = Date.now();
      const figures = await addStaticImages(nb);
      console.log(`      ${figures} figure PNG(s) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
      // Atomic: a copy beside the original (written by nbformat itself, so the layout stays Jupyter's), then
      // rename over it.
      const tmpCopy = `${file}.${process.pid}.tmp`;
      writeNotebook(nb, tmpCopy);
      fs.renameSync(tmpCopy, file);
    }
  }
  const failed = results.filter((r) => !r.ok);
  const total = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`run-notebooks: ${results.length - failed.length} ok, ${failed.length} failed, ${total} s`);
  if (opts.keep || failed.length > 0) console.log(`run-notebooks: executed copies in ${outDir}`);
  else fs.rmSync(tmp, { recursive: true, force: true });
  return failed.length > 0 ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => (process.exitCode = code),
    (e) => {
      console.error((e as Error).message);
      process.exitCode = 1;
    },
  );
}
