/**
 * The teaching layer of notebooks 01–05: learning goals, a block diagram, and "Try this" cells whose checks can fail.
 *
 *   - `tryThis` (lib/exercises.ts) accepts a right answer, rejects a wrong one with a message naming where it
 *     differs, and refuses an exercise whose typical mistake would pass (so no Try-this check can be vacuous);
 *   - each of 01–05 opens with learning goals and a block diagram (a ```text block: it renders in nbconvert HTML,
 *     on GitHub and in JupyterLab alike), and has at least two Try-this cells: a markdown question followed by a
 *     code cell that calls `tryThis` with a `mistake`;
 *   - where a notebook's committed outputs include a Try-this cell, that cell printed the ✓ verdict.
 * CI's smoke run (scripts/run-notebooks.ts) executes every Try-this cell, and with it the mistake each one rejects.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { firstDifference, tryThis } from '../lib/exercises';

const ROOT = path.resolve(__dirname, '..');
const TEACHING_NOTEBOOKS = [
  '01_selective_scan.ipynb',
  '02_ss2d_and_parallel_vssm.ipynb',
  '03_psffn.ipynb',
  '04_mifa.ipynb',
  '05_train_microscopic_mamba.ipynb',
];

test('tryThis accepts a right answer: numbers within the tolerance, nested lists, typed arrays, objects', () => {
  const mistake = { answer: 0, what: 'zero' };
  assert.match(tryThis('a number', 0.1 + 0.2, 0.3, { mistake }), /^✓ Try this \(a number\): right\. .*zero\.$/);
  assert.match(tryThis('rounded', 0.0952, 0.09516, { tolerance: 1e-3, mistake }), /right/);
  assert.match(
    tryThis(
      'grids',
      [
        [0, 1],
        [2, 3],
      ],
      [Float32Array.from([0, 1]), Int32Array.from([2, 3])],
      { mistake },
    ),
    /right/,
  );
  assert.match(
    tryThis(
      'shapes',
      { a: [1, 8, 8, 48], b: 'x' },
      { b: 'x', a: [1, 8, 8, 48] },
      { mistake: { answer: {}, what: 'none' } },
    ),
    /right/,
  );
});

test('tryThis rejects a wrong answer and says where it differs', () => {
  const mistake = { answer: [], what: 'nothing' };
  assert.throws(
    () =>
      tryThis(
        'orders',
        [
          [0, 1],
          [2, 4],
        ],
        [
          [0, 1],
          [2, 3],
        ],
        { mistake, hint: 'count from 0' },
      ),
    /^Error: Try this \(orders\): not yet, at \[1\]\[1\]: yours 4, the kit's 3\. Hint: count from 0$/,
  );
  assert.throws(() => tryThis('length', [1, 2], [1, 2, 3], { mistake }), /yours has 2 items, the kit's 3/);
  assert.throws(() => tryThis('tolerance', 0.0952, 0.09516, { mistake }), /yours 0\.0952000, the kit's 0\.0951600/);
  assert.throws(() => tryThis('type', '3', 3, { mistake }), /yours "3", the kit's 3/);
  assert.throws(() => tryThis('NaN', Number.NaN, 0, { mistake: { answer: 1, what: 'one' } }), /yours NaN/);
  assert.throws(() => tryThis('keys', { a: 1 }, { a: 1, b: 2 }, { mistake }), /keys a, the kit's a, b/);
  assert.throws(() => tryThis('nested key', { a: [1, 2] }, { a: [1, 3] }, { mistake }), /at \.a\[1\]/);
});

test('tryThis refuses an exercise whose typical mistake passes the check', () => {
  assert.throws(
    () => tryThis('vacuous', 3, 3, { mistake: { answer: 3.0000001, what: 'almost three' } }),
    /typical mistake "almost three" passes the check too/,
  );
  // Even with a right answer: the exercise, not the reader, is at fault.
  assert.throws(
    () => tryThis('loose', [1], [1], { tolerance: 1, mistake: { answer: [1.5], what: 'half off' } }),
    /fix the exercise/,
  );
});

test('firstDifference compares structurally', () => {
  assert.equal(firstDifference([1, [2, 3]], [1, [2, 3]]), undefined);
  assert.equal(firstDifference(Infinity, Infinity), undefined);
  assert.match(firstDifference(1, Infinity) ?? '', /yours 1, the kit's Infinity/);
  assert.match(firstDifference(5, [5]) ?? '', /not a list of 1/);
  assert.match(firstDifference(true, false) ?? '', /yours true, the kit's false/);
});

interface Cell {
  cell_type: string;
  id?: string;
  source: string | string[];
  outputs?: Array<{ output_type: string; text?: string | string[] }>;
}
const join = (t: string | string[] | undefined) => (Array.isArray(t) ? t.join('') : (t ?? ''));

/** What a teaching notebook lacks (empty when it has everything). */
export function teachingProblems(cells: Cell[], name: string): string[] {
  const problems: string[] = [];
  const top = cells[0]?.cell_type === 'markdown' ? join(cells[0].source) : '';
  if (!/\*\*Learning goals\.\*\*[^\n]*\n(\s*\n)?\* /.test(top))
    problems.push(`${name}: no learning goals list in the first cell`);
  const diagram = /```text\n([\s\S]*?)```/.exec(top);
  if (!diagram || !/[┌│▼]/.test(diagram[1]) || diagram[1].split('\n').length < 8) {
    problems.push(`${name}: no block diagram (a \`\`\`text block drawn with box characters) in the first cell`);
  }
  let tries = 0;
  cells.forEach((c, i) => {
    if (c.cell_type !== 'markdown' || !/^\*\*Try this \d+:/m.test(join(c.source))) return;
    const code = cells.slice(i + 1).find((n) => n.cell_type === 'code');
    const src = join(code?.source);
    if (!/\btryThis\(/.test(src) || !/\bmistake:/.test(src)) {
      problems.push(`${name}: Try-this cell ${i + 1} is not followed by a code cell calling tryThis with a mistake`);
      return;
    }
    tries++;
    const printed = (code?.outputs ?? []).map((o) => join(o.text)).join('');
    if ((code?.outputs ?? []).length > 0 && !/✓ Try this/.test(printed)) {
      problems.push(`${name}: the committed outputs of Try-this cell ${i + 1} show no ✓ verdict`);
    }
  });
  if (tries < 2) problems.push(`${name}: ${tries} Try-this cell(s), at least 2 wanted`);
  return problems;
}

test('the checker of the teaching layer rejects what it should', () => {
  const md = (s: string): Cell => ({ cell_type: 'markdown', source: s });
  const code = (s: string, printed?: string): Cell => ({
    cell_type: 'code',
    source: s,
    outputs: printed === undefined ? [] : [{ output_type: 'stream', text: printed }],
  });
  const diagram = '```text\n x\n │\n ▼\n┌──┐\n│ a │\n└──┘\n │\n ▼\n y\n```';
  const good = [
    md(`# t\n\n**Learning goals.** You can\n\n* one\n* two\n\n${diagram}\n`),
    md('**Try this 1: a.** Q?'),
    code("tryThis('a', 1, 1, { mistake: { answer: 2, what: 'two' } })", '✓ Try this (a): right.'),
    md('**Try this 2: b.** Q?'),
    code("tryThis('b', 1, 1, { mistake: { answer: 2, what: 'two' } })"),
  ];
  assert.deepEqual(teachingProblems(good, 'x'), []);
  const spoilt: Array<[string, (cells: Cell[]) => void, RegExp]> = [
    ['no goals', (c) => (c[0].source = `# t\n\n${diagram}`), /no learning goals/],
    ['no diagram', (c) => (c[0].source = '# t\n\n**Learning goals.** You can\n\n* one\n'), /no block diagram/],
    ['one exercise', (c) => c.splice(3, 2), /1 Try-this cell\(s\)/],
    ['no mistake', (c) => (c[4].source = "tryThis('b', 1, 1, {})"), /not followed by a code cell calling tryThis/],
    ['failed run', (c) => (c[2].outputs = [{ output_type: 'stream', text: 'Error' }]), /show no ✓ verdict/],
  ];
  for (const [what, spoil, expected] of spoilt) {
    const cells = JSON.parse(JSON.stringify(good)) as Cell[];
    spoil(cells);
    assert.match(teachingProblems(cells, 'x').join('\n'), expected, what);
  }
});

for (const name of TEACHING_NOTEBOOKS) {
  test(`${name}: learning goals, a block diagram and at least two Try-this cells with checks`, () => {
    const nb = JSON.parse(fs.readFileSync(path.join(ROOT, 'notebooks', name), 'utf8')) as { cells: Cell[] };
    const problems = teachingProblems(nb.cells, name);
    assert.deepEqual(problems, [], '\n' + problems.join('\n'));
  });
}
