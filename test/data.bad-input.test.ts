/**
 * A folder of deliberately broken inputs: every problem must surface as a DataError naming the file and
 * the problem (or, with skipBad, as a skip report), before anything reaches tfjs, and a failed cache build
 * must leave no cache files behind (an older valid cache is never replaced by a partial one).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { openDataset } from '../lib/data/dataset';
import { decodeImage, decodeBmp } from '../lib/data/decode';
import { DataError } from '../lib/data/errors';

let tmp: string;
let png: Buffer;
let jpg: Buffer;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bad-'));
  const rgb = Buffer.alloc(20 * 20 * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37) % 251;
  png = await sharp(rgb, { raw: { width: 20, height: 20, channels: 3 } })
    .png()
    .toBuffer();
  jpg = await sharp(rgb, { raw: { width: 20, height: 20, channels: 3 } })
    .jpeg()
    .toBuffer();
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A class-layout folder with good images in classes a and b, plus `extra` files (relative path → bytes). */
function makeFolder(name: string, extra: Record<string, Buffer | string | null> = {}): string {
  const root = path.join(tmp, name);
  for (const cls of ['a', 'b']) {
    fs.mkdirSync(path.join(root, cls), { recursive: true });
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(root, cls, `good${i}.png`), png);
  }
  for (const [rel, bytes] of Object.entries(extra)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (bytes === null) fs.mkdirSync(p, { recursive: true });
    else fs.writeFileSync(p, bytes);
  }
  return root;
}

/** A baseline uncompressed 16-bit greyscale TIFF (little-endian), written by hand (TIFF 6.0 §3, §8). */
function tiff16(width: number, height: number, values: Uint16Array): Buffer {
  const entries: Array<[number, number, number]> = [
    [256, 3, width], // ImageWidth
    [257, 3, height], // ImageLength
    [258, 3, 16], // BitsPerSample
    [259, 3, 1], // Compression: none
    [262, 3, 1], // PhotometricInterpretation: BlackIsZero
    [273, 4, 0], // StripOffsets (patched below)
    [277, 3, 1], // SamplesPerPixel
    [278, 3, height], // RowsPerStrip
    [279, 4, values.length * 2], // StripByteCounts
  ];
  const ifdSize = 2 + entries.length * 12 + 4;
  const dataAt = 8 + ifdSize;
  const buf = Buffer.alloc(dataAt + values.length * 2);
  buf.write('II', 0, 'latin1');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(8, 4);
  buf.writeUInt16LE(entries.length, 8);
  entries.forEach(([tag, type, value], k) => {
    const at = 10 + 12 * k;
    buf.writeUInt16LE(tag, at);
    buf.writeUInt16LE(type, at + 2);
    buf.writeUInt32LE(1, at + 4);
    if (type === 3) buf.writeUInt16LE(value, at + 8);
    else buf.writeUInt32LE(tag === 273 ? dataAt : value, at + 8);
  });
  values.forEach((v, i) => buf.writeUInt16LE(v, dataAt + 2 * i));
  return buf;
}

const open = (root: string, skipBad = false) =>
  openDataset({ kind: 'folder', root, cacheDir: path.join(tmp, 'cache'), skipBad });

