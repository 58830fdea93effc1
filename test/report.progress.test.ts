/**
 * Progress bar with a fake clock and a captured stream: plain-line mode (what CI logs and notebooks get),
 * the TTY single-line mode, the rate / ETA arithmetic, and the automatic mode choice.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { formatDuration, formatField, Progress, resolveProgressMode } from '../lib/report/progress';

function capture(isTTY = false, columns = 100) {
  const out: string[] = [];
  return { out, stream: { isTTY, columns, write: (s: string) => out.push(s) } };
}

function fakeClock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('Progress, plain mode', () => {
  it('prints one full line per interval and a final line, with rate, ETA and fields', () => {
    const { out, stream } = capture();
    const clock = fakeClock();
    const bar = new Progress({
      total: 100,
      label: 'epoch 1/3',
      unit: 'img',
      mode: 'plain',
      stream,
      intervalMs: 10_000,
      now: clock.now,
    });
    for (let step = 1; step <= 10; step++) {
      clock.advance(2_000); // 10 images every 2 s → 5 img/s
      bar.tick(10, { loss: 1 / step, lr: 1e-4 * step });
    }
    bar.finish();
    assert.deepEqual(out, [
      'epoch 1/3 | 50/100 img (50%) | 5 img/s | elapsed 0:10 | eta 0:10 | loss 0.2 | lr 5.00e-4\n',
      'epoch 1/3 | 100/100 img (100%) | 5 img/s | elapsed 0:20 | eta 0:00 | loss 0.1 | lr 1.00e-3\n',
      'epoch 1/3 | 100/100 img (100%) | 5 img/s | done in 0:20 | loss 0.1 | lr 1.00e-3\n',
    ]);
    bar.finish();
    bar.tick(1);
    assert.equal(out.length, 3, 'finish is idempotent and later updates are ignored');
  });

  it('smooths the rate (EMA 0.3) so a slow first batch fades out of the ETA', () => {
    const { stream } = capture();
    const clock = fakeClock();
    const bar = new Progress({ total: 1000, mode: 'plain', stream, now: clock.now });
    clock.advance(10_000); // first batch: 10 items in 10 s (warm-up)
    bar.tick(10);
    assert.equal(bar.rate, 1);
    clock.advance(1_000); // then 10 items per second
    bar.tick(10);
    // items/update: 0.3·10 + 0.7·10 = 10; seconds/update: 0.3·1 + 0.7·10 = 7.3
    assert.ok(Math.abs(bar.rate - 10 / 7.3) < 1e-12);
    assert.ok(Math.abs(bar.etaMs - (980 / (10 / 7.3)) * 1000) < 1e-6);
  });

  it('formats byte counts for downloads and handles an unknown total', () => {
    const { out, stream } = capture();
    const clock = fakeClock();
    const bar = new Progress({ unit: 'B', label: 'download', mode: 'plain', stream, intervalMs: 0, now: clock.now });
    clock.advance(1000);
    bar.update(3 * 1024 * 1024);
    assert.equal(out[0], 'download | 3.0 MiB | 3.0 MiB/s | elapsed 0:01\n');
  });
});

describe('Progress, TTY mode', () => {
  it('redraws one line in place with \\r and ends it with a newline', () => {
    const { out, stream } = capture(true, 80);
    const clock = fakeClock();
    const bar = new Progress({ total: 8, label: 'cache', mode: 'tty', stream, redrawMs: 0, now: clock.now });
    for (let i = 0; i < 8; i++) {
      clock.advance(500);
      bar.tick(1, { loss: 0.5 });
    }
    bar.log('epoch done');
    bar.finish();
    const text = out.join('');
    assert.equal(text.split('\n').length - 1, 2, 'only the log line and the final line end with a newline');
    assert.ok(out.slice(0, 8).every((s) => s.startsWith('\r') && s.endsWith('\x1b[K')));
    assert.match(out[3], /^\rcache  50%\|█+ +\| 4\/8 \[0:02<0:02, 2 it\/s\] loss=0\.5\x1b\[K$/);
    assert.ok(
      out.every((s) => s.replace(/\r|\x1b\[K|\n/g, '').length <= 80),
      'fits the terminal width',
    );
    assert.equal(out[8], '\r\x1b[Kepoch done\n');
    assert.match(out[out.length - 1], /100%\|█+\| 8\/8 .*\n$/);
  });
});

describe('mode choice and formatting', () => {
  it('uses TTY only on a terminal outside CI; MSM_PROGRESS overrides', () => {
    const saved = { CI: process.env.CI, MSM_PROGRESS: process.env.MSM_PROGRESS };
    try {
      delete process.env.CI;
      delete process.env.MSM_PROGRESS;
      assert.equal(resolveProgressMode({ write: () => 0, isTTY: true }), 'tty');
      assert.equal(resolveProgressMode({ write: () => 0, isTTY: false }), 'plain');
      process.env.CI = 'true';
      assert.equal(resolveProgressMode({ write: () => 0, isTTY: true }), 'plain');
      process.env.MSM_PROGRESS = 'off';
      assert.equal(resolveProgressMode({ write: () => 0, isTTY: true }), 'off');
      assert.equal(resolveProgressMode({ write: () => 0 }, 'tty'), 'tty', 'an explicit mode wins');
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('off mode writes nothing', () => {
    const { out, stream } = capture(true);
    const bar = new Progress({ total: 2, mode: 'off', stream });
    bar.tick(2);
    bar.log('x');
    bar.finish();
    assert.deepEqual(out, []);
  });

  it('formats durations and field values', () => {
    assert.equal(formatDuration(65_000), '1:05');
    assert.equal(formatDuration(3_723_000), '1:02:03');
    assert.equal(formatDuration(NaN), '?');
    assert.equal(formatField(0.123456), '0.1235');
    assert.equal(formatField(2e-5), '2.00e-5');
    assert.equal(formatField(42), '42');
    assert.equal(formatField('abc'), 'abc');
  });
});
