/**
 * initBackend (lib/backend/index.ts): choosing a backend by argument, MSM_BACKEND or default; what it
 * reports; clear errors for unknown and unavailable backends (incl. the tfjs-node overrides alias);
 * webgpu on this CPU-only machine (Dawn, EGL surfaceless, Mesa llvmpipe) agreeing with wasm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {
  backendFromArgv,
  BackendUnavailableError,
  currentBackend,
  describeBackend,
  findTensorflowPackage,
  initBackend,
  onBackendInit,
} from '../lib/backend/index';
import { resolveThreads } from '../lib/backend/wasm-threads';
import { assertClose, assertNoLeak, normal, Sample } from './backend.helpers';

const savedEnv = process.env.MSM_BACKEND;

/** Run with console.log captured; returns what was logged. */
async function captureLog(f: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
  try {
    await f();
  } finally {
    console.log = log;
  }
  return lines;
}

before(() => {
  delete process.env.MSM_BACKEND;
  delete process.env.MSM_QUIET;
});

after(() => {
  if (savedEnv === undefined) delete process.env.MSM_BACKEND;
  else process.env.MSM_BACKEND = savedEnv;
});

describe('choosing a backend', () => {
  test('cpu by argument, reported in one line', async () => {
    const lines = await captureLog(async () => {
      const info = await initBackend('cpu');
      assert.equal(info.name, 'cpu');
      assert.equal(info.source, 'argument');
      assert.equal(info.tfjsVersion, tf.version.tfjs);
    });
    assert.equal(tf.getBackend(), 'cpu');
    assert.deepEqual(lines, [`backend: cpu (argument), tfjs ${tf.version.tfjs}`]);
  });

  test('wasm by default, with SIMD and thread count', async () => {
    const lines = await captureLog(() => initBackend());
    const info = currentBackend();
    assert.equal(info?.name, 'wasm');
    assert.equal(info?.source, 'default');
    assert.equal(tf.getBackend(), 'wasm');
    const threads = resolveThreads().threads; // MSM_THREADS, else all cores (at most 8): wasm-threads.ts
    assert.equal(info?.details.threads, threads);
    assert.equal(typeof info?.details.simd, 'boolean');
    assert.match(
      lines[0],
      new RegExp(`^backend: wasm \\(default; simd=(true|false), threads=${threads}\\), tfjs \\d+\\.\\d+\\.\\d+$`),
    );
  });

  test('MSM_BACKEND is honoured, and an argument beats it', async () => {
    process.env.MSM_BACKEND = ' CPU ';
    try {
      const fromEnv = await initBackend(undefined, { quiet: true });
      assert.equal(fromEnv.name, 'cpu');
      assert.equal(fromEnv.source, 'MSM_BACKEND');
      assert.equal(tf.getBackend(), 'cpu');
      const fromArg = await initBackend('wasm', { quiet: true });
      assert.equal(fromArg.name, 'wasm');
      assert.equal(fromArg.source, 'argument');
    } finally {
      delete process.env.MSM_BACKEND;
    }
  });

  test('quiet: by option or MSM_QUIET=1', async () => {
    assert.deepEqual(await captureLog(() => initBackend('wasm', { quiet: true })), []);
    process.env.MSM_QUIET = '1';
    try {
      assert.deepEqual(await captureLog(() => initBackend('wasm')), []);
    } finally {
      delete process.env.MSM_QUIET;
    }
  });

  test('an unknown name is a clear error naming where it came from', async () => {
    await assert.rejects(initBackend('tpu', { quiet: true }), {
      message: "Unknown backend 'tpu' (from argument). Choose one of: wasm, cpu, webgpu, tensorflow.",
    });
    process.env.MSM_BACKEND = 'cuda';
    try {
      await assert.rejects(initBackend(undefined, { quiet: true }), /Unknown backend 'cuda' \(from MSM_BACKEND\)/);
    } finally {
      delete process.env.MSM_BACKEND;
    }
  });

  test("the alias 'tfjs-node' names the tensorflow backend", async () => {
    // tensorflow is not installed here, so the alias shows in the error it raises.
    await assert.rejects(initBackend('tfjs-node', { quiet: true }), (e: Error) => {
      assert.ok(e instanceof BackendUnavailableError);
      assert.match(e.message, /Backend 'tensorflow' is not available/);
      return true;
    });
  });

  test('hooks registered with onBackendInit run after each init', async () => {
    const seen: string[] = [];
    onBackendInit((name) => seen.push(name)); // runs at once for the current backend too
    await initBackend('cpu', { quiet: true });
    await initBackend('wasm', { quiet: true });
    assert.deepEqual(seen.slice(-2), ['cpu', 'wasm']);
  });

  test('--backend from argv, and describeBackend', () => {
    assert.equal(backendFromArgv(['--epochs', '3', '--backend', 'cpu']), 'cpu');
    assert.equal(backendFromArgv(['--backend=webgpu']), 'webgpu');
    assert.equal(backendFromArgv(['--epochs=3']), undefined);
    assert.equal(
      describeBackend({ name: 'wasm', source: 'MSM_BACKEND', tfjsVersion: '4.22.0', details: { simd: true } }),
      'backend: wasm (MSM_BACKEND; simd=true), tfjs 4.22.0',
    );
  });
});

