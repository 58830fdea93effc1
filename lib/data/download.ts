/**
 * Verified, resumable, atomic downloads (what `npm run download` runs; scripts/download.ts is the CLI).
 *
 *   resumable  bytes go to `<file>.part`; after an interruption (dropped connection, idle timeout, Ctrl-C and
 *              a later run) the transfer continues with an HTTP Range request from the partial size. A server
 *              that ignores Range (200 instead of 206) or answers for another offset restarts from zero.
 *   verified   MD5 and/or SHA-256 of the whole file are checked before it is accepted; a mismatch deletes the
 *              partial file and fails, so nothing unverified is ever left under the final name.
 *   atomic     only a verified `.part` is renamed to the final name; archives are extracted into a temporary
 *              folder that is renamed into place when every entry's CRC-32 has been checked.
 *   progress   a redrawn bar on a TTY, a line every 10% otherwise.
 *
 * Catalogue (`planDownload`): MedMNIST (Zenodo record 10519652, MD5 from the medmnist package), the NIH malaria
 * archive (sha256 and size as published by TensorFlow Datasets' `url_checksums/malaria.txt`), and
 * instructions for MHIST, MedFM-Colon and RPE, which need a request form. The base URL can be overridden
 * (`baseUrl`, `--base-url`, or MSM_DOWNLOAD_BASE_URL), which is how the tests use a loopback server.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { DataError, describeError } from './errors';
import { MEDMNIST, MEDMNIST_RECORD_URL, MEDMNIST_SIZES } from './medmnist-info';
import { ZipReader } from './zip';
import { writeFully } from '../util/fs';
import { statusStream } from '../util/status-stream';

export interface RemoteFile {
  url: string;
  /** Final path on disk. */
  file: string;
  md5?: string;
  sha256?: string;
  /** Expected size in bytes, when published. */
  bytes?: number;
}

export interface DownloadOptions {
  /** Attempts after a failed or interrupted transfer (default 5). */
  retries?: number;
  /** Wait before a retry, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** Abort a transfer that receives nothing for this long (default 60 s); it is then resumed. */
  idleTimeoutMs?: number;
  /** Progress display; default: bar on a TTY, lines otherwise. */
  progress?: boolean | ((received: number, total: number | undefined) => void);
  /** Where status lines go (default stderr). */
  log?: (line: string) => void;
}

export interface DownloadResult {
  file: string;
  bytes: number;
  md5: string;
  sha256: string;
  /** A previous partial transfer was continued. */
  resumed: boolean;
  /** The file was already there and verified; nothing was transferred. */
  cached: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    url: string,
  ) {
    super(`HTTP ${status} for ${url}`);
  }
}

/** MD5 and SHA-256 of a file, streamed. */
export async function hashFile(file: string): Promise<{ md5: string; sha256: string; bytes: number }> {
  const md5 = createHash('md5');
  const sha = createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    md5.update(chunk as Buffer);
    sha.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { md5: md5.digest('hex'), sha256: sha.digest('hex'), bytes };
}

/** Compare a file's hashes with what `remote` expects; returns the problem, or undefined when it matches. */
function checksumProblem(remote: RemoteFile, got: { md5: string; sha256: string; bytes: number }): string | undefined {
  if (remote.bytes !== undefined && got.bytes !== remote.bytes)
    return `size ${got.bytes} bytes, expected ${remote.bytes}`;
  if (remote.md5 && got.md5 !== remote.md5.toLowerCase()) return `MD5 ${got.md5}, expected ${remote.md5}`;
  if (remote.sha256 && got.sha256 !== remote.sha256.toLowerCase())
    return `SHA-256 ${got.sha256}, expected ${remote.sha256}`;
  return undefined;
}

function progressPrinter(label: string, option: DownloadOptions['progress']) {
  if (typeof option === 'function') return option;
  if (option === false) return () => undefined;
  const tty = statusStream().isTTY === true;
  const t0 = Date.now();
  let lastDecile = -1;
  const mb = (n: number) => (n / 2 ** 20).toFixed(1);
  return (received: number, total: number | undefined) => {
    const rate = received / 2 ** 20 / Math.max((Date.now() - t0) / 1000, 1e-3);
    if (tty) {
      const frac = total ? received / total : 0;
      const bar = total ? `[${'#'.repeat(Math.round(frac * 30)).padEnd(30, '.')}] ${(frac * 100).toFixed(0)}% ` : '';
      statusStream().write(
        `\r${label} ${bar}${mb(received)}${total ? `/${mb(total)}` : ''} MiB ${rate.toFixed(1)} MiB/s `,
      );
    } else {
      const decile = total ? Math.floor((10 * received) / total) : Math.floor(received / 2 ** 26);
      if (decile !== lastDecile) {
        lastDecile = decile;
        statusStream().write(
          `${label}: ${mb(received)}${total ? ` of ${mb(total)}` : ''} MiB (${rate.toFixed(1)} MiB/s)\n`,
        );
      }
    }
  };
}

