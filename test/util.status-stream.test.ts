/**
 * Status lines (cache building, downloads) go to stderr in a terminal or log, and to stdout inside a notebook
 * kernel, where stderr shows as pink warning boxes (lib/util/status-stream.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { statusStream } from '../lib/util/status-stream';

test('statusStream: stderr outside a notebook, stdout inside tslab', () => {
  const g = globalThis as { __tslab__?: unknown };
  assert.equal(g.__tslab__, undefined);
  assert.equal(statusStream(), process.stderr);
  g.__tslab__ = {};
  try {
    assert.equal(statusStream(), process.stdout);
  } finally {
    delete g.__tslab__;
  }
});
