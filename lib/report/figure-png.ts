/**
 * Static PNGs of plotly figures, drawn by headless Chromium (Debian package `chromium`), so that saved
 * notebooks show their figures where no script runs (GitHub, nbviewer when plotly.js cannot load).
 * `scripts/run-notebooks.ts --inplace` adds one to every figure output it saves.
 *
 * One Chromium process per figure: a temporary page loads plotly.js from node_modules (a file: URL, no
 * network), draws the figure at a fixed size with `staticPlot`, and `--screenshot` writes the PNG.
 * `--virtual-time-budget` lets the page's scripts finish before the shot.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { plotlyJsPath, type Figure } from './plot';

/** The Chromium binary: `MSM_CHROMIUM`, else the first of chromium / chromium-browser / google-chrome on PATH. */
export function findChromium(): string | undefined {
  if (process.env.MSM_CHROMIUM) return fs.existsSync(process.env.MSM_CHROMIUM) ? process.env.MSM_CHROMIUM : undefined;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
      const p = path.join(dir, name);
      if (dir && fs.existsSync(p)) return p;
    }
  }
  return undefined;
}

/** Flags every headless run of the kit uses (root in containers needs --no-sandbox; no GPU, no network). */
export function headlessFlags(): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--hide-scrollbars',
    '--no-first-run',
    '--disable-extensions',
    '--mute-audio',
    '--allow-file-access-from-files',
  ];
}

export interface FigurePngOptions {
  /** Width in CSS pixels when the layout sets none (default 960, about a notebook output area). */
  width?: number;
  /** Height when the layout sets none (default 450). */
  height?: number;
  /** Chromium binary (default `findChromium()`). */
  chromium?: string;
  /** Milliseconds of page time for plotly to draw (default 10 000). */
  budgetMs?: number;
}

/** Render `fig` to PNG bytes; throws a one-line error when Chromium is missing or draws nothing. */
export function figurePng(fig: Figure, opts: FigurePngOptions = {}): Buffer {
  const chromium = opts.chromium ?? findChromium();
  if (!chromium) throw new Error('figurePng: no Chromium found: apt-get install chromium (or set MSM_CHROMIUM)');
  const layout = { ...(fig.layout ?? {}) };
  const width = Math.round((layout.width as number | undefined) ?? opts.width ?? 960);
  const height = Math.round((layout.height as number | undefined) ?? opts.height ?? 450);
  layout.width = width;
  layout.height = height;
  const payload = JSON.stringify({ data: fig.data, layout, config: { staticPlot: true, displayModeBar: false } })
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-figure-png-'));
  try {
    const page = path.join(tmp, 'figure.html');
    const png = path.join(tmp, 'figure.png');
    fs.writeFileSync(
      page,
      '<!DOCTYPE html><html><head><meta charset="utf-8"><style>html,body{margin:0;background:#fff}</style>' +
        `<script src="${pathToFileURL(plotlyJsPath()).href}"></script></head><body>` +
        `<div id="fig" style="width:${width}px;height:${height}px"></div><script>var f=${payload};` +
        'Plotly.newPlot("fig",f.data,f.layout,f.config);</script></body></html>',
    );
    const r = spawnSync(
      chromium,
      [
        ...headlessFlags(),
        `--user-data-dir=${path.join(tmp, 'profile')}`,
        `--window-size=${width},${height}`,
        `--virtual-time-budget=${opts.budgetMs ?? 10_000}`,
        `--screenshot=${png}`,
        pathToFileURL(page).href,
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    if (!fs.existsSync(png)) {
      const why = r.error ? String(r.error) : (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
      throw new Error(`figurePng: ${chromium} wrote no screenshot (exit ${r.status}): ${why}`);
    }
    return fs.readFileSync(png);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * `png` re-encoded with a palette of at most 256 colours (libimagequant through sharp, dithered), or `png`
 * itself when that is not smaller. Saved notebooks carry every figure as a PNG; a Chromium screenshot is
 * full-colour, and the palette version of the kit's figures (flat plot colours; cell photos and Grad-CAM
 * heatmaps at a few hundred pixels) is about half the size with no difference visible at the shown size.
 */
export async function compactPng(png: Buffer): Promise<Buffer> {
  const smaller = await sharp(png)
    .png({ palette: true, colours: 256, dither: 1, effort: 10, compressionLevel: 9 })
    .toBuffer();
  return smaller.length < png.length ? smaller : png;
}
