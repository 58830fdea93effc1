/**
 * Notebooks exported to HTML (`jupyter nbconvert --to html`) show their formulas offline: Debian's nbconvert
 * points the page at the local MathJax 2 (file:///usr/share/javascript/mathjax/MathJax.js, package
 * libjs-mathjax, which scripts/bootstrap.sh installs). This checks the exported page loads MathJax from a
 * file that exists. (Checked by hand in headless chromium: with it, notebook 03's formulas are typeset as
 * MathJax CHTML elements; with a MathJax URL that does not resolve, they stay as raw TeX.)
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';

const PYTHON = process.env.MSM_JUPYTER_PYTHON ?? '/usr/bin/python3';
const NOTEBOOK = path.resolve(__dirname, '../notebooks/03_psffn.ipynb');

test('nbconvert HTML loads MathJax from a local file that exists (formulas render offline)', () => {
  const r = spawnSync(PYTHON, ['-m', 'nbconvert', '--to', 'html', '--stdout', NOTEBOOK], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.status, 0, `nbconvert failed (run: bash scripts/bootstrap.sh):\n${r.stderr}`);
  const html = r.stdout;
  assert.ok(/\$[^$\n]+\$/.test(html), 'the notebook has inline TeX for MathJax to typeset');
  const src = /<script[^>]*src="([^"]*MathJax\.js[^"]*)"/.exec(html)?.[1];
  assert.ok(src, 'the page loads MathJax');
  assert.ok(
    src.startsWith('file://'),
    `MathJax comes from ${src}: exported notebooks need the internet to show formulas`,
  );
  const file = fileURLToPath(src.replace(/\?.*$/, ''));
  assert.ok(fs.existsSync(file), `${file} is missing: apt-get install libjs-mathjax (scripts/bootstrap.sh does)`);
});
