/**
 * The official LR schedule (utils.py create_lr_scheduler) at the steps where its formula is known in
 * closed form, plus its shape (monotone warm-up, monotone cosine) and argument checks.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { lrFactor, paperLrSchedule } from '../lib/train/schedule';

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-12, `${what}: ${a} vs ${b}`);

describe('lrFactor (official create_lr_scheduler)', () => {
  const spe = 100; // steps per epoch
  const opts = paperLrSchedule(spe); // 200 epochs, 10 warm-up, 1e-3 → 1 → 1e-6
  const W = 10 * spe;
  const T = 190 * spe;

  it('warm-up: linear from 1e-3 at step 0 to exactly 1 at step W', () => {
    close(lrFactor(0, opts), 1e-3, 'step 0');
    close(lrFactor(W / 2, opts), 1e-3 * 0.5 + 0.5, 'step W/2');
    close(lrFactor(1, opts), 1e-3 * (1 - 1 / W) + 1 / W, 'step 1');
    assert.equal(lrFactor(W, opts), 1, 'step W is the last warm-up step (x <= W) with factor 1');
  });

  it('cosine: half-way at W + T/2, end factor at W + T', () => {
    close(lrFactor(W + 1, opts), ((1 + Math.cos(Math.PI / T)) / 2) * (1 - 1e-6) + 1e-6, 'step W+1');
    close(lrFactor(W + T / 2, opts), 0.5 * (1 - 1e-6) + 1e-6, 'step W+T/2');
    close(lrFactor(W + T / 4, opts), ((1 + Math.SQRT1_2) / 2) * (1 - 1e-6) + 1e-6, 'step W+T/4');
    close(lrFactor(W + T, opts), 1e-6, 'last step');
  });

  it('rises during warm-up and falls after it', () => {
    let prev = -Infinity;
    for (let s = 0; s <= W; s++) {
      const f = lrFactor(s, opts);
      assert.ok(f > prev, `warm-up not increasing at ${s}`);
      prev = f;
    }
    for (let s = W + 1; s <= W + T; s += 7) {
      const f = lrFactor(s, opts);
      assert.ok(f < prev, `cosine not decreasing at ${s}`);
      prev = f;
    }
  });

  it('defaults mirror the official signature (warmup_epochs=1, factors 1e-3 / 1e-6); 0 warm-up = pure cosine', () => {
    close(lrFactor(0, { stepsPerEpoch: 10, epochs: 5 }), 1e-3, 'default warm-up start');
    assert.equal(lrFactor(10, { stepsPerEpoch: 10, epochs: 5 }), 1);
    assert.equal(lrFactor(0, { stepsPerEpoch: 10, epochs: 5, warmupEpochs: 0 }), 1);
    close(lrFactor(50, { stepsPerEpoch: 10, epochs: 5, warmupEpochs: 0 }), 1e-6, 'end without warm-up');
  });

  it('rejects arguments the official code asserts against', () => {
    assert.throws(() => lrFactor(0, { stepsPerEpoch: 0, epochs: 5 }), /stepsPerEpoch \(0\)/);
    assert.throws(() => lrFactor(0, { stepsPerEpoch: 5, epochs: 5, warmupEpochs: 5 }), /warmupEpochs \(5\)/);
    assert.throws(() => lrFactor(-1, opts), /step -1/);
  });
});
