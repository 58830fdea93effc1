/**
 * MedMamba in the registry: `medmamba-t` (depths 2-2-4-2) and `medmamba-s` (2-2-8-2, a Table I row), both
 * dims 96-192-384-768, from the official repository's baseline_other/mamba/medmamba.py.
 *
 *   createModel('medmamba-s', { numClasses: 2 })
 *   createModel('medmamba-t', { numClasses: 2, dims: [8, 16, 32, 64], depths: [1, 1, 2, 1], dState: 4 })  (tests)
 */
import type { ScanImpl } from '../../ops/selective-scan/index';
import { resolveOptions, type ModelOptions } from '../contract';
import { registerModel } from '../registry';
import { MedMamba, MedMambaConfig } from './model';

export * from './block';
export * from './model';

const SCAN_IMPLS: ScanImpl[] = ['auto', 'reference', 'chunked', 'fused'];

/** Build MedMamba from registry options over the given depths (dims 96-192-384-768 unless overridden). */
export function createMedMamba(name: string, opts: ModelOptions, depths: number[]): MedMamba {
  // The reference's VSSM defaults to drop_path_rate 0.1 (as the kit's Microscopic-Mamba).
  const o = resolveOptions(
    name,
    { ...opts, dropPathRate: opts.dropPathRate ?? 0.1 },
    {
      depths,
      dims: [96, 192, 384, 768],
      dState: 16,
      patchSize: 4,
      scanImpl: 'auto' as ScanImpl,
      useCheckpoint: false,
    },
    224,
  );
  const bad = (key: string, rule: string, value: unknown) =>
    new Error(`${name}: option ${key} must be ${rule}, got ${JSON.stringify(value)}`);
  const positiveInts = (v: unknown) =>
    Array.isArray(v) && v.length > 0 && v.every((n) => Number.isInteger(n) && n >= 1);
  if (!positiveInts(o.depths)) throw bad('depths', 'a non-empty array of positive integers', o.depths);
  if (!positiveInts(o.dims) || o.dims.length !== o.depths.length) {
    throw bad('dims', `${o.depths.length} positive integers (one per stage)`, o.dims);
  }
  o.dims.forEach((d, i) => {
    if (d % 2 !== 0) throw bad('dims', 'even (each block splits its channels in two)', o.dims);
    if (i > 0 && d !== 2 * o.dims[i - 1])
      throw bad('dims', 'doubling from stage to stage (PatchMerging maps C → 2C)', o.dims);
  });
  if (!Number.isInteger(o.dState) || o.dState < 1) throw bad('dState', 'a positive integer', o.dState);
  if (!Number.isInteger(o.patchSize) || o.patchSize < 1) throw bad('patchSize', 'a positive integer', o.patchSize);
  if (!SCAN_IMPLS.includes(o.scanImpl)) throw bad('scanImpl', SCAN_IMPLS.map((s) => `'${s}'`).join(' | '), o.scanImpl);
  if (typeof o.useCheckpoint !== 'boolean') throw bad('useCheckpoint', 'true or false', o.useCheckpoint);
  const config: MedMambaConfig = { ...o };
  return new MedMamba(config, name);
}

const SOURCE =
  'Yue & Li 2024 (arXiv 2403.03849); github.com/zs1314/Microscopic-Mamba baseline_other/mamba/medmamba.py VSSM (8df9997)';

registerModel('medmamba-t', (opts) => createMedMamba('medmamba-t', opts, [2, 2, 4, 2]), {
  description: 'MedMamba-T: SS-Conv-SSM blocks (full-conv branch ‖ SS2D, channel shuffle, residual), depths 2-2-4-2',
  family: 'mamba',
  source: `${SOURCE}, depths [2, 2, 4, 2]`,
  input: { multipleOf: 32, minSize: 32 },
  defaultSize: 224,
  referenceParams: 15_221_608,
});

registerModel('medmamba-s', (opts) => createMedMamba('medmamba-s', opts, [2, 2, 8, 2]), {
  description: 'MedMamba-S: SS-Conv-SSM blocks (full-conv branch ‖ SS2D, channel shuffle, residual), depths 2-2-8-2',
  family: 'mamba',
  source: `${SOURCE}, depths [2, 2, 8, 2]`,
  input: { multipleOf: 32, minSize: 32 },
  defaultSize: 224,
  referenceParams: 19_389_544,
});
