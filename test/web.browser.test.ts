/**
 * The browser app end to end, in Debian's headless Chromium over the DevTools pipe (helpers/chromium-cdp.ts):
 *
 *   1. a tiny run: Microscopic-Mamba-T (depths [1, 1, 1, 1]) trained for 12 steps at 32 px by `trainRun` (what
 *      `npm run train` runs) on a small folder set — 16/8/4 real malaria cells per class from
 *      ../shared/data/nih-malaria-cells-128 (128 px, so the page resizes 128 → 32 like predict), or, without
 *      the shared data, the kit's synthetic PNG set (48 px);
 *   2. `npm run web -- <run> --port 0` (the real script, as a child process), page opened on its URL;
 *   3. three test images uploaded through the page's file input: the page's probabilities must equal
 *      `npm run predict` (the script, and its `predictImages` in this process) on the same files to ≤ 1e-4, and each result's
 *      Grad-CAM canvas must hold a drawn, non-uniform picture;
 *   4. a truncated PNG, a text file and a TIFF uploaded: the page shows an error naming each file (TIFF: convert
 *      it, browsers cannot decode it), and no result card;
 *   5. a run folder whose config.json does not match its weights, picked through the page's run-file input:
 *      an error saying the weights do not fit.
 * Timings (time to first prediction, ms per image) are taken in the page (wasm) and in Node (predict's code,
 * same process, wasm) and printed; with MSM_WEB_RECORD=1 they are written to benchmarks/web.md and the
 * page's screenshot to docs/img/web.png (the README's picture).
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { initBackend } from '../lib/backend/index';
import { writeSyntheticDataset } from '../lib/data/index';
import { sharedDataDir } from '../lib/data/paths';
import { findChromium } from '../lib/report/figure-png';
import { makeTrainConfig } from '../lib/train/config';
import { loadRun, loadWeightsFile, predictImages } from '../lib/train/evaluate';
import { createModel, listModels, modelMeta, saveWeights } from '../lib/models/index';
import { trainRun, type Normalization } from '../lib/train/run';
import { ChromiumPage } from './helpers/chromium-cdp';
import { resolveUrl } from '../scripts/web';

const repo = path.resolve(__dirname, '..');
const chromium = findChromium();
const noChromium = chromium ? undefined : 'no chromium on PATH (apt-get install chromium, or set MSM_CHROMIUM)';
const shared = sharedDataDir();
const MALARIA = shared ? path.join(shared, 'nih-malaria-cells-128') : undefined;
const record = process.env.MSM_WEB_RECORD === '1';

let tmp = '';
let runDir = '';
let images: string[] = [];
let dataNote = '';
let server: ChildProcess | undefined;
let url = '';
let page: ChromiumPage | undefined;

/** A split-layout folder set from every k-th real cell of each class: perSplit images per class. */
function malariaSubset(root: string, perSplit: Record<string, number>): string {
  const out = path.join(tmp, 'cells');
  const from: Record<string, string> = { train: 'train', val: 'validation', test: 'test' };
  for (const [split, n] of Object.entries(perSplit)) {
    for (const cls of ['Parasitized', 'Uninfected']) {
      const dir = path.join(root, from[split], cls);
      const files = fs.readdirSync(dir).sort();
      fs.mkdirSync(path.join(out, split, cls), { recursive: true });
      for (let i = 0; i < n; i++) {
        const f = files[Math.floor((i * files.length) / n)];
        fs.copyFileSync(path.join(dir, f), path.join(out, split, cls, f));
      }
    }
  }
  return out;
}

function listPngs(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.png'))
    .sort()
    .map((f) => path.join(dir, f));
}

