/**
 * Acceptance on the team's real datasets in the shared folder (../shared/data, or MSM_SHARED_DATA; see their
 * READMEs); each such test skips with its reason when the folder is absent, as in a fresh clone:
 *   nih-malaria-cells-128  3,446 PNG cells, train 1000+1000 / validation 375+375 / test 348+348
 *   bccd-cell-crops        4,886 JPEG crops of variable size, train RBC 2381 WBC 214 Platelets 209, ...
 * Class counts must match the READMEs, seeded splits must be stable across runs (and patient-disjoint when
 * asked), and cached samples must equal an independent decode + PIL-bilinear resize. The cache checks use
 * a small copy of each set so the file stays fast.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { openDataset } from '../lib/data/dataset';
import { decodeImage } from '../lib/data/decode';
import { resizeBilinear } from '../lib/data/resample';
import { PixelHistogram } from '../lib/data/transforms';
import { malariaSlideOf, malariaSmearOf } from '../lib/data/sources/malaria';
import { sharedDataDir } from '../lib/data/paths';
import { SPLIT_NAMES } from '../lib/data/types';

const shared = sharedDataDir();
const skip = shared
  ? false
  : 'real-data check: shared data folder absent (MSM_SHARED_DATA, else <MSM_SHARED or ../shared>/data)';
const MALARIA = shared && path.join(shared, 'nih-malaria-cells-128');
const BCCD = shared && path.join(shared, 'bccd-cell-crops');

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-shared-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('nih-malaria-cells-128: class counts per split match its README', { skip }, async () => {
  const ds = await openDataset({ kind: 'folder', root: MALARIA as string, cacheDir: tmp });
  assert.deepEqual(ds.info.classes, ['Parasitized', 'Uninfected']);
  assert.deepEqual(ds.info.counts, { train: [1000, 1000], val: [375, 375], test: [348, 348] });
  assert.equal(ds.info.split.method, 'folders');
  assert.equal(ds.info.synthetic, false);
  assert.deepEqual(ds.info.skipped, []);
  // The malaria source on the same copy keeps its folders by default.
  const m = await openDataset({ kind: 'malaria', root: MALARIA as string, cacheDir: tmp });
  assert.deepEqual(m.info.counts, ds.info.counts);
});

test('bccd-cell-crops: class counts per split match its README (imbalanced, 3 classes)', { skip }, async () => {
  const ds = await openDataset({ kind: 'folder', root: BCCD as string, cacheDir: tmp });
  assert.deepEqual(ds.info.classes, ['Platelets', 'RBC', 'WBC']);
  assert.deepEqual(ds.info.counts, { train: [209, 2381, 214], val: [83, 967, 87], test: [69, 805, 71] });
  assert.equal(
    SPLIT_NAMES.reduce((n, s) => n + ds.samples(s).length, 0),
    4886,
  );
  // manifest.csv and README.md at the root are not images and are ignored.
  assert.ok(ds.samples('train').every((r) => r.path.endsWith('.jpg')));
});

test('malaria slide / smear codes from file names', () => {
  assert.equal(malariaSmearOf('C100P61ThinF_IMG_20150918_144104_cell_163.png'), 'C100P61ThinF_IMG_20150918_144104');
  assert.equal(malariaSlideOf('C100P61ThinF_IMG_20150918_144104_cell_163.png'), 'C100P61');
  assert.equal(malariaSlideOf('C37BP2_thinF_IMG_20150620_132440a_cell_108.png'), 'C37BP2');
  assert.equal(malariaSlideOf('C47P8thinOriginalOlympusCX21_IMG_1_cell_2.png'), 'C47P8');
  assert.equal(malariaSlideOf('C1_thinF_IMG_20150604_104722_cell_9.png'), 'C1');
  assert.equal(malariaSlideOf('C68P29N_ThinF_IMG_20150819_133236_cell_1.png'), 'C68P29');
  assert.equal(malariaSlideOf('C12NThinF_IMG_20150614_124212_cell_1.png'), 'C12N');
  assert.equal(malariaSlideOf('C201ThinF_IMG_20151029_111710_cell_1.png'), 'C201');
});

test('malaria re-split by patient: group-disjoint, stable across runs, saved to the split file', { skip }, async () => {
  const spec = { kind: 'malaria', root: MALARIA as string, cacheDir: tmp, splitBy: 'patient', seed: 3 } as const;
  const a = await openDataset(spec);
  const file = a.info.split.file as string;
  assert.ok(fs.existsSync(file), 'split file written');
  const bytes = fs.readFileSync(file);
  const slides = new Map<string, string>();
  let total = 0;
  for (const s of SPLIT_NAMES) {
    for (const r of a.samples(s)) {
      const slide = malariaSlideOf(r.path);
      assert.equal(slides.get(slide) ?? s, s, `slide ${slide} straddles ${slides.get(slide)} and ${s}`);
      slides.set(slide, s);
      total++;
    }
  }
  assert.equal(total, 3446);
  const n = SPLIT_NAMES.map((s) => a.samples(s).length / total);
  assert.ok(
    Math.abs(n[0] - 0.7) < 0.05 && Math.abs(n[1] - 0.15) < 0.05 && Math.abs(n[2] - 0.15) < 0.05,
    `fractions ${n}`,
  );

  // Second open reads the split file; deleting it and re-splitting with the same seed gives the same bytes.
  const b = await openDataset(spec);
  for (const s of SPLIT_NAMES)
    assert.deepEqual(
      b.samples(s).map((r) => r.path),
      a.samples(s).map((r) => r.path),
    );
  fs.rmSync(file);
  await openDataset(spec);
  assert.deepEqual(fs.readFileSync(file), bytes);
  const other = await openDataset({ ...spec, seed: 4 });
  assert.notDeepEqual(
    other.samples('test').map((r) => r.path),
    a.samples('test').map((r) => r.path),
  );
});

test('malaria re-split by cell: stratified, class proportions kept in every split', { skip }, async () => {
  const ds = await openDataset({ kind: 'malaria', root: MALARIA as string, cacheDir: tmp, splitBy: 'cell' });
  // 1,723 cells per class: round(1723·0.15) = 258 val and test each, 1,207 train.
  assert.deepEqual(ds.info.counts, { train: [1207, 1207], val: [258, 258], test: [258, 258] });
});

/** Copy the first `n` files of every split/class folder (sorted) of a shared set into `dest`. */
function copySubset(src: string, dest: string, n: number): void {
  for (const split of fs.readdirSync(src)) {
    const sd = path.join(src, split);
    if (!fs.statSync(sd).isDirectory()) continue;
    for (const cls of fs.readdirSync(sd)) {
      const files = fs.readdirSync(path.join(sd, cls)).sort().slice(0, n);
      fs.mkdirSync(path.join(dest, split, cls), { recursive: true });
      for (const f of files) fs.copyFileSync(path.join(sd, cls, f), path.join(dest, split, cls, f));
    }
  }
}

