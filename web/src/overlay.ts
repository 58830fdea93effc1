/**
 * Grad-CAM over the image: two stacked canvases, the image scaled to the canvas below, the cam (values in
 * [0, 1] on the model's s×s input grid) above as a colour map whose opacity grows with the value.
 * The model saw the image squashed to s×s, so the canvas shows it squashed too: the map lines up.
 */
import type { RgbImage } from '../../lib/data/decode';

/** A jet-like ramp through blue → cyan → yellow → red (piecewise linear between the four stops). */
const STOPS: Array<[number, number, number]> = [
  [0, 0, 255],
  [0, 255, 255],
  [255, 255, 0],
  [255, 0, 0],
];
function colour(t: number): [number, number, number] {
  const x = Math.max(0, Math.min(1, t)) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const f = x - i;
  const [a, b] = [STOPS[i], STOPS[i + 1]];
  return [0, 1, 2].map((c) => Math.round(a[c] + f * (b[c] - a[c]))) as [number, number, number];
}

function rgbCanvas(img: RgbImage): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = img.width;
  c.height = img.height;
  const ctx = c.getContext('2d') as CanvasRenderingContext2D;
  const px = ctx.createImageData(img.width, img.height);
  for (let i = 0, j = 0; j < img.data.length; i += 4, j += 3) {
    px.data[i] = img.data[j];
    px.data[i + 1] = img.data[j + 1];
    px.data[i + 2] = img.data[j + 2];
    px.data[i + 3] = 255;
  }
  ctx.putImageData(px, 0, 0);
  return c;
}

/** Draw `img` scaled to `canvas` (its size is kept). */
export function drawImage(canvas: HTMLCanvasElement, img: RgbImage): void {
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(rgbCanvas(img), 0, 0, canvas.width, canvas.height);
}

/** Draw `cam` ([s, s], row-major, in [0, 1]) as a translucent heat map on `canvas`, laid over the image's. */
export function drawGradCam(canvas: HTMLCanvasElement, cam: Float32Array, s: number): void {
  const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
  ctx.imageSmoothingEnabled = true;
  const heat = document.createElement('canvas');
  heat.width = s;
  heat.height = s;
  const hctx = heat.getContext('2d') as CanvasRenderingContext2D;
  const px = hctx.createImageData(s, s);
  for (let i = 0; i < s * s; i++) {
    const t = Math.max(0, Math.min(1, cam[i]));
    const [r, g, b] = colour(t);
    px.data[4 * i] = r;
    px.data[4 * i + 1] = g;
    px.data[4 * i + 2] = b;
    px.data[4 * i + 3] = Math.round(255 * (0.2 + 0.4 * t));
  }
  hctx.putImageData(px, 0, 0);
  ctx.drawImage(heat, 0, 0, canvas.width, canvas.height);
}
