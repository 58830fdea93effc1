/**
 * Configuration of Microscopic-Mamba (official `VSSM`, docs/architecture.md §Macro structure): the three published
 * variants, the ablation switches and one opt-in fix per code quirk of docs/architecture.md §Quirks.
 *
 * Faithful by default: with every switch at its default the model is the official PyTorch definition
 * (zs1314/Microscopic-Mamba 8df9997, `microscopicmamba.py`), reproduces its parameter counts and, given
 * its weights, its logits. Any fix or ablation gives a different function (official weights may still
 * load, but the logits differ).
 *
 * Shape symbols used across this folder (docs/architecture.md §Glossary; in code, the lower-case name):
 *   b  batch          h, w  feature-map height, width      L = h·w  sequence length of a scan
 *   C  stage width (dims[i])                               c = C/2  width of each block branch
 *   G  number of PVM groups (4, or 1 without the parallel VSSM)
 *   d  SS2D d_model = c/G                                  E = 2d  SS2D d_inner
 *   N  SSM state size (16)                                 R = ceil(d/16)  dt rank
 *   K  scan directions (4)                                 p  PSFFN partial width = floor(d·psffnRatio), official d/4
 */
import type { ScanImpl } from '../../ops/selective-scan/index';

export type MicroscopicMambaVariant = 'microscopic-mamba-t' | 'microscopic-mamba-s' | 'microscopic-mamba-b';

export interface MicroscopicMambaConfig {
  /** Classes of the linear head (official default 1000; the official training script uses the dataset's). */
  numClasses: number;
  /** Blocks per stage (official L1205–1207). */
  depths: number[];
  /** Stage widths C1..C4; each PatchMerging doubles the width, so dims[i+1] must be 2·dims[i]. */
  dims: number[];
  /** SSM state size N (official d_state = 16). */
  dState: number;
  /** Stochastic-depth rate of the last block; dpr = linspace(0, rate, sum(depths)) (official 0.1). */
  dropPathRate: number;
  /** Dropout before the head (the contract's shared `dropRate`). The official VSSM has none: 0. */
  dropRate: number;
  /** Seed of the initialisation (docs/architecture.md §Initialisation); the same seed builds the same weights. */
  seed: number;
  /** Selective-scan implementation passed to `crossScanSSM` ('auto' picks the fastest for the backend). */
  scanImpl: ScanImpl;
  /** Activation checkpointing per block in training (official `use_checkpoint`, default False): the
   *  backward pass recomputes each block's forward instead of keeping its activations. Same numbers,
   *  about a third more compute, a fraction of the memory (e.g. what lets 224-px batches fit in wasm's
   *  4 GB heap). No effect on eval-mode forward passes. */
  useCheckpoint: boolean;

  // ---- ablation switches (the kit's; the paper's ablations: docs/architecture.md §Ablations) ----
  /** true: PSFFN replaces SS2D's out_proj (official). false: a plain Linear(E→d, no bias) out_proj, as in
   *  VMamba/MedMamba; out_proj is then a used parameter and there is no PSFFN (and no H/W transpose). */
  psffn: boolean;
  /** PSFFN's partial ratio: the depthwise 3×3 filters p = floor(d·ratio) of its d channels (official
   *  `p_rate=0.25`, L871). The paper's Fig. 4 sweeps 1/12, 1/6, 1/4, 1/2 and 1. Ignored without PSFFN. */
  psffnRatio: number;
  /** true: MIFA fuses the two branches (official). false: MedMamba's fusion, channel_shuffle(concat(conv,
   *  ssm), groups = 2); no MIFA parameters (its ECA goes with it, whatever `eca` says). */
  mifa: boolean;
  /** true: the PVM layer splits its c channels into 4 groups that share one SS2D with d_model = c/4
   *  (official). false: one SS2D over all c channels (d_model = c), the same LayerNorms and skip scale. */
  parallelVssm: boolean;
  /** true: MIFA ends with the per-channel ECA gate (official). false: MIFA's output is not re-weighted. */
  eca: boolean;

  // ---- opt-in fixes of the official code's quirks (docs/architecture.md §Quirks); all false = faithful ----
  /** Q1. false: SS2D returns transpose_HW(PSFFN(y)) + x, as the official permutes do (square inputs
   *  only). true: PSFFN(y) + x with no transpose; non-square inputs become possible. */
  fixPsffnTranspose: boolean;
  /** Q2. false: the block returns MIFA's output (no residual; DropPath then drops a non-residual
   *  branch). true: the block returns input + output, as MedMamba's SS_Conv_SSM does. */
  blockResidual: boolean;
  /** Q3. false: PVMLayer.proj and SS2D.out_proj are created (never used, counted in `total`, as the
   *  official counts are). true: they are not created (loading official weights then needs strict: false). */
  dropDeadParams: boolean;
  /** Q4. false: PVMLayer applies its one LayerNorm before and after the SS2D groups (shared γ, β).
   *  true: the second application gets its own LayerNorm, named `pvm_layer.norm_out`. */
  separatePvmNorms: boolean;
  /** Q5. false: MIFA's local gate is sigmoid(ReLU(·)) ∈ [0.5, 1). true: sigmoid(·) ∈ (0, 1), so the
   *  local map can suppress a feature (the global gate stays sigmoid(GELU(·))). */
  fixMifaGate: boolean;
}

