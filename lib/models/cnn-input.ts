/**
 * Small checks the CNN baselines (resnet/, convnext/, mobileone/) share: the input batch rule and the
 * validation of their list-valued options (widths, depths), each with one clear error line.
 */

/** Throws unless `shape` is an NHWC float32 RGB batch with both sides ≥ `minSize`. */
export function checkImageInput(where: string, shape: number[], dtype: string, minSize: number, why: string): void {
  if (shape.length !== 4) throw new Error(`${where}: expected an NHWC batch [b, h, w, 3], got shape [${shape}]`);
  const [, h, w, ch] = shape;
  if (ch !== 3) throw new Error(`${where}: expected 3 input channels (RGB, NHWC), got ${ch} in shape [${shape}]`);
  if (dtype !== 'float32') throw new Error(`${where}: expected float32 input, got ${dtype}`);
  if (h < minSize || w < minSize) throw new Error(`${where}: input ${h}×${w} is below ${minSize}×${minSize} (${why})`);
}

/** A list option of `length` positive integers (e.g. stage widths or depths). */
export function intList(model: string, option: string, value: unknown, length: number): number[] {
  if (!Array.isArray(value) || value.length !== length || !value.every((v) => Number.isInteger(v) && v >= 1)) {
    throw new Error(`${model}: option ${option} must be ${length} positive integers, got ${JSON.stringify(value)}`);
  }
  return value as number[];
}

/** Stochastic-depth rates linspace(0, rate, n) (torch.linspace, as ConvNeXt and timm models build them). */
export function linspace(rate: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (n === 1 ? 0 : (rate * i) / (n - 1)));
}
