/**
 * Microscopic-Mamba's registry entries (t, s, b) and its typed factory.
 *
 * Through the registry the model takes the contract's shared options (lib/models/contract.ts) plus its
 * configuration keys (config.ts) as model-specific options:
 *   numClasses, seed, dropPathRate   as in the config (official drop_path_rate default 0.1)
 *   dropRate                          dropout before the head; the official VSSM has none, so 0 (the kit's
 *                                     opt-in, for recipes that set it for every model)
 *   imageSize                         accepted, no effect: the architecture does not depend on the size
 *                                     (any multiple of 32; square with the official PSFFN transpose)
 */
import { type ModelOptions, resolveOptions } from '../contract';
import { registerModel } from '../registry';
import {
  DEFAULT_CONFIG,
  type MicroscopicMambaConfig,
  type MicroscopicMambaVariant,
  resolveConfig,
  VARIANTS,
} from './config';
import { MicroscopicMamba } from './model';

/**
 * Parameters at 1000 classes, dead ones included (what the official model's sum(p.numel()) prints;
 * docs/architecture.md §Parameters and MACs).
 */
const REFERENCE_PARAMS: Record<MicroscopicMambaVariant, number> = {
  'microscopic-mamba-t': 4_321_310,
  'microscopic-mamba-s': 4_971_714,
  'microscopic-mamba-b': 9_405_578,
};

/** Build Microscopic-Mamba directly with a typed config (what the registry's factories call). */
export function createMicroscopicMamba(
  variant: MicroscopicMambaVariant,
  config: Partial<MicroscopicMambaConfig> = {},
): MicroscopicMamba {
  return new MicroscopicMamba(resolveConfig(config, variant), variant);
}

/** The registry factory: contract options → the variant's config. */
export function microscopicMambaFromOptions(variant: MicroscopicMambaVariant, opts: ModelOptions): MicroscopicMamba {
  const defaults: Record<string, unknown> = { ...DEFAULT_CONFIG, ...VARIANTS[variant] };
  delete defaults.description;
  const o = resolveOptions(variant, opts, defaults, 224);
  const config: Record<string, unknown> = {};
  for (const key of Object.keys(DEFAULT_CONFIG)) config[key] = o[key];
  return createMicroscopicMamba(variant, config as Partial<MicroscopicMambaConfig>);
}

for (const variant of Object.keys(VARIANTS) as MicroscopicMambaVariant[]) {
  registerModel(variant, (opts) => microscopicMambaFromOptions(variant, opts), {
    description: VARIANTS[variant].description,
    family: 'microscopic-mamba',
    source: 'arXiv 2409.07896; github.com/zs1314/Microscopic-Mamba microscopicmamba.py (8df9997)',
    input: { multipleOf: 32, minSize: 32, square: true },
    defaultSize: 224,
    referenceParams: REFERENCE_PARAMS[variant],
    reducedConfig: { options: { depths: [1, 1, 1, 1], dims: [32, 64, 128, 256] }, size: 32 },
  });
}
