/**
 * RepViT (Wang et al., CVPR 2024) in the zoo: `repvit-m1.0` = official `repvit_m1_0(distillation=False)`,
 * baseline_other/CNN/repvit.py of zs1314/Microscopic-Mamba (8df9997).
 *
 * Family 'cnn': the reference (and the Microscopic-Mamba paper's Table I, which lists it under CNNs) calls
 * it a CNN — it has no attention, only depthwise/pointwise convolutions arranged in a ViT-like macro design.
 */
import { resolveOptions, type ModelOptions } from '../contract';
import { registerModel } from '../registry';
import { checkCfgs, REPVIT_M1_0_CFGS, RepViT, type RepViTBlockCfg } from './model';

export * from './layers';
export * from './model';

/** A reduced RepViT with every block type (make-hybrid-fixtures.py's REPVIT_SMALL_CFGS). */
export const REPVIT_REDUCED_CFGS: RepViTBlockCfg[] = [
  [3, 2, 8, 1, 0, 1],
  [3, 2, 8, 0, 0, 1],
  [3, 2, 16, 0, 0, 2],
  [3, 2, 16, 1, 1, 1],
  [3, 2, 24, 1, 1, 2],
  [3, 2, 24, 0, 1, 1],
];

/** Build `repvit-m1.0` (or a reduced RepViT through `cfgs`); `fused: true` gives the inference form. */
export function createRepViT(opts: ModelOptions = {}, name = 'repvit-m1.0'): RepViT {
  const o = resolveOptions(name, opts, { cfgs: REPVIT_M1_0_CFGS as unknown, fused: false as boolean }, 224);
  if (typeof o.fused !== 'boolean')
    throw new Error(`${name}: option fused must be true or false, got ${JSON.stringify(o.fused)}`);
  const config = {
    cfgs: checkCfgs(name, o.cfgs),
    numClasses: o.numClasses,
    seed: o.seed,
    dropRate: o.dropRate,
    dropPathRate: o.dropPathRate,
    fused: false,
  };
  const model = new RepViT(config, name);
  if (!o.fused) return model;
  const fused = model.fusedForInference();
  model.dispose();
  return fused.train();
}

/**
 * Registry metadata. `reducedConfig` (zoo-core's ModelMeta field: a small configuration with every block
 * type, for the contract test) is the structure of the parity fixture: stride-1 blocks with and without
 * SqueezeExcite, stride-2 blocks with and without it. Kept in a variable so this branch type-checks before
 * zoo-core's ModelMeta (which declares the field) is merged.
 */
const META = {
  description:
    'RepViT-M1.0 (CVPR 2024): re-parameterisable mobile CNN with a ViT-style macro design; fuse for inference',
  family: 'cnn' as const,
  source:
    'Wang et al., arXiv 2307.09283; github.com/zs1314/Microscopic-Mamba baseline_other/CNN/repvit.py ' +
    'repvit_m1_0(distillation=False) (8df9997)',
  input: {},
  defaultSize: 224,
  referenceParams: 6_852_900,
  reducedConfig: { options: { cfgs: REPVIT_REDUCED_CFGS }, size: 32 },
};

registerModel('repvit-m1.0', (opts) => createRepViT(opts), META);
