/**
 * A progress bar for long loops (dataset cache building, downloads, training epochs): position, %,
 * rate (e.g. img/s), elapsed time, ETA and custom fields such as loss and lr.
 *
 * Two renderings:
 * - TTY: one line redrawn in place with `\r` (at most every `redrawMs`), like tqdm;
 * - plain: one full line every `intervalMs` and a final line, for logs, CI and notebooks, where `\r`
 *   redraws would pile up. Chosen automatically: TTY only when the stream is a terminal, `CI` is unset and
 *   we are not inside a tslab kernel; `MSM_PROGRESS=tty|plain|off` overrides.
 *
 * The rate is an exponential moving average of items per second over recent updates (smoothing 0.3,
 * tqdm's default), so the warm-up of the first batches fades out of the ETA.
 */
import { inTslab } from './tslab';

/** Where progress goes: any object with `write` (process.stdout, a file stream, a test buffer). */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export type ProgressMode = 'tty' | 'plain' | 'off';
export type FieldValue = number | string;

export interface ProgressOptions {
  /** Number of items expected (omit when unknown: no %, no ETA). */
  total?: number;
  /** Text in front, e.g. "epoch 3/50". */
  label?: string;
  /** Item unit for counts and rate, e.g. "img" (default "it"); "B" formats bytes (KiB, MiB, ...). */
  unit?: string;
  /** 'auto' (default), 'tty', 'plain' or 'off'. */
  mode?: 'auto' | ProgressMode;
  /** Output stream (default process.stdout). */
  stream?: ProgressStream;
  /** Plain mode: minimum milliseconds between lines (default 10 000, or MSM_PROGRESS_INTERVAL_MS). */
  intervalMs?: number;
  /** TTY mode: minimum milliseconds between redraws (default 100). */
  redrawMs?: number;
  /** Clock in milliseconds (default Date.now); tests inject a fake one. */
  now?: () => number;
}

/** The rendering `mode: 'auto'` resolves to for a stream (see the file doc). */
export function resolveProgressMode(stream: ProgressStream, mode: ProgressOptions['mode'] = 'auto'): ProgressMode {
  if (mode !== 'auto') return mode;
  const env = process.env.MSM_PROGRESS;
  if (env === 'tty' || env === 'plain' || env === 'off') return env;
  return stream.isTTY && !process.env.CI && !inTslab() ? 'tty' : 'plain';
}

/** "1:05" or "2:03:04". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** Field numbers: 4 significant digits; exponent form below 1e-2 (learning rates) and from 1e5. */
export function formatField(v: FieldValue): string {
  if (typeof v === 'string') return v;
  if (v === 0 || !Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e6) return String(v);
  return a < 1e-2 || a >= 1e5 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}

