/**
 * Tables: Markdown / text / HTML formatting, CSV quoting and atomic writes, danfojs DataFrames in and
 * out, and the tslab output (one display_data with text/html + text/plain).
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  formatCell,
  rowsOf,
  showTable,
  tableHtml,
  tableMarkdown,
  tableText,
  toCsv,
  toDataFrame,
  writeCsv,
  type Row,
} from '../lib/report/table';

const rows: Row[] = [
  { model: 'microscopic-mamba-t', params: 4_860_000, oa: 0.97312, auc: 0.996 },
  { model: 'a|b', params: 12, oa: 0.5, note: 'line1\nline2' },
];

describe('tableMarkdown', () => {
  it('formats a GitHub table: union of columns, numbers right-aligned, pipes and newlines escaped', () => {
    assert.equal(
      tableMarkdown(rows),
      [
        '| model | params | oa | auc | note |',
        '|---|---:|---:|---:|---|',
        '| microscopic-mamba-t | 4860000 | 0.9731 | 0.9960 |  |',
        '| a\\|b | 12 | 0.5000 |  | line1<br>line2 |',
        '',
      ].join('\n'),
    );
  });

  it('honours columns, digits and per-column formatters', () => {
    const md = tableMarkdown(rows, {
      columns: ['model', 'oa'],
      digits: 2,
      format: { oa: (v) => `${(100 * (v as number)).toFixed(2)} %` },
    });
    assert.equal(md.split('\n')[2], '| microscopic-mamba-t | 97.31 % |');
    assert.equal(md.split('\n')[1], '|---|---:|');
  });
});

describe('text and HTML', () => {
  it('formats cells: integers as is, small numbers in exponent form, null empty', () => {
    assert.equal(formatCell(3), '3');
    assert.equal(formatCell(0.123456), '0.1235');
    assert.equal(formatCell(1e-4), '1.00e-4');
    assert.equal(formatCell(null), '');
    assert.equal(formatCell(NaN), 'NaN');
  });

  it('aligns a text table and cuts at maxRows', () => {
    const t = tableText(
      [
        { k: 'a', v: 1 },
        { k: 'bbb', v: 22 },
        { k: 'c', v: 3 },
      ],
      { maxRows: 2 },
    );
    assert.equal(t, ['k     v', '---  --', 'a     1', 'bbb  22', '… 1 more rows'].join('\n'));
  });

  it('escapes HTML', () => {
    const html = tableHtml([{ '<b>': '<script>x</script>' }]);
    assert.ok(!html.includes('<script>x'));
    assert.match(html, /<th>&lt;b&gt;<\/th>/);
  });
});

describe('CSV', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-csv-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('quotes per RFC 4180 and keeps full precision', () => {
    assert.equal(
      toCsv([{ a: 'x,y', b: 'say "hi"', c: 0.1 + 0.2, d: null }]),
      'a,b,c,d\n"x,y","say ""hi""",0.30000000000000004,\n',
    );
  });

  it('writes atomically: the final file appears whole, with no temp file left behind', () => {
    const file = path.join(dir, 'sub', 'metrics.csv');
    writeCsv(file, rows);
    assert.equal(fs.readFileSync(file, 'utf8'), toCsv(rows));
    // an overwrite replaces the file in one rename (same inode semantics aside, content is complete)
    writeCsv(file, [{ epoch: 1, loss: 0.5 }]);
    assert.equal(fs.readFileSync(file, 'utf8'), 'epoch,loss\n1,0.5\n');
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['metrics.csv']);
  });

  it('a write that fails midway (disk full) leaves the previous file intact and no temp file', () => {
    const file = path.join(dir, 'keep.csv');
    writeCsv(file, [{ a: 1 }]);
    const nodeFs = require('node:fs') as { writeSync: unknown }; // the module object itself (patchable)
    const realWriteSync = nodeFs.writeSync;
    nodeFs.writeSync = () => {
      throw new Error('ENOSPC: no space left on device');
    };
    try {
      assert.throws(() => writeCsv(file, [{ a: 2 }]), /ENOSPC/);
    } finally {
      nodeFs.writeSync = realWriteSync;
    }
    assert.equal(fs.readFileSync(file, 'utf8'), 'a\n1\n');
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.startsWith('keep')),
      ['keep.csv'],
    );
  });
});

describe('danfojs DataFrame', () => {
  it('round-trips rows through a DataFrame (missing keys become null) and renders it', () => {
    const df = toDataFrame(rows);
    assert.deepEqual(df.columns, ['model', 'params', 'oa', 'auc', 'note']);
    assert.deepEqual(df.shape, [2, 5]);
    const back = rowsOf(df);
    assert.equal(back[0].model, 'microscopic-mamba-t');
    assert.equal(back[1].auc, null);
    assert.equal(tableMarkdown(df).split('\n')[2], '| microscopic-mamba-t | 4860000 | 0.9731 | 0.9960 |  |');
  });
});

describe('showTable', () => {
  const jupyter = require('tslab/dist/jupyter') as { lastWriteDisplayData: unknown };
  const g = globalThis as { __tslab__?: unknown };
  after(() => {
    jupyter.lastWriteDisplayData = null;
    delete g.__tslab__;
  });

  it('in tslab: one output with text/html and text/plain', () => {
    const sent: Record<string, unknown>[] = [];
    jupyter.lastWriteDisplayData = (msg: { data: Record<string, unknown> }) => sent.push(msg.data);
    g.__tslab__ = {};
    showTable(rows);
    assert.equal(sent.length, 1);
    assert.deepEqual(Object.keys(sent[0]).sort(), ['text/html', 'text/plain']);
    assert.match(sent[0]['text/html'] as string, /^<table class="msm-table"/);
    assert.equal(sent[0]['text/plain'], tableText(rows));
  });
});
