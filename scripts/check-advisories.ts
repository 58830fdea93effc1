/**
 * `npm run advisories` (part of `npm run check`): offline advisory check of the production dependency tree.
 *
 * Reads package-lock.json (every installed package with its version; entries marked `dev` are left out
 * unless --dev) and scripts/advisories.json (known critical/high advisories with OSV-style version ranges),
 * prints every match, and exits 1 when one is at or above --fail-on (default critical). No network: the
 * advisory list is committed and updated by hand, so the check is only as current as that file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs, runMain, type CliSpec } from './lib/cli';

export type Severity = 'low' | 'moderate' | 'high' | 'critical';
const RANK: Record<Severity, number> = { low: 0, moderate: 1, high: 2, critical: 3 };

export interface Advisory {
  id: string;
  package: string;
  severity: Severity;
  title: string;
  /** Vulnerable when introduced <= version < fixed (or <= lastAffected when there is no fixed release). */
  ranges: Array<{ introduced: string; fixed?: string; lastAffected?: string }>;
}

export interface LockPackage {
  name: string;
  version: string;
  /** Where package-lock.json has it (`node_modules/a/node_modules/b`). */
  location: string;
  dev: boolean;
}

export interface Finding {
  advisory: Advisory;
  pkg: LockPackage;
}

/** Every registry package of a lockfile (v2/v3 `packages` map). */
export function lockPackages(lock: { packages?: Record<string, Record<string, unknown>> }): LockPackage[] {
  if (!lock.packages) throw new Error('package-lock.json has no "packages" map (lockfileVersion 2 or 3 needed)');
  const out: LockPackage[] = [];
  for (const [location, entry] of Object.entries(lock.packages)) {
    // The root, links, and folders outside node_modules (the repo's own file: packages, e.g. shims/) are
    // not from a registry: nothing to look up.
    if (!location.includes('node_modules/') || entry.link || typeof entry.version !== 'string') continue;
    const name = (entry.name as string | undefined) ?? location.slice(location.lastIndexOf('node_modules/') + 13);
    out.push({ name, version: entry.version, location, dev: entry.dev === true });
  }
  return out;
}

/** Numeric semver comparison; a pre-release sorts before its release (1.0.0-rc.1 < 1.0.0). */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const [core, pre] = v.replace(/^v/, '').split('+')[0].split(/-(.*)/s);
    return { nums: core.split('.').map((x) => Number(x) || 0), pre: pre ?? '' };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (!x.pre) return 1;
  if (!y.pre) return -1;
  return x.pre < y.pre ? -1 : 1;
}

export function isAffected(version: string, advisory: Advisory): boolean {
  return advisory.ranges.some(
    (r) =>
      compareVersions(version, r.introduced) >= 0 &&
      (r.fixed !== undefined
        ? compareVersions(version, r.fixed) < 0
        : r.lastAffected !== undefined && compareVersions(version, r.lastAffected) <= 0),
  );
}

/** Advisories that match an installed package (production only unless includeDev). */
export function findAdvisories(packages: LockPackage[], advisories: Advisory[], includeDev = false): Finding[] {
  const byName = new Map<string, Advisory[]>();
  for (const a of advisories) byName.set(a.package, [...(byName.get(a.package) ?? []), a]);
  const out: Finding[] = [];
  for (const pkg of packages) {
    if (pkg.dev && !includeDev) continue;
    for (const a of byName.get(pkg.name) ?? []) if (isAffected(pkg.version, a)) out.push({ advisory: a, pkg });
  }
  return out.sort((p, q) => RANK[q.advisory.severity] - RANK[p.advisory.severity]);
}

const SPEC: CliSpec = {
  command: 'npm run advisories --',
  summary: 'Check package-lock.json against the committed advisory list (offline).',
  backend: false,
  flags: [
    { key: 'lock', type: 'string', default: 'package-lock.json', help: 'lockfile to check' },
    { key: 'advisories', type: 'string', default: 'scripts/advisories.json', help: 'advisory list' },
    {
      key: 'failOn',
      type: 'string',
      default: 'critical',
      help: 'exit 1 on a finding of this severity or worse',
      choices: ['critical', 'high', 'moderate', 'low'],
    },
    { key: 'dev', type: 'boolean', default: false, help: 'also check dev dependencies' },
  ],
};

async function main(): Promise<void> {
  const { values: v } = parseArgs(process.argv.slice(2), SPEC);
  const repo = path.resolve(__dirname, '..');
  const read = (f: string) => JSON.parse(fs.readFileSync(path.resolve(repo, f), 'utf8'));
  const list = read(v.advisories as string) as { updated: string; advisories: Advisory[] };
  const packages = lockPackages(read(v.lock as string));
  const findings = findAdvisories(packages, list.advisories, v.dev as boolean);
  const failOn = RANK[v.failOn as Severity];
  const checked = packages.filter((p) => v.dev || !p.dev).length;
  for (const f of findings) {
    const mark = RANK[f.advisory.severity] >= failOn ? 'FAIL' : 'warn';
    console.log(
      `${mark} ${f.advisory.severity} ${f.pkg.name}@${f.pkg.version} (${f.pkg.location}): ${f.advisory.id} ${f.advisory.title}`,
    );
  }
  const failing = findings.filter((f) => RANK[f.advisory.severity] >= failOn);
  console.log(
    `advisories: ${checked} ${v.dev ? '' : 'production '}packages checked against ${list.advisories.length} advisories ` +
      `(list updated ${list.updated}): ${findings.length} finding(s), ${failing.length} at or above ${v.failOn as string}`,
  );
  if (failing.length > 0) process.exitCode = 1;
}

if (require.main === module) runMain(main);