describe('the tensorflow backend (tfjs-node) when it is not installed', () => {
  test('BackendUnavailableError says how to get it, and the active backend is unchanged', async () => {
    await initBackend('wasm', { quiet: true });
    const err = await initBackend('tensorflow', { quiet: true }).then(
      () => assert.fail('expected tensorflow to be unavailable in this checkout'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof BackendUnavailableError);
    assert.equal(err.name, 'BackendUnavailableError');
    assert.match(err.message, /Backend 'tensorflow' is not available/);
    assert.match(err.message, /How to get it: .*npm install --no-save @tensorflow\/tfjs-node-gpu@4\.22\.0/);
    assert.match(err.message, /CUDA 11\.2/);
    assert.equal(tf.getBackend(), 'wasm');
  });

  test('findTensorflowPackage ignores the overrides alias of plain tfjs in this checkout', () => {
    const alias = path.resolve(__dirname, '../node_modules/@tensorflow/tfjs-node/package.json');
    if (fs.existsSync(alias)) {
      const name = (JSON.parse(fs.readFileSync(alias, 'utf8')) as { name: string }).name;
      assert.equal(name, '@tensorflow/tfjs', 'node_modules/@tensorflow/tfjs-node should be the tfjs alias');
    }
    assert.equal(findTensorflowPackage(), undefined);
  });

  test('findTensorflowPackage: alias ignored, real packages found, -gpu preferred', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-tfjs-node-'));
    const fake = (pkg: string, name: string) => {
      const dir = path.join(root, 'node_modules', ...pkg.split('/'));
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '4.22.0' }));
    };
    try {
      assert.equal(findTensorflowPackage(root), undefined, 'nothing installed');
      fake('@tensorflow/tfjs-node', '@tensorflow/tfjs');
      assert.equal(findTensorflowPackage(root), undefined, 'the npm-overrides alias is not tfjs-node');
      fake('@tensorflow/tfjs-node', '@tensorflow/tfjs-node');
      assert.equal(findTensorflowPackage(root), '@tensorflow/tfjs-node');
      fake('@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node-gpu');
      assert.equal(findTensorflowPackage(root), '@tensorflow/tfjs-node-gpu');
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('webgpu on this machine', () => {
  /** conv2d (stride 2, 'same') and a depthwise conv, forward and gradients, as plain arrays. */
  async function convs(x: Sample, f: Sample, d: Sample): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    const xs = tf.tensor4d(x.values, x.shape as [number, number, number, number]);
    const fs4 = tf.tensor4d(f.values, f.shape as [number, number, number, number]);
    const ds = tf.tensor4d(d.values, d.shape as [number, number, number, number]);
    const y = tf.conv2d(xs, fs4, 2, 'same');
    const z = tf.depthwiseConv2d(xs, ds, 1, 'same');
    const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'))),
    );
    const [gx, gf] = g([xs, fs4]);
    for (const t of [y, z, gx, gf]) out.push(Float32Array.from(await t.data()));
    tf.dispose([xs, fs4, ds, y, z, gx, gf]);
    return out;
  }

  test('initialises (Vulkan, else OpenGL on EGL surfaceless) and matches wasm to 1e-4', async () => {
    const info = await initBackend('webgpu', { quiet: true });
    assert.equal(info.name, 'webgpu');
    assert.equal(tf.getBackend(), 'webgpu');
    assert.ok(
      ['vulkan', 'opengl'].includes(String(info.details.dawnBackend)),
      `dawn backend ${info.details.dawnBackend}`,
    );
    assert.ok(String(info.details.adapter).length > 0, 'adapter description');
    const x = normal([2, 16, 16, 8], 1);
    const f = normal([3, 3, 8, 16], 2, 0.3);
    const d = normal([3, 3, 8, 2], 3, 0.3);
    let gpu: Float32Array[] = [];
    await assertNoLeak('webgpu convs', async () => void (gpu = await convs(x, f, d)));
    await initBackend('wasm', { quiet: true });
    const cpuSide = await convs(x, f, d);
    ['conv2d', 'depthwise', 'conv2d dx', 'conv2d dW'].forEach((label, i) =>
      assertClose(gpu[i], cpuSide[i], `webgpu vs wasm ${label}`),
    );
  });
});
