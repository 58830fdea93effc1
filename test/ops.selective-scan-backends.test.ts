/**
 * The fused selective scan on the other backends: cpu (the same CPU engines through cpu tensors) and
 * webgpu (the WGSL kernels; Mesa llvmpipe here, so shapes stay small), each against the reference on
 * that backend, and wasm, cpu and webgpu against each other on the same inputs. webgpu is skipped, with
 * the reason, only where no WebGPU adapter exists.
 */
import { after, before, describe, test } from 'node:test';
import { initBackend } from '../lib/backend/index';
import { hasFusedScan } from '../lib/ops/selective-scan/index';
import { assertNoLeak, assertSameScan, makeScanData, runScan, ScanCase, ScanResult } from './ops.scan-helpers';

const CASES: ScanCase[] = [
  { name: 'g=4, odd n, L=37, B/C per group', b: 2, g: 4, e: 3, l: 37, n: 5, seed: 31 },
  { name: 'N=1, L=1', b: 2, g: 1, e: 2, l: 1, n: 1, seed: 32 },
  {
    name: 'n=16, L=130, δ > 20 on half the steps, no D',
    b: 1,
    g: 2,
    e: 5,
    l: 130,
    n: 16,
    deltaMean: 20,
    D: false,
    seed: 33,
  },
];

let webgpuError: string | undefined;
const fused: Record<string, ScanResult[]> = {};

before(async () => {
  try {
    await initBackend('webgpu', { quiet: true });
  } catch (e) {
    webgpuError = (e as Error).message.split('\n')[0];
  }
});
after(async () => {
  await initBackend('wasm', { quiet: true });
});

for (const backend of ['cpu', 'webgpu', 'wasm'] as const) {
  describe(`fused scan on ${backend} vs reference`, () => {
    for (const c of CASES) {
      test(c.name, async (t) => {
        if (backend === 'webgpu' && webgpuError) return t.skip(`no WebGPU: ${webgpuError}`);
        await initBackend(backend, { quiet: true });
        if (!hasFusedScan(backend)) throw new Error(`no fused kernel registered for ${backend}`);
        const s = makeScanData(c);
        const got = await runScan(s, 'fused');
        assertSameScan(got, await runScan(s, 'reference'), `${backend} ${c.name}`);
        (fused[c.name] ??= []).push(got);
      });
    }
    test('no tensor leaks', async (t) => {
      if (backend === 'webgpu' && webgpuError) return t.skip(`no WebGPU: ${webgpuError}`);
      await initBackend(backend, { quiet: true });
      await assertNoLeak(backend, () => runScan(makeScanData(CASES[0]), 'fused'));
    });
  });
}

describe('backends agree with each other', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const runs = fused[c.name] ?? [];
      const expected = webgpuError ? 2 : 3;
      if (runs.length !== expected) throw new Error(`expected ${expected} backend runs, got ${runs.length}`);
      for (let i = 1; i < runs.length; i++) assertSameScan(runs[i], runs[0], `${c.name} backend ${i} vs cpu`);
    });
  }
});
