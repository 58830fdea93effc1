/**
 * Tables for notebooks, reports and committed results: rows of plain objects (or a danfojs-node
 * DataFrame) rendered as an HTML table, a monospace text table, a GitHub Markdown table (benchmark .md
 * files) or CSV (written atomically).
 *
 * danfojs-node is loaded lazily, only by `toDataFrame` (or when a DataFrame is passed in): it pulls in a
 * second tfjs through its `@tensorflow/tfjs-node` alias and takes ~1.3 s to load, which plain
 * rows → text/HTML/CSV never need.
 */
import type { DataFrame } from 'danfojs-node';
import { atomicWriteFile } from '../util/fs';
import { displayBundle } from './tslab';

/** One cell; null / undefined render as empty. */
export type Cell = string | number | boolean | null | undefined;
/** One row: column name → cell. Column order is the order keys first appear. */
export type Row = Record<string, Cell>;
/** What every function here accepts. */
export type TableLike = readonly Row[] | DataFrame;

export interface TableOptions {
  /** Columns to show, in order (default: every key, in first-seen order). */
  columns?: string[];
  /** Decimals for non-integer numbers (default 4); |x| < 1e-3 uses exponent notation. */
  digits?: number;
  /** Per-column formatters, overriding `digits`. */
  format?: Record<string, (v: Cell) => string>;
  /** Show at most this many rows (HTML / text), with a "… n more rows" note. */
  maxRows?: number;
  /** Caption (HTML `<caption>`, a first line in text). */
  caption?: string;
}

/** Build a danfojs-node DataFrame from rows (loads danfojs on first use). */
export function toDataFrame(rows: readonly Row[]): DataFrame {
  const dfd = require('danfojs-node') as typeof import('danfojs-node');
  if (rows.length === 0) throw new Error('toDataFrame: no rows');
  const columns = columnsOf(rows);
  // explicit column-major data, so missing keys become null instead of shifting cells
  const data: Record<string, Cell[]> = {};
  for (const c of columns) data[c] = rows.map((r) => (r[c] === undefined ? null : r[c]));
  return new dfd.DataFrame(data, { columns });
}

function isDataFrame(t: TableLike): t is DataFrame {
  return !Array.isArray(t) && typeof t === 'object' && t !== null && 'columns' in t && 'values' in t;
}

/** Rows of a table; a DataFrame is read through its `columns` and `values`. */
export function rowsOf(table: TableLike): Row[] {
  if (!isDataFrame(table)) return table as Row[];
  const columns = table.columns;
  const values = table.values as unknown[][];
  return values.map((vals) => Object.fromEntries(columns.map((c, j) => [c, vals[j] as Cell])));
}

/** Union of keys over all rows, in first-seen order. */
export function columnsOf(rows: readonly Row[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}

/** Text of one cell for display (not CSV, which keeps full precision). */
export function formatCell(v: Cell, digits = 4): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    return Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(digits);
  }
  return String(v);
}

interface Prepared {
  columns: string[];
  cells: string[][]; // [rows][columns] formatted
  numeric: boolean[]; // [columns] every non-empty cell is a number (right-aligned)
  hidden: number; // rows cut by maxRows
}

function prepare(table: TableLike, opts: TableOptions = {}, applyMaxRows = true): Prepared {
  const all = rowsOf(table);
  const rows = applyMaxRows && opts.maxRows !== undefined ? all.slice(0, opts.maxRows) : all;
  const columns = opts.columns ?? columnsOf(all);
  const cells = rows.map((r) =>
    columns.map((c) => (opts.format?.[c] ?? ((v: Cell) => formatCell(v, opts.digits)))(r[c])),
  );
  const numeric = columns.map((c) => {
    const vals = all.map((r) => r[c]).filter((v) => v !== null && v !== undefined);
    return vals.length > 0 && vals.every((v) => typeof v === 'number');
  });
  return { columns, cells, numeric, hidden: all.length - rows.length };
}

const escapeHtml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A styled, self-contained HTML `<table>` (numbers right-aligned). */
export function tableHtml(table: TableLike, opts: TableOptions = {}): string {
  const p = prepare(table, opts);
  const align = (j: number) => (p.numeric[j] ? ' style="text-align:right"' : '');
  const head = p.columns.map((c, j) => `<th${align(j)}>${escapeHtml(c)}</th>`).join('');
  const body = p.cells.map((r) => `<tr>${r.map((v, j) => `<td${align(j)}>${escapeHtml(v)}</td>`).join('')}</tr>`);
  if (p.hidden > 0) body.push(`<tr><td colspan="${p.columns.length}">… ${p.hidden} more rows</td></tr>`);
  const caption = opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : '';
  return (
    '<table class="msm-table" style="border-collapse:collapse;font:13px/1.4 sans-serif">' +
    '<style>.msm-table th,.msm-table td{border:1px solid #ccc;padding:2px 8px}.msm-table th{background:#f3f3f3}</style>' +
    `${caption}<thead><tr>${head}</tr></thead><tbody>${body.join('')}</tbody></table>`
  );
}

/** A monospace text table (the `text/plain` of `showTable`, and what scripts print). */
export function tableText(table: TableLike, opts: TableOptions = {}): string {
  const p = prepare(table, opts);
  const width = p.columns.map((c, j) => Math.max(c.length, ...p.cells.map((r) => r[j].length)));
  const pad = (s: string, j: number) => (p.numeric[j] ? s.padStart(width[j]) : s.padEnd(width[j]));
  const lines = [p.columns.map(pad).join('  '), width.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of p.cells) lines.push(r.map(pad).join('  ').trimEnd());
  if (p.hidden > 0) lines.push(`… ${p.hidden} more rows`);
  if (opts.caption) lines.unshift(opts.caption);
  return lines.join('\n');
}

/** A GitHub-flavoured Markdown table (numeric columns right-aligned), for committed results tables. */
export function tableMarkdown(table: TableLike, opts: Omit<TableOptions, 'maxRows'> = {}): string {
  const p = prepare(table, opts, false);
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
  const line = (cells: string[]) => `| ${cells.map(esc).join(' | ')} |`;
  const rule = `|${p.numeric.map((n) => (n ? '---:' : '---')).join('|')}|`;
  const out = [line(p.columns), rule, ...p.cells.map(line)];
  if (opts.caption) out.unshift(opts.caption, '');
  return out.join('\n') + '\n';
}

/** RFC 4180 CSV: full-precision numbers, quoting where needed, `\n` line ends. */
export function toCsv(table: TableLike, opts: Pick<TableOptions, 'columns'> = {}): string {
  const rows = rowsOf(table);
  const columns = opts.columns ?? columnsOf(rows);
  const field = (v: Cell): string => {
    if (v === null || v === undefined) return '';
    const s = String(v);
    return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return (
    [columns.map(field).join(','), ...rows.map((r) => columns.map((c) => field(r[c])).join(','))].join('\n') + '\n'
  );
}

/** Write a table as CSV atomically (temp file + rename: readers never see half a file). */
export function writeCsv(file: string, table: TableLike, opts: Pick<TableOptions, 'columns'> = {}): void {
  atomicWriteFile(file, toCsv(table, opts));
}

/**
 * Show a table in a tslab notebook as one output with `text/html` and `text/plain`. Outside a notebook
 * the text table is printed to stdout.
 */
export function showTable(table: TableLike, opts: TableOptions = {}): void {
  const text = tableText(table, opts);
  if (!displayBundle({ 'text/html': tableHtml(table, opts), 'text/plain': text })) process.stdout.write(text + '\n');
}
