/**
 * The published layouts on tiny generated copies: NIH malaria `cell_images/`, MHIST (images/ +
 * annotations.csv), MedFM-Colon (MedFMC_train|val/colon tables), RPE class folders, and the class layout's
 * seeded split file (reused, refused when stale). Also the CSV parser against RFC 4180 cases.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { openDataset } from '../lib/data/dataset';
import { groupSplit, stratifiedSplit } from '../lib/data/split';
import { medfmSlideOf, parseCsv } from '../lib/data/sources/tables';
import { SPLIT_NAMES } from '../lib/data/types';

let tmp: string;
let png: Buffer;
before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-sources-'));
  png = await sharp({ create: { width: 6, height: 6, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .png()
    .toBuffer();
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function put(file: string, bytes: Buffer | string = png): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
}
const cacheDir = () => path.join(tmp, 'cache');

test('parseCsv: quotes, doubled quotes, commas and newlines inside quotes, CRLF, BOM', () => {
  const text = '\ufeffa,b,c\r\n1,"x, y","say ""hi"""\n2,"two\nlines",\n\n';
  assert.deepEqual(parseCsv(text), [
    ['a', 'b', 'c'],
    ['1', 'x, y', 'say "hi"'],
    ['2', 'two\nlines', ''],
  ]);
});

test('seeded splits: stratified keeps class ratios; group split keeps groups whole; both independent of order', () => {
  const items = Array.from({ length: 200 }, (_, i) => ({
    key: `f${i}`,
    label: i % 4 === 0 ? 1 : 0,
    group: `g${i % 23}`,
  }));
  const s = stratifiedSplit(items, { train: 0.6, val: 0.2, test: 0.2 }, 1);
  for (const label of [0, 1]) {
    const n = items.filter((it) => it.label === label).length;
    const val = items.filter((it, i) => it.label === label && s[i] === 'val').length;
    assert.equal(val, Math.round(n * 0.2));
  }
  const reversed = [...items].reverse();
  const r = stratifiedSplit(reversed, { train: 0.6, val: 0.2, test: 0.2 }, 1);
  assert.deepEqual(r, [...s].reverse());
  const g = groupSplit(items, { train: 0.6, val: 0.2, test: 0.2 }, 1);
  const where = new Map<string, string>();
  items.forEach((it, i) => {
    assert.equal(where.get(it.group) ?? g[i], g[i]);
    where.set(it.group, g[i]);
  });
  assert.ok(SPLIT_NAMES.every((sp) => g.includes(sp)));
  assert.throws(() => stratifiedSplit(items, { train: 0.5, val: 0.2, test: 0.2 }, 1), /sum to 1/);
});

test('class layout: seeded split saved to a split file, reused, and refused when the files change', async () => {
  const root = path.join(tmp, 'classes');
  for (const cls of ['x', 'y']) for (let i = 0; i < 20; i++) put(path.join(root, cls, `${cls}${i}.png`));
  const spec = { kind: 'folder', root, cacheDir: cacheDir(), seed: 2 } as const;
  const a = await openDataset(spec);
  assert.equal(a.info.split.method, 'seeded');
  assert.deepEqual(a.info.counts, { train: [14, 14], val: [3, 3], test: [3, 3] });
  const file = a.info.split.file as string;
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(Object.keys(saved.assignment).length, 40);
  const b = await openDataset(spec);
  assert.deepEqual(b.samples('test'), a.samples('test'));
  put(path.join(root, 'x', 'new.png'));
  await assert.rejects(
    openDataset(spec),
    /split file no longer matches the dataset: 1 sample\(s\) not in it \(e\.g\. x\/new\.png\)/,
  );
  const c = await openDataset({ ...spec, resplit: true });
  assert.equal(
    SPLIT_NAMES.reduce((n, s) => n + c.samples(s).length, 0),
    41,
  );
});

test('NIH malaria cell_images layout: split by smear image keeps every smear in one split', async () => {
  const root = path.join(tmp, 'nih');
  for (const cls of ['Parasitized', 'Uninfected']) {
    for (let slide = 1; slide <= 6; slide++) {
      for (let img = 0; img < 2; img++) {
        for (let cell = 0; cell < 3; cell++) {
          put(path.join(root, 'cell_images', cls, `C${slide}P${slide}ThinF_IMG_2015_${img}_cell_${cell}.png`));
        }
      }
    }
    put(path.join(root, 'cell_images', cls, 'Thumbs.db'), 'windows thumbnail cache'); // ignored, as in the real zip
  }
  const ds = await openDataset({ kind: 'malaria', root, cacheDir: cacheDir(), splitBy: 'image', seed: 1 });
  assert.deepEqual(ds.info.classes, ['Parasitized', 'Uninfected']);
  const seen = new Map<string, string>();
  for (const s of SPLIT_NAMES) {
    for (const r of ds.samples(s)) {
      const smear = path.basename(r.path).split('_cell_')[0];
      assert.equal(seen.get(smear) ?? s, s);
      seen.set(smear, s);
    }
  }
  assert.equal(seen.size, 12);
  await assert.rejects(
    openDataset({ kind: 'malaria', root, cacheDir: cacheDir(), splitBy: 'given' }),
    /needs train\/val\/test folders/,
  );
});

test('MHIST: annotations.csv partition → train/test, val carved from train, unknown labels reported', async () => {
  const root = path.join(tmp, 'mhist');
  const rows = ['Image Name,Majority Vote Label,Number of Annotators who Selected SSA (Out of 7),Partition'];
  for (let i = 0; i < 30; i++) {
    const name = `MHIST_${String(i).padStart(3, '0')}.png`;
    put(path.join(root, 'images', name));
    rows.push(`${name},${i % 3 === 0 ? 'SSA' : 'HP'},${i % 7},${i < 20 ? 'train' : 'test'}`);
  }
  put(path.join(root, 'annotations.csv'), rows.join('\n') + '\n');
  const ds = await openDataset({ kind: 'mhist', root, cacheDir: cacheDir() });
  assert.deepEqual(ds.info.classes, ['HP', 'SSA']);
  assert.equal(ds.samples('train').length + ds.samples('val').length, 20);
  assert.equal(ds.samples('val').length, 2); // round(13·0.1) HP + round(7·0.1) SSA = 1 + 1
  assert.deepEqual(ds.info.counts.test, [7, 3]);

  put(path.join(root, 'annotations.csv'), rows.join('\n') + '\nMHIST_999.png,TA,3,train\n');
  await assert.rejects(
    openDataset({ kind: 'mhist', root, cacheDir: cacheDir() }),
    /row 32: label 'TA' is not one of HP, SSA/,
  );
  put(path.join(root, 'annotations.csv'), rows.join('\n') + '\nMHIST_999.png,HP,3,train\n');
  await assert.rejects(
    openDataset({ kind: 'mhist', root, cacheDir: cacheDir() }),
    /MHIST_999\.png: listed in annotations\.csv but missing/,
  );
});

test('MedFM-Colon: MedFMC_train/val tables; val carved by slide, MedFMC_val becomes test', async () => {
  const root = path.join(tmp, 'MedFMC');
  for (const [stem, n] of [
    ['train', 24],
    ['val', 8],
  ] as const) {
    const dir = path.join(root, `MedFMC_${stem}`, 'colon');
    const rows = ['img_id,tumor'];
    for (let i = 0; i < n; i++) {
      const name = `slide${i % 6}_2019-05-08 00_00_36-lv1-${i}-1-2-3p000${i % 4}.png`;
      put(path.join(dir, 'images', name));
      rows.push(`${name},${i % 2}`);
    }
    put(path.join(dir, `colon_${stem}.csv`), rows.join('\n'));
  }
  const ds = await openDataset({ kind: 'medfm-colon', root, cacheDir: cacheDir(), valFraction: 0.25 });
  assert.deepEqual(ds.info.classes, ['non-tumor', 'tumor']);
  assert.equal(ds.samples('test').length, 8);
  assert.equal(ds.samples('train').length + ds.samples('val').length, 24);
  const trainSlides = new Set(ds.samples('train').map((r) => medfmSlideOf(r.path)));
  assert.ok(ds.samples('val').length > 0);
  assert.ok(
    ds.samples('val').every((r) => !trainSlides.has(medfmSlideOf(r.path))),
    'val slides are disjoint from train',
  );
  assert.equal(
    medfmSlideOf('18-09444_2019-05-08 00_00_36-lv1-18463-18350-5687-5923p0001.png'),
    '18-09444_2019-05-08 00_00_36',
  );
});

test('RPE: class folders with a seeded split, optionally grouped by source image', async () => {
  const root = path.join(tmp, 'rpe');
  for (const cls of ['1', '2', '3', '4']) {
    for (let img = 0; img < 5; img++) for (let w = 0; w < 3; w++) put(path.join(root, cls, `img${img}_${w}.png`));
  }
  const ds = await openDataset({ kind: 'rpe', root, cacheDir: cacheDir(), groupPattern: '^(.*)_\\d+\\.png$', seed: 4 });
  assert.deepEqual(ds.info.classes, ['1', '2', '3', '4']);
  assert.equal(ds.info.split.by, 'group');
  const where = new Map<string, string>();
  for (const s of SPLIT_NAMES) {
    for (const r of ds.samples(s)) {
      const key = `${path.basename(path.dirname(r.path))}/${path.basename(r.path).split('_')[0]}`;
      assert.equal(where.get(key) ?? s, s);
      where.set(key, s);
    }
  }
});
