/**
 * Small helpers every notebook uses: smoke mode and paths that do not depend on the kernel's cwd.
 *
 * Smoke mode: `scripts/run-notebooks.ts --smoke` (what `npm test` and CI run) sets MSM_SMOKE=1 in the
 * kernel's environment, and each notebook shrinks its work with `smoke(full, small)` (fewer epochs,
 * smaller images, a data subset) so that every notebook runs end to end in CI in seconds to minutes.
 *
 * Import from a notebook as `import { smoke, repoPath } from './lib/notebook'`: the kit's tslab kernel
 * runs with the repository root as its cwd (scripts/tslab-kernel.sh explains why).
 */
import * as fs from 'fs';
import * as path from 'path';
import { defaultDataRoot, sharedDataDir } from './data/paths';

/** Absolute path of the repository root (this file lives in <root>/lib). */
export const REPO_ROOT = path.resolve(__dirname, '..');

/** True when notebooks run in smoke mode (MSM_SMOKE=1). */
export function isSmoke(): boolean {
  return process.env.MSM_SMOKE === '1';
}

/** `full` normally, `small` in smoke mode, e.g. `const epochs = smoke(100, 1)`. */
export function smoke<T>(full: T, small: T): T {
  return isSmoke() ? small : full;
}

/** Absolute path from the repository root, e.g. `repoPath('runs', 'exp1')`, whatever the kernel's cwd. */
export function repoPath(...parts: string[]): string {
  return path.join(REPO_ROOT, ...parts);
}

/** A dataset a notebook found, and where: the user's download or the team's shared folder. */
export interface FoundDataset {
  path: string;
  source: 'downloaded' | 'shared';
}

/**
 * Where a dataset is, trying each of `names` (the forms it may have) in order: first the repo's own
 * `data/<name>` (what `npm run download` creates, e.g. `data/nih-malaria`; or a symlink put there), then
 * the team's shared folder (`../shared/data/<name>`, or MSM_SHARED_DATA / MSM_SHARED), which a clone does
 * not have. Undefined when none is there: the notebook then falls back to the synthetic set and says so.
 */
export function findDataset(...names: string[]): FoundDataset | undefined {
  for (const name of names) {
    const p = path.join(defaultDataRoot(), name);
    if (fs.existsSync(p)) return { path: p, source: 'downloaded' };
  }
  const shared = sharedDataDir();
  for (const name of shared ? names : []) {
    const p = path.join(shared!, name);
    if (fs.existsSync(p)) return { path: p, source: 'shared' };
  }
  return undefined;
}

/** The NIH malaria cells: `npm run download -- malaria` (all cells), else the team's 128 px split subset. */
export function findMalariaCells(): FoundDataset | undefined {
  return findDataset('nih-malaria', 'nih-malaria-cells-128');
}

/**
 * Folder of class `cls` in an image-folder dataset, whatever its layout: `<root>/<split>/<cls>` (a split
 * copy such as the shared subset), `<root>/cell_images/<cls>` (the NLM archive as downloaded) or `<root>/<cls>`.
 */
export function classFolder(root: string, cls: string, split = 'test'): string {
  const candidates = [path.join(root, split, cls), path.join(root, 'cell_images', cls), path.join(root, cls)];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found)
    throw new Error(`${root}: no class folder '${cls}' (looked for ${split}/${cls}, cell_images/${cls}, ${cls})`);
  return found;
}
