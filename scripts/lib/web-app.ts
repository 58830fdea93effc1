/**
 * The browser app (web/) as files: `buildWebApp` bundles web/src/main.ts with esbuild for the browser and
 * writes index.html, style.css, app.js and the tfjs wasm binaries (wasm/) into a folder; `runFilesOf` says
 * which files of a run folder the page needs (served or copied under run/). Used by `npm run web` (serve)
 * and `npm run web:build` (a folder to publish).
 *
 * Node modules in the bundle: lib/ files the page imports (lib/nn, lib/models, lib/ops, lib/backend's
 * kernels) also hold Node-only functions (file I/O in lib/nn/safetensors.ts, the scan's worker threads in
 * lib/ops/selective-scan/wasm-simd.ts, V8 flags in lib/util/wasm-api.ts). The page never calls them, so the
 * Node built-ins those files import resolve to an empty module here — the same mechanism as the
 * `"browser": { "fs": false, ... }` field of @tensorflow/tfjs-backend-wasm's package.json. Only the
 * modules listed in BROWSER_EMPTY are allowed: any other Node import fails the build, naming the file.
 * `process.env` reads (MSM_SCAN_ENGINE, MSM_SCAN_THREADS) see an empty object: the defaults apply.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Plugin } from 'esbuild';
import { pickTestCheckpoint } from '../../lib/train/run';

/** Node built-ins that lib files reach in the page's import graph, each with the code that uses it. */
export const BROWSER_EMPTY: Record<string, string> = {
  fs: 'lib/nn/safetensors.ts readSafetensors; lib/backend file checks',
  'node:fs': 'lib/util/fs.ts atomic writes (writeSafetensors)',
  'node:path': 'lib/util/fs.ts atomic writes (writeSafetensors)',
  os: 'lib/ops/selective-scan/wasm-simd.ts thread count (threads need SharedArrayBuffer; the page has one thread)',
  worker_threads: 'lib/backend/worker-pool.ts (the scan and heap kernels on threads; idem: the page has one thread)',
  v8: 'lib/util/wasm-api.ts V8 tiering flags (unavailable: V8 default tiering)',
};

/** Repository root (this file is scripts/lib/web-app.ts). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

const nodeBuiltinsEmpty: Plugin = {
  name: 'node-builtins-empty',
  setup(build) {
    const builtins = new Set(require('module').builtinModules as string[]);
    build.onResolve({ filter: /^[a-z0-9_:/]+$/ }, (args) => {
      const bare = args.path.replace(/^node:/, '');
      // Packages map their own Node imports through their package.json "browser" field.
      if (!builtins.has(bare) || args.importer.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      if (!(args.path in BROWSER_EMPTY)) {
        return {
          errors: [
            {
              text:
                `${path.relative(REPO_ROOT, args.importer)} imports the Node module '${args.path}', which the ` +
                'browser app cannot use: move that code out of the files the page imports (or, if the page never ' +
                'calls it, add it to BROWSER_EMPTY in scripts/lib/web-app.ts saying why)',
            },
          ],
        };
      }
      return { path: args.path, namespace: 'browser-empty' };
    });
    build.onLoad({ filter: /.*/, namespace: 'browser-empty' }, () => ({
      contents: 'module.exports = {};',
      loader: 'js',
    }));
  },
};

export interface WebBuildResult {
  outDir: string;
  /** Bytes of app.js. */
  appBytes: number;
  ms: number;
}

/** Bundle the page into `outDir` (created; existing app files replaced). */
export async function buildWebApp(outDir: string, opts: { minify?: boolean } = {}): Promise<WebBuildResult> {
  const t0 = Date.now();
  let esbuild: typeof import('esbuild');
  try {
    esbuild = require('esbuild');
  } catch {
    throw new Error('esbuild is not installed: run `npm install` in the repository (it is a dependency)');
  }
  fs.mkdirSync(path.join(outDir, 'wasm'), { recursive: true });
  const web = path.join(REPO_ROOT, 'web');
  const result = await esbuild.build({
    entryPoints: [path.join(web, 'src', 'main.ts')],
    outfile: path.join(outDir, 'app.js'),
    bundle: true,
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
    minify: opts.minify !== false,
    sourcemap: false,
    define: { 'process.env': '{}' },
    plugins: [nodeBuiltinsEmpty],
    logLevel: 'silent',
    legalComments: 'none',
  });
  for (const w of result.warnings) process.stderr.write(`esbuild warning: ${w.text}\n`);
  for (const f of ['index.html', 'style.css']) fs.copyFileSync(path.join(web, f), path.join(outDir, f));
  // The wasm backend fetches its binary from wasm/ (setWasmPaths); the threaded one needs
  // cross-origin isolation, which static hosting rarely gives, so only the single-threaded builds go.
  const wasmDist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm']) {
    fs.copyFileSync(path.join(wasmDist, f), path.join(outDir, 'wasm', f));
  }
  return { outDir, appBytes: fs.statSync(path.join(outDir, 'app.js')).size, ms: Date.now() - t0 };
}

/**
 * The run files the page reads, as URL name → file: run.json, config.json and the weights `predict` would
 * load (checkpoints/best.safetensors, else the last checkpoint) as best.safetensors.
 */
export function runFilesOf(runDir: string): Record<string, string> {
  for (const f of ['run.json', 'config.json']) {
    if (!fs.existsSync(path.join(runDir, f))) {
      throw new Error(`${runDir}: no ${f}; give a run folder written by npm run train (runs/<name>)`);
    }
  }
  return {
    'run.json': path.join(runDir, 'run.json'),
    'config.json': path.join(runDir, 'config.json'),
    'best.safetensors': pickTestCheckpoint(runDir, 'best'),
  };
}
