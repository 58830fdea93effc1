/** ResNet-18 (torchvision definition, optional CIFAR stem of the official repo): registers `resnet18`. */
import { resolveOptions } from '../contract';
import { intList } from '../cnn-input';
import { registerModel } from '../registry';
import { ResNet, type ResNetStem } from './model';

export * from './model';

/**
 * Registry metadata. `reducedConfig` (the contract test's small build: both block kinds, the stem's
 * max-pool on an odd map) is contract metadata zoo-core adds to ModelMeta; kept in a variable so this
 * file also compiles against a ModelMeta without it.
 */
const META = {
  description: "ResNet-18 (torchvision); stem: 'cifar' gives the official repo's 3×3 stride-1 stem without max-pool",
  family: 'cnn' as const,
  source:
    'torchvision 0.14 torchvision.models.resnet18 (He et al. 2016); cifar stem: zs1314/Microscopic-Mamba baseline_other/CNN/resnet.py (8df9997)',
  input: { minSize: 32 },
  defaultSize: 224,
  referenceParams: 11_689_512,
  reducedConfig: { options: { widths: [4, 8, 8, 8], depths: [2, 1, 1, 1] }, size: 40 },
};

registerModel(
  'resnet18',
  (opts) => {
    const o = resolveOptions(
      'resnet18',
      opts,
      { stem: 'imagenet' as ResNetStem, depths: [2, 2, 2, 2], widths: [64, 128, 256, 512] },
      224,
    );
    if (o.stem !== 'imagenet' && o.stem !== 'cifar') {
      throw new Error(
        `resnet18: option stem must be 'imagenet' (torchvision) or 'cifar' (3×3/1, no max-pool), got ${JSON.stringify(o.stem)}`,
      );
    }
    return new ResNet({
      numClasses: o.numClasses,
      seed: o.seed,
      depths: intList('resnet18', 'depths', o.depths, 4),
      widths: intList('resnet18', 'widths', o.widths, 4),
      stem: o.stem,
      dropRate: o.dropRate,
      dropPathRate: o.dropPathRate,
    });
  },
  META,
);
