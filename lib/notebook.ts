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

/**
 * Where a dataset file or folder `name` is, or undefined when it is absent. Looks in the repo's own
 * `data/<name>` first (where the README tells users to put downloads, possibly a symlink), then in the
 * shared folder beside the checkout, `../shared/data/<name>`.
 */
export function sharedDataPath(name: string): string | undefined {
  const candidates = [repoPath('data', name), path.resolve(REPO_ROOT, '..', 'shared', 'data', name)];
  return candidates.find((p) => fs.existsSync(p));
}
