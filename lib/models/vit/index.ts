/**
 * ViT in the registry: `vit-tiny`, the official repository's ViT-tiny (baseline_other/Transformer/Vit.py).
 *
 *   createModel('vit-tiny', { numClasses: 2 })                               224 px, patch 16 (Table I)
 *   createModel('vit-tiny', { numClasses: 2, imageSize: 32, patchSize: 4 })  32 px, patch 4 (64 patches)
 */
import { resolveOptions, type ModelOptions } from '../contract';
import { registerModel } from '../registry';
import { ViT, ViTConfig } from './vit';

export * from './vit';

const VIT_TINY = {
  patchSize: 16,
  dim: 192,
  depth: 12,
  heads: 3,
  dimHead: 64,
  mlpDim: 768,
  pool: 'cls' as 'cls' | 'mean',
  dropout: 0,
  embDropout: 0,
};

/** Build ViT-tiny (or a narrower / shallower ViT of the same definition) from registry options. */
export function createViT(name: string, opts: ModelOptions, defaults = VIT_TINY, defaultSize = 224): ViT {
  const o = resolveOptions(name, opts, defaults, defaultSize);
  const bad = (key: string, rule: string, value: unknown) =>
    new Error(`${name}: option ${key} must be ${rule}, got ${JSON.stringify(value)}`);
  for (const key of ['patchSize', 'dim', 'depth', 'heads', 'dimHead', 'mlpDim'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw bad(key, 'a positive integer', o[key]);
  }
  for (const key of ['dropout', 'embDropout'] as const) {
    if (typeof o[key] !== 'number' || !(o[key] >= 0 && o[key] < 1)) throw bad(key, 'in [0, 1)', o[key]);
  }
  if (o.pool !== 'cls' && o.pool !== 'mean') throw bad('pool', "'cls' or 'mean'", o.pool);
  if (o.imageSize % o.patchSize !== 0) {
    throw new Error(
      `${name}: imageSize ${o.imageSize} is not divisible by patchSize ${o.patchSize} ` +
        `(the reference asserts 'Image dimensions must be divisible by the patch size')`,
    );
  }
  const config: ViTConfig = { ...o };
  return new ViT(config, name);
}

registerModel('vit-tiny', (opts) => createViT('vit-tiny', opts), {
  description: 'ViT-tiny (dim 192, depth 12, 3 heads of 64, MLP 768), LayerNorm around the patch Linear, cls pooling',
  family: 'vit',
  source:
    'Dosovitskiy et al. 2021; github.com/zs1314/Microscopic-Mamba baseline_other/Transformer/Vit.py ' +
    "create_vit_model('tiny') (8df9997)",
  input: { fixedSize: 224, square: true },
  defaultSize: 224,
  referenceParams: 5_712_424,
});
