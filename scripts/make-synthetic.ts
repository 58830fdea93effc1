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

function parse(argv: string[]) {
  const o = {
    root: defaultDataRoot(),
    numClasses: SYNTHETIC_DEFAULTS.numClasses,
    size: SYNTHETIC_DEFAULTS.size,
    seed: SYNTHETIC_DEFAULTS.seed,
    perClass: { ...SYNTHETIC_DEFAULTS.perClass },
    force: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v)) throw new Error(`${a} needs a number`);
      return v;
    };
    if (a === '--root') o.root = path.resolve(argv[++i]);
    else if (a === '--classes') o.numClasses = num();
    else if (a === '--size') o.size = num();
    else if (a === '--seed') o.seed = num();
    else if (a === '--train' || a === '--val' || a === '--test')
      o.perClass[a.slice(2) as 'train' | 'val' | 'test'] = num();
    else if (a === '--force') o.force = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

async function main() {
  const o = parse(process.argv.slice(2));
  const t0 = Date.now();
  let last = -1;
  const dir = await writeSyntheticDataset({
    ...o,
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

main().catch((e) => {
  console.error((e as Error).message);
  process.exitCode = 1;
});
