/**
 * Command-line flags for the kit's scripts, nanoGPT style: a script's configuration is a plain object of
 * defaults; every key is also a flag (`imageSize` ↔ `--image-size`), and a flag given on the command line
 * overrides the default (or the recipe preset). Every script gets `--help`, `--backend` and `--threads`
 * (XNNPACK threads on wasm: `--threads N` sets MSM_THREADS=N for this process and the ones it starts).
 *
 *   --key value   --key=value      numbers and strings
 *   --flag  --flag=false  --no-flag   booleans
 *   --                               everything after it is positional
 */

import * as fs from 'fs';
import * as path from 'path';

export type FlagType = 'string' | 'number' | 'boolean';

export interface FlagDef {
  /** camelCase key in the values object. */
  key: string;
  type: FlagType;
  default: string | number | boolean;
  help: string;
  choices?: readonly string[];
}

export interface CliSpec {
  /** e.g. 'npm run train --'. */
  command: string;
  summary: string;
  /** Positional arguments, e.g. '<image|folder>...' (omit when none are taken). */
  positional?: string;
  flags: FlagDef[];
  /** Extra paragraphs after the flag table (examples, notes). */
  epilog?: string;
  /** false for scripts that run no model (download, make-synthetic): no `--backend`/`--threads` flags are added. */
  backend?: false;
}

export interface ParsedArgs {
  values: Record<string, string | number | boolean>;
  /** Keys set explicitly on the command line (they win over recipe presets). */
  given: Set<string>;
  positional: string[];
}

export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

export const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
export const camel = (flag: string): string => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Flag definitions from a defaults object plus per-key help (and optional choices). */
export function flagsFromDefaults<T extends object>(
  defaults: T,
  help: Partial<Record<keyof T, string>>,
  choices: Partial<Record<keyof T, readonly string[]>> = {},
): FlagDef[] {
  return (Object.keys(defaults) as Array<keyof T & string>).map((key) => {
    const value = defaults[key] as unknown;
    const type = typeof value;
    if (type !== 'string' && type !== 'number' && type !== 'boolean') {
      throw new Error(`flagsFromDefaults: '${key}' has a ${type} default; flags must be strings, numbers or booleans`);
    }
    return {
      key,
      type: type as FlagType,
      default: value as string | number | boolean,
      help: help[key] ?? '',
      choices: choices[key],
    };
  });
}

/** The shared `--backend` flag. */
export const BACKEND_FLAG: FlagDef = {
  key: 'backend',
  type: 'string',
  default: '',
  help: 'tfjs backend: wasm | cpu | webgpu | tensorflow (default MSM_BACKEND or wasm)',
};

/** The shared `--threads` flag ('' = not given; a string so the help shows no default of its own). */
export const THREADS_FLAG: FlagDef = {
  key: 'threads',
  type: 'string',
  default: '',
  help: 'XNNPACK threads on wasm, 1 = the one-thread build; sets MSM_THREADS (default MSM_THREADS or all cores, at most 8)',
};

/**
 * Parse argv against a spec. `--help`/`-h` prints the help and exits 0; problems throw a CliError that
 * names the flag (with a suggestion for a misspelt one).
 */
export function parseArgs(argv: string[], spec: CliSpec): ParsedArgs {
  const shared = spec.backend === false ? [] : [BACKEND_FLAG, THREADS_FLAG];
  const flags = [...spec.flags, ...shared.filter((s) => !spec.flags.some((f) => f.key === s.key))];
  const byFlag = new Map(flags.map((f) => [kebab(f.key), f]));
  const values: Record<string, string | number | boolean> = {};
  for (const f of flags) values[f.key] = f.default;
  const given = new Set<string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(helpText({ ...spec, flags }));
      process.exit(0);
    }
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let inline: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    // Accept camelCase too (--imageSize), as people copy keys from config.json.
    if (!byFlag.has(name) && byFlag.has(kebab(name))) name = kebab(name);
    let def = byFlag.get(name);
    if (!def && name.startsWith('no-') && byFlag.get(name.slice(3))?.type === 'boolean' && inline === undefined) {
      def = byFlag.get(name.slice(3))!;
      inline = 'false';
    }
    if (!def) throw new CliError(`unknown flag --${name}${suggest(name, [...byFlag.keys()])}. See --help.`);
    let raw: string;
    if (inline !== undefined) raw = inline;
    else if (def.type === 'boolean') {
      const next = argv[i + 1];
      raw = next === 'true' || next === 'false' ? (i++, next) : 'true';
    } else {
      if (i + 1 >= argv.length) throw new CliError(`flag --${name} needs a value`);
      raw = argv[++i];
    }
    values[def.key] = convert(def, raw, `--${name}`);
    given.add(def.key);
  }
  if (!spec.positional && positional.length > 0) {
    throw new CliError(`unexpected argument '${positional[0]}' (this command takes only --flags). See --help.`);
  }
  if (given.has('threads') && flags.includes(THREADS_FLAG)) {
    const raw = String(values.threads);
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isInteger(n) || n < 1) {
      throw new CliError(`flag --threads needs a whole number ≥ 1, got '${raw}'`);
    }
    process.env.MSM_THREADS = String(n); // read by initBackend here and in the processes this one starts
    given.delete('threads'); // a process setting, not part of a script's configuration (train's config.json)
  }
  return { values, given, positional };
}

