/**
 * .npy/.npz reading and the MedMNIST source, on fixtures generated here: np.savez-style (stored) and
 * np.savez_compressed-style (deflated) archives written with fflate, and a ZIP64 archive written by hand in
 * numpy's layout (ZIP64 extra fields on every member). CRCs are checked against Node's zlib.crc32.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { zipSync } from 'fflate';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend/index';
import { openDataset } from '../lib/data/dataset';
import { parseNpyHeader, NpzFile } from '../lib/data/npz';
import { crc32 } from '../lib/data/zip';
import { resizeBilinear } from '../lib/data/resample';
import { DataError } from '../lib/data/errors';

let dir: string;
before(async () => {
  await initBackend('cpu', { quiet: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-npz-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** An .npy file as numpy writes it (header padded with spaces to a multiple of 64, ending in '\n'). */
function npy(descr: string, shape: number[], data: Uint8Array, major = 1): Uint8Array {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const pre = major === 1 ? 10 : 12;
  const len = Math.ceil((pre + dict.length + 1) / 64) * 64 - pre;
  const header = dict.padEnd(len - 1, ' ') + '\n';
  const out = new Uint8Array(pre + len + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, len, true);
  else dv.setUint32(8, len, true);
  out.set(Buffer.from(header, 'latin1'), pre);
  out.set(data, pre + len);
  return out;
}

/** Deterministic fake dataset: n grey s×s images (or RGB) and labels cycling through k classes. */
function arrays(n: number, s: number, k: number, rgb = false, seed = 1) {
  const c = rgb ? 3 : 1;
  const images = new Uint8Array(n * s * s * c);
  for (let i = 0; i < images.length; i++) images[i] = (i * 31 + seed * 17 + ((i * i) % 7)) % 256;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % k);
  return { images, labels, shape: rgb ? [n, s, s, 3] : [n, s, s] };
}

type Members = Record<string, Uint8Array>;

function medmnistMembers(s: number, k: number, rgb = false, n = { train: 12, val: 6, test: 5 }): Members {
  const m: Members = {};
  for (const [split, count] of Object.entries(n)) {
    const a = arrays(count, s, k, rgb, split.length);
    m[`${split}_images.npy`] = npy('|u1', a.shape, a.images);
    m[`${split}_labels.npy`] = npy('|u1', [count, 1], a.labels);
  }
  return m;
}

function writeNpz(name: string, members: Members, level: 0 | 6): string {
  const file = path.join(dir, name);
  const input = Object.fromEntries(Object.entries(members).map(([k, v]) => [k, [v, { level }]])) as Parameters<
    typeof zipSync
  >[0];
  fs.writeFileSync(file, zipSync(input));
  return file;
}

/** A stored ZIP in numpy's ZIP64 style: sizes and offsets only in ZIP64 extra fields, ZIP64 end records. */
function writeZip64(name: string, members: Members): string {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [entry, data] of Object.entries(members)) {
    const nameBuf = Buffer.from(entry);
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30 + nameBuf.length + 20);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(45, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(0xffffffff, 18);
    local.writeUInt32LE(0xffffffff, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(20, 28);
    nameBuf.copy(local, 30);
    local.writeUInt16LE(1, 30 + nameBuf.length);
    local.writeUInt16LE(16, 32 + nameBuf.length);
    local.writeBigUInt64LE(BigInt(data.length), 34 + nameBuf.length);
    local.writeBigUInt64LE(BigInt(data.length), 42 + nameBuf.length);
    const cd = Buffer.alloc(46 + nameBuf.length + 28);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(45, 4);
    cd.writeUInt16LE(45, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(0xffffffff, 20);
    cd.writeUInt32LE(0xffffffff, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt16LE(28, 30);
    cd.writeUInt32LE(0xffffffff, 42);
    nameBuf.copy(cd, 46);
    const x = 46 + nameBuf.length;
    cd.writeUInt16LE(1, x);
    cd.writeUInt16LE(24, x + 2);
    cd.writeBigUInt64LE(BigInt(data.length), x + 4);
    cd.writeBigUInt64LE(BigInt(data.length), x + 12);
    cd.writeBigUInt64LE(BigInt(offset), x + 20);
    parts.push(local, Buffer.from(data));
    central.push(cd);
    offset += local.length + data.length;
  }
  const cdBuf = Buffer.concat(central);
  const eocd64 = Buffer.alloc(56);
  eocd64.writeUInt32LE(0x06064b50, 0);
  eocd64.writeBigUInt64LE(44n, 4);
  eocd64.writeUInt16LE(45, 12);
  eocd64.writeUInt16LE(45, 14);
  eocd64.writeBigUInt64LE(BigInt(central.length), 24);
  eocd64.writeBigUInt64LE(BigInt(central.length), 32);
  eocd64.writeBigUInt64LE(BigInt(cdBuf.length), 40);
  eocd64.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + cdBuf.length), 8);
  locator.writeUInt32LE(1, 16);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(0xffff, 8);
  eocd.writeUInt16LE(0xffff, 10);
  eocd.writeUInt32LE(0xffffffff, 12);
  eocd.writeUInt32LE(0xffffffff, 16);
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([...parts, cdBuf, eocd64, locator, eocd]));
  return file;
}

