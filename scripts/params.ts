/**
 * Parameter and MAC counts of a registered model, without running it.
 *
 *   npm run params -- --model microscopic-mamba-t --size 224 --classes 1000
 *   npm run params -- --model microscopic-mamba-t --classes 2 --set psffn=false --set mifa=false
 *
 * Prints total / trainable / used parameters (used = without the official model's dead parameters) and
 * MACs in the paper's convention (ptflops module count) and in full (plus SS2D's x_proj, dt_proj and
 * selective scan); see lib/models/complexity.ts for exactly what each counts.
 */
import { backendFromArgv, initBackend } from '../lib/backend/index';
import { countMacs, countParams, createModel, listModels } from '../lib/models/index';

const HELP = `Usage: npm run params -- [options]

Options:
  --model NAME      registered model (default microscopic-mamba-t); one of:
                    ${listModels()
                      .map((m) => m.name)
                      .join(', ')}
  --size N          square input side in pixels (default 224)
  --classes K       classes of the head (default 1000, as the paper's counts)
  --set KEY=VALUE   a model option, repeatable (e.g. --set psffn=false --set dropDeadParams=true)
  --json            print one JSON object instead of the table
  --backend NAME    tfjs backend that holds the weights while counting (default wasm; nothing is run)
  --help            this text
`;

function parseArgs(argv: string[]) {
  const opts = {
    model: 'microscopic-mamba-t',
    size: 224,
    classes: 1000,
    json: false,
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
    else if (a === '--backend') value();
    else if (a.startsWith('--backend=')) continue;
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

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  await initBackend(backendFromArgv(), { quiet: true });
  const model = createModel(opts.model, { ...opts.set, numClasses: opts.classes });
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
  console.log(`        full       ${G(macs.full)}   (paper + x_proj + dt_proj + selective scan)`);
  console.log(`          x_proj   ${G(macs.xProj)}`);
  console.log(`          dt_proj  ${G(macs.dtProj)}`);
  console.log(`          scan     ${G(macs.scan)}   (9·L·E·N per direction)`);
  const kinds = Object.entries(macs.byKind).sort((a, b) => b[1] - a[1]);
  console.log(`paper MACs by layer kind: ${kinds.map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)} M`).join(', ')}`);
}

main().catch((e: Error) => {
  console.error(`params: ${e.message}`);
  process.exit(1);
});
