/**
 * A MAC sink for the generic complexity walk: layers report the multiply-accumulates they perform while
 * a count is active (`countMacsWhile`), and nothing otherwise (one `undefined` check per call).
 *
 *   reportMacs('Conv2d', n)                  a leaf layer, counted in the paper (ptflops) convention
 *   reportMacs('attention', n, 'extra')      work ptflops' module hooks do not see (matmuls, the scan)
 *
 * The leaf rules are ptflops' module hooks (the official Microscopic-Mamba `__main__` calls ptflops'
 * `get_model_complexity_info`; lib/models/complexity.ts explains the convention). Every leaf layer of
 * lib/nn reports through the helpers below, and so must any new leaf layer (same rules); a model calls
 * them itself only for work done without a leaf layer's `forward` (a functional SiLU standing for the
 * official `nn.SiLU` module, a convolution with a derived kernel, ...).
 *
 *   kind                 category  rule
 *   Conv2d / Conv1d      paper     output positions · k² · in · out/groups, + out per position for the bias
 *   Linear               paper     numel(input) · out, + out once for the bias (ptflops counts it once)
 *   BatchNorm2d/1d,      paper     numel(input), ×2 with affine parameters
 *   LayerNorm, GroupNorm
 *   ReLU, GELU, SiLU,    paper     numel(output)
 *   Sigmoid, Hardswish…
 *   *Pool*               paper     numel(input)
 *   attention            extra     q·kᵀ and attn·v products, token-mixing products (not module-hooked)
 *   xProj, dtProj, scan  extra     SS2D's raw-parameter einsums and the selective scan (lib/ops)
 */
export type MacCategory = 'paper' | 'extra';
export type MacSink = (kind: string, macs: number, category: MacCategory) => void;

/** The 'extra' kinds the kit reports (a model may add its own; they all go into the full count). */
export const EXTRA_MAC_KINDS = ['xProj', 'dtProj', 'scan', 'attention'] as const;
export type ExtraMacKind = (typeof EXTRA_MAC_KINDS)[number];

let sink: MacSink | undefined;

/** Report `macs` multiply-accumulates of kind `kind` to the active count, if any. */
export function reportMacs(kind: string, macs: number, category: MacCategory = 'paper'): void {
  sink?.(kind, macs, category);
}

/** Is a count running? (Lets a layer skip computing a report nobody receives.) */
export function countingMacs(): boolean {
  return sink !== undefined;
}

/** Run `fn` with `s` receiving every report; counts do not nest. */
export function countMacsWhile<T>(s: MacSink, fn: () => T): T {
  if (sink) throw new Error('countMacsWhile: a MAC count is already running');
  sink = s;
  try {
    return fn();
  } finally {
    sink = undefined;
  }
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** nn.Conv2d (and a 2-D-shaped Conv1d): `outShape` NHWC [b, h', w', out]. */
export function reportConvMacs(
  kind: 'Conv2d' | 'Conv1d',
  outShape: readonly number[],
  kernelElems: number,
  inChannels: number,
  groups: number,
  bias: boolean,
): void {
  if (!sink) return;
  const out = outShape[outShape.length - 1];
  const positions = numel(outShape) / out;
  reportMacs(kind, positions * kernelElems * inChannels * (out / groups) + (bias ? positions * out : 0));
}

/** nn.Linear: x [..., in] → [..., out]; the bias is counted once. */
export function reportLinearMacs(inShape: readonly number[], outFeatures: number, bias: boolean): void {
  if (!sink) return;
  reportMacs('Linear', numel(inShape) * outFeatures + (bias ? outFeatures : 0));
}

/** A normalisation layer over `shape`: numel, ×2 with affine parameters. */
export function reportNormMacs(kind: string, shape: readonly number[], affine = true): void {
  if (!sink) return;
  reportMacs(kind, numel(shape) * (affine ? 2 : 1));
}

/** An activation module (or a pooling layer, with its input shape): one MAC per element. */
export function reportElementwiseMacs(kind: string, shape: readonly number[]): void {
  if (!sink) return;
  reportMacs(kind, numel(shape));
}
