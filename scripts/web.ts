/**
 * `npm run web -- runs/<name> [--port 8080] [--host 127.0.0.1]`: build the browser app (web/) and serve it
 * with the run's weights on a local static server (node:http). Open the printed URL; Ctrl-C stops.
 *
 * URLs: / → the app (index.html, app.js, style.css, wasm/…); /run/run.json, /run/config.json,
 * /run/best.safetensors → the run's files (the weights predict would load). Nothing else is served.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { buildWebApp, runFilesOf } from './lib/web-app';
import { CliError, parseArgs, runMain, type CliSpec } from './lib/cli';

const SPEC: CliSpec = {
  command: 'npm run web --',
  summary: "Serve the browser app with a run's weights on a local static server and print its URL.",
  positional: '<run folder>',
  backend: false,
  flags: [
    { key: 'port', type: 'number', default: 8080, help: 'port (0: any free port)' },
    { key: 'host', type: 'string', default: '127.0.0.1', help: 'address to listen on (0.0.0.0: the whole network)' },
  ],
  epilog: [
    'The page classifies images you drop on it with the run (wasm backend, WebGPU where the browser has it).',
    'Examples:',
    '  npm run web -- runs/malaria-cpu',
    '  npm run web -- runs/malaria-cpu --port 0',
    'To publish the page as static files instead: npm run web:build -- runs/malaria-cpu --out web-dist',
  ].join('\n'),
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.png': 'image/png',
};

/** URL path → file: the app folder's files plus the run's files under /run/. */
export function resolveUrl(urlPath: string, appDir: string, runFiles: Record<string, string>): string | undefined {
  let p: string;
  try {
    p = decodeURIComponent(urlPath.split('?')[0]);
  } catch {
    return undefined;
  }
  if (p === '/') p = '/index.html';
  if (p.startsWith('/run/')) return runFiles[p.slice('/run/'.length)];
  const file = path.join(appDir, path.normalize(p));
  // No escape from the app folder (../ or absolute paths).
  return file.startsWith(appDir + path.sep) ? file : undefined;
}

async function main(): Promise<void> {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPEC);
  if (positional.length !== 1) throw new CliError('give one run folder, e.g. npm run web -- runs/malaria-cpu');
  const runDir = positional[0];
  if (!fs.existsSync(runDir)) throw new CliError(`${runDir}: no such run folder`);
  const runFiles = runFilesOf(runDir);
  const appDir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-web-'));
  const built = await buildWebApp(appDir);
  process.stderr.write(`built the app in ${built.ms} ms (app.js ${(built.appBytes / 2 ** 20).toFixed(1)} MiB)\n`);
  const server = http.createServer((req, res) => {
    const file = resolveUrl(req.url ?? '/', appDir, runFiles);
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': fs.statSync(file).size,
      'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
  });
  const port = v.port as number;
  if (!(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new CliError(`flag --port must be 0–65535, got ${port}`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new CliError(
          e.code === 'EADDRINUSE' ? `port ${port} is in use: pick another with --port (0: any free port)` : e.message,
        ),
      ),
    );
    server.listen(port, v.host as string, resolve);
  });
  const addr = server.address() as { port: number };
  const host = (v.host as string) === '0.0.0.0' ? 'localhost' : (v.host as string);
  const cleanup = () => fs.rmSync(appDir, { recursive: true, force: true });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      server.close();
      cleanup();
      process.exit(128 + os.constants.signals[sig]);
    });
  }
  // The test reads this line to find the port.
  console.log(`serving ${path.resolve(runDir)} at http://${host}:${addr.port}/ (Ctrl-C stops)`);
}

if (require.main === module) runMain(main);