function formatCount(n: number, unit: string): string {
  if (unit !== 'B') return String(Math.round(n));
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

export class Progress {
  readonly total?: number;
  readonly label: string;
  readonly unit: string;
  readonly mode: ProgressMode;
  private readonly stream: ProgressStream;
  private readonly intervalMs: number;
  private readonly redrawMs: number;
  private readonly now: () => number;
  private readonly start: number;
  private n = 0;
  private fields: Record<string, FieldValue> = {};
  private lastT: number; // time of the previous update (rate EMA)
  private lastN = 0;
  private emaDt = 0; // smoothed seconds per update
  private emaDn = 0; // smoothed items per update
  private lastDraw = -Infinity;
  private finished = false;

  constructor(opts: ProgressOptions = {}) {
    this.total = opts.total;
    this.label = opts.label ?? '';
    this.unit = opts.unit ?? 'it';
    this.stream = opts.stream ?? process.stdout;
    this.mode = resolveProgressMode(this.stream, opts.mode);
    this.intervalMs = opts.intervalMs ?? Number(process.env.MSM_PROGRESS_INTERVAL_MS ?? 10000);
    this.redrawMs = opts.redrawMs ?? 100;
    this.now = opts.now ?? Date.now;
    this.start = this.now();
    this.lastT = this.start;
    this.lastDraw = this.mode === 'plain' ? this.start : -Infinity; // plain: first line after one interval
  }

  /** Items done so far. */
  get done(): number {
    return this.n;
  }

  get elapsedMs(): number {
    return this.now() - this.start;
  }

  /** Smoothed items per second (NaN before the first timed update). */
  get rate(): number {
    return this.emaDt > 0 ? this.emaDn / this.emaDt : NaN;
  }

  /** Estimated milliseconds left (NaN when the total or the rate is unknown). */
  get etaMs(): number {
    if (this.total === undefined || !(this.rate > 0)) return NaN;
    return (Math.max(0, this.total - this.n) / this.rate) * 1000;
  }

  /** Advance by `n` items (default 1) and set fields (e.g. `{loss, lr}`). */
  tick(n = 1, fields?: Record<string, FieldValue>): void {
    this.update(this.n + n, fields);
  }

  /** Set the absolute position and fields; redraws / prints when due. */
  update(done: number, fields?: Record<string, FieldValue>): void {
    if (this.finished) return;
    const t = this.now();
    const dt = (t - this.lastT) / 1000;
    const dn = done - this.lastN;
    if (dt > 0 && dn > 0) {
      const a = 0.3; // EMA smoothing (tqdm's default)
      this.emaDt = this.emaDt === 0 ? dt : a * dt + (1 - a) * this.emaDt;
      this.emaDn = this.emaDn === 0 ? dn : a * dn + (1 - a) * this.emaDn;
      this.lastT = t;
      this.lastN = done;
    }
    this.n = done;
    if (fields) Object.assign(this.fields, fields);
    const due = t - this.lastDraw >= (this.mode === 'tty' ? this.redrawMs : this.intervalMs);
    if (due) this.render(t, false);
  }

  /** Print a message above the bar (TTY) or as its own line (plain), e.g. an epoch summary. */
  log(message: string): void {
    if (this.mode === 'off') return;
    if (this.mode === 'tty') {
      this.stream.write(`\r\x1b[K${message}\n`);
      if (!this.finished) this.render(this.now(), false);
    } else this.stream.write(`${message}\n`);
  }

  /** Final state: the TTY line is completed with a newline; plain mode prints a last line. Idempotent. */
  finish(fields?: Record<string, FieldValue>): void {
    if (this.finished) return;
    if (fields) Object.assign(this.fields, fields);
    this.render(this.now(), true);
    this.finished = true;
  }

  /** The status text (no control characters), as the plain mode prints it. */
  statusLine(final = false): string {
    const parts: string[] = [];
    if (this.label) parts.push(this.label);
    const unit = this.unit === 'B' || this.unit === 'it' ? '' : ` ${this.unit}`; // bytes carry their own unit
    parts.push(
      this.total !== undefined
        ? `${formatCount(this.n, this.unit)}/${formatCount(this.total, this.unit)}${unit} (${this.percent()}%)`
        : `${formatCount(this.n, this.unit)}${unit}`,
    );
    parts.push(this.rateText());
    parts.push(final ? `done in ${formatDuration(this.elapsedMs)}` : `elapsed ${formatDuration(this.elapsedMs)}`);
    if (!final && this.total !== undefined) parts.push(`eta ${formatDuration(this.etaMs)}`);
    for (const [k, v] of Object.entries(this.fields)) parts.push(`${k} ${formatField(v)}`);
    return parts.join(' | ');
  }

  private percent(): string {
    return this.total ? ((100 * this.n) / this.total).toFixed(0) : '0';
  }

  private rateText(): string {
    const r = this.rate;
    if (!Number.isFinite(r)) return `? ${this.unit}/s`;
    return this.unit === 'B' ? `${formatCount(r, 'B')}/s` : `${formatField(Number(r.toPrecision(3)))} ${this.unit}/s`;
  }

  /** tqdm-like single line: `label  42%|████▏     | 420/1000 [0:10<0:14, 41.0 img/s] loss=0.31 lr=1.00e-4`. */
  private ttyLine(): string {
    const fields = Object.entries(this.fields).map(([k, v]) => `${k}=${formatField(v)}`);
    const timing = `${formatDuration(this.elapsedMs)}<${formatDuration(this.etaMs)}, ${this.rateText()}`;
    const counts =
      this.total !== undefined
        ? `${formatCount(this.n, this.unit)}/${formatCount(this.total, this.unit)}`
        : formatCount(this.n, this.unit);
    const tail = ` ${counts} [${timing}]${fields.length ? ' ' + fields.join(' ') : ''}`;
    const head = this.label ? `${this.label} ` : '';
    if (this.total === undefined) return head + tail.trimStart();
    const columns = this.stream.columns ?? 100;
    const barWidth = Math.max(5, Math.min(30, columns - head.length - tail.length - 7));
    const frac = this.total > 0 ? Math.min(1, this.n / this.total) : 0;
    const cells = frac * barWidth;
    const full = Math.floor(cells);
    const partial = ' ▏▎▍▌▋▊▉'[Math.floor((cells - full) * 8)];
    const bar = '█'.repeat(full) + (full < barWidth ? partial + ' '.repeat(barWidth - full - 1) : '');
    const line = `${head}${this.percent().padStart(3)}%|${bar}|${tail}`;
    return line.length > columns ? line.slice(0, columns - 1) : line;
  }

  private render(t: number, final: boolean): void {
    this.lastDraw = t;
    if (this.mode === 'off') return;
    if (this.mode === 'tty') this.stream.write(`\r${this.ttyLine()}\x1b[K${final ? '\n' : ''}`);
    else this.stream.write(this.statusLine(final) + '\n');
  }
}

/** Shorthand for `new Progress(opts)`. */
export function progress(opts: ProgressOptions = {}): Progress {
  return new Progress(opts);
}