/** One GET, following redirects; resolves with the response once headers arrive. */
function get(
  url: string,
  headers: Record<string, string>,
  idleTimeoutMs: number,
  redirects = 5,
): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.get(url, { headers: { 'user-agent': 'microscopic-mamba-ts-download', ...headers } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects === 0) return reject(new Error(`too many redirects at ${url}`));
        return resolve(get(new URL(res.headers.location, url).toString(), headers, idleTimeoutMs, redirects - 1));
      }
      resolve(res);
    });
    req.setTimeout(idleTimeoutMs, () => req.destroy(new Error(`no data for ${idleTimeoutMs} ms`)));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Download `remote.url` to `remote.file`: resume a `.part` file if present, verify, then rename into place.
 * An existing final file that verifies is kept (`cached: true`).
 */
export async function downloadFile(remote: RemoteFile, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const log = opts.log ?? ((line: string) => statusStream().write(line + '\n'));
  const retries = opts.retries ?? 5;
  const idle = opts.idleTimeoutMs ?? 60_000;
  const label = path.basename(remote.file);
  fs.mkdirSync(path.dirname(remote.file), { recursive: true });

  if (fs.existsSync(remote.file)) {
    const got = await hashFile(remote.file);
    const problem = checksumProblem(remote, got);
    if (problem)
      throw new DataError(`exists but does not verify (${problem}); delete it to download again`, remote.file);
    return { file: remote.file, ...got, resumed: false, cached: true };
  }

  const part = `${remote.file}.part`;
  const show = progressPrinter(label, opts.progress);
  let resumed = false;
  let delay = opts.retryDelayMs ?? 1000;
  for (let attempt = 0; ; attempt++) {
    let have = fs.existsSync(part) ? fs.statSync(part).size : 0;
    if (remote.bytes !== undefined && have > remote.bytes) {
      fs.truncateSync(part, 0); // longer than the real file: cannot be a prefix of it
      have = 0;
    }
    try {
      const res = await get(remote.url, have > 0 ? { range: `bytes=${have}-` } : {}, idle);
      const status = res.statusCode ?? 0;
      let total: number | undefined;
      if (status === 416 && have > 0) {
        res.resume();
        break; // the partial file already holds everything: verify it below
      } else if (status === 206) {
        const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== have) {
          res.resume();
          fs.truncateSync(part, 0); // the server answered for another offset: start again
          throw new Error(`server resumed at ${m ? m[1] : '?'} instead of ${have}`);
        }
        if (m[3] !== '*') total = Number(m[3]);
        if (have > 0) {
          resumed = true;
          log(`${label}: resuming at ${have} bytes`);
        }
      } else if (status === 200) {
        if (have > 0) log(`${label}: server ignored the range request; starting over`);
        have = 0;
        const len = Number(res.headers['content-length']);
        if (Number.isFinite(len)) total = len;
      } else {
        res.resume();
        throw new HttpError(status, remote.url);
      }
      total ??= remote.bytes;
      let received = have;
      const expectEnd = have + Number(res.headers['content-length'] ?? NaN);
      // Synchronous appends: every byte received is on disk before the next chunk, so a dropped connection
      // (where a stream pipeline would discard its pending writes) always leaves a prefix to resume from.
      const fd = fs.openSync(part, have > 0 ? 'a' : 'w');
      try {
        await new Promise<void>((resolve, reject) => {
          res.on('data', (chunk: Buffer) => {
            try {
              writeFully(fd, chunk, part);
            } catch (err) {
              // A full disk: stop the transfer and report it (a throw here would crash the process).
              res.destroy();
              reject(err);
              return;
            }
            received += chunk.length;
            show(received, total);
          });
          res.on('end', () => resolve());
          res.on('error', reject);
          res.on('close', () => resolve()); // a premature close is caught by the length check below
        });
      } finally {
        fs.closeSync(fd);
      }
      if (Number.isFinite(expectEnd) && received < expectEnd)
        throw new Error(`connection closed at ${received} of ${expectEnd} bytes`);
      break;
    } catch (e) {
      const fatal = e instanceof HttpError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429;
      if (fatal || attempt >= retries) {
        throw new DataError(
          `download failed (${describeError(e)}); ${fs.existsSync(part) ? 'the partial file is kept for resuming' : 'nothing was saved'}`,
          remote.url,
        );
      }
      log(`${label}: ${describeError(e)}; retrying in ${delay} ms (${attempt + 1}/${retries})`);
      await sleep(delay);
      delay *= 2;
    }
  }
  if (statusStream().isTTY && opts.progress !== false && typeof opts.progress !== 'function')
    statusStream().write('\n');

  const got = await hashFile(part);
  const problem = checksumProblem(remote, got);
  if (problem) {
    fs.rmSync(part, { force: true });
    throw new DataError(`checksum mismatch (${problem}); the corrupted download was deleted`, remote.url);
  }
  const fd = fs.openSync(part, 'r+');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(part, remote.file);
  return { file: remote.file, ...got, resumed, cached: false };
}