test(
  'cache on real PNG and variable-size JPEG: samples = decode + PIL resize, stats over all train pixels',
  { skip },
  async () => {
    for (const [name, src] of [
      ['malaria', MALARIA],
      ['bccd', BCCD],
    ] as const) {
      const root = path.join(tmp, `${name}-subset`);
      copySubset(src as string, root, 6);
      const ds = await openDataset({ kind: 'folder', root, cacheDir: path.join(tmp, 'cache') });
      const data = await ds.prepare({ size: 40, progress: false });
      const hist = new PixelHistogram();
      const sizes = new Set<string>();
      for (let i = 0; i < data.count('train'); i++) {
        const img = await decodeImage(data.paths('train')[i]);
        sizes.add(`${img.width}x${img.height}`);
        const want = resizeBilinear(img, 40, 40).data;
        assert.deepEqual((await data.image('train', i)).data, want, `${name} train[${i}]`);
        hist.add(want);
      }
      const s = hist.stats();
      for (let c = 0; c < 3; c++) {
        assert.ok(Math.abs(data.stats.mean[c] - s.mean[c]) < 1e-12 && Math.abs(data.stats.std[c] - s.std[c]) < 1e-12);
      }
      if (name === 'bccd') assert.ok(sizes.size > 5, 'BCCD crops have many sizes');
      // A second prepare reuses the cache (same index, no rebuild).
      const again = await ds.prepare({ size: 40, progress: false });
      assert.equal(again.index.createdAt, data.index.createdAt);
      data.close();
      again.close();
    }
  },
);
