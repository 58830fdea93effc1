/**
 * `npm run web:build -- runs/<name> [--out web-dist]`: write the browser app and one run's weights into a
 * folder of static files (index.html, app.js, style.css, wasm/, run/) that any static host serves as is,
 * e.g. GitHub Pages (README § In the browser).
 */
import * as fs from 'fs';
import * as path from 'path';
import { buildWebApp, runFilesOf } from './lib/web-app';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run web:build --',
  summary: "Write the browser app plus a run's weights as a self-contained folder of static files.",
  positional: '<run folder>',
  backend: false,
  flags: [
    { key: 'out', type: 'string', default: 'web-dist', help: 'output folder (created; app and run files replaced)' },
  ],
  epilog: [
    'Examples:',
    '  npm run web:build -- runs/malaria-cpu --out web-dist',
    '  python3 -m http.server -d web-dist    # or any static server; GitHub Pages: README § In the browser',
  ].join('\n'),
};

async function main(): Promise<void> {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPEC);
  if (positional.length !== 1) throw new CliError('give one run folder, e.g. npm run web:build -- runs/malaria-cpu');
  const runDir = positional[0];
  if (!fs.existsSync(runDir)) throw new CliError(`${runDir}: no such run folder`);
  const out = v.out as string;
  if (!out) throw new CliError('flag --out needs a folder name');
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory())
    throw new CliError(`--out ${out} exists and is not a folder`);
  const runFiles = runFilesOf(runDir);
  const built = await buildWebApp(out);
  fs.mkdirSync(path.join(out, 'run'), { recursive: true });
  let bytes = built.appBytes;
  for (const [name, file] of Object.entries(runFiles)) {
    fs.copyFileSync(file, path.join(out, 'run', name));
    bytes += fs.statSync(file).size;
  }
  console.log(
    `${path.resolve(out)}: the app with ${path.basename(path.resolve(runDir))} (${(bytes / 2 ** 20).toFixed(1)} MiB ` +
      'without the wasm binaries); serve it as static files (README § In the browser)',
  );
}

if (require.main === module) runMain(main);
