/**
 * A study's outputs from its cell.json files (lib/study/aggregate.ts, figures.ts, frame.ts):
 *
 * - on hand-made cells (no training): the per-seed table, the paper table with the kit's 1000-class
 *   parameter count beside the paper's, the danfojs frames, and the figures (accuracy vs parameters with
 *   the Pareto front, the paper-vs-kit panel, training time);
 * - the acceptance of the studies issue on the committed ablations-malaria cells: copied to a temporary
 *   study folder with no run folders, `npm run study` re-aggregates them without training, twice the same
 *   bytes, and equal to the committed results.md when one is committed for the same cells.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { initBackend } from '../lib/backend/index';
import { countParams, createModel } from '../lib/models/index';
import {
  accuracyFigure,
  aggregateStudy,
  armRows,
  cellFile,
  expectedSeconds,
  finishedSeconds,
  loadStudy,
  paperPanelFigure,
  resultsMarkdown,
  seedRows,
  studyFrame,
  trainingTimeFigure,
  type CellRecord,
  type Study,
} from '../lib/study/index';

const ROOT = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-study-results-'));
const TINY = { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256] };

before(async () => {
  await initBackend('wasm', { quiet: true });
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function tinyStudy(): Study {
  const file = path.join(tmp, 'hand.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      name: 'hand',
      data: 'synthetic',
      recipe: 'cpu',
      seeds: [0, 1],
      reference: 'full',
      runsDir: path.join(tmp, 'runs'),
      arms: [
        {
          label: 'full',
          model: 'microscopic-mamba-t',
          options: TINY,
          paper: { source: 'Table II, RPE', oa: 0.8841, params: 4320000 },
        },
        { label: 'w/o MIFA', model: 'microscopic-mamba-t', options: { ...TINY, mifa: false } },
      ],
      bootstrap: { samples: 200, seed: 0 },
    }),
  );
  return loadStudy(file);
}

/** A cell record whose predictions are right on the first `right` of 10 test images. */
function handCell(study: Study, index: number, right: number, wallSeconds: number): CellRecord {
  const cell = study.cells[index];
  const labels = [0, 1, 0, 1, 0, 1, 0, 1, 0, 1];
  const predicted = labels.map((y, i) => (i < right ? y : 1 - y));
  const acc = right / 10;
  return {
    study: 'hand',
    index,
    arm: cell.arm.label,
    seed: cell.seed,
    model: cell.arm.model,
    family: 'microscopic-mamba',
    run: cell.config.name,
    config: cell.config,
    imageSize: 32,
    params: { total: 1000 + index, used: 900 },
    macs: { paper: 2e6, full: 3e6 },
    test: { n: 10, accuracy: acc, auc: acc, f1: acc, balancedAccuracy: acc, classes: ['a', 'b'], labels, predicted },
    training: { status: 'finished', epochs: 1, steps: 4, trainSeconds: wallSeconds - 1, wallSeconds },
    machine: { cpu: 'Test CPU', cores: 2, backend: 'wasm' },
    dataset: { name: 'synthetic', synthetic: true, counts: { train: [5, 5], val: [2, 2], test: [5, 5] } },
  };
}

