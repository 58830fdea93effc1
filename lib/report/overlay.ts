/**
 * Heatmap overlays on images, as one plotly figure (a grid of panels): what notebook 08 shows Grad-CAM, gate
 * and occlusion maps with. Each panel is an RGB image (plotly `image` trace, pixel (0, 0) top left), a
 * heatmap drawn over it at the image's scale (its cells stretched to cover the image), or both, plus
 * optional box outlines (e.g. an occluded patch and its mirror).
 *
 * Coordinates: a panel spans 0…W across and 0…H down (the y axis is reversed, as images are), so an h×w
 * heatmap's cell (r, c) covers [c·W/w, (c+1)·W/w) × [r·H/h, (r+1)·H/h).
 *
 * Size: a saved notebook stores each figure twice (the plotly JSON and the HTML that draws it), so images are
 * best passed as small PNG data URIs (`src`, ~3 KB for a 32×32 cell) rather than pixel arrays (`rgb`, ~15 KB),
 * maps at their own resolution with `smooth` (plotly interpolates, as Grad-CAM's upsampling does), and map
 * values are rounded to 4 significant digits.
 */
import type { Figure, Trace } from './plot';

/** An outline on a panel, in the panel's pixel coordinates (rows top…top+height, columns left…left+width). */
export interface PanelBox {
  top: number;
  left: number;
  height: number;
  width: number;
  color?: string;
  dash?: string;
}

export interface OverlayPanel {
  /** Panel title (above it). */
  title?: string;
  /** The image, [H][W][3] with values 0–255. */
  rgb?: number[][][];
  /** Or the image as a data URI (e.g. a PNG), with its size [H, W]. */
  src?: { uri: string; size: [number, number] };
  /** A map [h][w] drawn over the image (or alone), stretched to the panel's size. */
  heat?: number[][];
  /** Panel size when there is no image (default: the heatmap's h×w). */
  size?: [number, number];
  boxes?: PanelBox[];
}

export interface OverlayGridOptions {
  title?: string;
  /** Heatmap colour scale (default 'Jet', Grad-CAM's usual). */
  colorscale?: string;
  /** Heatmap opacity over an image (default 0.5; 1 where a panel has no image). */
  opacity?: number;
  /** Colour range shared by all panels (default: each panel its own range). */
  zmin?: number;
  zmax?: number;
  /** Colour bar title (shown once, when the panels share a range). */
  colorbarTitle?: string;
  /** Row labels, left of each row. */
  rowLabels?: string[];
  /** Pixel size of one panel (default 150). */
  panelPx?: number;
  /** Interpolate the heatmaps between cell centres (plotly `zsmooth: 'best'`) instead of drawing blocks. */
  smooth?: boolean;
}

