/**
 * Compute backends for the kit.
 *
 *   wasm        default. XNNPACK + SIMD on MSM_THREADS / --threads threads (default all cores, at most 8;
 *               1 = tfjs' one-thread build), through wasm-threads.ts.
 *   cpu         tfjs' pure-JS kernels: slow, but the reference every gradient fix is tested against.
 *   webgpu      WGSL kernels through Dawn (npm `webgpu`): Vulkan on a real GPU, else EGL-surfaceless
 *               OpenGL on Mesa llvmpipe (slow, but it runs the same shaders, so kernels are testable).
 *   tensorflow  libtensorflow through @tensorflow/tfjs-node-gpu or -node, only when the user has
 *               installed one of them (they download libtensorflow at install time; never a dependency).
 *
 * `initBackend()` picks one (argument > MSM_BACKEND > 'wasm'), registers the kit's kernels and
 * gradient fixes once (the list: ./registrations.ts), and reports what it chose. See ../../README.md § Backends.
 */
import * as tf from '@tensorflow/tfjs';
import { registerKitKernels } from './registrations';
import * as fs from 'fs';
import { initWebGPU, WEBGPU_HOW_TO, WebGPUInfo } from './dawn';
import { announceBackend, type BackendInfo, type BackendName } from './hooks';
import { resolveThreads, startWasmThreads } from './wasm-threads';
export { threadsFromArgv } from './wasm-threads';

export { currentBackend, onBackendInit, type BackendInfo, type BackendName } from './hooks';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu', 'webgpu', 'tensorflow'];

export class BackendUnavailableError extends Error {
  constructor(name: string, why: string, how: string) {
    super(`Backend '${name}' is not available: ${why}\n  How to get it: ${how}`);
    this.name = 'BackendUnavailableError';
  }
}

function resolveName(name?: string): { name: BackendName; source: BackendInfo['source'] } {
  let source: BackendInfo['source'] = 'argument';
  let raw = name;
  if (!raw) {
    raw = process.env.MSM_BACKEND;
    source = 'MSM_BACKEND';
  }
  if (!raw) return { name: 'wasm', source: 'default' };
  const lower = raw.trim().toLowerCase();
  const alias: Record<string, BackendName> = { node: 'tensorflow', 'tfjs-node': 'tensorflow', gpu: 'webgpu' };
  const resolved = (alias[lower] ?? lower) as BackendName;
  if (!BACKENDS.includes(resolved)) {
    throw new Error(`Unknown backend '${raw}' (from ${source}). Choose one of: ${BACKENDS.join(', ')}.`);
  }
  return { name: resolved, source };
}

/**
 * Is the real tfjs-node(-gpu) installed? `@tensorflow/tfjs-node` may be the npm-overrides alias of
 * plain @tensorflow/tfjs that danfojs-node needs (package.json "overrides"), so the package's own
 * manifest name must match. `searchFrom` (tests) resolves from another folder instead of this file's.
 */
export function findTensorflowPackage(searchFrom?: string): string | undefined {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      const manifestPath = require.resolve(`${pkg}/package.json`, searchFrom ? { paths: [searchFrom] } : undefined);
      const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { name?: string };
      if (manifest.name === pkg) return pkg;
    } catch {
      /* not installed */
    }
  }
  return undefined;
}

/** How to get the tensorflow backend (part of its BackendUnavailableError). */
export const TENSORFLOW_HOW_TO =
  'on a machine with internet access run `npm install --no-save @tensorflow/tfjs-node-gpu@4.22.0` ' +
  '(Linux, CUDA 11.2 + cuDNN 8.1; its install script downloads libtensorflow). The CPU build ' +
  '@tensorflow/tfjs-node cannot be added to this checkout as is: package.json "overrides" maps that name ' +
  'to plain @tensorflow/tfjs for danfojs-node (drop the override first, or use the wasm backend). ' +
  'See README § Backends.';

async function activate(name: BackendName, threads?: number): Promise<Record<string, string | number | boolean>> {
  switch (name) {
    case 'cpu': {
      require('@tensorflow/tfjs-backend-cpu');
      await setOrThrow('cpu');
      // The cpu backend greets its first tensor with "install tfjs-node"; here cpu is a deliberate
      // reference backend and tfjs-node is not installable offline, so skip the banner.
      (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
      return {};
    }
    case 'wasm': {
      require('@tensorflow/tfjs-backend-wasm');
      const running = await startWasmThreads(resolveThreads(threads).threads, () => setOrThrow('wasm'));
      return { simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')), threads: running };
    }
    case 'webgpu': {
      let info: WebGPUInfo;
      try {
        info = await initWebGPU();
      } catch (e) {
        throw new BackendUnavailableError('webgpu', (e as Error).message, WEBGPU_HOW_TO);
      }
      await setOrThrow('webgpu');
      return { ...info };
    }
    case 'tensorflow': {
      const pkg = findTensorflowPackage();
      if (!pkg) {
        throw new BackendUnavailableError(
          'tensorflow',
          'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed ' +
            '(node_modules/@tensorflow/tfjs-node, if present, is the overrides alias of plain tfjs).',
          TENSORFLOW_HOW_TO,
        );
      }
      require(pkg);
      await setOrThrow('tensorflow');
      return { package: pkg };
    }
  }
}

async function setOrThrow(name: string): Promise<void> {
  const ok = await tf.setBackend(name);
  if (!ok || tf.getBackend() !== name) {
    throw new BackendUnavailableError(name, 'tf.setBackend() failed to initialise it.', 'see README § Backends.');
  }
  await tf.ready();
}

/**
 * Select and initialise a backend; registers the gradient fixes and the kit's kernels once (./registrations.ts).
 * Safe to call again: switching backends is allowed (tests compare them). `threads`: XNNPACK threads on
 * wasm (else MSM_THREADS, else the default of wasm-threads.ts `resolveThreads`); another count than the
 * running one re-creates the backend.
 */
export async function initBackend(
  name?: string,
  opts: { quiet?: boolean; threads?: number } = {},
): Promise<BackendInfo> {
  const choice = resolveName(name);
  const details = await activate(choice.name, opts.threads);
  registerKitKernels();
  const info: BackendInfo = {
    name: choice.name,
    source: choice.source,
    tfjsVersion: tf.version.tfjs,
    details,
  };
  announceBackend(info);
  if (!opts.quiet && process.env.MSM_QUIET !== '1') console.log(describeBackend(info));
  return info;
}

/** One line such as `backend: wasm (default; simd=true, threads=2), tfjs 4.22.0`. */
export function describeBackend(info: BackendInfo): string {
  const d = Object.entries(info.details)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `backend: ${info.name} (${info.source}${d ? '; ' + d : ''}), tfjs ${info.tfjsVersion}`;
}

/** `--backend NAME` / `--backend=NAME` from an argv list, for scripts. */
export function backendFromArgv(argv: string[] = process.argv.slice(2)): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--backend') return argv[i + 1];
    if (argv[i].startsWith('--backend=')) return argv[i].slice('--backend='.length);
  }
  return undefined;
}