test('per-seed table, paper table with the 1000-class count, frames and figures, from hand-made cells', () => {
  const study = tinyStudy();
  // Cells seed-major: full-s0, w/o MIFA-s0, full-s1, w/o MIFA-s1 (the last one missing).
  const cells = [handCell(study, 0, 9, 120), handCell(study, 1, 7, 60), handCell(study, 2, 8, 180), undefined];
  const r = aggregateStudy(study, cells);
  const full = r.arms[0];
  assert.deepEqual(
    full.perSeed.map((s) => [s.seed, s.accuracy, s.wallSeconds]),
    [
      [0, 0.9, 120],
      [1, 0.8, 180],
    ],
  );
  const m = createModel('microscopic-mamba-t', { ...TINY, imageSize: 32, numClasses: 1000 });
  assert.equal(full.paramsPaperConvention, countParams(m).total, 'counted with a 1000-class head');
  m.dispose();
  assert.deepEqual(r.machines, ['Test CPU × 2, wasm']);

  const md = resultsMarkdown(r);
  assert.match(md, /Machines: Test CPU × 2, wasm\./);
  assert.match(md, /\| full \| 0 \| 90\.00 \| 90\.00 \| 90\.00 \| 90\.00 \|  \| 2\.0 \|/);
  assert.match(md, /\| w\/o MIFA \| 0 \| 70\.00 \| 70\.00 \| 70\.00 \| 70\.00 \| −20\.00 \| 1\.0 \|/);
  const kitMillions = (full.paramsPaperConvention! / 1e6).toFixed(2);
  assert.match(
    md,
    new RegExp(`\\| full \\| Table II, RPE \\| 88\\.41 \\| – \\| – \\| 4\\.32 \\| ${kitMillions} \\| 85\\.00 \\|`),
  );

  const arms = armRows(r);
  assert.equal(arms[0]['OA mean'], 85);
  assert.equal(arms[0]['OA sd'], 7.07);
  assert.equal(arms[1].seeds, 1);
  assert.deepEqual(
    seedRows(r).map((row) => [row.arm, row.seed, row['OA − reference']]),
    [
      ['full', 0, null],
      ['full', 1, null],
      ['w/o MIFA', 0, -20],
    ],
  );
  const df = studyFrame(r, 'seeds');
  assert.deepEqual(df.shape, [3, 9]);

  const acc = accuracyFigure(r, 'params');
  assert.equal((acc.layout!.xaxis as { type: string }).type, 'log');
  const front = acc.data.find((t) => t.name === 'Pareto front')!;
  // full: 1000 params, 85 %; w/o MIFA: 1001 params, 70 % → only full is on the front.
  assert.deepEqual(front.x, [1000]);
  const panel = paperPanelFigure(r, { tableI: 'SARS' });
  const paperTrace = panel.data.find((t) => t.name === 'microscopic-mamba (paper)')!;
  assert.deepEqual([paperTrace.x, paperTrace.y], [[4320000], [88.41]]);
  const kitTrace = panel.data.find((t) => t.name === 'microscopic-mamba (kit)')!;
  assert.equal(kitTrace.xaxis, 'x2');
  assert.deepEqual(kitTrace.x, [full.paramsPaperConvention, r.arms[1].paramsPaperConvention]);
  assert.ok(
    panel.data.some((t) => /Table I, other methods/.test(String(t.name))),
    'Table I in grey',
  );
  assert.match(String((panel.layout!.title as { text: string }).text), /DIFFERENT datasets and recipes/);
  const time = trainingTimeFigure(r);
  assert.deepEqual(time.data[0].x, [2.5, 1]);
  assert.deepEqual(time.data[1].x, [2, 3, 1]);
});

const tsxImport = pathToFileURL(require.resolve('tsx')).href;
const studyCli = (args: string[], cwd: string) =>
  spawnSync(process.execPath, ['--import', tsxImport, path.join(ROOT, 'scripts', 'study.ts'), ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 300_000,
  });

test("ETA: a cell is expected to take its arm's mean whole-run time, else the same model's (per pixel), else the dry-run estimate", () => {
  const file = path.join(tmp, 'eta.json');
  fs.writeFileSync(
    file,
    JSON.stringify({
      name: 'eta',
      data: 'synthetic',
      recipe: 'cpu',
      seeds: [0, 1],
      reference: 'mm 32px',
      runsDir: path.join(tmp, 'eta-runs'),
      arms: [
        { label: 'mm 32px', model: 'microscopic-mamba-t', train: { imageSize: 32 } },
        { label: 'mm 64px', model: 'microscopic-mamba-t', train: { imageSize: 64 } },
        { label: 'resnet 32px', model: 'resnet18', train: { imageSize: 32 } },
      ],
    }),
  );
  const study = loadStudy(file);
  // cells seed-major: 0 mm32-s0, 1 mm64-s0, 2 resnet32-s0, 3 mm32-s1, 4 mm64-s1, 5 resnet32-s1
  const finished = [handCell(study, 0, 9, 100), handCell(study, 3, 9, 140)];
  for (const c of finished) {
    fs.mkdirSync(study.cells[c.index].cellDir, { recursive: true });
    fs.writeFileSync(cellFile(study.cells[c.index]), JSON.stringify(c));
  }
  try {
    const byArm = finishedSeconds(study);
    assert.deepEqual([...byArm.entries()], [[0, [100, 140]]]);
    const expect = (i: number, estimate?: () => number) => expectedSeconds(study, study.cells[i], byArm, estimate);
    assert.equal(
      expect(3, () => 999),
      120,
      'its arm first, not the estimate',
    );
    assert.equal(
      expect(1, () => 999),
      480,
      'the same model at 32 px, × 4 pixels',
    );
    assert.equal(
      expect(2, () => 42),
      42,
      'another model: the dry-run estimate',
    );
    assert.equal(expect(2), 120, 'no estimate: every finished cell, per pixel');
    assert.ok(Number.isNaN(expectedSeconds(study, study.cells[2], new Map())), 'nothing known');
  } finally {
    fs.rmSync(path.join(tmp, 'eta-runs'), { recursive: true, force: true });
    for (const c of finished) fs.rmSync(study.cells[c.index].cellDir, { recursive: true, force: true });
  }
});