const grey2rgb = (g: Uint8Array) => Uint8Array.from({ length: g.length * 3 }, (_, i) => g[Math.floor(i / 3)]);

test('crc32 matches zlib.crc32', () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 13) % 256);
  assert.equal(crc32(data), zlib.crc32(data));
  assert.equal(crc32(data.subarray(600), crc32(data.subarray(0, 600))), zlib.crc32(data));
});

test('parseNpyHeader: v1 and v2 headers, and clear errors for unsupported arrays', () => {
  const a = parseNpyHeader(npy('|u1', [3, 4, 5], new Uint8Array(60)), 'a');
  assert.deepEqual([a?.descr, a?.shape, a?.dataOffset], ['|u1', [3, 4, 5], 128]);
  const b = parseNpyHeader(npy('<i8', [7], new Uint8Array(56), 2), 'b');
  assert.deepEqual([b?.kind, b?.itemBytes, b?.shape, (b?.dataOffset ?? 0) % 64], ['i', 8, [7], 0]);
  assert.equal(parseNpyHeader(npy('|u1', [2], new Uint8Array(2)).subarray(0, 20), 'short'), undefined);
  const fortran = Buffer.from(npy('|u1', [2, 2], new Uint8Array(4)))
    .toString('latin1')
    .replace('False', 'True ');
  assert.throws(() => parseNpyHeader(Buffer.from(fortran, 'latin1'), 'f'), /Fortran/);
  assert.throws(() => parseNpyHeader(npy('>i4', [1], new Uint8Array(4)), 'be'), /big-endian/);
  assert.throws(() => parseNpyHeader(new Uint8Array(16), 'junk'), /bad magic/);
});

for (const [kind, level] of [
  ['stored (np.savez)', 0],
  ['deflated (np.savez_compressed)', 6],
] as const) {
  test(`MedMNIST npz, ${kind}: labels, grey → RGB, cache at native and other sizes, originals`, async () => {
    const members = medmnistMembers(8, 3);
    const file = writeNpz(`synthetic-fixture-${level}.npz`, members, level);
    const ds = await openDataset({ kind: 'medmnist', file, cacheDir: path.join(dir, 'cache') });
    assert.deepEqual(ds.info.classes, ['0', '1', '2']);
    assert.deepEqual(ds.info.counts, { train: [4, 4, 4], val: [2, 2, 2], test: [2, 2, 1] });
    const ref = arrays(12, 8, 3, false, 'train'.length);
    const native = await ds.prepare({ size: 8, progress: false });
    for (const i of [0, 5, 11]) {
      const want = grey2rgb(ref.images.subarray(i * 64, (i + 1) * 64));
      assert.deepEqual((await native.image('train', i)).data, want);
      assert.deepEqual((await ds.readOriginal('train', i)).data, want);
    }
    // Grey sources are cached with one channel (a third of the disk) and expanded to RGB on read.
    assert.equal(native.index.channels, 1);
    assert.equal(fs.statSync(path.join(ds.info.cacheFolder, 's8.bin')).size, 23 * 8 * 8);
    const big = await ds.prepare({ size: 13, progress: false });
    const img0 = { data: grey2rgb(ref.images.subarray(0, 64)), width: 8, height: 8 };
    assert.deepEqual((await big.image('train', 0)).data, resizeBilinear(img0, 13, 13).data);
    assert.deepEqual(Array.from(big.labels('train')), Array.from(ref.labels));
    assert.match(big.paths('val')[1], /:val_images\[1\]$/);
    native.close();
    big.close();
    ds.close();
  });
}

test('RGB npz with a known MedMNIST name uses the catalogue class names', async () => {
  // pneumoniamnist_64.npz naming, but tiny 6×6 RGB arrays: only the name decides the classes.
  const file = writeNpz('pneumoniamnist_64.npz', medmnistMembers(6, 2, true), 6);
  const ds = await openDataset({ kind: 'medmnist', file, cacheDir: path.join(dir, 'cache') });
  assert.deepEqual(ds.info.classes, ['normal', 'pneumonia']);
  const p = await ds.prepare({ size: 6, progress: false });
  assert.equal(p.index.channels, 3);
  const ref = arrays(12, 6, 2, true, 'train'.length);
  assert.deepEqual((await p.image('train', 3)).data, ref.images.subarray(3 * 108, 4 * 108));
  p.close();
});

