/**
 * npm run download -- <name> [<name> ...] [--size 28|64|128|224] [--root data] [--base-url URL] [--retries N]
 * npm run download -- --list
 *
 * MedMNIST sets (e.g. tissuemnist, bloodmnist, pathmnist) come from Zenodo record 10519652 and are checked
 * against the MD5s of the medmnist package; `malaria` (alias: sars, nih-malaria) fetches NLM's cell_images.zip,
 * checks its SHA-256 and extracts it to <root>/nih-malaria/cell_images. For mhist, medfm-colon and rpe, which
 * need a request form, it prints where to get them and how to lay them out. Transfers resume after an
 * interruption (run the same command again) and nothing unverified is ever left under a final name.
 * See lib/data/download.ts and data/README.md.
 */
import * as path from 'path';
import { DataError } from '../lib/data/errors';
import { downloadableNames, planDownload, runDownload } from '../lib/data/download';
import { MEDMNIST } from '../lib/data/medmnist-info';
import { defaultDataRoot } from '../lib/data/paths';

const USAGE = `usage: npm run download -- <name> [...] [--size 28|64|128|224] [--root DIR] [--base-url URL] [--retries N]
       npm run download -- --list`;

interface Args {
  names: string[];
  size?: number;
  root: string;
  baseUrl?: string;
  retries?: number;
  list: boolean;
}

export function parseArgs(argv: string[]): Args {
  const args: Args = { names: [], root: defaultDataRoot(), list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new DataError(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--size') args.size = Number(value());
    else if (a === '--root') args.root = path.resolve(value());
    else if (a === '--base-url') args.baseUrl = value();
    else if (a === '--retries') args.retries = Number(value());
    else if (a === '--list') args.list = true;
    else if (a === '--help' || a === '-h') throw new DataError(USAGE);
    else if (a.startsWith('--')) throw new DataError(`unknown option ${a}\n${USAGE}`);
    else args.names.push(a);
  }
  return args;
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (args.list || args.names.length === 0) {
    console.log('MedMNIST (add --size 28|64|128|224):');
    for (const [flag, info] of Object.entries(MEDMNIST)) {
      const n = info.samples.train + info.samples.val + info.samples.test;
      console.log(
        `  ${flag.padEnd(16)} ${info.labels.length} classes, ${n} images, ${info.channels === 1 ? 'grey' : 'RGB'}, ${info.license}`,
      );
    }
    console.log('Archives:\n  malaria          NIH/NLM cell_images.zip (27,558 cells; the paper\'s "SARS")');
    console.log('By request (prints instructions):\n  mhist, medfm-colon, rpe');
    if (!args.list) console.log(`\n${USAGE}`);
    return args.list ? 0 : 2;
  }
  for (const name of args.names) {
    try {
      const plan = planDownload(name, { size: args.size, root: args.root, baseUrl: args.baseUrl });
      const paths = await runDownload(plan, { retries: args.retries });
      for (const p of paths) console.log(p);
    } catch (e) {
      console.error(`download ${name}: ${(e as Error).message}`);
      if (!(e instanceof DataError)) console.error(`known names: ${downloadableNames().join(', ')}`);
      return 1;
    }
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
