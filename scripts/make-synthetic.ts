/**
 * npm run make-synthetic -- [--classes 2..5] [--size 64] [--train 200] [--val 50] [--test 50] [--seed 0]
 *                           [--root data] [--force]
 *
 * Writes the SYNTHETIC microscopy set (lib/data/synthetic.ts) as an image folder:
 *   <root>/synthetic-microscopy-<N>cls-<size>px-seed<seed>/{train,val,test}/<class>/*.png + README.txt + dataset.json
 * Reuses an existing complete set with the same parameters unless --force. Prints the folder.
 */
import * as path from 'path';
import { defaultDataRoot } from '../lib/data/paths';
import { SYNTHETIC_DEFAULTS, writeSyntheticDataset } from '../lib/data/synthetic';
import { parseArgs, runMain, type CliSpec } from './lib/cli';

export const MAKE_SYNTHETIC_SPEC: CliSpec = {
  command: 'npm run make-synthetic --',
  summary: 'Write the SYNTHETIC microscopy set (procedurally rendered cells, not real data) as an image folder.',
  backend: false,
  flags: [
    { key: 'classes', type: 'number', default: SYNTHETIC_DEFAULTS.numClasses, help: 'number of classes (2..5)' },
    { key: 'size', type: 'number', default: SYNTHETIC_DEFAULTS.size, help: 'image side in pixels' },
    { key: 'train', type: 'number', default: SYNTHETIC_DEFAULTS.perClass.train, help: 'train images per class' },
    { key: 'val', type: 'number', default: SYNTHETIC_DEFAULTS.perClass.val, help: 'validation images per class' },
    { key: 'test', type: 'number', default: SYNTHETIC_DEFAULTS.perClass.test, help: 'test images per class' },
    { key: 'seed', type: 'number', default: SYNTHETIC_DEFAULTS.seed, help: 'generator seed' },
    { key: 'root', type: 'string', default: '', help: 'parent folder (default data/, or MSM_DATA_ROOT)' },
    { key: 'force', type: 'boolean', default: false, help: 'rewrite an existing complete set' },
  ],
  epilog:
    'Output: <root>/synthetic-microscopy-<N>cls-<size>px-seed<seed>/{train,val,test}/<class>/*.png; prints the folder.',
};

async function main() {
  const { values: v } = parseArgs(process.argv.slice(2), MAKE_SYNTHETIC_SPEC);
  const t0 = Date.now();
  let last = -1;
  const dir = await writeSyntheticDataset({
    root: v.root ? path.resolve(v.root as string) : defaultDataRoot(),
    numClasses: v.classes as number,
    size: v.size as number,
    seed: v.seed as number,
    perClass: { train: v.train as number, val: v.val as number, test: v.test as number },
    force: v.force as boolean,
    onProgress: (done, total) => {
      const step = Math.floor((10 * done) / total);
      if (step !== last) {
        last = step;
        process.stderr.write(`synthetic: ${done}/${total} images\n`);
      }
    },
  });
  process.stderr.write(
    `synthetic set ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (SYNTHETIC data, not real)\n`,
  );
  console.log(dir);
}

if (require.main === module) runMain(main);