test('ZIP64 npz (numpy layout) reads by random access and by streaming', async () => {
  const members = medmnistMembers(5, 2);
  const file = writeZip64('zip64.npz', members);
  const npz = await NpzFile.open(file);
  assert.deepEqual(npz.get('train_images').header.shape, [12, 5, 5]);
  assert.equal(npz.isRandomAccess('train_images'), true);
  const ref = arrays(12, 5, 2, false, 'train'.length);
  assert.deepEqual(npz.readRecord('train_images', 7), ref.images.subarray(7 * 25, 8 * 25));
  let i = 0;
  for await (const rec of npz.records('train_images')) assert.deepEqual(rec, ref.images.subarray(25 * i, 25 * ++i));
  assert.equal(i, 12);
  npz.close();
  const ds = await openDataset({ kind: 'medmnist', file, cacheDir: path.join(dir, 'cache') });
  assert.deepEqual(ds.info.counts.test, [3, 2]);
});

test('bad npz: mismatched keys, sample counts, dtypes, label range, multi-label, truncation, corruption', async () => {
  const cacheDir = path.join(dir, 'cache-bad');
  const open = (file: string, skipBad = false) => openDataset({ kind: 'medmnist', file, cacheDir, skipBad });
  const m = medmnistMembers(4, 2);

  const noLabels = { ...m };
  delete noLabels['val_labels.npy'];
  await assert.rejects(open(writeNpz('nolabels.npz', noLabels, 0)), /'val_images' has no matching 'val_labels'/);

  const counts = { ...m, 'test_labels.npy': npy('|u1', [4, 1], new Uint8Array(4)) };
  await assert.rejects(open(writeNpz('counts.npz', counts, 0)), /test_images has 5 samples but test_labels has 4/);

  const floats = { ...m, 'train_images.npy': npy('<f4', [12, 4, 4], new Uint8Array(12 * 16 * 4)) };
  await assert.rejects(
    open(writeNpz('floats.npz', floats, 0)),
    /train_images: images must be uint8, found dtype '<f4'/,
  );

  const badLabels = arrays(12, 4, 2).labels;
  badLabels[3] = 2; // breastmnist has 2 classes
  const range = { ...m, 'train_labels.npy': npy('|u1', [12, 1], badLabels) };
  const rangeFile = writeNpz('breastmnist.npz', range, 6);
  await assert.rejects(open(rangeFile), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.match(e.message, /breastmnist\.npz:train_labels\[3\]: label 2 is out of range \[0, 2\)/);
    return true;
  });
  const skipped = await open(rangeFile, true);
  assert.equal(skipped.info.skipped.length, 1);
  assert.equal(skipped.samples('train').length, 11);

  const multi = { ...m, 'train_labels.npy': npy('|u1', [12, 3], new Uint8Array(36)) };
  await assert.rejects(open(writeNpz('multi.npz', multi, 0)), /single-label/);
  await assert.rejects(open(writeNpz('chestmnist.npz', m, 0)), /multi-label task/);

  const whole = fs.readFileSync(writeNpz('whole.npz', m, 6));
  const truncated = path.join(dir, 'truncated.npz');
  fs.writeFileSync(truncated, whole.subarray(0, whole.length - 60));
  await assert.rejects(open(truncated), /truncated\.npz: not a valid zip archive/);
  await assert.rejects(open(path.join(dir, 'missing.npz')), /missing\.npz: npz file not found/);

  // Damage the deflated train images: the stream check (inflate error or CRC-32) must refuse the file, at
  // open or at caching, and leave no cache files behind.
  const corrupt = Buffer.from(whole);
  const zip = await NpzFile.open(writeNpz('corrupt.npz', m, 6));
  const e = zip.get('train_images').entry;
  const start = zip.zip.dataOffset(e);
  zip.close();
  for (let i = start + 40; i < start + e.compressedSize - 4; i++) corrupt[i] ^= 0x5a;
  const corruptFile = path.join(dir, 'corrupt.npz');
  fs.writeFileSync(corruptFile, corrupt);
  await assert.rejects(
    (async () => (await open(corruptFile)).prepare({ size: 4, progress: false }))(),
    /corrupt\.npz: (corrupt data|CRC-32 mismatch)/,
  );
  const leftovers = fs.existsSync(cacheDir)
    ? fs
        .readdirSync(cacheDir, { recursive: true })
        .map(String)
        .filter((f) => /\.(bin|json|tmp)$/.test(f))
    : [];
  assert.deepEqual(leftovers, []);
  assert.equal(tf.memory().numTensors, 0);
});
