/**
 * scripts/run-notebooks.ts: what it counts as a failure, and one real kernel run of a notebook whose
 * second cell throws (exit 1, the failing cell named, its error shown). The first cell of that notebook
 * also checks what every notebook relies on: the kernel's cwd is the repo root, `./lib/...` imports
 * resolve, and --smoke reaches the kernel as MSM_SMOKE=1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { findCellProblems, isErrorOutput, type NbCell, type Notebook } from '../scripts/run-notebooks';

const ROOT = path.resolve(__dirname, '..');
const code = (source: string, outputs: NbCell['outputs'] = []): NbCell => ({ cell_type: 'code', source, outputs });
const stream = (name: 'stdout' | 'stderr', text: string) => ({ output_type: 'stream', name, text });

test('a clean notebook has no problems; a stderr warning is not an error', () => {
  const nb: Notebook = {
    cells: [
      { cell_type: 'markdown', source: '# title' },
      code('console.log(1)', [stream('stdout', '1\n')]),
      code('console.warn("slow backend")', [stream('stderr', 'slow backend\n')]),
      code('const x = 1;'), // no output is normal for a declaration
    ],
  };
  assert.deepEqual(findCellProblems(nb), []);
});

test('an error output fails the notebook, names the cell, and counts the silently skipped cells', () => {
  const nb: Notebook = {
    cells: [
      code('const a = 1;'),
      code('throw new Error("boom")', [
        { output_type: 'error', ename: 'Error', evalue: 'boom', traceback: ['\u001b[31mError: boom\u001b[0m'] },
      ]),
      code('console.log(a)'),
      code('   '), // empty cells never have outputs: not counted as skipped
      code('console.log(2)'),
    ],
  };
  const problems = findCellProblems(nb);
  assert.equal(problems.length, 2);
  assert.match(problems[0], /^cell 2 \(throw new Error\("boom"\)\) failed:\n {4}Error: boom$/);
  assert.match(problems[1], /^2 later code cell\(s\) have no outputs/);
});

test('errors tslab only logs (uncaught exceptions, unhandled rejections of async work) are failures', () => {
  assert.equal(isErrorOutput(stream('stderr', 'UncaughtException: Error: late boom\n    at Timeout')), true);
  assert.equal(isErrorOutput(stream('stderr', 'UnhandledPromiseRejection: Error: x')), true);
  assert.equal(isErrorOutput(stream('stdout', 'UncaughtException: printed on purpose')), false);
  const nb: Notebook = {
    cells: [code('setTimeout(f, 10)'), code('await sleep(100)', [stream('stderr', 'UncaughtException: Error: late')])],
  };
  assert.match(findCellProblems(nb)[0], /^cell 2 .* failed:\n {4}UncaughtException: Error: late/);
});

test('a notebook whose cell 2 throws: run-notebooks exits 1 and shows that cell and its error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-nbtest-'));
  try {
    const file = path.join(dir, 'fails_in_cell_2.ipynb');
    const cell = (source: string) => ({ cell_type: 'code', execution_count: null, metadata: {}, outputs: [], source });
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name: 'tslab', display_name: 'TypeScript', language: 'typescript' },
        language_info: { name: 'typescript' },
      },
      cells: [
        cell(
          "import { isSmoke, REPO_ROOT } from './lib/notebook';\n" +
            'if (process.cwd() !== REPO_ROOT || !isSmoke()) {\n' +
            '  throw new Error(`setup: cwd=${process.cwd()} root=${REPO_ROOT} smoke=${isSmoke()}`);\n' +
            '}',
        ),
        cell("throw new Error('boom from cell 2');"),
        cell("console.log('cell 3 must not run');"),
      ],
    };
    fs.writeFileSync(file, JSON.stringify(nb));
    const before = fs.readFileSync(file, 'utf8');
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/run-notebooks.ts', '--smoke', file], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const out = r.stdout + r.stderr;
    assert.equal(r.status, 1, out);
    assert.match(out, /FAIL {2}.*fails_in_cell_2\.ipynb {2}\d+\.\d s/, out);
    assert.match(out, /cell 2 \(throw new Error\('boom from cell 2'\);\) failed:/, out);
    assert.match(out, /Error: boom from cell 2/, out);
    assert.match(out, /run-notebooks: 0 ok, 1 failed/, out);
    assert.equal(fs.readFileSync(file, 'utf8'), before, 'without --inplace the notebook must be untouched');
    // The executed copy is kept on failure: execution stopped at cell 2 (cell 3 never ran).
    const kept = /executed copies in (\S+)/.exec(out)?.[1];
    assert.ok(kept, out);
    try {
      const executed = JSON.parse(fs.readFileSync(path.join(kept, path.basename(file)), 'utf8')) as Notebook;
      assert.deepEqual(executed.cells[2].outputs, []);
      assert.deepEqual(findCellProblems({ cells: executed.cells.slice(0, 1) }), []);
    } finally {
      fs.rmSync(path.dirname(kept), { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
