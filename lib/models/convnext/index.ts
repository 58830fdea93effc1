/** ConvNeXt (official repo's baseline_other/CNN/convnext.py): registers `convnext-atto` and `convnext-tiny`. */
import { resolveOptions } from '../contract';
import { intList } from '../cnn-input';
import { registerModel } from '../registry';
import { ConvNeXt } from './model';

export * from './model';

const SOURCE = 'zs1314/Microscopic-Mamba baseline_other/CNN/convnext.py (8df9997), Liu et al. 2022 (arXiv 2201.03545)';

const VARIANTS = {
  'convnext-atto': {
    depths: [2, 2, 6, 2],
    dims: [40, 80, 160, 320],
    params: 3_695_520,
    reduced: { depths: [1, 1, 2, 1], dims: [4, 8, 8, 8] },
    description: 'ConvNeXt-atto: the official ConvNeXt definition at depths 2-2-6-2, dims 40-80-160-320',
  },
  'convnext-tiny': {
    depths: [3, 3, 9, 3],
    dims: [96, 192, 384, 768],
    params: 28_589_128,
    reduced: { depths: [1, 1, 1, 1], dims: [4, 4, 8, 8] },
    description: 'ConvNeXt-tiny: the official convnext_tiny (depths 3-3-9-3, dims 96-192-384-768), a Table I row',
  },
};

/**
 * Registry metadata. `reducedConfig` (the contract test's small build) is contract metadata zoo-core adds
 * to ModelMeta; returned from a function so this file also compiles against a ModelMeta without it.
 */
function meta(v: (typeof VARIANTS)[keyof typeof VARIANTS]) {
  return {
    description: v.description,
    family: 'cnn' as const,
    source: SOURCE,
    input: { minSize: 32 },
    defaultSize: 224,
    referenceParams: v.params,
    reducedConfig: { options: v.reduced, size: 32 },
  };
}

for (const [name, v] of Object.entries(VARIANTS)) {
  registerModel(
    name,
    (opts) => {
      const o = resolveOptions(
        name,
        opts,
        { depths: v.depths, dims: v.dims, layerScaleInitValue: 1e-6, headInitScale: 1 },
        224,
      );
      for (const key of ['layerScaleInitValue', 'headInitScale'] as const) {
        if (typeof o[key] !== 'number' || !Number.isFinite(o[key])) {
          throw new Error(`${name}: option ${key} must be a finite number, got ${JSON.stringify(o[key])}`);
        }
      }
      return new ConvNeXt(
        {
          numClasses: o.numClasses,
          seed: o.seed,
          depths: intList(name, 'depths', o.depths, 4),
          dims: intList(name, 'dims', o.dims, 4),
          layerScaleInitValue: o.layerScaleInitValue,
          headInitScale: o.headInitScale,
          dropRate: o.dropRate,
          dropPathRate: o.dropPathRate,
        },
        name,
      );
    },
    meta(v),
  );
}