export const VARIANTS: Record<MicroscopicMambaVariant, { depths: number[]; dims: number[]; description: string }> = {
  'microscopic-mamba-t': {
    depths: [2, 2, 4, 2],
    dims: [96, 192, 384, 768],
    description: 'Microscopic-Mamba tiny (Ms-Mamba-t / MambaMIC-t), official L1205; the one train.py uses',
  },
  'microscopic-mamba-s': {
    depths: [2, 2, 8, 2],
    dims: [96, 192, 384, 768],
    description: 'Microscopic-Mamba small (Ms-Mamba-s / MambaMIC-s), official L1206',
  },
  'microscopic-mamba-b': {
    depths: [2, 2, 12, 2],
    dims: [128, 256, 512, 1024],
    description: 'Microscopic-Mamba base (Ms-Mamba-b / MambaMIC-b), official L1207',
  },
};

/** Defaults = the official model (t variant, 1000 classes). */
export const DEFAULT_CONFIG: MicroscopicMambaConfig = {
  numClasses: 1000,
  depths: VARIANTS['microscopic-mamba-t'].depths,
  dims: VARIANTS['microscopic-mamba-t'].dims,
  dState: 16,
  dropPathRate: 0.1,
  dropRate: 0,
  seed: 0,
  scanImpl: 'auto',
  useCheckpoint: false,
  psffn: true,
  psffnRatio: 0.25,
  mifa: true,
  parallelVssm: true,
  eca: true,
  fixPsffnTranspose: false,
  blockResidual: false,
  dropDeadParams: false,
  separatePvmNorms: false,
  fixMifaGate: false,
};

const BOOLEAN_KEYS = [
  'useCheckpoint',
  'psffn',
  'mifa',
  'parallelVssm',
  'eca',
  'fixPsffnTranspose',
  'blockResidual',
  'dropDeadParams',
  'separatePvmNorms',
  'fixMifaGate',
] as const;

/** Fill defaults (optionally from a named variant) and check the values; errors name the bad field. */
export function resolveConfig(
  overrides: Partial<MicroscopicMambaConfig> = {},
  variant?: MicroscopicMambaVariant,
): MicroscopicMambaConfig {
  const base = variant ? { ...DEFAULT_CONFIG, ...VARIANTS[variant] } : DEFAULT_CONFIG;
  const known = new Set(Object.keys(DEFAULT_CONFIG));
  for (const key of Object.keys(overrides)) {
    if (!known.has(key)) {
      throw new Error(
        `microscopic-mamba config: unknown option '${key}'. Known options: ${[...known].sort().join(', ')}`,
      );
    }
  }
  const cfg: MicroscopicMambaConfig = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (cfg as unknown as Record<string, unknown>)[key] = value;
  }
  const bad = (field: string, why: string) => new Error(`microscopic-mamba config: ${field} ${why}`);
  if (!Number.isInteger(cfg.numClasses) || cfg.numClasses < 1)
    throw bad('numClasses', `must be ≥ 1 (got ${cfg.numClasses})`);
  if (cfg.depths.length !== cfg.dims.length || cfg.depths.length < 1) {
    throw bad('depths/dims', `must have the same, non-zero length (got ${cfg.depths.length} and ${cfg.dims.length})`);
  }
  if (cfg.depths.some((n) => !Number.isInteger(n) || n < 1))
    throw bad('depths', `must be positive integers ([${cfg.depths}])`);
  cfg.dims.forEach((dim, i) => {
    // Each branch has C/2 channels; the PVM splits them into 4 groups; PSFFN's shuffle needs an even d.
    if (!Number.isInteger(dim) || dim % 16 !== 0) throw bad('dims', `must be multiples of 16 (dims[${i}] = ${dim})`);
    if (i > 0 && dim !== 2 * cfg.dims[i - 1]) {
      throw bad('dims', `must double from stage to stage (PatchMerging maps C → 2C); got [${cfg.dims}]`);
    }
  });
  if (!Number.isInteger(cfg.dState) || cfg.dState < 1)
    throw bad('dState', `must be a positive integer (${cfg.dState})`);
  if (!(cfg.dropPathRate >= 0 && cfg.dropPathRate < 1))
    throw bad('dropPathRate', `must be in [0, 1) (${cfg.dropPathRate})`);
  if (!(typeof cfg.psffnRatio === 'number' && cfg.psffnRatio > 0 && cfg.psffnRatio <= 1))
    throw bad('psffnRatio', `must be in (0, 1] (got ${String(cfg.psffnRatio)})`);
  if (!(cfg.dropRate >= 0 && cfg.dropRate < 1)) throw bad('dropRate', `must be in [0, 1) (${cfg.dropRate})`);
  for (const key of BOOLEAN_KEYS) {
    if (typeof cfg[key] !== 'boolean') throw bad(key, `must be true or false (got ${String(cfg[key])})`);
  }
  return cfg;
}

/** Does this configuration carry the official H/W transpose (and therefore need square inputs)? */
export function needsSquareInput(cfg: MicroscopicMambaConfig): boolean {
  return cfg.psffn && !cfg.fixPsffnTranspose;
}

/** Stochastic-depth rate of every block in order: torch.linspace(0, rate, sum(depths)) (official L1134). */
export function dropPathSchedule(depths: number[], rate: number): number[] {
  const n = depths.reduce((a, b) => a + b, 0);
  return Array.from({ length: n }, (_, i) => (n === 1 ? 0 : (rate * i) / (n - 1)));
}