before(async () => {
  if (noChromium) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-web-test-'));
  process.env.MSM_DATA_CACHE = path.join(tmp, 'cache');
  await initBackend('wasm', { quiet: true });
  let data: string;
  if (MALARIA && fs.existsSync(MALARIA)) {
    data = malariaSubset(MALARIA, { train: 16, val: 8, test: 4 });
    dataNote = 'real NIH malaria cells (128 px PNG, from ../shared/data/nih-malaria-cells-128)';
  } else {
    data = await writeSyntheticDataset({
      root: tmp,
      numClasses: 2,
      size: 48,
      perClass: { train: 16, val: 8, test: 4 },
    });
    dataNote = "the kit's synthetic set (48 px PNG; ../shared/data/nih-malaria-cells-128 is absent)";
  }
  const tests = listPngs(path.join(data, 'test'));
  images = [tests[0], tests[tests.length - 1], tests[1]]; // both classes
  const result = await trainRun(
    makeTrainConfig({
      name: 'tiny',
      runsDir: path.join(tmp, 'runs'),
      data,
      model: 'microscopic-mamba-t',
      modelConfig: '{"depths":[1,1,1,1]}',
      imageSize: 32,
      epochs: 3,
      maxSteps: 12,
      lr: 1e-3,
      batchSize: 8,
      evalBatchSize: 16,
      warmupEpochs: 0,
      augment: 'none',
      bootstrap: 0,
      report: false,
      evalTest: false,
      backend: 'wasm',
    }),
    { log: () => {}, progress: 'off' },
  );
  runDir = result.runDir;

  server = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts', 'web.ts'), runDir, '--port', '0'], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let serverOut = '';
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm run web printed no URL in 120 s:\n${serverOut}`)), 120_000);
    const onData = (d: Buffer) => {
      serverOut += d.toString();
      const m = /serving .* at (http:\/\/\S+)/.exec(serverOut);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    server?.stdout?.on('data', onData);
    server?.stderr?.on('data', onData);
    server?.on('exit', (code) => reject(new Error(`npm run web exited (${code}):\n${serverOut}`)));
  });
  page = await ChromiumPage.launch(chromium as string, { width: 900, height: 760 });
});

after(async () => {
  try {
    await page?.close();
  } finally {
    server?.kill('SIGTERM'); // always, or the test process would wait for the server forever
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true, maxRetries: 3 });
  }
});

const resultCount = `document.querySelectorAll('.result').length`;
const errorText = `document.getElementById('error').textContent`;

test(
  'the page classifies three cell images as predict does, draws Grad-CAM, and refuses bad input',
  { skip: noChromium, timeout: 300_000 },
  async () => {
    const p = page as ChromiumPage;
    const t0 = Date.now();
    await p.navigate(url);
    const state = await p.waitFor<string>(
      `document.body.dataset.state !== 'loading' && document.body.dataset.state`,
      'the page to start the backend and load the run',
    );
    const pageReadyMs = Date.now() - t0;
    assert.equal(state, 'ready', `page state ${state}; error box: ${await p.evaluate<string>(errorText)}`);
    assert.equal(await p.evaluate<string>(`document.body.dataset.backend`), 'wasm');

    // Three images: probabilities, Grad-CAM, timing.
    const t1 = Date.now();
    await p.setFiles('#images', images);
    await p.waitFor(`${resultCount} >= 1`, 'the first result');
    const firstPredictionMs = Date.now() - t1;
    await p.waitFor(`${resultCount} >= 3 || document.body.dataset.errors`, 'three results');
    assert.equal(await p.evaluate<string>(errorText), '', 'no error for three good images');
    const cards = await p.evaluate<
      Array<{ file: string; probs: number[]; predictMs: number; camMs: number; cam: number[] }>
    >(`
    [...document.querySelectorAll('.result')].map((r) => {
      const c = r.querySelector('canvas.gradcam');
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let drawn = 0;
      for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 0) drawn++;
      return { file: r.dataset.file, probs: JSON.parse(r.dataset.probs), predictMs: Number(r.dataset.predictMs),
               camMs: Number(r.dataset.camMs), cam: [drawn, px.length / 4, Number(r.dataset.camMax)] };
    })`);
    assert.equal(cards.length, 3);

    // `npm run predict` itself (a cold process: tsx start, backend, model, three images), then its code in this
    // process for warm per-image timings.
    const c0 = performance.now();
    const cli = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(repo, 'scripts', 'predict.ts'),
        runDir,
        ...images,
        '--format',
        'json',
        '--batch-size',
        '1',
      ],
      { cwd: repo, encoding: 'utf8', env: { ...process.env, MSM_QUIET: '1' } },
    );
    const cliMs = performance.now() - c0;
    assert.equal(cli.status, 0, `npm run predict failed: ${cli.stderr}`);
    const cliPreds = (JSON.parse(cli.stdout) as { predictions: Array<{ file: string; probs: number[] }> }).predictions;
    const loaded = loadRun(runDir);
    let nodePreds;
    let nodeFirstMs: number;
    let nodePerImageMs: number;
    try {
      const n0 = performance.now();
      const first = await predictImages(loaded, [images[0]], { batchSize: 1 });
      nodeFirstMs = performance.now() - n0;
      const n1 = performance.now();
      const rest = await predictImages(loaded, images.slice(1), { batchSize: 1 });
      nodePerImageMs = (performance.now() - n1) / (images.length - 1);
      nodePreds = [...first, ...rest];
    } finally {
      loaded.model.dispose();
    }
    for (const pred of [...cliPreds, ...nodePreds]) {
      const card = cards.find((c) => c.file === path.basename(pred.file));
      assert.ok(card, `no result in the page for ${path.basename(pred.file)}`);
      assert.equal(card.probs.length, pred.probs.length);
      const diff = Math.max(...pred.probs.map((v, i) => Math.abs(v - card.probs[i])));
      assert.ok(diff <= 1e-4, `${card.file}: page [${card.probs}] vs predict [${pred.probs}], max |Δ| ${diff} > 1e-4`);
      const [drawn, total, camMax] = card.cam;
      assert.equal(drawn, total, `${card.file}: the Grad-CAM overlay is not drawn (${drawn}/${total} pixels)`);
      assert.ok(camMax >= 0 && camMax <= 1, `${card.file}: Grad-CAM maximum ${camMax} is outside [0, 1]`);
    }
    const pagePerImageMs = cards
      .filter((c) => c.file !== path.basename(images[0]))
      .reduce((s, c) => s + c.predictMs / (images.length - 1), 0);

    if (record) {
      fs.mkdirSync(path.join(repo, 'docs', 'img'), { recursive: true });
      // A palette PNG keeps the README's picture small (~4× smaller than Chromium's RGBA PNG).
      const png = await sharp(await p.screenshot())
        .png({ palette: true, colours: 128 })
        .toBuffer();
      fs.writeFileSync(path.join(repo, 'docs', 'img', 'web.png'), png);
    }

    // Bad images: a truncated PNG and a text file get a message each, and no result.
    const truncated = path.join(tmp, 'truncated-cell.png');
    fs.writeFileSync(truncated, fs.readFileSync(images[0]).subarray(0, 200));
    const text = path.join(tmp, 'notes.png');
    fs.writeFileSync(text, 'not an image at all\n');
    const tiff = path.join(tmp, 'slide.tif');
    fs.writeFileSync(tiff, Buffer.from([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0, 0, 0]));
    await p.setFiles('#images', [truncated, text, tiff]);
    await p.waitFor(`Number(document.body.dataset.errors) >= 3`, 'three error messages');
    const errors = await p.evaluate<string>(errorText);
    assert.match(errors, /truncated-cell\.png: cannot decode png image/);
    assert.match(errors, /notes\.png: not an image/);
    assert.match(errors, /slide\.tif: TIFF is not supported in the browser .*convert it to PNG/);
    assert.equal(await p.evaluate<number>(resultCount), 3, 'bad files add no result');

    // A run whose config.json does not build the model its weights belong to.
    const bad = path.join(tmp, 'bad-run');
    fs.mkdirSync(bad);
    fs.copyFileSync(path.join(runDir, 'run.json'), path.join(bad, 'run.json'));
    fs.copyFileSync(path.join(runDir, 'checkpoints', 'best.safetensors'), path.join(bad, 'best.safetensors'));
    const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify({ ...config, modelConfig: '{"depths":[1,1,2,1]}' }));
    await p.setFiles(
      '#run-files',
      ['run.json', 'config.json', 'best.safetensors'].map((f) => path.join(bad, f)),
    );
    await p.waitFor(
      `Number(document.body.dataset.errors) >= 1 && /does not fit/.test(${errorText})`,
      'the mismatch message',
    );
    assert.match(await p.evaluate<string>(errorText), /best\.safetensors does not fit microscopic-mamba-t .*missing/);

    const load = os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(', ');
    const line = (k: string, v: string) => `| ${k} | ${v} |`;
    const report = [
      '# The browser app: time to first prediction and per image',
      '',
      'Measured by `test/web.browser.test.ts` (`MSM_WEB_RECORD=1 node --import tsx --test test/web.browser.test.ts`):',
      `a tiny Microscopic-Mamba-T run (depths [1, 1, 1, 1], 32 px, 12 training steps) on ${dataNote};`,
      'three test images, one at a time. Page: Debian headless Chromium, wasm backend (one thread, SIMD), served',
      'by `npm run web`. Node: the code of `npm run predict` (`loadRun` + `predictImages`, batch 1) in the test',
      'process, wasm backend. Probabilities agree to ≤ 1e-4 (checked by the test).',
      '',
      `Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores, load average ${load} during the run`,
      `(${new Date().toISOString().slice(0, 10)}; Chromium ${chromium}).`,
      '',
      '| | Chromium (wasm) | Node predict (wasm) |',
      '|---|---|---|',
      line('page ready: navigation → backend started and run loaded', `${pageReadyMs} ms | —`),
      line(
        'first prediction (upload → first result; Node: first `predictImages` call)',
        `${firstPredictionMs} ms | ${nodeFirstMs.toFixed(0)} ms`,
      ),
      line(
        'per image after the first (forward + read back)',
        `${pagePerImageMs.toFixed(1)} ms | ${nodePerImageMs.toFixed(1)} ms`,
      ),
      line(
        '`npm run predict -- <run> <3 images>` as a command (cold: tsx, backend, model, 3 images)',
        `— | ${cliMs.toFixed(0)} ms`,
      ),
      line(
        'Grad-CAM per image (page only)',
        `${(cards.reduce((s, c) => s + c.camMs, 0) / cards.length).toFixed(1)} ms | —`,
      ),
      '',
      "The page's first prediction includes decoding, wasm warm-up of every kernel, Grad-CAM and drawing of the",
      "first card. Node's first `predictImages` call is warm (the test process has just trained the run, so the",
      'wasm kernels are compiled); the cold Node figure is the `npm run predict` command. Timings on a shared, loaded',
      'machine are noisy: compare the two columns of one run only.',
      '',
    ].join('\n');
    process.stdout.write(report);
    if (record) fs.writeFileSync(path.join(repo, 'benchmarks', 'web.md'), report);
  },
);

test('npm run web serves the app folder and the run files only (no path escapes)', () => {
  const app = path.join(os.tmpdir(), 'app');
  const run = { 'run.json': '/r/run.json', 'best.safetensors': '/r/checkpoints/best.safetensors' };
  assert.equal(resolveUrl('/', app, run), path.join(app, 'index.html'));
  assert.equal(
    resolveUrl('/wasm/tfjs-backend-wasm.wasm?v=1', app, run),
    path.join(app, 'wasm', 'tfjs-backend-wasm.wasm'),
  );
  assert.equal(resolveUrl('/run/best.safetensors', app, run), '/r/checkpoints/best.safetensors');
  assert.equal(resolveUrl('/run/last.json', app, run), undefined, 'only the listed run files');
  for (const escape of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2fetc/passwd']) {
    const file = resolveUrl(escape, app, run);
    assert.ok(file === undefined || file.startsWith(app + path.sep), `${escape} → ${file}, outside the app folder`);
  }
  assert.equal(resolveUrl('/%E0%A4%A', app, run), undefined, 'a malformed escape is a 404');
});

/**
 * Every model of the zoo in the page (opt-in: MSM_WEB_ZOO=all or a comma-separated list; several minutes on two
 * cores). Each model, seeded and untrained, is saved as a run folder (run.json, config.json, best.safetensors), picked
 * through the page's run-file input, and one real image is classified: the page's probabilities must equal
 * `predictImages` on the same weights to ≤ 1e-4, and Grad-CAM must run (a result card appears, no error).
 */
const zooList = process.env.MSM_WEB_ZOO;
test(
  'every zoo model classifies in the page as predict does (MSM_WEB_ZOO)',
  {
    skip: noChromium ?? (zooList ? undefined : 'opt-in: set MSM_WEB_ZOO=all (or model names, comma-separated)'),
    timeout: 1_800_000,
  },
  async () => {
    const p = page as ChromiumPage;
    const names = zooList === 'all' ? listModels().map((m) => m.name) : (zooList as string).split(',');
    const normalization: Normalization = { mean: [0.5, 0.45, 0.4], std: [0.25, 0.25, 0.3], source: 'none' };
    const classes = ['a', 'b', 'c'];
    for (const name of names) {
      const meta = modelMeta(name);
      const size = meta.input.fixedSize ?? 32;
      const dir = path.join(tmp, `zoo-${name}`);
      fs.mkdirSync(dir, { recursive: true });
      const model = createModel(name, { numClasses: classes.length, seed: 7, imageSize: size });
      saveWeights(model, path.join(dir, 'best.safetensors'));
      model.dispose();
      const runJson = { name, model: { name, numClasses: 3 }, dataset: { classes }, imageSize: size, normalization };
      fs.writeFileSync(path.join(dir, 'run.json'), JSON.stringify(runJson));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model: name, modelConfig: '', seed: 7 }));
      // Messages of an earlier step must not read as this model's.
      await p.evaluate(`document.getElementById('error').replaceChildren(); delete document.body.dataset.errors`);
      await p.setFiles(
        '#run-files',
        ['run.json', 'config.json', 'best.safetensors'].map((f) => path.join(dir, f)),
      );
      await p.waitFor(
        `document.getElementById('run-info').textContent.startsWith(${JSON.stringify(name + ':')}) || document.body.dataset.errors`,
        `${name}: the run to load`,
        300_000,
      );
      const before = await p.evaluate<number>(resultCount);
      await p.setFiles('#images', [images[0]]);
      await p.waitFor(`${resultCount} > ${before} || document.body.dataset.errors`, `${name}: a result`, 600_000);
      assert.equal(await p.evaluate<string>(errorText), '', `${name}: the page reported an error`);
      const probs = await p.evaluate<number[]>(`JSON.parse(document.querySelector('.result').dataset.probs)`);
      const loaded = loadWeightsFile(path.join(dir, 'best.safetensors'), {
        model: name,
        imageSize: size,
        classes,
        normalization,
      });
      try {
        const [pred] = await predictImages(loaded, [images[0]], { batchSize: 1 });
        const diff = Math.max(...pred.probs.map((v, i) => Math.abs(v - probs[i])));
        process.stdout.write(`${name} (${size} px): max |page − predict| = ${diff.toExponential(2)}\n`);
        assert.ok(diff <= 1e-4, `${name}: page [${probs}] vs predict [${pred.probs}], max |Δ| ${diff}`);
      } finally {
        loaded.model.dispose();
      }
    }
  },
);
