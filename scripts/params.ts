/**
 * Parameter and MAC counts of a registered model (MACs from one forward pass on a zero image).
 *
 *   npm run params -- --model microscopic-mamba-t --size 224 --classes 1000
 *   npm run params -- --model microscopic-mamba-t --classes 2 --set psffn=false --set mifa=false
 *   npm run params -- --list [--markdown]     the zoo: family, params at 2 and 1000 classes, MACs
 *
 * Prints total / trainable / used parameters (used = without the official model's dead parameters) and
 * MACs in the paper's convention (ptflops module count) and in full (plus SS2D's x_proj, dt_proj and
 * selective scan); see lib/models/complexity.ts for exactly what each counts.
 */
import { backendFromArgv, initBackend, threadsFromArgv } from '../lib/backend/index';
import {
  type ClassifierModel,
  countMacs,
  countParams,
  createModel,
  listModels,
  type ModelOptions,
} from '../lib/models/index';

const HELP = `Usage: npm run params -- [options]

Options:
  --model NAME      registered model (default microscopic-mamba-t); one of:
                    ${listModels()
                      .map((m) => m.name)
                      .join(', ')}
  --size N          square input side in pixels (default 224)
  --classes K       classes of the head (default 1000, as the paper's counts)
  --set KEY=VALUE   a model option, repeatable (e.g. --set psffn=false --set dropDeadParams=true)
  --model-config J  model options as JSON (as train's --model-config), e.g. '{"depths":[1,1,1,1]}'
  --list            every registered model: family, input, parameters at 2 and 1000 classes (and of the
                    fused inference form where the model has one), MACs at its default size
  --markdown        with --list: a Markdown table (the README's "Model zoo" section)
  --json            print one JSON object instead of the table
  --backend NAME    tfjs backend that holds the weights while counting (default wasm; nothing is run)
  --threads N       XNNPACK threads on wasm (default MSM_THREADS or all cores)
  --help            this text
`;

function parseArgs(argv: string[]) {
  const opts = {
    model: 'microscopic-mamba-t',
    size: 224,
    classes: 1000,
    json: false,
    list: false,
    markdown: false,
    set: {} as Record<string, unknown>,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value (see --help)`);
      return v;
    };
    if (a === '--help' || a === '-h') {
      process.stdout.write(HELP);
      process.exit(0);
    } else if (a === '--model') opts.model = value();
    else if (a === '--size') opts.size = Number(value());
    else if (a === '--classes') opts.classes = Number(value());
    else if (a === '--json') opts.json = true;
    else if (a === '--list') opts.list = true;
    else if (a === '--markdown') opts.markdown = true;
    else if (a === '--model-config') {
      const raw = value();
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch (e) {
        throw new Error(`--model-config: not valid JSON (${(e as Error).message}): ${raw}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`--model-config must be a JSON object, got ${raw}`);
      }
      Object.assign(opts.set, parsed);
    } else if (a === '--backend' || a === '--threads') value();
    else if (a.startsWith('--backend=') || a.startsWith('--threads=')) continue;
    else if (a === '--set') {
      const [key, raw] = value().split('=');
      if (!key || raw === undefined) throw new Error(`--set expects KEY=VALUE, got '${argv[i]}'`);
      opts.set[key] = raw === 'true' ? true : raw === 'false' ? false : Number.isNaN(Number(raw)) ? raw : Number(raw);
    } else throw new Error(`unknown argument '${a}' (see --help)`);
  }
  if (!Number.isInteger(opts.size) || opts.size <= 0) throw new Error(`--size must be a positive integer`);
  if (!Number.isInteger(opts.classes) || opts.classes <= 0) throw new Error(`--classes must be a positive integer`);
  return opts;
}

/** One row of the zoo table. */
export interface ZooRow {
  model: string;
  family: string;
  /** Default size and input rules, e.g. '224 (×32, square)'. */
  input: string;
  params2: number;
  params1000: number;
  /** The reference's count at 1000 classes (meta.referenceParams). */
  referenceParams?: number;
  /** The fused / reparameterised inference form's parameters at 2 and 1000 classes. */
  fused2?: number;
  fused1000?: number;
  size: number;
  macsPaper: number;
  macsFull: number;
}

function paramsOf(name: string, numClasses: number, withFused: boolean): { total: number; fused?: number } {
  const model = createModel(name, { numClasses });
  let fused: ClassifierModel | undefined;
  try {
    const total = countParams(model).total;
    fused = withFused && model.fusedForInference ? model.fusedForInference() : undefined;
    return { total, fused: fused ? countParams(fused).total : undefined };
  } finally {
    fused?.dispose();
    model.dispose();
  }
}

