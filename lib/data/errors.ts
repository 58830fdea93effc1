/**
 * Errors and skip reports for the data pipeline.
 *
 * Every problem with user data surfaces as a `DataError` that names the offending file (or npz key) and
 * says what is wrong with it, before any tensor is made, so a bad image can never turn into a shape error
 * deep inside tfjs. With `skipBad: true` the per-file problems are collected as `SkippedItem`s instead and
 * reported with the dataset (dataset-level problems, e.g. a single class, always throw).
 */

export class DataError extends Error {
  /** The file (or `file:key` for npz arrays) the problem is about, when there is one. */
  readonly file?: string;
  /** The problem alone, without the file name. */
  readonly problem: string;

  constructor(problem: string, file?: string) {
    super(file ? `${file}: ${problem}` : problem);
    this.name = 'DataError';
    this.file = file;
    this.problem = problem;
  }
}

/** One input that `skipBad` left out, and why. */
export interface SkippedItem {
  file: string;
  problem: string;
}

/** Collects per-file problems: throws at once, or records them when skipping is allowed. */
export class ProblemSink {
  readonly skipped: SkippedItem[] = [];
  constructor(readonly skipBad: boolean) {}

  /** Report a per-file problem; throws a DataError unless `skipBad`. */
  report(file: string, problem: string): void {
    if (!this.skipBad) throw new DataError(problem, file);
    this.skipped.push({ file, problem });
  }
}

/** Turn anything thrown by sharp / fs into a one-line reason. */
export function describeError(e: unknown): string {
  if (e instanceof DataError) return e.problem;
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    const msg = e.message.split('\n')[0];
    return code && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(e);
}
