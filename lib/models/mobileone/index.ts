/** MobileOne (official repo's baseline_other/CNN/mobileone.py): registers `mobileone-s0`. */
import { resolveOptions } from '../contract';
import { intList } from '../cnn-input';
import { registerModel } from '../registry';
import { MobileOne } from './model';

export * from './block';
export * from './model';

/**
 * Registry metadata. `reducedConfig` (the contract test's small build: every branch kind, skip BNs, stride-2
 * blocks) is contract metadata zoo-core adds to ModelMeta; kept in a variable so this file also compiles
 * against a ModelMeta without it.
 */
const META = {
  description: 'MobileOne-S0 in training form (4 conv branches per block); reparameterize() fuses it for inference',
  family: 'cnn' as const,
  source:
    'zs1314/Microscopic-Mamba baseline_other/CNN/mobileone.py (8df9997) mobileone(variant="s0"), Vasu et al. 2023 (arXiv 2206.04040)',
  input: { minSize: 32 },
  defaultSize: 224,
  referenceParams: 5_293_272,
  reducedConfig: {
    options: { numBlocksPerStage: [1, 2, 1, 1], widthMultipliers: [0.125, 0.125, 0.0625, 0.03125] },
    size: 32,
  },
};

registerModel(
  'mobileone-s0',
  (opts) => {
    const name = 'mobileone-s0';
    // PARAMS['s0'] of the file: width multipliers (0.75, 1, 1, 2), 4 conv branches, no SE.
    const o = resolveOptions(
      name,
      opts,
      {
        numBlocksPerStage: [2, 8, 10, 1],
        widthMultipliers: [0.75, 1, 1, 2],
        numConvBranches: 4,
        useSe: false,
        inferenceMode: false,
      },
      224,
    );
    const m = o.widthMultipliers;
    if (!Array.isArray(m) || m.length !== 4 || !m.every((v) => typeof v === 'number' && v > 0)) {
      throw new Error(`${name}: option widthMultipliers must be 4 positive numbers, got ${JSON.stringify(m)}`);
    }
    if (!Number.isInteger(o.numConvBranches) || o.numConvBranches < 1) {
      throw new Error(
        `${name}: option numConvBranches must be a positive integer, got ${JSON.stringify(o.numConvBranches)}`,
      );
    }
    for (const key of ['useSe', 'inferenceMode'] as const) {
      if (typeof o[key] !== 'boolean')
        throw new Error(`${name}: option ${key} must be true or false, got ${JSON.stringify(o[key])}`);
    }
    return new MobileOne(
      {
        numClasses: o.numClasses,
        seed: o.seed,
        numBlocksPerStage: intList(name, 'numBlocksPerStage', o.numBlocksPerStage, 4),
        widthMultipliers: m,
        numConvBranches: o.numConvBranches,
        useSe: o.useSe,
        inferenceMode: o.inferenceMode,
        dropRate: o.dropRate,
        dropPathRate: o.dropPathRate,
      },
      name,
    );
  },
  META,
);
