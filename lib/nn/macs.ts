/**
 * A MAC sink for the generic complexity walk: layers report the multiply-accumulates they perform while
 * a count is active (`countMacsWhile`), and nothing otherwise (one `undefined` check per call).
 *
 *   reportMacs('Conv2d', n)                  a leaf layer, counted in the paper (ptflops) convention
 *   reportMacs('attention', n, 'extra')      work ptflops' module hooks do not see (matmuls, the scan)
 */
export type MacCategory = 'paper' | 'extra';
export type MacSink = (kind: string, macs: number, category: MacCategory) => void;

let sink: MacSink | undefined;

/** Report `macs` multiply-accumulates of kind `kind` to the active count, if any. */
export function reportMacs(kind: string, macs: number, category: MacCategory = 'paper'): void {
  sink?.(kind, macs, category);
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
