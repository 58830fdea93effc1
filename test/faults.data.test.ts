/**
 * Faults in datasets, caught before the first training step: no validation split (an error, or an explicit
 * `--val-split` carve-out), a class folder present only under val/ or test/ (it used to become an extra
 * class and shift every label after it), a class with no training images, an empty test split.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkTrainingSplits, openDataset, writeSyntheticDataset } from '../lib/data/index';
import { makeTrainConfig } from '../lib/train/config';
import { prepareData, trainRun } from '../lib/train/run';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'faults-data-'));
const cacheDir = path.join(tmp, 'cache');
let source = '';

before(async () => {
  process.env.MSM_DATA_CACHE = cacheDir;
  source = await writeSyntheticDataset({
    root: path.join(tmp, 'gen'),
    numClasses: 2,
    size: 16,
    perClass: { train: 8, val: 2, test: 2 },
    seed: 1,
  });
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A plain image folder (no synthetic metadata) copied from the generated set, then changed by `edit`. */
function folder(name: string, edit: (root: string) => void): string {
  const root = path.join(tmp, name);
  fs.cpSync(source, root, { recursive: true });
  for (const f of ['dataset.json', 'README.txt']) fs.rmSync(path.join(root, f), { force: true });
  edit(root);
  return root;
}

test('no val folder: an error before any decoding that names --val-split; with --val-split, a stratified carve-out', async () => {
  const root = folder('noval', (r) => fs.rmSync(path.join(r, 'val'), { recursive: true }));
  await assert.rejects(
    prepareData({ data: root, dataKind: '', imageSize: 16 }, { needTest: true }),
    /noval: the validation split is empty .*pass --val-split 0\.1/,
  );
  assert.ok(!fs.existsSync(cacheDir) || fs.readdirSync(cacheDir).length === 0, 'nothing was decoded');

  const data = await prepareData({ data: root, dataKind: '', imageSize: 16, valSplit: 0.25 }, { needTest: true });
  const counts = data.dataset.info.counts;
  data.close();
  assert.deepEqual(counts.val, [2, 2], '25% of each class');
  assert.deepEqual(counts.train, [6, 6]);
  assert.deepEqual(counts.test, [2, 2]);
  assert.match(data.dataset.info.notes.join('\n'), /no val folder: 4 of 16 train images carved out as validation/);
  // The carve-out depends only on the seed and the file names.
  const again = await openDataset({ kind: 'folder', root, valSplit: 0.25 });
  const val1 = again.samples('val').map((r) => r.path);
  const again2 = await openDataset({ kind: 'folder', root, valSplit: 0.25 });
  assert.deepEqual(
    again2.samples('val').map((r) => r.path),
    val1,
  );
});

test('a class folder only under val/ is an error (it used to become an extra class)', async () => {
  const root = folder('orphan', (r) => {
    const cls = fs.readdirSync(path.join(r, 'val'))[0];
    const extra = path.join(r, 'val', 'zz-extra');
    fs.mkdirSync(extra);
    const img = fs.readdirSync(path.join(r, 'val', cls))[0];
    fs.copyFileSync(path.join(r, 'val', cls, img), path.join(extra, img));
  });
  await assert.rejects(
    openDataset(root),
    /class folder 'zz-extra' exists under val\/ but not under train\/ .*add train\/zz-extra or remove it/,
  );
});

test('a class with no training images and an empty test split are errors; --no-eval-test allows the latter', async () => {
  const ds = await openDataset(folder('counts', () => {}));
  const info = ds.info;
  assert.throws(
    () => checkTrainingSplits({ ...info, counts: { ...info.counts, train: [8, 0] } }, { needTest: true }),
    new RegExp(
      `class '${info.classes[1]}' has no training images \\(train counts: ${info.classes[0]} 8, ${info.classes[1]} 0\\)`,
    ),
  );
  const noTest = { ...info, counts: { ...info.counts, test: [0, 0] } };
  assert.throws(() => checkTrainingSplits(noTest, { needTest: true }), /test split is empty .*--no-eval-test/);
  checkTrainingSplits(noTest, { needTest: false });
});

test('train stops on a dataset problem before its first step (no checkpoint, no step log)', async () => {
  const root = folder('noval-train', (r) => fs.rmSync(path.join(r, 'val'), { recursive: true }));
  const runsDir = path.join(tmp, 'runs');
  await assert.rejects(
    trainRun(makeTrainConfig({ data: root, runsDir, name: 'r', imageSize: 16, backend: 'cpu' }), { log: () => {} }),
    /validation split is empty/,
  );
  const left = fs.existsSync(path.join(runsDir, 'r')) ? fs.readdirSync(path.join(runsDir, 'r')) : [];
  assert.deepEqual(left, [], 'nothing written (the lock is released)');
});
