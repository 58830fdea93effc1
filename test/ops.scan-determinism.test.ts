/**
 * The fused selective scan (SIMD engine, lib/ops/selective-scan/wasm-simd.ts) gives bit-identical
 * forward outputs and gradients for any number of scan threads (MSM_SCAN_THREADS): the gradients of the
 * parameters shared by all sequences (A, D, b_Δ) are summed over the batch rows in row order whatever the
 * split, so a study cell gives the same numbers under `--jobs 1` (all cores) and `--jobs 2` (one scan
 * thread). Before the fix, ∂A differed in its last bits for every case below.
 * Runs on both backends the engine serves: wasm (the threaded build: every share works in place in tfjs'
 * shared heap; with one thread the single share works in place too) and cpu (every share in the engine's
 * shared memory).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { initBackend } from '../lib/backend/index';
import { setScanEngine } from '../lib/ops/selective-scan/fused-cpu';
import { simdScanEngine, simdThreads } from '../lib/ops/selective-scan/wasm-simd';
import { firstBitDifference, makeScanData, runScan, ScanCase, ScanResult } from './ops.scan-helpers';

const CASES: ScanCase[] = [
  // microscopic-mamba-t's SS2D scans at 32 px (scripts/bench-scan.ts shapes): 4 directions (groups), E
  // channels each, d_state 16, L = 8×8, 4×4, …; batch 32 = 8 images × 4 PVM groups (training at batch 32
  // has 128 rows: the same kernel, 4× the work)
  { name: 'b=32, g=4, E=24, L=64, n=16 (stage 1 at 32 px)', b: 32, g: 4, e: 24, l: 64, n: 16, seed: 31 },
  { name: 'b=32, g=4, E=48, L=16, n=16 (stage 2)', b: 32, g: 4, e: 48, l: 16, n: 16, seed: 32 },
  { name: 'b=32, g=4, E=192, L=1, n=16 (stage 4)', b: 32, g: 4, e: 192, l: 1, n: 16, seed: 36 },
  // batch and length that no thread count divides evenly, padded state, B/C as [b, n, l]
  { name: 'b=7, g=1, L=37, n=13, B/C as [b,n,l]', b: 7, g: 1, e: 5, l: 37, n: 13, threeD: true, seed: 33 },
  { name: 'b=5, g=4, L=130 (3 checkpoint chunks), no D', b: 5, g: 4, e: 3, l: 130, n: 8, D: false, seed: 34 },
];

function assertBitIdentical(got: ScanResult, want: ScanResult, label: string): void {
  const check = (g: Float32Array, w: Float32Array, what: string) => {
    const i = firstBitDifference(g, w);
    assert.equal(i, -1, `${label} ${what}: element ${i} is ${g[i]}, 1 thread gives ${w[i]}`);
  };
  check(got.y, want.y, 'y');
  assert.deepEqual(Object.keys(got.grads), Object.keys(want.grads));
  for (const k of Object.keys(want.grads)) check(got.grads[k], want.grads[k], `∂${k}`);
}

const saved = process.env.MSM_SCAN_THREADS;
after(() => {
  setScanEngine(undefined);
  if (saved === undefined) delete process.env.MSM_SCAN_THREADS;
  else process.env.MSM_SCAN_THREADS = saved;
});

for (const backend of ['wasm', 'cpu'] as const) {
  describe(`fused scan on ${backend}: bit-identical for 1, 2 and 3 scan threads`, () => {
    for (const c of CASES) {
      test(c.name, async (t) => {
        await initBackend(backend, { quiet: true });
        const engine = simdScanEngine();
        assert.ok(engine, 'WebAssembly SIMD engine should be available on Node 20');
        setScanEngine(engine);
        if (simdThreads(c.b) < 2) return t.skip('no SharedArrayBuffer: the engine runs single-threaded');
        const s = makeScanData(c);
        process.env.MSM_SCAN_THREADS = '1'; // read per call
        const one = await runScan(s, 'fused');
        for (const threads of ['2', '3']) {
          process.env.MSM_SCAN_THREADS = threads;
          assertBitIdentical(await runScan(s, 'fused'), one, `${threads} threads vs 1`);
        }
      });
    }
  });
}
