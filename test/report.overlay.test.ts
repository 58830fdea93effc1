/**
 * lib/report/overlay.ts: a grid of heatmap-over-image panels as one plotly figure.
 *   - one image trace per image, one heatmap per map, each on its own axes, in reading order;
 *   - a heatmap's cells are stretched over the image (an h×w map on an H×W image: cell size H/h × W/w);
 *   - the y axis is reversed (row 0 at the top, as images) and locked to the x scale;
 *   - a shared colour range shows one colour bar; per-panel ranges show none;
 *   - boxes become rectangle shapes on the panel's axes; titles and row labels become annotations;
 *   - an image given as a data URI spans its stated size; `smooth` interpolates; map values keep 4 digits;
 *   - a long title widens the figure (its longest line, tags stripped), a short one does not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { overlayGrid } from '../lib/report/overlay';

const rgb = (h: number, w: number) =>
  Array.from({ length: h }, (_, r) => Array.from({ length: w }, (_, c) => [r * 8, c * 8, 100]));
const heat = (h: number, w: number) => Array.from({ length: h }, (_, r) => Array.from({ length: w }, (_, c) => r + c));

test('overlayGrid: traces, axes and cell geometry of a 2×2 grid', () => {
  const fig = overlayGrid(
    [
      [
        { rgb: rgb(32, 32), title: 'input' },
        { rgb: rgb(32, 32), heat: heat(8, 8), title: 'cam' },
      ],
      [
        undefined,
        { heat: heat(4, 4), size: [32, 32], boxes: [{ top: 0, left: 20, height: 8, width: 8, dash: 'dash' }] },
      ],
    ],
    { title: 'T', rowLabels: ['a', 'b'], zmin: 0, zmax: 14, colorbarTitle: 'v' },
  );
  assert.deepEqual(
    fig.data.map((t) => [t.type, t.xaxis, t.yaxis]),
    [
      ['image', 'x', 'y'],
      ['image', 'x2', 'y2'],
      ['heatmap', 'x2', 'y2'],
      ['heatmap', 'x3', 'y3'],
    ],
  );
  const cam = fig.data[2];
  assert.equal(cam.dx, 4, 'an 8×8 map over a 32 px image: cells of 4 px');
  assert.equal(cam.x0, 2, 'cell centres');
  assert.equal(cam.opacity, 0.5, 'over an image: see-through');
  assert.equal(fig.data[3].dx, 8);
  assert.equal(fig.data[3].opacity, 1, 'alone: opaque');
  assert.deepEqual(
    fig.data.filter((t) => t.type === 'heatmap').map((t) => t.showscale),
    [true, false],
    'one colour bar for a shared range',
  );
  assert.ok(fig.data.filter((t) => t.type === 'heatmap').every((t) => t.zmin === 0 && t.zmax === 14));
  const layout = fig.layout!;
  const y3 = layout.yaxis3 as { range: number[]; scaleanchor: string; domain: number[] };
  assert.deepEqual(y3.range, [32, 0], 'row 0 at the top');
  assert.equal(y3.scaleanchor, 'x3');
  const y1 = layout.yaxis as { domain: number[] };
  assert.ok(y1.domain[0] > y3.domain[1], 'the first row is above the second');
  const x2 = layout.xaxis2 as { domain: number[] };
  const x1 = layout.xaxis as { domain: number[] };
  assert.ok(x1.domain[1] < x2.domain[0], 'columns do not overlap');
  assert.deepEqual(layout.shapes, [
    {
      type: 'rect',
      xref: 'x3',
      yref: 'y3',
      x0: 20,
      x1: 28,
      y0: 0,
      y1: 8,
      line: { color: 'white', width: 2, dash: 'dash' },
    },
  ]);
  const texts = (layout.annotations as Array<{ text: string }>).map((a) => a.text);
  assert.deepEqual(texts.sort(), ['a', 'b', 'cam', 'input'].sort());
});

test('overlayGrid: per-panel colour ranges show no colour bar', () => {
  const fig = overlayGrid([[{ heat: heat(2, 2) }, { heat: heat(2, 2) }]]);
  assert.ok(fig.data.every((t) => t.showscale === false && t.zmin === undefined));
  const x = fig.layout!.xaxis as { range: number[] };
  assert.deepEqual(x.range, [0, 2], 'without an image the panel is the map');
});

test('overlayGrid: images as data URIs, smoothing and rounding', () => {
  const uri = 'data:image/png;base64,AAAA';
  const fig = overlayGrid(
    [
      [
        {
          src: { uri, size: [32, 32] },
          heat: [
            [1 / 3, 2],
            [0, 0.123456789],
          ],
        },
      ],
    ],
    { smooth: true },
  );
  const [img, map] = fig.data;
  assert.equal(img.type, 'image');
  assert.equal(img.source, uri);
  assert.equal(img.z, undefined);
  assert.deepEqual([img.x0, img.y0, img.dx, img.dy], [0.5, 0.5, 1, 1], 'pixel centres, 1 unit per pixel');
  assert.deepEqual((fig.layout!.yaxis as { range: number[] }).range, [32, 0]);
  assert.equal(map.zsmooth, 'best');
  assert.equal(map.opacity, 0.5);
  assert.deepEqual(map.z, [
    [0.3333, 2],
    [0, 0.1235],
  ]);
  assert.equal(map.dx, 16);
});

test('overlayGrid: the figure is wide enough for its title', () => {
  const panels = [[{ heat: heat(2, 2) }]];
  const narrow = overlayGrid(panels, { title: 'short' }).layout!.width as number;
  assert.equal(narrow, 20 + 20 + 150 + 12, 'one panel and the margins');
  const long = 'x'.repeat(100);
  const wide = overlayGrid(panels, { title: `${long}<br><sup>${'y'.repeat(50)}</sup>` }).layout!.width as number;
  assert.equal(wide, 8 * 100 + 40);
});
