/**
 * Dependencies: the production tree of package-lock.json has no critical advisory from the committed list
 * (scripts/advisories.json, checked offline by scripts/check-advisories.ts), the list still catches the
 * tree the kit had before (request → form-data@2.3.3, qs@6.5.5, xlsx@0.18.5), and danfojs-node loads
 * and renders a DataFrame with `request` and `xlsx` replaced by stubs that fail clearly if ever called.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compareVersions, findAdvisories, isAffected, lockPackages, type Advisory } from '../scripts/check-advisories';

const repo = path.resolve(__dirname, '..');
const advisories = (
  JSON.parse(fs.readFileSync(path.join(repo, 'scripts', 'advisories.json'), 'utf8')) as { advisories: Advisory[] }
).advisories;

test('the committed lockfile: no critical or high advisory in the production tree', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8'));
  const packages = lockPackages(lock);
  assert.ok(packages.filter((p) => !p.dev).length > 100, 'the production tree was read');
  const findings = findAdvisories(packages, advisories);
  assert.deepEqual(
    findings.map((f) => `${f.pkg.name}@${f.pkg.version} ${f.advisory.id} ${f.advisory.severity}`),
    [],
  );
  const names = new Set(packages.map((p) => p.name));
  for (const gone of ['request', 'xlsx', 'qs', 'tough-cookie']) assert.ok(!names.has(gone), `${gone} is not installed`);
});

test('the tree before the fix is caught: form-data@2.3.3 critical, qs@6.5.5 and xlsx@0.18.5 high; dev-only ignored', () => {
  const lock = {
    packages: {
      '': { name: 'kit' },
      'node_modules/request': { version: '2.88.2' },
      'node_modules/request/node_modules/form-data': { version: '2.3.3' },
      'node_modules/qs': { version: '6.5.5' },
      'node_modules/xlsx': { version: '0.18.5' },
      'node_modules/minimist': { version: '1.2.5', dev: true },
      'node_modules/xlsx-link': { resolved: 'shims/xlsx', link: true },
      'shims/xlsx': { version: '0.0.0-stub' },
    },
  };
  const findings = findAdvisories(lockPackages(lock), advisories);
  assert.deepEqual(
    findings.map((f) => [f.advisory.severity, `${f.pkg.name}@${f.pkg.version}`]),
    [
      ['critical', 'form-data@2.3.3'],
      ['high', 'qs@6.5.5'],
      ['high', 'xlsx@0.18.5'],
      ['high', 'xlsx@0.18.5'],
    ],
  );
  assert.ok(
    findAdvisories(lockPackages(lock), advisories, true).some((f) => f.pkg.name === 'minimist'),
    'with dev dependencies: minimist@1.2.5 (critical)',
  );
});

test('version ranges: fixed versions and other majors are not flagged', () => {
  const formData = advisories.find((a) => a.id === 'GHSA-fjxv-7rqg-78g4')!;
  const verdict = (v: string) => isAffected(v, formData);
  assert.deepEqual(['2.3.3', '2.5.3', '2.5.4', '3.0.0', '3.0.3', '3.0.4', '4.0.3', '4.0.4', '4.0.6'].map(verdict), [
    true,
    true,
    false,
    true,
    true,
    false,
    true,
    false,
    false,
  ]);
  assert.equal(compareVersions('1.0.0-rc.1', '1.0.0'), -1);
  assert.equal(compareVersions('1.10.0', '1.9.9'), 1);
  assert.ok(
    isAffected(
      '2.0.1',
      advisories.find((a) => a.package === 'ip')!,
    ),
    'lastAffected is inclusive',
  );
});

test('danfojs-node loads and renders without request and xlsx; the stubs fail with a clear message', () => {
  const dfd = require('danfojs-node') as typeof import('danfojs-node');
  const df = new dfd.DataFrame([{ model: 'mamba', acc: 0.95 }]);
  assert.match(df.toString(), /mamba/);
  assert.throws(
    () => (require('xlsx') as { readFile: (f: string) => void }).readFile('a.xlsx'),
    /xlsx\.readFile\(\): Excel I\/O is not part of microscopic-mamba-ts/,
  );
  assert.throws(
    () => (require('request') as { get: (u: string) => void }).get('http://x'),
    /request\.get\(\): reading URLs through danfojs is not part/,
  );
});
