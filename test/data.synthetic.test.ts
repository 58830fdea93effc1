/**
 * The synthetic set: deterministic by seed (byte-identical files from two runs), labelled synthetic in its
 * folder name, README.txt, dataset.json and the opened Dataset, reused when complete, N = 2…5 classes, and
 * classes that differ in what the renderer draws inside the centre cell.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { openDataset } from '../lib/data/dataset';
import { decodeImage } from '../lib/data/decode';
import { renderSyntheticCell, SYNTHETIC_CLASSES, writeSyntheticDataset } from '../lib/data/synthetic';
import { Rng } from '../lib/util/random';

let tmp: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-synth-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** sha256 of every file under `dir`, keyed by relative path. */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    const p = path.join(dir, rel);
    if (fs.statSync(p).isFile()) out[rel] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  }
  return out;
}

const small = { numClasses: 4, size: 32, perClass: { train: 3, val: 2, test: 1 }, seed: 11 };

test('deterministic by seed: two runs write byte-identical sets; another seed differs', async () => {
  const a = await writeSyntheticDataset({ root: path.join(tmp, 'a'), ...small });
  const b = await writeSyntheticDataset({ root: path.join(tmp, 'b'), ...small });
  assert.equal(path.basename(a), 'synthetic-microscopy-4cls-32px-seed11');
  const ha = hashes(a);
  assert.deepEqual(ha, hashes(b));
  assert.equal(Object.keys(ha).filter((f) => f.endsWith('.png')).length, 4 * 6);
  const c = await writeSyntheticDataset({ root: path.join(tmp, 'c'), ...small, seed: 12 });
  assert.notEqual(hashes(c)['train/uninfected/uninfected_00000.png'], ha['train/uninfected/uninfected_00000.png']);
  const img = await decodeImage(path.join(a, 'test', 'schizont', 'schizont_00000.png'));
  assert.deepEqual([img.width, img.height], [32, 32]);
});

test('labelled synthetic everywhere; reused when complete; opened with the generator class order', async () => {
  const dir = await writeSyntheticDataset({ root: path.join(tmp, 'a'), ...small });
  assert.match(fs.readFileSync(path.join(dir, 'README.txt'), 'utf8'), /^SYNTHETIC DATA: NOT REAL MICROSCOPY/);
  const info = JSON.parse(fs.readFileSync(path.join(dir, 'dataset.json'), 'utf8'));
  assert.equal(info.synthetic, true);
  assert.deepEqual(info.classes, ['uninfected', 'ring-stage', 'trophozoite', 'schizont']);
  const mtime = fs.statSync(path.join(dir, 'train', 'uninfected', 'uninfected_00000.png')).mtimeMs;
  await writeSyntheticDataset({ root: path.join(tmp, 'a'), ...small });
  assert.equal(fs.statSync(path.join(dir, 'train', 'uninfected', 'uninfected_00000.png')).mtimeMs, mtime, 'reused');
  const ds = await openDataset({
    kind: 'synthetic',
    root: path.join(tmp, 'a'),
    ...small,
    cacheDir: path.join(tmp, 'cache'),
  });
  assert.equal(ds.info.synthetic, true);
  assert.equal(ds.info.kind, 'synthetic');
  assert.deepEqual(ds.info.classes, info.classes);
  assert.deepEqual(ds.info.counts.train, [3, 3, 3, 3]);
  assert.match(ds.report(), /\(SYNTHETIC\)/);
  const p = await ds.prepare({ size: 16, progress: false });
  assert.equal(p.synthetic, true);
  assert.equal(p.index.dataset.synthetic, true);
  p.close();
  await assert.rejects(writeSyntheticDataset({ root: tmp, numClasses: 1 }), /numClasses must be 2…5/);
  await assert.rejects(writeSyntheticDataset({ root: tmp, numClasses: 6 }), /numClasses must be 2…5/);
});

test('renderer: same rng state → same image; infected classes put parasite stain in the centre cell', () => {
  for (let label = 0; label < SYNTHETIC_CLASSES.length; label++) {
    assert.deepEqual(renderSyntheticCell(new Rng(5), label, 48).data, renderSyntheticCell(new Rng(5), label, 48).data);
  }
  // Average darkness (sum of 255 − v) inside the central disc over many cells: infected classes carry
  // parasite stain there, so they are darker than uninfected cells on average.
  const centreInk = (label: number) => {
    let ink = 0;
    for (let k = 0; k < 40; k++) {
      const img = renderSyntheticCell(new Rng(100 + k), label, 48);
      for (let y = 16; y < 32; y++) for (let x = 16; x < 32; x++) ink += 255 - img.data[(y * 48 + x) * 3];
    }
    return ink / 40;
  };
  const base = centreInk(0);
  for (let label = 1; label < SYNTHETIC_CLASSES.length; label++)
    assert.ok(centreInk(label) > base, SYNTHETIC_CLASSES[label]);
});