/**
 * Extract a ZIP into `dest` atomically: entries go to a temporary sibling folder (CRC-32 checked while
 * writing), which replaces `dest` only when everything succeeded. Entries escaping the folder are refused.
 */
export async function extractZip(
  zipFile: string,
  dest: string,
  opts: { log?: (line: string) => void } = {},
): Promise<number> {
  const zip = ZipReader.open(zipFile);
  const tmp = `${dest}.${process.pid}.${Date.now()}.tmp`;
  let files = 0;
  try {
    fs.mkdirSync(tmp, { recursive: true });
    for (const entry of zip.entries) {
      const name = entry.name.replace(/\\/g, '/');
      if (name.split('/').includes('..') || path.isAbsolute(name)) {
        throw new DataError(`entry '${entry.name}' would be written outside the target folder`, zipFile);
      }
      const out = path.join(tmp, name);
      if (name.endsWith('/')) {
        fs.mkdirSync(out, { recursive: true });
        continue;
      }
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const fd = fs.openSync(out, 'w');
      try {
        for await (const chunk of zip.stream(entry)) writeFully(fd, chunk, out);
      } finally {
        fs.closeSync(fd);
      }
      if (++files % 5000 === 0) opts.log?.(`extracted ${files} files`);
    }
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(tmp, dest);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    zip.close();
  }
  return files;
}

/** NIH/NLM malaria archive: URL and checksum as published by TFDS (tensorflow/datasets url_checksums/malaria.txt). */
export const MALARIA_ARCHIVE = {
  baseUrl: 'https://data.lhncbc.nlm.nih.gov/public/Malaria',
  file: 'cell_images.zip',
  sha256: '0a949556b2414159b5100192609805376654c4266d8d187be9b1922fad43c668',
  bytes: 353452851,
};

/** Datasets that need a request form: where to get them and how to lay them out. */
export const MANUAL_DATASETS: Record<string, string> = {
  mhist: [
    'MHIST (colorectal polyps, HP vs SSA; 3,152 patches of 224×224) is free after a Dataset Research Use Agreement:',
    '  https://bmirds.github.io/MHIST/  (fill in the form; a download link arrives by e-mail)',
    'Unpack images.zip and keep annotations.csv next to it:',
    '  <root>/mhist/images/*.png',
    '  <root>/mhist/annotations.csv      (Image Name, Majority Vote Label, ..., Partition)',
    "Open with: openDataset({ kind: 'mhist', root: '<root>/mhist' })   (val = 10% of train, seeded)",
  ].join('\n'),
  'medfm-colon': [
    'MedFM-Colon (MedFMC ColonPath, NeurIPS 2023 MedFM challenge; 10,009 patches of 1024×1024):',
    '  https://medfm2023.grand-challenge.org/datasets/  (registration; also Scientific Data 10:574, 2023)',
    'Keep the released layout:',
    '  <root>/MedFMC/MedFMC_train/colon/images/*.png + colon_train.csv   (img_id, tumor)',
    '  <root>/MedFMC/MedFMC_val/colon/images/*.png   + colon_val.csv',
    "Open with: openDataset({ kind: 'medfm-colon', root: '<root>/MedFMC' })   (MedFMC_val → test; val = 10% of",
    "train, disjoint by slide). The paper authors' own split is only on Baidu Netdisk (see the official README).",
  ].join('\n'),
  rpe: [
    'RPE (hPSC-derived retinal pigment epithelium maturation; Nanni et al., PLoS ONE 2016, e0149399):',
    '  https://www.ncbi.nlm.nih.gov/pmc/articles/PMC4760937/  (data from the authors on request)',
    'Lay it out as one folder per class (maturation stage):',
    '  <root>/rpe/<class>/*.png|tif|jpg',
    "Open with: openDataset({ kind: 'rpe', root: '<root>/rpe' })   (seeded stratified 70/15/15 split; pass",
    "groupPattern, e.g. '^(.*)_\\d+\\.', to keep sub-windows of one source image in one split).",
  ].join('\n'),
};