test('the committed ablations-malaria cells re-aggregate without training and reproduce results.md', (t) => {
  const committed = path.join(ROOT, 'studies', 'ablations-malaria');
  const cellsDir = path.join(committed, 'cells');
  if (!fs.existsSync(cellsDir)) return t.skip('no committed cells under studies/ablations-malaria/cells yet');
  const study = loadStudy(path.join(ROOT, 'studies', 'ablations-malaria.json'));
  const done = study.cells.filter((c) => fs.existsSync(path.join(cellsDir, c.id, 'cell.json'))).length;
  const outputs: string[] = [];
  for (const copy of ['a', 'b']) {
    // A clone with the committed study file and cells only: no runs folder, no results yet.
    const dir = path.join(tmp, `clone-${copy}`);
    fs.mkdirSync(path.join(dir, 'studies', 'ablations-malaria'), { recursive: true });
    fs.copyFileSync(
      path.join(ROOT, 'studies', 'ablations-malaria.json'),
      path.join(dir, 'studies', 'ablations-malaria.json'),
    );
    fs.cpSync(cellsDir, path.join(dir, 'studies', 'ablations-malaria', 'cells'), { recursive: true });
    // With every cell committed this is the plain command of the acceptance; while the study is in
    // progress, --aggregate (the plain command would train the missing cells).
    const args = ['studies/ablations-malaria.json', ...(done === study.cells.length ? [] : ['--aggregate'])];
    const cli = studyCli(args, dir);
    assert.equal(cli.status, 0, cli.stdout + cli.stderr);
    assert.match(cli.stdout, new RegExp(`${done} of ${study.cells.length} cells aggregated`));
    assert.ok(!fs.existsSync(path.join(dir, 'runs')), 'nothing was trained');
    const md = fs.readFileSync(path.join(dir, 'studies', 'ablations-malaria', 'results.md'), 'utf8');
    assert.match(md, new RegExp(`${done} of ${study.cells.length} cells finished`));
    const html = fs.readFileSync(path.join(dir, 'studies', 'ablations-malaria', 'report.html'), 'utf8');
    assert.match(html, /data-msm-plotly="inline"/, 'report.html carries plotly.js itself');
    assert.doesNotMatch(html, /<script[^>]+src=/, 'and loads nothing from elsewhere');
    outputs.push(md);
  }
  assert.equal(outputs[0], outputs[1], 'two clones give the same bytes');
  const committedMd = path.join(committed, 'results.md');
  if (!fs.existsSync(committedMd)) return t.skip(`no committed results.md yet (${done} cells committed)`);
  const finished = /(\d+) of \d+ cells finished/.exec(fs.readFileSync(committedMd, 'utf8'))?.[1];
  if (Number(finished) !== done)
    return t.skip(
      `the committed results.md is of ${finished} cells, ${done} are committed: re-aggregate and commit it`,
    );
  assert.equal(outputs[0], fs.readFileSync(committedMd, 'utf8'), 'the committed results.md is reproduced');
});
