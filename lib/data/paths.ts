/**
 * Where data lives by default.
 *
 *   repo root       the nearest folder above this file with a package.json (works from lib/ and dist/lib/)
 *   data root      `<repo>/data` (git-ignored), or MSM_DATA_ROOT
 *   cache dir      `<data root>/.cache`, or MSM_DATA_CACHE
 *   shared folder  `<repo>/../shared` (the team's real test data and fixtures; a clone does not have it and
 *                  needs nothing from it), or MSM_SHARED
 *   shared data    `<shared folder>/data`, or MSM_SHARED_DATA
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

let cachedRoot: string | undefined;

/** The checkout's root folder (holds package.json). */
export function repoRoot(): string {
  if (cachedRoot) return cachedRoot;
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return (cachedRoot = dir);
    const up = path.dirname(dir);
    if (up === dir) return (cachedRoot = process.cwd());
    dir = up;
  }
}

/** Default root for downloaded / generated datasets. */
export function defaultDataRoot(): string {
  return process.env.MSM_DATA_ROOT ? path.resolve(process.env.MSM_DATA_ROOT) : path.join(repoRoot(), 'data');
}

/** Default folder for decoded-sample caches and split files. */
export function defaultCacheDir(): string {
  return process.env.MSM_DATA_CACHE ? path.resolve(process.env.MSM_DATA_CACHE) : path.join(defaultDataRoot(), '.cache');
}

/** Where the shared folder would be: MSM_SHARED, or `../shared` beside the checkout (it may not exist). */
export function sharedRootPath(): string {
  return process.env.MSM_SHARED ? path.resolve(process.env.MSM_SHARED) : path.resolve(repoRoot(), '..', 'shared');
}

/** The shared folder (MSM_SHARED or `../shared`); undefined when it is absent. */
export function sharedDir(): string | undefined {
  const dir = sharedRootPath();
  return fs.existsSync(dir) ? dir : undefined;
}

/** The shared real-data folder (MSM_SHARED_DATA, or `<shared folder>/data`); undefined when it is absent. */
export function sharedDataDir(): string | undefined {
  const dir = process.env.MSM_SHARED_DATA
    ? path.resolve(process.env.MSM_SHARED_DATA)
    : path.join(sharedRootPath(), 'data');
  return fs.existsSync(dir) ? dir : undefined;
}

/**
 * The per-dataset folder inside a cache dir: `<cacheDir>/<name>-<8 hex of kind + absolute source path>`,
 * so two datasets with the same folder name never share a cache or split file.
 */
export function datasetCacheFolder(cacheDir: string, kind: string, name: string, source: string): string {
  const h = createHash('sha256')
    .update(`${kind}\u0000${path.resolve(source)}`)
    .digest('hex')
    .slice(0, 8);
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, '_');
  return path.join(cacheDir, `${safe}-${h}`);
}
