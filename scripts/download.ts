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
import { CliError, parseArgs as parseFlags, type CliSpec } from './lib/cli';

const USAGE = `usage: npm run download -- <name> [...] [--size 28|64|128|224] [--root DIR] [--base-url URL] [--retries N]
       npm run download -- --list`;

export const DOWNLOAD_SPEC: CliSpec = {
  command: 'npm run download --',
  summary: 'Download and verify datasets (MedMNIST .npz, the NIH malaria cells); print instructions for the rest.',
  positional: '<name>...',
  backend: false,
  flags: [
    { key: 'size', type: 'number', default: 28, help: 'MedMNIST image size: 28 | 64 | 128 | 224' },
    { key: 'root', type: 'string', default: '', help: 'data folder (default data/, or MSM_DATA_ROOT)' },
    { key: 'baseUrl', type: 'string', default: '', help: 'download from this URL prefix instead (mirrors, tests)' },
    { key: 'retries', type: 'number', default: 5, help: 'retries per file after a failed transfer' },
    { key: 'list', type: 'boolean', default: false, help: 'list the names that can be downloaded' },
  ],
  epilog: [
    'Names: MedMNIST flags (e.g. bloodmnist, pathmnist, tissuemnist), malaria (alias sars, nih-malaria);',
    'mhist, medfm-colon and rpe need a request form: the command prints where to get them.',
    'Transfers resume after an interruption (run the same command again); nothing unverified is kept.',
  ].join('\n'),
};

interface Args {
  names: string[];
  size?: number;
  root: string;
  baseUrl?: string;
  retries?: number;
  list: boolean;
}

/** The command line as download options (`--help` prints the help and exits 0; bad flags throw). */
export function parseArgs(argv: string[]): Args {
  const { values: v, given, positional } = parseFlags(argv, DOWNLOAD_SPEC);
  const retries = v.retries as number;
  if (!(Number.isInteger(retries) && retries >= 0)) {
    throw new CliError(`flag --retries must be an integer >= 0, got ${retries}`);
  }
  return {
    names: positional,
    size: given.has('size') ? (v.size as number) : undefined,
    root: v.root ? path.resolve(v.root as string) : defaultDataRoot(),
    baseUrl: (v.baseUrl as string) || undefined,
    retries: given.has('retries') ? retries : undefined,
    list: v.list as boolean,
  };
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
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