/** A rows × columns grid of panels (`panels[row][col]`; a missing entry leaves the place empty). */
export function overlayGrid(panels: Array<Array<OverlayPanel | undefined>>, opts: OverlayGridOptions = {}): Figure {
  const rows = panels.length;
  const cols = Math.max(1, ...panels.map((r) => r.length));
  const px = opts.panelPx ?? 150;
  const left = opts.rowLabels ? 110 : 20;
  const shared = opts.zmin !== undefined && opts.zmax !== undefined;
  const right = shared ? 90 : 20;
  const top = opts.title ? 70 : 40;
  const rowPx = px + 28; // the panel and its title
  // Wide enough for the title's longest line (about 8 px per character at plotly's default title size).
  const titleChars = Math.max(0, ...(opts.title ?? '').split('<br>').map((l) => l.replace(/<[^>]+>/g, '').length));
  const width = Math.max(left + right + cols * (px + 12), 8 * titleChars + 40);
  const height = top + 20 + rows * rowPx;
  const gap = 12 / (cols * (px + 12));
  const data: Trace[] = [];
  const layout: Record<string, unknown> = {
    width,
    height,
    margin: { l: left, r: right, t: top, b: 20 },
    showlegend: false,
    ...(opts.title ? { title: { text: opts.title } } : {}),
  };
  const annotations: Record<string, unknown>[] = [];
  const shapes: Record<string, unknown>[] = [];
  let colorbarShown = false;
  let n = 0;
  panels.forEach((row, r) => {
    const y1 = 1 - (r * rowPx + 24) / (rows * rowPx);
    const y0 = 1 - ((r + 1) * rowPx) / (rows * rowPx);
    if (opts.rowLabels?.[r]) {
      annotations.push({
        text: opts.rowLabels[r],
        xref: 'paper',
        yref: 'paper',
        x: 0,
        y: (y0 + y1) / 2,
        xanchor: 'right',
        xshift: -8,
        showarrow: false,
        font: { size: 11 },
      });
    }
    row.forEach((p, c) => {
      if (!p) return;
      n++;
      const ax = n === 1 ? '' : String(n);
      const x0 = c / cols + gap / 2;
      const x1 = (c + 1) / cols - gap / 2;
      const [H, W] = p.rgb
        ? [p.rgb.length, p.rgb[0].length]
        : (p.src?.size ?? p.size ?? [p.heat!.length, p.heat![0].length]);
      const hasImage = !!(p.rgb || p.src);
      layout[`xaxis${ax}`] = { domain: [x0, x1], range: [0, W], visible: false, anchor: `y${ax}` };
      layout[`yaxis${ax}`] = {
        domain: [y0, y1],
        range: [H, 0],
        visible: false,
        anchor: `x${ax}`,
        scaleanchor: `x${ax}`,
      };
      const axes = { xaxis: `x${ax}`, yaxis: `y${ax}` };
      if (p.rgb) data.push({ type: 'image', z: p.rgb, x0: 0.5, y0: 0.5, dx: 1, dy: 1, hoverinfo: 'skip', ...axes });
      else if (p.src) {
        data.push({ type: 'image', source: p.src.uri, x0: 0.5, y0: 0.5, dx: 1, dy: 1, hoverinfo: 'skip', ...axes });
      }
      if (p.heat) {
        const h = p.heat.length;
        const w = p.heat[0].length;
        data.push({
          type: 'heatmap',
          z: p.heat.map((row) => row.map((v) => Number(v.toPrecision(4)))),
          x0: W / w / 2,
          dx: W / w,
          y0: H / h / 2,
          dy: H / h,
          colorscale: opts.colorscale ?? 'Jet',
          opacity: hasImage ? (opts.opacity ?? 0.5) : 1,
          ...(opts.smooth ? { zsmooth: 'best' } : {}),
          ...(shared ? { zmin: opts.zmin, zmax: opts.zmax } : {}),
          showscale: shared && !colorbarShown,
          ...(shared ? { colorbar: { title: { text: opts.colorbarTitle ?? '' }, len: 0.8, thickness: 12 } } : {}),
          hovertemplate: 'row %{y:.0f}, column %{x:.0f}: %{z:.3f}<extra></extra>',
          ...axes,
        });
        colorbarShown ||= shared;
      }
      for (const b of p.boxes ?? []) {
        shapes.push({
          type: 'rect',
          xref: `x${ax}`,
          yref: `y${ax}`,
          x0: b.left,
          x1: b.left + b.width,
          y0: b.top,
          y1: b.top + b.height,
          line: { color: b.color ?? 'white', width: 2, dash: b.dash ?? 'solid' },
        });
      }
      if (p.title) {
        annotations.push({
          text: p.title,
          xref: 'paper',
          yref: 'paper',
          x: (x0 + x1) / 2,
          y: y1,
          xanchor: 'center',
          yanchor: 'bottom',
          showarrow: false,
          font: { size: 11 },
        });
      }
    });
  });
  layout.annotations = annotations;
  layout.shapes = shapes;
  return { data, layout };
}