/** Expect a DataError about `file` whose message matches `problem`. */
async function rejectsWith(p: Promise<unknown>, file: string, problem: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`);
    assert.equal(e.file, file);
    assert.match(e.problem, problem);
    assert.ok(e.message.startsWith(file));
    return true;
  });
}

test('decodeImage names the file: zero bytes, not an image, truncated PNG and JPEG, unreadable path', async () => {
  const dir = path.join(tmp, 'singles');
  fs.mkdirSync(dir);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['empty.png', Buffer.alloc(0), /empty file \(0 bytes\)/],
    ['text.png', Buffer.from('just some text, not a PNG'), /not an image: unrecognised file signature/],
    ['cut.png', png.subarray(0, Math.floor(png.length / 2)), /cannot decode png image/],
    ['cut.jpg', jpg.subarray(0, Math.floor(jpg.length / 2)), /cannot decode jpeg image/],
    ['cut.bmp', Buffer.from('BM\x00\x00'), /cannot decode bmp image \(file too short/],
  ];
  for (const [name, bytes, problem] of cases) {
    const f = path.join(dir, name);
    fs.writeFileSync(f, bytes);
    await rejectsWith(decodeImage(f), f, problem);
  }
  const missing = path.join(dir, 'missing.png');
  await rejectsWith(decodeImage(missing), missing, /cannot read file \(ENOENT/);
  await rejectsWith(decodeImage(dir), dir, /cannot read file \(EISDIR/);
});

test('grey, RGBA, palette and 16-bit inputs decode to RGB uint8; BMP is decoded without sharp', async () => {
  const grey = await sharp(Buffer.from([0, 100, 200, 255]), { raw: { width: 2, height: 2, channels: 1 } })
    .png()
    .toBuffer();
  assert.deepEqual(Array.from((await decodeImage(grey)).data), [0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
  const rgba = await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 128]), { raw: { width: 2, height: 1, channels: 4 } })
    .png()
    .toBuffer();
  assert.deepEqual(Array.from((await decodeImage(rgba)).data), [10, 20, 30, 40, 50, 60]); // alpha dropped, not composited
  const palette = await sharp(Buffer.from([200, 10, 10, 10, 200, 10]), { raw: { width: 2, height: 1, channels: 3 } })
    .png({ palette: true, colours: 2, dither: 0 })
    .toBuffer();
  assert.deepEqual(Array.from((await decodeImage(palette)).data), [200, 10, 10, 10, 200, 10]);
  const deep = Uint16Array.from([0, 257 * 31, 65535, 257 * 200]);
  const png16 = await sharp(deep, { raw: { width: 2, height: 2, channels: 1 } })
    .toColourspace('grey16')
    .png()
    .toBuffer();
  assert.equal((await sharp(png16).metadata()).depth, 'ushort');
  for (const [fmt, buf] of [
    ['png', png16],
    ['tiff', tiff16(2, 2, deep)],
  ] as const) {
    assert.deepEqual(
      Array.from((await decodeImage(buf)).data).filter((_, i) => i % 3 === 0),
      [0, 31, 255, 200],
      fmt,
    );
  }
  // 2×2 24-bit bottom-up BMP: rows padded to 8 bytes, BGR order.
  const bmp = Buffer.alloc(54 + 16);
  bmp.write('BM', 0, 'latin1');
  bmp.writeUInt32LE(bmp.length, 2);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(2, 18);
  bmp.writeInt32LE(2, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  Buffer.from([3, 2, 1, 6, 5, 4, 0, 0, 9, 8, 7, 12, 11, 10, 0, 0]).copy(bmp, 54); // bottom row first
  assert.deepEqual(Array.from(decodeBmp(bmp).data), [7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual((await decodeImage(bmp)).data, decodeBmp(bmp).data);
});

test('folder problems are errors naming the path; skipBad reports and skips them instead', async () => {
  const truncated = png.subarray(0, 60);
  const cases: Array<[string, Record<string, Buffer | string | null>, string, RegExp]> = [
    ['zero', { 'a/zero.png': Buffer.alloc(0) }, 'a/zero.png', /empty file \(0 bytes\)/],
    ['txt', { 'b/notes.txt': 'hello' }, 'b/notes.txt', /not an image file \(extension '\.txt'/],
    ['emptycls', { c: null }, 'c', /empty class folder/],
  ];
  for (const [name, extra, rel, problem] of cases) {
    const root = makeFolder(name, extra);
    await rejectsWith(open(root), path.join(root, rel), problem);
    const ds = await open(root, true);
    assert.deepEqual(ds.info.skipped, [{ file: path.join(root, rel), problem: ds.info.skipped[0].problem }]);
    assert.match(ds.info.skipped[0].problem, problem);
    assert.deepEqual(ds.info.classes, ['a', 'b']);
  }
  // Content problems show up when decoding (the cache build): a truncated PNG and a text file named .jpg.
  const root = makeFolder('content', { 'a/broken.png': truncated, 'b/fake.jpg': 'not a jpeg' });
  const ds = await open(root);
  await rejectsWith(ds.prepare({ size: 8, progress: false }), path.join(root, 'a/broken.png'), /cannot decode png/);
  const cacheFiles = fs.readdirSync(ds.info.cacheFolder);
  assert.ok(!cacheFiles.some((f) => /^s8\.(bin|json)|\.tmp$/.test(f)), `left behind: ${cacheFiles.join(', ')}`);
  const lenient = await open(root, true);
  const data = await lenient.prepare({ size: 8, progress: false });
  assert.deepEqual(
    data.skipped.map((s) => path.basename(s.file)),
    ['broken.png', 'fake.jpg'].filter((f) => data.skipped.some((s) => s.file.endsWith(f))),
  );
  assert.equal(data.skipped.length, 2);
  assert.equal(data.count('train') + data.count('val') + data.count('test'), 8);
  assert.ok(data.paths('train').every((p) => p.includes('good')));
  data.close();
  // Reopening the cached set without skipBad still refuses the bad files the cache remembers.
  await rejectsWith((await open(root)).prepare({ size: 8, progress: false }), data.skipped[0].file, /cannot decode/);
  assert.equal(tf.memory().numTensors, 0);
});

test('dataset-level problems: single class, no images, missing root, image outside a class folder', async () => {
  const single = path.join(tmp, 'single');
  fs.mkdirSync(path.join(single, 'only'), { recursive: true });
  fs.writeFileSync(path.join(single, 'only', 'x.png'), png);
  await rejectsWith(open(single), single, /only one class found \('only'\)/);
  await rejectsWith(open(single, true), single, /only one class/);

  const none = path.join(tmp, 'none');
  fs.mkdirSync(none);
  fs.writeFileSync(path.join(none, 'README.md'), '# nothing');
  await rejectsWith(open(none), none, /no images found/);

  const missing = path.join(tmp, 'does-not-exist');
  await rejectsWith(open(missing), missing, /dataset root not found/);

  const loose = path.join(tmp, 'loose');
  for (const cls of ['a', 'b']) {
    fs.mkdirSync(path.join(loose, 'train', cls), { recursive: true });
    fs.writeFileSync(path.join(loose, 'train', cls, '1.png'), png);
  }
  fs.writeFileSync(path.join(loose, 'train', 'stray.png'), png);
  await rejectsWith(open(loose), path.join(loose, 'train', 'stray.png'), /outside a class folder/);

  const dangling = makeFolder('dangling');
  fs.symlinkSync(path.join(tmp, 'nowhere.png'), path.join(dangling, 'a', 'link.png'));
  await rejectsWith(open(dangling), path.join(dangling, 'a', 'link.png'), /not a regular file/);
});

test('a failed rebuild never replaces or corrupts: the stale cache is not used, no partial files remain', async () => {
  const root = makeFolder('rebuild');
  const ds = await open(root);
  const good = await ds.prepare({ size: 8, progress: false });
  good.close();
  // Damage one file (new size and mtime → new fingerprint): the rebuild fails and leaves no temp files.
  const victim = path.join(root, 'b', 'good2.png');
  fs.writeFileSync(victim, png.subarray(0, 70));
  const reopened = await open(root);
  await rejectsWith(reopened.prepare({ size: 8, progress: false }), victim, /cannot decode png/);
  assert.ok(!fs.readdirSync(reopened.info.cacheFolder).some((f) => f.endsWith('.tmp')));
  // Repair it: the next prepare rebuilds (new createdAt) instead of trusting the old index.
  fs.writeFileSync(victim, png);
  const fixed = await (await open(root)).prepare({ size: 8, progress: false });
  assert.notEqual(fixed.index.createdAt, good.index.createdAt);
  fixed.close();
});
