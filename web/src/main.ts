/**
 * The page: pick a backend, get a run (served under run/ by `npm run web` / `npm run web:build`, or a
 * folder the user picks), classify dropped or chosen images, show probabilities (plotly) and Grad-CAM.
 * Every failure lands in the page's message box (#error), never as a blank page.
 */
import Plotly from 'plotly.js-dist';
import { hasWebGPU, startBackend, type PageBackend } from './backend';
import { classify } from './classify';
import { decodeImageFile } from './image';
import { drawGradCam, drawImage } from './overlay';
import { loadPageRun, RunError, type PageRun, type RunFiles } from './run';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const errorBox = $('error');
const status = $('status');
const results = $('results');

let run: PageRun | undefined;
let backendLine = '';
let firstPredictionAt: number | undefined;

function showError(message: string): void {
  const line = document.createElement('div');
  line.textContent = message;
  errorBox.append(line);
  errorBox.hidden = false;
  document.body.dataset.errors = String(errorBox.childElementCount);
}

function clearErrors(): void {
  errorBox.replaceChildren();
  errorBox.hidden = true;
  delete document.body.dataset.errors;
}

window.addEventListener('error', (e) => showError(`unexpected error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) =>
  showError(`unexpected error: ${(e.reason as Error)?.message ?? String(e.reason)}`),
);

function setStatus(text: string, state: string): void {
  status.textContent = text;
  document.body.dataset.state = state;
}

function describeRun(r: PageRun): string {
  return (
    `${r.name}: ${r.modelName}, ${r.imageSize}×${r.imageSize} px, classes ${r.classes.join(', ')}, ` +
    `normalisation ${r.normalization.source}`
  );
}

function useRun(files: RunFiles): void {
  clearErrors();
  run?.model.dispose();
  run = undefined;
  const t0 = performance.now();
  run = loadPageRun(files);
  $('run-info').textContent = describeRun(run);
  setStatus(`backend ${backendLine}; run loaded in ${(performance.now() - t0).toFixed(0)} ms`, 'ready');
}

/** run.json, config.json and best.safetensors among picked files (a run folder or the three files). */
async function runFromPicked(list: FileList): Promise<RunFiles> {
  const files = Array.from(list);
  const byName = (name: string) =>
    files
      .filter((f) => f.name === name)
      // A run folder holds checkpoints/best.safetensors; prefer the shallowest match.
      .sort((a, b) => (a.webkitRelativePath || a.name).length - (b.webkitRelativePath || b.name).length)[0];
  const runJson = byName('run.json');
  const configJson = byName('config.json');
  const weights = byName('best.safetensors');
  const missing = [!runJson && 'run.json', !configJson && 'config.json', !weights && 'best.safetensors'].filter(
    Boolean,
  );
  if (missing.length) {
    throw new RunError(
      `the chosen files lack ${missing.join(', ')}: choose a run folder (runs/<name>) or its run.json, ` +
        'config.json and checkpoints/best.safetensors',
    );
  }
  const root = (runJson as File).webkitRelativePath.split('/')[0];
  return {
    runJson: await (runJson as File).text(),
    configJson: await (configJson as File).text(),
    weights: new Uint8Array(await (weights as File).arrayBuffer()),
    label: root || 'the chosen files',
  };
}

/** The run the server publishes under run/, if any (404: the page was opened without one). */
async function servedRun(): Promise<RunFiles | undefined> {
  const head = await fetch('run/run.json');
  if (!head.ok) return undefined;
  const get = async (name: string) => {
    const r = await fetch(`run/${name}`);
    if (!r.ok) throw new RunError(`the server has run/run.json but not run/${name} (HTTP ${r.status})`);
    return r;
  };
  return {
    runJson: await head.text(),
    configJson: await (await get('config.json')).text(),
    weights: new Uint8Array(await (await get('best.safetensors')).arrayBuffer()),
    label: 'run',
  };
}

async function classifyFiles(list: FileList | File[]): Promise<void> {
  clearErrors();
  if (!run) {
    showError('no run loaded: choose a run folder first');
    return;
  }
  for (const file of Array.from(list)) {
    try {
      setStatus(`backend ${backendLine}; classifying ${file.name}…`, 'busy');
      const img = await decodeImageFile(file);
      const out = await classify(run, img);
      firstPredictionAt ??= performance.now();
      addResult(run, file.name, img, out);
    } catch (e) {
      showError((e as Error).message);
    }
  }
  setStatus(`backend ${backendLine}; ${results.childElementCount} image(s) classified`, 'ready');
}

function addResult(
  r: PageRun,
  name: string,
  img: Parameters<typeof drawImage>[1],
  out: Awaited<ReturnType<typeof classify>>,
): void {
  const card = document.createElement('section');
  card.className = 'result';
  card.dataset.file = name;
  card.dataset.probs = JSON.stringify(out.probs);
  card.dataset.predictMs = String(out.predictMs);
  card.dataset.camMs = String(out.camMs);
  const title = document.createElement('h3');
  title.textContent = `${name} → ${r.classes[out.predicted]} (${(100 * out.probs[out.predicted]).toFixed(1)} %)`;
  const timing = document.createElement('p');
  timing.className = 'timing';
  timing.textContent =
    `${backendLine.split(' ')[0]}: ${out.predictMs.toFixed(1)} ms prediction, ` +
    `${out.camMs.toFixed(1)} ms Grad-CAM (stage ${out.camStage})`;
  const picture = document.createElement('div');
  picture.className = 'picture';
  const under = document.createElement('canvas');
  under.className = 'image';
  const canvas = document.createElement('canvas');
  canvas.className = 'gradcam';
  for (const c of [under, canvas]) c.width = c.height = 224;
  canvas.title = `Grad-CAM for ${r.classes[out.predicted]} at stage ${out.camStage}`;
  drawImage(under, img);
  drawGradCam(canvas, out.cam, r.imageSize);
  picture.append(under, canvas);
  card.dataset.camMax = String(Math.max(...out.cam));
  const chart = document.createElement('div');
  chart.className = 'chart';
  const row = document.createElement('div');
  row.className = 'row';
  row.append(picture, chart);
  card.append(title, timing, row);
  for (const w of out.camWarnings) {
    const p = document.createElement('p');
    p.className = 'warning';
    p.textContent = w;
    card.append(p);
  }
  results.prepend(card);
  void Plotly.newPlot(
    chart,
    [{ type: 'bar', orientation: 'h', x: out.probs, y: r.classes, text: out.probs.map((p) => p.toFixed(4)) }],
    { margin: { l: 110, r: 20, t: 10, b: 30 }, xaxis: { range: [0, 1], title: { text: 'probability' } }, height: 220 },
    { displayModeBar: false, responsive: true },
  );
}

async function start(backend: PageBackend): Promise<void> {
  setStatus(`starting the ${backend} backend…`, 'loading');
  backendLine = await startBackend(backend, 'wasm/');
  document.body.dataset.backend = backend;
  const served = await servedRun();
  if (served) useRun(served);
  else setStatus(`backend ${backendLine}; choose a run folder`, 'no-run');
}

async function main(): Promise<void> {
  const select = $<HTMLSelectElement>('backend');
  const asked = new URLSearchParams(location.search).get('backend');
  if (!(await hasWebGPU())) {
    (select.querySelector('option[value=webgpu]') as HTMLOptionElement).disabled = true;
  }
  select.value = asked === 'webgpu' ? 'webgpu' : 'wasm';
  select.addEventListener('change', () => {
    const url = new URL(location.href);
    url.searchParams.set('backend', select.value);
    location.href = url.toString(); // a fresh page: tfjs kernels are registered per backend once
  });
  const wrap = (f: () => Promise<void>) => () => f().catch((e: Error) => showError(e.message));
  /** Call `use` with an input's files on change, then empty the input so choosing the same files again works. */
  const onFiles = (id: string, use: (files: FileList) => Promise<void>) => {
    const input = $<HTMLInputElement>(id);
    input.addEventListener(
      'change',
      wrap(async () => {
        const files = input.files as FileList;
        try {
          await use(files);
        } finally {
          input.value = '';
        }
      }),
    );
  };
  onFiles('run-folder', async (files) => useRun(await runFromPicked(files)));
  onFiles('run-files', async (files) => useRun(await runFromPicked(files)));
  onFiles('images', (files) => classifyFiles(Array.from(files)));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void wrap(() => classifyFiles(e.dataTransfer?.files ?? []))();
  });
  await start(select.value as PageBackend);
}

/** What the page measured, for the browser test and curious readers (`msmWeb.timings()` in the console). */
(window as unknown as { msmWeb: object }).msmWeb = {
  timings: () => ({ firstPredictionAt, backend: backendLine }),
};

main().catch((e: Error) => {
  setStatus('failed', 'error');
  showError(e.message);
});
