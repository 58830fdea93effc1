/**
 * Static figure PNGs (lib/report/figure-png.ts) and how `npm run notebooks` adds them to saved outputs
 * (scripts/run-notebooks.ts `addStaticImages`). The Chromium part skips, with the reason, where Chromium is missing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { compactPng, figurePng, findChromium } from '../lib/report/figure-png';
import { confusionMatrixFigure, figureHtml, lineChart, PLACEHOLDER_CLASS } from '../lib/report/plot';
import { addStaticImages, type Notebook } from '../scripts/run-notebooks';

const PNG_MAGIC = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);

test('confusion matrix: the correct diagonal is the dark end of the colour scale', () => {
  const trace = confusionMatrixFigure([
    [9, 1],
    [2, 8],
  ]).data[0];
  // plotly's 'Blues' runs from dark (low) to light (high): reversed, a high rate is dark.
  assert.equal(trace.colorscale, 'Blues');
  assert.equal(trace.reversescale, true);
});

test('addStaticImages: every plotly output gets image/png and shows it in place of the placeholder', async () => {
  const fig = lineChart([{ name: 'a', y: [1, 2, 3] }], { title: 'T' });
  const html = figureHtml(fig, { includePlotly: false });
  assert.ok(html.includes(PLACEHOLDER_CLASS));
  const nb: Notebook = {
    cells: [
      { cell_type: 'markdown', source: 'x' },
      {
        cell_type: 'code',
        source: 'showFigure(fig)',
        outputs: [
          { output_type: 'stream', name: 'stdout', text: 'hi' },
          {
            output_type: 'display_data',
            data: { 'text/html': html.match(/[\s\S]{1,80}/g)!, 'application/vnd.plotly.v1+json': fig },
          },
        ],
      },
    ],
  };
  const fake = Buffer.concat([PNG_MAGIC, Buffer.from('fake')]);
  assert.equal(await addStaticImages(nb, () => fake), 1);
  const data = nb.cells[1].outputs![1].data!;
  assert.equal(data['image/png'], fake.toString('base64'));
  const out = data['text/html'] as string;
  assert.ok(!out.includes(PLACEHOLDER_CLASS), 'placeholder replaced');
  assert.match(out, /<img class="msm-figure-static" alt="T" [^>]*src="data:image\/png;base64,/);
  assert.match(out, /Plotly\.newPlot/, 'the live figure still draws where plotly.js loads');
});

const chromium = findChromium();
test(
  'figurePng draws a figure at its layout size',
  { skip: chromium ? false : 'no Chromium: apt-get install chromium' },
  () => {
    const png = figurePng(
      confusionMatrixFigure(
        [
          [50, 3],
          [7, 40],
        ],
        ['a', 'b'],
        { height: 360 },
      ),
      { width: 640 },
    );
    assert.ok(png.subarray(0, 8).equals(PNG_MAGIC), 'a PNG file');
    assert.equal(png.readUInt32BE(16), 640, 'width from the options');
    assert.equal(png.readUInt32BE(20), 360, 'height from the layout');
    assert.ok(png.length > 5000, `a drawn figure, not a blank page (${png.length} bytes)`);
  },
);

test('compactPng: a palette PNG of the same picture, smaller, that looks the same', async () => {
  // a plot-like picture: flat background, a smooth heatmap-like gradient, a few saturated lines
  const [w, h] = [300, 200];
  const rgb = Buffer.alloc(w * h * 3, 255);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      if (x > 150) {
        const t = Math.exp(-((x - 225) ** 2 + (y - 100) ** 2) / 2000);
        rgb[i] = Math.round(255 * t);
        rgb[i + 1] = Math.round(120 * (1 - t));
        rgb[i + 2] = Math.round(255 * (1 - t));
      } else if (y % 40 === 0 || x === Math.round(y / 2)) rgb.fill(40, i, i + 3);
    }
  }
  const png = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  const small = await compactPng(png);
  assert.ok(small.length < png.length, `${small.length} bytes, not smaller than ${png.length}`);
  const meta = await sharp(small).metadata();
  assert.deepEqual([meta.width, meta.height, meta.format], [w, h, 'png']);
  const back = await sharp(small).removeAlpha().raw().toBuffer();
  let sum = 0;
  for (let i = 0; i < back.length; i++) sum += Math.abs(back[i] - rgb[i]);
  assert.ok(sum / back.length < 3, `mean abs difference ${(sum / back.length).toFixed(2)} of 255`);
  // never larger than what it was given
  assert.ok((await compactPng(small)).length <= small.length);
});
