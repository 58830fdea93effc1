/**
 * SwiftFormer (Shaker et al., ICCV 2023) in the zoo: `swiftformer-xs` and `swiftformer-s` = official
 * `SwiftFormer_XS` / `SwiftFormer_S` without distillation, baseline_other/cnn_tran_hybird/Swiftformer.py of
 * zs1314/Microscopic-Mamba (8df9997). Family 'hybrid': conv stages with one additive-attention block each.
 */
import { resolveOptions, type ModelOptions } from '../contract';
import { registerModel } from '../registry';
import { SwiftFormer, SWIFTFORMER_VARIANTS } from './model';

export * from './layers';
export * from './model';

export type SwiftFormerVariant = keyof typeof SWIFTFORMER_VARIANTS;

function positiveInts(name: string, key: string, v: unknown, length?: number): number[] {
  if (
    !Array.isArray(v) ||
    v.length === 0 ||
    !v.every((x) => Number.isInteger(x) && x > 0) ||
    (length !== undefined && v.length !== length)
  ) {
    throw new Error(
      `${name}: option ${key} must be ${length ?? 'a non-empty number of'} positive integers, got ${JSON.stringify(v)}`,
    );
  }
  return v as number[];
}

/** Build a SwiftFormer variant; `layers` / `embedDims` / `vitNum` override its depths and widths. */
export function createSwiftFormer(variant: SwiftFormerVariant, opts: ModelOptions = {}): SwiftFormer {
  const preset = SWIFTFORMER_VARIANTS[variant];
  const o = resolveOptions(
    variant,
    opts,
    { layers: [...preset.layers] as unknown, embedDims: [...preset.embedDims] as unknown, vitNum: 1 as unknown },
    224,
  );
  const layers = positiveInts(variant, 'layers', o.layers);
  const embedDims = positiveInts(variant, 'embedDims', o.embedDims, layers.length);
  const vitNum = o.vitNum;
  if (typeof vitNum !== 'number' || !Number.isInteger(vitNum) || vitNum < 1) {
    throw new Error(
      `${variant}: option vitNum must be a positive integer (SwiftFormerEncoders per stage), got ${JSON.stringify(vitNum)}`,
    );
  }
  return new SwiftFormer(
    {
      layers,
      embedDims,
      vitNum,
      numClasses: o.numClasses,
      seed: o.seed,
      dropRate: o.dropRate,
      dropPathRate: o.dropPathRate,
    },
    variant,
  );
}

const META = {
  'swiftformer-xs': {
    referenceParams: 3_254_360,
    fn: 'SwiftFormer_XS',
    what: 'XS (widths 48-56-112-220, depths 3-3-6-4)',
    reduced: { layers: [2, 1, 2, 1], embedDims: [8, 16, 16, 24] }, // make-hybrid-fixtures.py SWIFT_SMALL
  },
  'swiftformer-s': {
    referenceParams: 5_867_128,
    fn: 'SwiftFormer_S',
    what: 'S (widths 48-64-168-224, depths 3-3-9-6)',
    reduced: { layers: [1, 2, 1, 2], embedDims: [8, 8, 16, 24] },
  },
} as const;

for (const variant of Object.keys(SWIFTFORMER_VARIANTS) as SwiftFormerVariant[]) {
  const m = META[variant];
  // `reducedConfig` (zoo-core's ModelMeta field, for the contract test): the parity fixture's structure,
  // ConvEncoders and a SwiftFormerEncoder in the stages. A variable, so this branch type-checks before
  // zoo-core's ModelMeta (which declares the field) is merged.
  const meta = {
    description: `SwiftFormer-${m.what} (ICCV 2023): conv stages with efficient additive attention`,
    family: 'hybrid' as const,
    source:
      'Shaker et al., arXiv 2303.15446; github.com/zs1314/Microscopic-Mamba ' +
      `baseline_other/cnn_tran_hybird/Swiftformer.py ${m.fn}(distillation=False) (8df9997)`,
    input: {},
    defaultSize: 224,
    referenceParams: m.referenceParams,
    reducedConfig: { options: { layers: [...m.reduced.layers], embedDims: [...m.reduced.embedDims] }, size: 32 },
  };
  registerModel(variant, (opts) => createSwiftFormer(variant, opts), meta);
}
