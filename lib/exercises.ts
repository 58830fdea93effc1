/**
 * The check behind every "Try this" cell of notebooks 01–05.
 *
 * A Try-this cell holds a working answer that the reader may replace with their own, computes the truth with the
 * kit's own code (a scan, a module's parameter count, a forward pass) and hands both to `tryThis`:
 *
 *   const myOrders = [...];                                    // the reader's answer (a working one is given)
 *   const kitOrders = await probeOrders(3, 5);                 // what the kit does
 *   console.log(tryThis('scan orders of a 3×5 map', myOrders, kitOrders, {
 *     mistake: { answer: columnMajorWithW, what: 'column-major step j·w + i' },
 *   }));
 *
 * So that a check is known to be able to fail, every cell also names a typical wrong answer (`mistake`), which
 * the check must reject: if the mistake passed, the exercise could not tell right from wrong, and the cell fails.
 * A reader's wrong answer fails the cell with one line saying where it differs (and a hint, if the cell has one).
 *
 * Answers are compared structurally: numbers within a tolerance, strings and booleans exactly, arrays (and
 * typed arrays) element by element, plain objects key by key.
 */

export interface TryThisOptions {
  /** A typical wrong answer and what it gets wrong; the check must reject it. */
  mistake: { answer: unknown; what: string };
  /** Tolerance for numbers: |a − b| ≤ tolerance · max(1, |b|) (default 1e-6, float32 rounding). */
  tolerance?: number;
  /** Shown after a wrong answer. */
  hint?: string;
}

/** How a number prints in a message: integers as they are, others with 6 significant digits. */
function show(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toPrecision(6);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const items = Array.from(v as ArrayLike<unknown>);
    const head = items.slice(0, 8).map(show).join(', ');
    return `[${head}${items.length > 8 ? `, … (${items.length} items)` : ''}]`;
  }
  return String(v);
}

const isList = (v: unknown): v is ArrayLike<unknown> =>
  Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));

/**
 * Where `answer` first differs from `truth` (`at [1][2]: yours 7, the kit's 5`), or undefined when they agree.
 * `at` is the path so far.
 */
export function firstDifference(answer: unknown, truth: unknown, tolerance = 1e-6, at = ''): string | undefined {
  const where = at ? `at ${at}: ` : '';
  if (typeof truth === 'number') {
    const ok =
      typeof answer === 'number' &&
      Number.isFinite(answer) === Number.isFinite(truth) &&
      (answer === truth || Math.abs(answer - truth) <= tolerance * Math.max(1, Math.abs(truth)));
    return ok ? undefined : `${where}yours ${show(answer)}, the kit's ${show(truth)}`;
  }
  if (isList(truth)) {
    if (!isList(answer)) return `${where}yours is ${show(answer)}, not a list of ${truth.length}`;
    if (answer.length !== truth.length) {
      return `${where}yours has ${answer.length} items, the kit's ${truth.length} (${show(truth)})`;
    }
    for (let i = 0; i < truth.length; i++) {
      const d = firstDifference(answer[i], truth[i], tolerance, `${at}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (truth !== null && typeof truth === 'object') {
    if (answer === null || typeof answer !== 'object') return `${where}yours is ${show(answer)}, not an object`;
    const keys = Object.keys(truth).sort();
    const theirs = Object.keys(answer).sort();
    if (keys.join() !== theirs.join())
      return `${where}yours has keys ${theirs.join(', ')}, the kit's ${keys.join(', ')}`;
    for (const k of keys) {
      const d = firstDifference(
        (answer as Record<string, unknown>)[k],
        (truth as Record<string, unknown>)[k],
        tolerance,
        `${at}.${k}`,
      );
      if (d) return d;
    }
    return undefined;
  }
  return answer === truth ? undefined : `${where}yours ${show(answer)}, the kit's ${show(truth)}`;
}

/**
 * Check a reader's answer against the truth the kit computed. Returns a one-line verdict to print; throws when
 * the answer is wrong, and when `opts.mistake` would pass too (the check could not tell right from wrong).
 */
export function tryThis(title: string, answer: unknown, truth: unknown, opts: TryThisOptions): string {
  const tolerance = opts.tolerance ?? 1e-6;
  if (firstDifference(opts.mistake.answer, truth, tolerance) === undefined) {
    throw new Error(
      `Try this (${title}): the typical mistake "${opts.mistake.what}" passes the check too, so the check cannot ` +
        'tell right from wrong: fix the exercise',
    );
  }
  const diff = firstDifference(answer, truth, tolerance);
  if (diff !== undefined) {
    throw new Error(`Try this (${title}): not yet, ${diff}.${opts.hint ? ` Hint: ${opts.hint}` : ''}`);
  }
  return `✓ Try this (${title}): right. The check rejects a typical mistake: ${opts.mistake.what}.`;
}
