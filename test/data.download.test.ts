/**
 * The download command against a loopback HTTP server (127.0.0.1, nothing leaves the machine) serving
 * fixture archives generated here: a verified download, a transfer cut mid-way that resumes with an HTTP
 * Range request, a partial file left by an earlier run, a server that ignores Range, a corrupted file that
 * is refused and leaves nothing behind, HTTP errors, atomic ZIP extraction, and the catalogue / CLI.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { zipSync } from 'fflate';
import sharp from 'sharp';
import { downloadFile, extractZip, planDownload, runDownload, MALARIA_ARCHIVE } from '../lib/data/download';
import { openDataset } from '../lib/data/dataset';
import { MEDMNIST } from '../lib/data/medmnist-info';
import { parseArgs } from '../scripts/download';

type Mode = 'ok' | 'cut-once' | 'no-range' | 'corrupt' | 'missing';

interface Served {
  body: Buffer;
  mode: Mode;
  requests: Array<{ range?: string }>;
  cuts: number;
}

let tmp: string;
let server: http.Server;
let base: string;
const files = new Map<string, Served>();

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-dl-'));
  server = http.createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '').split('?')[0].slice(1));
    const f = files.get(name);
    if (!f || f.mode === 'missing') {
      res.writeHead(404).end('not found');
      return;
    }
    f.requests.push({ range: req.headers.range });
    let body = f.body;
    if (f.mode === 'corrupt') {
      body = Buffer.from(body);
      body[Math.floor(body.length / 2)] ^= 0xff;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && f.mode !== 'no-range') {
      const start = Number(m[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      res.writeHead(206, {
        'content-length': body.length - start,
        'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
      });
      res.end(body.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': body.length });
    if (f.mode === 'cut-once' && f.cuts === 0) {
      // Send 40% and close the connection, as a flaky network would. (end(), not destroy(): a reset can
      // discard bytes the client has not read yet, and then there is nothing to resume from.)
      f.cuts++;
      res.write(body.subarray(0, Math.floor(body.length * 0.4)), () => res.socket?.end());
      return;
    }
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  fs.rmSync(tmp, { recursive: true, force: true });
});

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const quiet = { progress: false, log: () => undefined, retryDelayMs: 10 } as const;

function serve(name: string, body: Buffer, mode: Mode = 'ok'): Served {
  const f: Served = { body, mode, requests: [], cuts: 0 };
  files.set(name, f);
  return f;
}

function payload(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 7 + (i >> 8)) % 256;
  return b;
}

test('downloads and verifies (MD5), then reuses the verified file', async () => {
  const body = payload(200_000, 1);
  const f = serve('a.npz', body);
  const dest = path.join(tmp, 'a', 'a.npz');
  const r = await downloadFile({ url: `${base}/a.npz`, file: dest, md5: md5(body) }, quiet);
  assert.deepEqual([r.cached, r.resumed, r.bytes, r.sha256], [false, false, body.length, sha256(body)]);
  assert.deepEqual(fs.readFileSync(dest), body);
  assert.ok(!fs.existsSync(`${dest}.part`));
  const again = await downloadFile({ url: `${base}/a.npz`, file: dest, md5: md5(body) }, quiet);
  assert.equal(again.cached, true);
  assert.equal(f.requests.length, 1);
});

test('an interrupted transfer resumes with a Range request and verifies', async () => {
  const body = payload(300_000, 2);
  const f = serve('cut.npz', body, 'cut-once');
  const dest = path.join(tmp, 'cut', 'cut.npz');
  const r = await downloadFile({ url: `${base}/cut.npz`, file: dest, sha256: sha256(body) }, quiet);
  assert.equal(r.resumed, true);
  assert.deepEqual(fs.readFileSync(dest), body);
  assert.equal(f.requests.length, 2);
  assert.equal(f.requests[0].range, undefined);
  assert.match(f.requests[1].range ?? '', /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(f.requests[1].range as string)?.[0]) > 0);
});

test('a partial file from an earlier run is continued; a server that ignores Range restarts cleanly', async () => {
  const body = payload(150_000, 3);
  const f = serve('part.npz', body);
  const dest = path.join(tmp, 'part', 'part.npz');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(`${dest}.part`, body.subarray(0, 50_000));
  const r = await downloadFile({ url: `${base}/part.npz`, file: dest, md5: md5(body), bytes: body.length }, quiet);
  assert.equal(r.resumed, true);
  assert.equal(f.requests[0].range, 'bytes=50000-');
  assert.deepEqual(fs.readFileSync(dest), body);

  const g = serve('norange.npz', body, 'no-range');
  const dest2 = path.join(tmp, 'part', 'norange.npz');
  fs.writeFileSync(`${dest2}.part`, body.subarray(0, 70_000));
  const r2 = await downloadFile({ url: `${base}/norange.npz`, file: dest2, md5: md5(body) }, quiet);
  assert.equal(r2.resumed, false);
  assert.equal(g.requests[0].range, 'bytes=70000-');
  assert.deepEqual(fs.readFileSync(dest2), body);
});

test('a corrupted download is refused and leaves no file behind', async () => {
  const body = payload(120_000, 4);
  serve('bad.npz', body, 'corrupt');
  const dest = path.join(tmp, 'bad', 'bad.npz');
  await assert.rejects(
    downloadFile({ url: `${base}/bad.npz`, file: dest, md5: md5(body) }, quiet),
    /checksum mismatch \(MD5 [0-9a-f]{32}, expected [0-9a-f]{32}\); the corrupted download was deleted/,
  );
  assert.deepEqual(fs.readdirSync(path.dirname(dest)), []);
});

test('HTTP 404 fails at once without retries; a final file that does not verify is refused', async () => {
  const f = serve('gone.npz', Buffer.alloc(10), 'missing');
  const dest = path.join(tmp, 'gone', 'gone.npz');
  await assert.rejects(
    downloadFile({ url: `${base}/gone.npz`, file: dest, md5: md5(Buffer.alloc(10)) }, quiet),
    /HTTP 404/,
  );
  assert.equal(f.requests.length, 0);
  assert.ok(!fs.existsSync(dest));
  fs.writeFileSync(dest, 'tampered');
  await assert.rejects(
    downloadFile({ url: `${base}/gone.npz`, file: dest, md5: md5(Buffer.alloc(10)) }, quiet),
    /exists but does not verify/,
  );
});

test('extractZip: CRC-checked, atomic, refuses entries that escape the folder', async () => {
  const good = Buffer.from(
    zipSync({ 'top/x.txt': new TextEncoder().encode('hello'), 'top/sub/y.bin': payload(5000, 5) }),
  );
  fs.writeFileSync(path.join(tmp, 'good.zip'), good);
  const dest = path.join(tmp, 'extract', 'out');
  assert.equal(await extractZip(path.join(tmp, 'good.zip'), dest), 2);
  assert.equal(fs.readFileSync(path.join(dest, 'top', 'x.txt'), 'utf8'), 'hello');
  assert.deepEqual(fs.readFileSync(path.join(dest, 'top', 'sub', 'y.bin')), payload(5000, 5));

  // Flip a byte of the stored data of x.txt: the CRC check fails and the old folder stays as it was.
  const stored = Buffer.from(zipSync({ 'top/x.txt': [new TextEncoder().encode('hello world'), { level: 0 }] }));
  stored[stored.indexOf('hello world') + 2] ^= 0x01;
  fs.writeFileSync(path.join(tmp, 'bad.zip'), stored);
  await assert.rejects(extractZip(path.join(tmp, 'bad.zip'), dest), /CRC-32 mismatch in entry 'top\/x\.txt'/);
  assert.equal(fs.readFileSync(path.join(dest, 'top', 'x.txt'), 'utf8'), 'hello');
  assert.deepEqual(fs.readdirSync(path.dirname(dest)), ['out']);

  const evil = Buffer.from(zipSync({ '../evil.txt': new TextEncoder().encode('x') }));
  fs.writeFileSync(path.join(tmp, 'evil.zip'), evil);
  await assert.rejects(extractZip(path.join(tmp, 'evil.zip'), path.join(tmp, 'evil-out')), /outside the target folder/);
  assert.ok(!fs.existsSync(path.join(tmp, 'evil.txt')));
});

test('malaria plan end to end on a fixture archive: download, verify, extract, open', async () => {
  const png = await sharp({ create: { width: 5, height: 5, channels: 3, background: '#c08080' } })
    .png()
    .toBuffer();
  const entries: Record<string, Uint8Array> = {};
  for (const cls of ['Parasitized', 'Uninfected']) {
    for (let i = 0; i < 6; i++) entries[`cell_images/${cls}/C${i}P${i}ThinF_IMG_1_cell_${i}.png`] = png;
  }
  const archive = Buffer.from(zipSync(entries));
  serve('Malaria/cell_images.zip', archive, 'cut-once');
  const root = path.join(tmp, 'data');
  const plan = planDownload('sars', { root, baseUrl: `${base}/Malaria` });
  assert.equal(plan.files[0].sha256, MALARIA_ARCHIVE.sha256);
  // The published checksum belongs to the real 353 MB archive; swap in the fixture's.
  plan.files[0] = { ...plan.files[0], sha256: sha256(archive), bytes: archive.length };
  const out = await runDownload(plan, quiet);
  assert.deepEqual(out, [path.join(root, 'nih-malaria', 'cell_images')]);
  assert.ok(!fs.existsSync(path.join(root, 'nih-malaria', 'cell_images.zip')), 'archive removed after extraction');
  const ds = await openDataset({
    kind: 'malaria',
    root: path.join(root, 'nih-malaria'),
    cacheDir: path.join(tmp, 'cache'),
  });
  assert.equal(ds.samples('train').length + ds.samples('val').length + ds.samples('test').length, 12);
  assert.deepEqual(await runDownload(plan, quiet), out); // already extracted: nothing fetched again
});

test('catalogue: MedMNIST URLs and MD5s from the medmnist package, manual sets print instructions, CLI args', async () => {
  const p = planDownload('tissuemnist', { size: 224, root: '/data' });
  assert.equal(p.files[0].url, 'https://zenodo.org/records/10519652/files/tissuemnist_224.npz?download=1');
  assert.equal(p.files[0].file, path.join('/data', 'medmnist', 'tissuemnist_224.npz'));
  assert.equal(p.files[0].md5, MEDMNIST.tissuemnist.md5[224]);
  assert.equal(planDownload('bloodmnist', { root: '/d' }).files[0].md5, '7053d0359d879ad8a5505303e11de1dc');
  assert.equal(planDownload('bloodmnist', { size: 224, root: '/d' }).files[0].md5, 'b718ff6835fcbdb22ba9eacccd7b2601');
  assert.equal(
    planDownload('pathmnist', { root: '/d', baseUrl: 'http://h/x/' }).files[0].url,
    'http://h/x/pathmnist.npz',
  );
  assert.throws(() => planDownload('tissuemnist', { size: 32, root: '/d' }), /sizes are 28, 64, 128, 224/);
  assert.throws(() => planDownload('nosuchset', { root: '/d' }), /unknown dataset 'nosuchset'/);
  for (const name of ['mhist', 'medfm-colon', 'rpe']) {
    const lines: string[] = [];
    assert.deepEqual(await runDownload(planDownload(name, { root: '/d' }), { log: (l) => lines.push(l) }), []);
    assert.match(lines.join('\n'), /https:\/\//);
  }
  const args = parseArgs(['bloodmnist', '--size', '64', '--root', tmp, '--base-url', base]);
  assert.deepEqual([args.names, args.size, args.root, args.baseUrl], [['bloodmnist'], 64, tmp, base]);
  assert.throws(() => parseArgs(['--bogus']), /unknown flag --bogus/);
});

test('a real MedMNIST name through a base-URL override: bytes that do not match its MD5 are refused', async () => {
  serve('bloodmnist.npz', payload(1000, 6));
  const root = path.join(tmp, 'cat');
  const plan = planDownload('bloodmnist', { root, baseUrl: base });
  await assert.rejects(
    runDownload(plan, quiet),
    /checksum mismatch \(MD5 .*expected 7053d0359d879ad8a5505303e11de1dc\)/,
  );
  assert.deepEqual(fs.readdirSync(path.join(root, 'medmnist')), []);
});
