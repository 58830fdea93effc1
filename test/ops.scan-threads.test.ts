/**
 * The SIMD scan engine's worker threads (the process's pool, lib/backend/worker-pool.ts): a worker that
 * cannot start must surface as a clear error instead of blocking the calling thread (it waits with
 * Atomics.wait, so no 'error' event can reach it; a share whose worker never claims it runs on the
 * calling thread), and the next call must work again with fresh workers.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { initBackend } from '../lib/backend/index';
import { setScanEngine } from '../lib/ops/selective-scan/fused-cpu';
import { simdScanEngine, simdThreads, stopScanThreads } from '../lib/ops/selective-scan/wasm-simd';
import { WorkerPool as ThreadPool, workerPool } from '../lib/backend/worker-pool';
import { makeScanData, runScan, assertSameScan } from './ops.scan-helpers';

const original = { source: ThreadPool.workerSource, timeout: ThreadPool.startTimeoutMs };
const threads = process.env.MSM_SCAN_THREADS;

before(async () => {
  process.env.MSM_SCAN_THREADS = '2'; // read per call: force a worker even on a 1-core runner
  await initBackend('cpu', { quiet: true });
  const engine = simdScanEngine();
  assert.ok(engine, 'WebAssembly SIMD engine should be available on Node 20');
  setScanEngine(engine);
});
after(() => {
  ThreadPool.workerSource = original.source;
  ThreadPool.startTimeoutMs = original.timeout;
  setScanEngine(undefined);
  if (threads === undefined) delete process.env.MSM_SCAN_THREADS;
  else process.env.MSM_SCAN_THREADS = threads;
});

const data = makeScanData({ name: 'threads', b: 4, g: 2, e: 3, l: 37, n: 16, bias: true, D: true, seed: 5 });

test('a worker that fails to start is reported, and the next call starts fresh workers', async (t) => {
  if (simdThreads(4) < 2) return t.skip('no SharedArrayBuffer: the engine runs single-threaded');
  const want = await runScan(data, 'reference');
  stopScanThreads(); // the next call spawns workers from the source below
  ThreadPool.workerSource = `
    const { workerData } = require('worker_threads');
    const ctl = new Int32Array(workerData.ctrl);
    Atomics.store(ctl, 3, -1);
    Atomics.notify(ctl, 1);
    throw new Error('simulated start failure');`;
  // Started ahead and given time to fail: a call reports a failure it sees (until then, shares whose
  // worker never claims them run on the calling thread).
  workerPool().prestart(1);
  await new Promise((r) => setTimeout(r, 2000));
  await assert.rejects(runScan(data, 'fused'), /worker thread failed to start.*MSM_SCAN_THREADS=1/);
  ThreadPool.workerSource = original.source;
  assertSameScan(await runScan(data, 'fused'), want, 'after recovery');
});

test('a worker that never starts holds up no call (its share runs on the calling thread) and is reported after the start timeout', async (t) => {
  if (simdThreads(4) < 2) return t.skip('no SharedArrayBuffer: the engine runs single-threaded');
  const want = await runScan(data, 'reference');
  stopScanThreads();
  ThreadPool.workerSource = `setInterval(() => {}, 1000); // never signals that it started`;
  ThreadPool.startTimeoutMs = 3000;
  try {
    assertSameScan(await runScan(data, 'fused'), want, 'with a worker that never starts');
    await new Promise((r) => setTimeout(r, 3100));
    const t0 = Date.now();
    await assert.rejects(runScan(data, 'fused'), /did not start within 3 s/);
    assert.ok(Date.now() - t0 < 10_000, 'the caller was released');
  } finally {
    ThreadPool.workerSource = original.source;
    ThreadPool.startTimeoutMs = original.timeout;
  }
  assertSameScan(await runScan(data, 'fused'), want, 'after recovery');
});
