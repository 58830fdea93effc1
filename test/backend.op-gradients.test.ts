/**
 * Walks OP_GRADIENT_CASES (test/op-coverage.ts), the table of every differentiable op the kit
 * uses, and checks on wasm that each gradient exists and matches the cpu backend (max abs diff <=
 * 1e-4 x scale), plus a directional finite difference on cpu for the smooth ones, which catches a
 * gradient formula that is wrong on every backend alike. To cover a new op, add a row to the table.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { WASM_KERNEL_FIXES } from '../lib/backend/registrations';
import { differentiableInputs, OP_GRADIENT_CASES, OpGradientCase, sampleInputs } from './op-coverage';
import {
  assertFiniteDifference,
  assertNoLeak,
  assertSameGrads,
  evalGrads,
  gradsOn,
  maxAbs,
  Sample,
  setupBackends,
} from './backend.helpers';

function samples(c: OpGradientCase): Sample[] {
  return sampleInputs(c, 7).map((s, i) => ({ ...s, shape: c.inputs[i].shape }));
}

function gradsOnCurrent(c: OpGradientCase, inputs: Sample[]): void {
  evalGrads(c.fn, inputs, differentiableInputs(c));
}

before(async () => {
  await setupBackends();
});

describe('op table', () => {
  test('names are unique and every case differentiates something', () => {
    const names = OP_GRADIENT_CASES.map((c) => c.name);
    assert.equal(new Set(names).size, names.length, 'duplicate case names');
    for (const c of OP_GRADIENT_CASES)
      assert.ok(differentiableInputs(c).length > 0, `${c.name}: no differentiable input`);
  });

  test('every kernel a row lists is one its forward pass runs on wasm', async () => {
    await tf.setBackend('wasm');
    const wrong: string[] = [];
    for (const c of OP_GRADIENT_CASES) {
      const xs = samples(c).map((s) => tf.tensor(s.values, s.shape, s.dtype));
      const profile = await tf.profile(() => c.fn(...xs));
      tf.dispose(xs);
      const ran = new Set(profile.kernelNames);
      for (const k of c.kernels) if (!ran.has(k)) wrong.push(`${c.name}: ${k} (ran: ${[...ran].join(', ')})`);
    }
    assert.deepEqual(wrong, [], 'rows list kernels their op does not run');
  });

  test('the table exercises every wasm kernel fix', async () => {
    await tf.setBackend('wasm');
    const ran = new Set<string>();
    for (const c of OP_GRADIENT_CASES) {
      const inputs = samples(c);
      const profile = await tf.profile(() => {
        gradsOnCurrent(c, inputs);
      });
      profile.kernelNames.forEach((k) => ran.add(k));
    }
    const missing = WASM_KERNEL_FIXES.filter((k) => !ran.has(k));
    assert.deepEqual(missing, [], 'wasm fixes no row exercises');
  });
});

describe('gradients on wasm match the cpu backend', () => {
  for (const c of OP_GRADIENT_CASES) {
    test(c.name, async () => {
      const inputs = samples(c);
      const wrt = differentiableInputs(c);
      const wasm = await gradsOn('wasm', c.fn, inputs, wrt);
      const cpu = await gradsOn('cpu', c.fn, inputs, wrt);
      assertSameGrads(wasm, cpu, c.name);
      assert.ok(
        cpu.grads.some((g) => maxAbs(g) > 0),
        `${c.name}: the gradient is identically zero`,
      );
      if (c.smooth !== false) assertFiniteDifference(c.fn, inputs, wrt, `${c.name} (cpu finite difference)`);
    });
  }
});

test('gradients of the whole table leave no tensors behind on wasm', async () => {
  await tf.setBackend('wasm');
  await assertNoLeak('op table', async () => {
    for (const c of OP_GRADIENT_CASES) await gradsOn('wasm', c.fn, samples(c), differentiableInputs(c));
  });
});
