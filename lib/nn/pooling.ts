/**
 * Pooling layers with PyTorch's semantics on NHWC input: nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d.
 *
 * Shapes:  b batch   h, w  input size   c channels   h', w'  output size
 *
 * PyTorch's output size is floor((h + 2·padding − kernel) / stride) + 1 (ceil_mode=False, the default);
 * tfjs computes the same with a numeric `pad` (it truncates). Max pooling treats padding as −∞ (a padded
 * cell never wins), tfjs likewise. Average pooling differs: PyTorch divides by the whole window, padding
 * included (count_include_pad=True, the default), tfjs by the cells inside the image, so AvgPool2d pads
 * with zeros itself when it must count them.
 *
 * MACs (lib/nn/macs.ts, ptflops' pooling hook): numel(input) for every pooling module. Functional
 * pooling (`F.avg_pool2d`, `x.mean([-2, -1])`) is invisible to ptflops; models that mirror such calls
 * use tf.mean / tf.avgPool directly instead of these layers.
 */
import * as tf from '@tensorflow/tfjs';
import { Layer } from './layers';
import { reportMacs } from './macs';

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function checkNHWC(where: string, x: tf.Tensor): void {
  if (x.rank !== 4) throw new Error(`${where}: expected an NHWC map [b, h, w, c], got shape [${x.shape}]`);
}

export interface Pool2dOptions {
  /** Default: the kernel size (as PyTorch's `stride=None`). */
  stride?: number;
  /** Padding on every side (PyTorch's integer `padding`); at most half the kernel, as PyTorch requires. */
  padding?: number;
}

function resolvePool(where: string, kernelSize: number, opts: Pool2dOptions): { stride: number; padding: number } {
  const stride = opts.stride ?? kernelSize;
  const padding = opts.padding ?? 0;
  if (!Number.isInteger(kernelSize) || kernelSize < 1) throw new Error(`${where}: kernelSize must be ≥ 1`);
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`${where}: stride must be a positive integer`);
  if (!Number.isInteger(padding) || padding < 0 || padding > kernelSize / 2) {
    throw new Error(`${where}: padding must be an integer in [0, kernelSize/2] (PyTorch's rule), got ${padding}`);
  }
  return { stride, padding };
}

/** nn.MaxPool2d(kernelSize, stride, padding): x [b, h, w, c] → [b, h', w', c]. */
export class MaxPool2d extends Layer {
  readonly stride: number;
  readonly padding: number;

  constructor(
    readonly kernelSize: number,
    opts: Pool2dOptions = {},
  ) {
    super();
    ({ stride: this.stride, padding: this.padding } = resolvePool('MaxPool2d', kernelSize, opts));
  }

  forward(x: tf.Tensor): tf.Tensor {
    checkNHWC('MaxPool2d', x);
    reportMacs('MaxPool2d', numel(x.shape));
    // A numeric pad in tfjs is PyTorch's symmetric padding, and padded cells never win the max.
    return tf.maxPool(x as tf.Tensor4D, this.kernelSize, this.stride, this.padding === 0 ? 'valid' : this.padding);
  }
}

/** nn.AvgPool2d(kernelSize, stride, padding, count_include_pad): x [b, h, w, c] → [b, h', w', c]. */
export class AvgPool2d extends Layer {
  readonly stride: number;
  readonly padding: number;
  readonly countIncludePad: boolean;

  constructor(
    readonly kernelSize: number,
    opts: Pool2dOptions & { countIncludePad?: boolean } = {},
  ) {
    super();
    ({ stride: this.stride, padding: this.padding } = resolvePool('AvgPool2d', kernelSize, opts));
    this.countIncludePad = opts.countIncludePad ?? true;
  }

  forward(x: tf.Tensor): tf.Tensor {
    checkNHWC('AvgPool2d', x);
    reportMacs('AvgPool2d', numel(x.shape));
    const p = this.padding;
    return tf.tidy(() => {
      if (p === 0) return tf.avgPool(x as tf.Tensor4D, this.kernelSize, this.stride, 'valid');
      if (!this.countIncludePad) return tf.avgPool(x as tf.Tensor4D, this.kernelSize, this.stride, p);
      // Zero cells are part of the window in PyTorch's default: pad them in, then pool without padding.
      const padded = tf.pad(x as tf.Tensor4D, [
        [0, 0],
        [p, p],
        [p, p],
        [0, 0],
      ]); // [b, h+2p, w+2p, c]
      return tf.avgPool(padded, this.kernelSize, this.stride, 'valid');
    });
  }
}

/**
 * nn.AdaptiveAvgPool2d(outputSize): x [b, h, w, c] → [b, oh, ow, c], where output cell i averages rows
 * floor(i·h/oh) .. ceil((i+1)·h/oh) − 1 (PyTorch's bins; they may overlap when oh does not divide h).
 * outputSize 1 is global average pooling (`[b, 1, 1, c]`; flatten it for a head).
 */
export class AdaptiveAvgPool2d extends Layer {
  readonly outputSize: [number, number];

  constructor(outputSize: number | [number, number] = 1) {
    super();
    this.outputSize = typeof outputSize === 'number' ? [outputSize, outputSize] : outputSize;
    if (!this.outputSize.every((s) => Number.isInteger(s) && s >= 1)) {
      throw new Error(`AdaptiveAvgPool2d: outputSize must be positive integers, got [${this.outputSize}]`);
    }
  }

  forward(x: tf.Tensor): tf.Tensor {
    checkNHWC('AdaptiveAvgPool2d', x);
    reportMacs('AdaptiveAvgPool2d', numel(x.shape));
    const [, h, w] = x.shape;
    const [oh, ow] = this.outputSize;
    return tf.tidy(() => {
      if (oh === 1 && ow === 1) return tf.mean(x, [1, 2], true); // [b, 1, 1, c]
      if (h % oh === 0 && w % ow === 0) {
        // Equal, non-overlapping bins: one average pool with kernel = stride = the bin size.
        return tf.avgPool(x as tf.Tensor4D, [h / oh, w / ow], [h / oh, w / ow], 'valid');
      }
      const bins = (n: number, out: number) =>
        Array.from({ length: out }, (_, i) => [Math.floor((i * n) / out), Math.ceil(((i + 1) * n) / out)]);
      const rows = bins(h, oh).map(([r0, r1]) => {
        const band = x.slice([0, r0, 0, 0], [-1, r1 - r0, -1, -1]); // [b, r1−r0, w, c]
        return tf.concat(
          bins(w, ow).map(([c0, c1]) => tf.mean(band.slice([0, 0, c0, 0], [-1, -1, c1 - c0, -1]), [1, 2], true)),
          2,
        ); // [b, 1, ow, c]
      });
      return tf.concat(rows, 1); // [b, oh, ow, c]
    });
  }
}