/** Count every registered model (default options): what `--list` prints. */
export function zooRows(log: (line: string) => void = () => {}): ZooRow[] {
  return listModels().map((meta) => {
    log(`counting ${meta.name} ...`);
    const p2 = paramsOf(meta.name, 2, true);
    const p1000 = paramsOf(meta.name, 1000, true);
    const model = createModel(meta.name, { numClasses: 1000 });
    const macs = (() => {
      try {
        return countMacs(model, meta.defaultSize);
      } finally {
        model.dispose();
      }
    })();
    const rule = meta.input;
    const rules = [
      rule.fixedSize ? `fixed ${rule.fixedSize}` : '',
      rule.multipleOf && rule.multipleOf > 1 ? `×${rule.multipleOf}` : '',
      rule.minSize && rule.minSize > (rule.multipleOf ?? 1) ? `≥${rule.minSize}` : '',
      rule.square ? 'square' : '',
    ].filter(Boolean);
    return {
      model: meta.name,
      family: meta.family,
      input: `${meta.defaultSize}${rules.length ? ` (${rules.join(', ')})` : ''}`,
      params2: p2.total,
      params1000: p1000.total,
      referenceParams: meta.referenceParams,
      fused2: p2.fused,
      fused1000: p1000.fused,
      size: meta.defaultSize,
      macsPaper: macs.paper,
      macsFull: macs.full,
    };
  });
}

/** The zoo table as text columns or Markdown. */
export function formatZoo(rows: ZooRow[], markdown: boolean): string {
  const n = (v: number) => v.toLocaleString('en-US');
  const g = (v: number) => (v / 1e9).toFixed(3);
  const header = [
    'model',
    'family',
    'input px',
    'params (2 classes)',
    'params (1000 classes)',
    'inference form (2 / 1000)',
    'GMACs (paper)',
    'GMACs (full)',
  ];
  const body = rows.map((r) => [
    r.model,
    r.family,
    r.input,
    n(r.params2),
    n(r.params1000) + (r.referenceParams !== undefined && r.referenceParams !== r.params1000 ? ' (≠ reference!)' : ''),
    r.fused2 !== undefined ? `${n(r.fused2)} / ${n(r.fused1000!)}` : '–',
    g(r.macsPaper),
    g(r.macsFull),
  ]);
  const numeric = [false, false, false, true, true, true, true, true];
  if (markdown) {
    const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
    return [line(header), line(numeric.map((r) => (r ? '---:' : '---'))), ...body.map(line)].join('\n');
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const pad = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [pad(header), ...body.map(pad)].join('\n');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  await initBackend(backendFromArgv(), { quiet: true, threads: threadsFromArgv() });
  if (opts.list) {
    const rows = zooRows((line) => process.stderr.write(`${line}\n`));
    if (opts.json) console.log(JSON.stringify(rows, null, 2));
    else {
      console.log(formatZoo(rows, opts.markdown));
      console.log(
        `\nparams = sum(p.numel()) of the training form, dead parameters included (as the references count them); ` +
          `inference form = the model's fusedForInference() (reparameterised / BN-fused); MACs at the input px above, ` +
          `batch 1, 1000 classes: paper = ptflops module hooks, full = paper + attention matmuls + SS2D's x_proj, dt_proj and scan ` +
          `(lib/models/complexity.ts).`,
      );
    }
    return;
  }
  const model = createModel(opts.model, { ...(opts.set as ModelOptions), numClasses: opts.classes });
  const params = countParams(model);
  const macs = countMacs(model, opts.size);
  model.dispose();
  if (opts.json) {
    console.log(
      JSON.stringify(
        { model: opts.model, size: opts.size, classes: opts.classes, options: opts.set, params, macs },
        null,
        2,
      ),
    );
    return;
  }
  const M = (n: number) => `${(n / 1e6).toFixed(3)} M`.padStart(12) + `  (${n.toLocaleString('en-US')})`;
  const G = (n: number) => `${(n / 1e9).toFixed(4)} G`.padStart(12) + `  (${n.toLocaleString('en-US')})`;
  const set = Object.entries(opts.set).map(([k, v]) => `${k}=${v}`);
  console.log(
    `${opts.model}, ${opts.classes} classes, ${opts.size}×${opts.size} input${set.length ? `, ${set.join(', ')}` : ''}`,
  );
  console.log(`params  total      ${M(params.total)}   (what PyTorch's sum(p.numel()) reports, dead included)`);
  console.log(`        trainable  ${M(params.trainable)}`);
  console.log(`        used       ${M(params.used)}   (without parameters the forward pass never touches)`);
  console.log(`        buffers    ${M(params.buffers)}   (BatchNorm running statistics; not parameters)`);
  console.log(`MACs    paper      ${G(macs.paper)}   (ptflops module count: conv/linear/norm/activation/pool)`);
  console.log(`        full       ${G(macs.full)}   (paper + attention matmuls + x_proj + dt_proj + selective scan)`);
  for (const [kind, v] of Object.entries(macs.extra)) {
    const note = kind === 'scan' ? '   (9·L·E·N per direction)' : '';
    console.log(`          ${kind.padEnd(9)}${G(v)}${note}`);
  }
  const kinds = Object.entries(macs.byKind).sort((a, b) => b[1] - a[1]);
  console.log(`paper MACs by layer kind: ${kinds.map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)} M`).join(', ')}`);
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(`params: ${e.message}`);
    process.exit(1);
  });
}
