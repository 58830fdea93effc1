/**
 * RepViT (Wang et al., CVPR 2024) in the zoo: `repvit-m1.0` = official `repvit_m1_0(distillation=False)`,
 * baseline_other/CNN/repvit.py of zs1314/Microscopic-Mamba (8df9997).
 *
 * Family 'cnn': the reference (and the Microscopic-Mamba paper's Table I, which lists it under CNNs) calls
 * it a CNN — it has no attention, only depthwise/pointwise convolutions arranged in a ViT-like macro design.
 */
import { resolveOptions, type ModelOptions } from '../contract';
import { registerModel } from '../registry';
import { checkCfgs, REPVIT_M1_0_CFGS, RepViT } from './model';

export * from './layers';
export * from './model';

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

registerModel('repvit-m1.0', (opts) => createRepViT(opts), {
  description:
    'RepViT-M1.0 (CVPR 2024): re-parameterisable mobile CNN with a ViT-style macro design; fuse for inference',
  family: 'cnn',
  source:
    'Wang et al., arXiv 2307.09283; github.com/zs1314/Microscopic-Mamba baseline_other/CNN/repvit.py ' +
    'repvit_m1_0(distillation=False) (8df9997)',
  input: {},
  defaultSize: 224,
  referenceParams: 6_852_900,
});