export interface DownloadPlan {
  name: string;
  kind: 'medmnist' | 'archive' | 'manual';
  files: RemoteFile[];
  /** For archives: where to extract (the archive is deleted afterwards). */
  extractTo?: string;
  instructions?: string;
}

const ALIASES: Record<string, string> = {
  'nih-malaria': 'malaria',
  sars: 'malaria',
  medfm: 'medfm-colon',
  'medfmc-colon': 'medfm-colon',
};

/** Names `planDownload` knows. */
export function downloadableNames(): string[] {
  return [...Object.keys(MEDMNIST), 'malaria', ...Object.keys(MANUAL_DATASETS)];
}

/** What `npm run download -- <name>` fetches (or explains). */
export function planDownload(name: string, opts: { size?: number; root: string; baseUrl?: string }): DownloadPlan {
  const key = ALIASES[name.toLowerCase()] ?? name.toLowerCase();
  const base = opts.baseUrl ?? process.env.MSM_DOWNLOAD_BASE_URL;
  const info = MEDMNIST[key];
  if (info) {
    const size = opts.size ?? 28;
    if (!(MEDMNIST_SIZES as readonly number[]).includes(size)) {
      throw new DataError(`MedMNIST sizes are ${MEDMNIST_SIZES.join(', ')}, not ${size}`);
    }
    const fileName = size === 28 ? `${key}.npz` : `${key}_${size}.npz`;
    const url = base ? `${base.replace(/\/$/, '')}/${fileName}` : `${MEDMNIST_RECORD_URL}/${fileName}?download=1`;
    return {
      name: key,
      kind: 'medmnist',
      files: [{ url, file: path.join(opts.root, 'medmnist', fileName), md5: info.md5[size as 28 | 64 | 128 | 224] }],
    };
  }
  if (key === 'malaria') {
    const url = `${(base ?? MALARIA_ARCHIVE.baseUrl).replace(/\/$/, '')}/${MALARIA_ARCHIVE.file}`;
    const dir = path.join(opts.root, 'nih-malaria');
    return {
      name: key,
      kind: 'archive',
      files: [
        {
          url,
          file: path.join(dir, MALARIA_ARCHIVE.file),
          sha256: MALARIA_ARCHIVE.sha256,
          bytes: MALARIA_ARCHIVE.bytes,
        },
      ],
      extractTo: path.join(dir, 'cell_images'),
    };
  }
  if (MANUAL_DATASETS[key]) {
    return { name: key, kind: 'manual', files: [], instructions: MANUAL_DATASETS[key].replaceAll('<root>', opts.root) };
  }
  throw new DataError(`unknown dataset '${name}'. Known: ${downloadableNames().join(', ')}`);
}

/**
 * Carry out a plan: download (verified), and for archives extract the folder the archive contains into
 * `extractTo`, then delete the archive. Returns the paths that now hold the data.
 */
export async function runDownload(plan: DownloadPlan, opts: DownloadOptions = {}): Promise<string[]> {
  const log = opts.log ?? ((line: string) => statusStream().write(line + '\n'));
  if (plan.kind === 'manual') {
    log(plan.instructions ?? '');
    return [];
  }
  const out: string[] = [];
  for (const f of plan.files) {
    if (plan.extractTo && fs.existsSync(path.join(plan.extractTo, '.complete.json'))) {
      log(`${plan.name}: already extracted at ${plan.extractTo}`);
      out.push(plan.extractTo);
      continue;
    }
    const r = await downloadFile(f, opts);
    log(
      `${path.basename(f.file)}: ${r.cached ? 'already present, verified' : 'downloaded and verified'} (sha256 ${r.sha256})`,
    );
    if (!plan.extractTo) {
      out.push(r.file);
      continue;
    }
    // The archive holds a top folder (cell_images/); extract next to it, then move that folder into place.
    const staging = `${plan.extractTo}.extract`;
    const n = await extractZip(r.file, staging, { log });
    const inner = path.join(staging, path.basename(plan.extractTo));
    const source = fs.existsSync(inner) ? inner : staging;
    fs.writeFileSync(
      path.join(source, '.complete.json'),
      JSON.stringify({ archive: f.url, sha256: r.sha256, files: n }, null, 2) + '\n',
    );
    fs.rmSync(plan.extractTo, { recursive: true, force: true });
    fs.renameSync(source, plan.extractTo);
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(r.file, { force: true });
    log(`${plan.name}: extracted ${n} files to ${plan.extractTo}`);
    out.push(plan.extractTo);
  }
  return out;
}
