/**
 * Parity with the official PyTorch logits on the webgpu backend (≤ 1e-3): the in-repo reduced fixture
 * (test/fixtures/parity/microscopic-mamba-dims32-64), and the team's full-size t fixture when present
 * (../shared/fixtures/official-t-64px-2cls; skipped with its reason otherwise). On a CPU-only machine
 * webgpu runs on Mesa llvmpipe: about a minute here (most of it compiling shaders), so it has its own file.
 * Skip it with MSM_TEST_WEBGPU=0; it is also skipped, with the reason, when no WebGPU adapter exists.
 */
import { test, type TestContext } from 'node:test';
import * as assert from 'node:assert/strict';
import { initBackend } from '../lib/backend/index';
import { createModel, type ModelOptions } from '../lib/models/index';
import { fixtureOptions, MICROSCOPIC_MAMBA_FIXTURE, parityDiffAsync, sharedFixture } from './parity.helpers';

const FULL = sharedFixture('official-t-64px-2cls');

/** Switch to webgpu, or say why the test is skipped (returns false then). */
async function webgpuOrSkip(t: TestContext): Promise<boolean> {
  if (process.env.MSM_TEST_WEBGPU === '0') {
    t.skip('MSM_TEST_WEBGPU=0');
    return false;
  }
  try {
    await initBackend('webgpu', { quiet: true });
    return true;
  } catch (e) {
    t.skip(`webgpu unavailable: ${(e as Error).message.split('\n')[0]}`);
    return false;
  }
}

async function checkOnWebgpu(t: TestContext, dir: string, options: ModelOptions): Promise<void> {
  if (!(await webgpuOrSkip(t))) return;
  const model = createModel('microscopic-mamba-t', options);
  const { diff } = await parityDiffAsync(model, dir);
  model.dispose();
  t.diagnostic(`webgpu max abs diff ${diff.toExponential(2)}`);
  assert.ok(diff <= 1e-3, `max abs diff ${diff}`);
}

test('official logits reproduced on webgpu, in-repo reduced fixture (max abs diff ≤ 1e-3)', (t) =>
  checkOnWebgpu(t, MICROSCOPIC_MAMBA_FIXTURE, fixtureOptions(MICROSCOPIC_MAMBA_FIXTURE)));

test('official logits reproduced on webgpu, full-size t (max abs diff ≤ 1e-3)', { skip: FULL.skip }, (t) =>
  checkOnWebgpu(t, FULL.dir, { numClasses: 2 }),
);