function convert(def: FlagDef, raw: string, flag: string): string | number | boolean {
  let value: string | number | boolean;
  if (def.type === 'number') {
    value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value)) throw new CliError(`flag ${flag} needs a number, got '${raw}'`);
  } else if (def.type === 'boolean') {
    if (raw !== 'true' && raw !== 'false' && raw !== '1' && raw !== '0') {
      throw new CliError(`flag ${flag} is true or false, got '${raw}'`);
    }
    value = raw === 'true' || raw === '1';
  } else value = raw;
  if (def.choices && !def.choices.includes(String(value))) {
    throw new CliError(`flag ${flag} must be one of ${def.choices.filter(Boolean).join(', ')}; got '${raw}'`);
  }
  return value;
}

/** The `--help` text: summary, usage, a flag table with defaults, and the epilog. */
export function helpText(spec: CliSpec): string {
  const rows = spec.flags.map((f) => {
    const left = `--${kebab(f.key)}${f.type === 'boolean' ? '' : f.type === 'number' ? ' N' : ' S'}`;
    const def = f.type === 'string' && f.default === '' ? '' : ` [${String(f.default)}]`;
    return [left, `${f.help}${def}`];
  });
  const width = Math.min(34, Math.max(...rows.map((r) => r[0].length)) + 2);
  const lines = [
    spec.summary,
    '',
    `Usage: ${spec.command}${spec.positional ? ' ' + spec.positional : ''} [flags]`,
    '',
    'Flags (booleans also take --no-<flag>):',
    ...rows.map(([l, r]) => `  ${l.padEnd(width)}${r}`),
    `  ${'--help'.padEnd(width)}show this help`,
  ];
  if (spec.epilog) lines.push('', spec.epilog.trimEnd());
  return lines.join('\n') + '\n';
}

/** ' (did you mean --x?)' for the closest known flag within edit distance 3. */
function suggest(name: string, known: string[]): string {
  let best = '';
  let bestD = 4;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best ? ` (did you mean --${best}?)` : '';
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

/**
 * Check an output-file flag before any work: it must not name a folder, and every existing part of its path
 * above the file must be a folder. `what` says what the file should be (e.g. 'a .csv or .json file name').
 */
export function checkOutputFile(flag: string, file: string, what: string): void {
  if (file.endsWith('/') || file.endsWith(path.sep))
    throw new CliError(`flag ${flag} names a folder (${file}); give ${what}`);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file, { throwIfNoEntry: false });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOTDIR'
        ? `flag ${flag}: a part of ${file} above the file is not a folder; give ${what}`
        : `flag ${flag}: cannot use ${file} (${(e as Error).message})`,
    );
  }
  if (st?.isDirectory()) throw new CliError(`flag ${flag} names a folder (${file}); give ${what}`);
}

/**
 * Run a script's async main: CliErrors and other errors print one clear line (the stack only with
 * MSM_DEBUG=1) and exit with status 2 (usage) or 1 (failure).
 */
export function runMain(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    const err = e as Error;
    if (process.env.MSM_DEBUG === '1') console.error(err.stack ?? err);
    else console.error(`error: ${err.message ?? String(e)}`);
    process.exit(e instanceof CliError ? 2 : 1);
  });
}

/** --batch-size: 'auto' (0: planned by prepareInference) or a positive integer. */
export function batchSizeFlag(raw: string): number {
  if (raw === 'auto') return 0;
  const n = Number(raw);
  if (!(raw.trim() !== '' && Number.isInteger(n) && n > 0)) {
    throw new CliError(
      `flag --batch-size must be a positive integer, got ${raw} (or auto: the largest batch that fits)`,
    );
  }
  return n;
}
