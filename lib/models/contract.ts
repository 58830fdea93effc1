/**
 * The model contract: what every classifier of the zoo is and accepts (timm's model interface, in TS).
 *
 *   const m = createModel('resnet18', { numClasses: 2, seed: 0, dropPathRate: 0 });
 *   const f = m.forwardFeatures(x, ctx);   // x [b, H, W, 3] → the map before pooling (NHWC, or ViT tokens)
 *   const y = m.forwardHead(f, ctx);       // → logits [b, K];  m.forward(x, ctx) ≡ forwardHead(forwardFeatures(x))
 *
 * Per-stage maps (Grad-CAM, teaching): every model passes each stage's output through `tapStage(ctx,
 * name, t)`; a caller that sets `ctx.tap` sees (and may replace, e.g. with `t + probe` to take a gradient)
 * each one. Stage names are listed in `model.stageNames`, in forward order.
 */
import * as tf from '@tensorflow/tfjs';
import type { ForwardContext, Module } from '../nn/index';

/** The families the zoo's plots colour by. */
export type ModelFamily = 'cnn' | 'vit' | 'hybrid' | 'mamba' | 'microscopic-mamba';

/** Options every model accepts. Model-specific options come on top and are validated by the factory. */
export interface SharedModelOptions {
  /** Classes of the head (default 1000, as the references). */
  numClasses?: number;
  /** Seed of the initialisation. */
  seed?: number;
  /** Dropout before the head (timm `drop_rate`). */
  dropRate?: number;
  /** Stochastic depth, linearly increasing over blocks (timm `drop_path_rate`). */
  dropPathRate?: number;
  /** Input size, for architectures whose shape depends on it (ViT's position embedding). */
  imageSize?: number;
}

export const SHARED_OPTION_NAMES = ['numClasses', 'seed', 'dropRate', 'dropPathRate', 'imageSize'] as const;

export interface ModelOptions extends SharedModelOptions {
  [option: string]: unknown;
}

/** A forward pass's context, plus the stage tap. */
export interface ModelForwardContext extends ForwardContext {
  /** Called with each stage output (NHWC map, or [b, T, D] tokens for ViT); returns what the model continues with. */
  tap?: (stage: string, t: tf.Tensor) => tf.Tensor;
}

/** Pass a stage output through the caller's tap, if any. */
export function tapStage(ctx: ModelForwardContext | undefined, stage: string, t: tf.Tensor): tf.Tensor {
  return ctx?.tap ? ctx.tap(stage, t) : t;
}

/** What inputs a model takes. */
export interface InputRule {
  /** Height and width must be multiples of this (32 for four-stage nets with stride 32). */
  multipleOf?: number;
  /** Smallest side. */
  minSize?: number;
  /** Only this size (ViT with a fixed position embedding: its `imageSize`). */
  fixedSize?: number;
  /** Height must equal width. */
  square?: boolean;
}

export interface ModelMeta {
  /** One line: what the model is. */
  description: string;
  family: ModelFamily;
  /** The definition it mirrors: paper, official file (with commit) or torchvision/timm function. */
  source: string;
  /** Input rules at the default options. */
  input: InputRule;
  /** The size the reference trains at. */
  defaultSize: number;
  /** Parameter count as the reference defines it, at 1000 classes (checked in tests). */
  referenceParams?: number;
  /**
   * A small configuration with the full structure (every block type and branch present, e.g. one block
   * per stage, narrow widths) and an input size it takes: what the contract test
   * (test/models.contract.test.ts) checks gradients, round trips, taps and leaks at, to keep CI time bounded.
   * Without it the test uses the default options at the smallest size the input rules allow.
   */
  reducedConfig?: { options: ModelOptions; size: number };
}

/** A classifier of the zoo. Parameter names are the reference's state-dict keys. */
export interface ClassifierModel extends Module {
  readonly numClasses: number;
  /** Names the model passes to `tapStage`, in forward order. */
  readonly stageNames: readonly string[];
  /** x [b, H, W, 3] → logits [b, K]; equals forwardHead(forwardFeatures(x, ctx), ctx). */
  forward(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D;
  /** x → the last feature map before pooling: NHWC [b, h, w, C] (ViT: tokens [b, T, D]). */
  forwardFeatures(x: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor;
  /** features → logits [b, K] (pooling, norm, dropout, classifier). */
  forwardHead(features: tf.Tensor, ctx?: ModelForwardContext): tf.Tensor2D;
  /** Throws a clear error for an input the model cannot take (shape, channels, dtype, size rules). */
  checkInput(shape: number[], dtype?: string): void;
  /**
   * Optional: the model's inference form (MobileOne's `reparameterize()`, RepViT's `fuse()`): a NEW model,
   * in eval mode, whose forward equals this model's eval-mode forward (≤ 1e-4) with fewer parameters
   * and kernels. This model is left unchanged; the caller disposes the returned one. `params --list`
   * prints its parameter count next to the training form's.
   */
  fusedForInference?(): ClassifierModel;
  /**
   * True when this model already is an inference form (built fused / reparameterised, or returned by
   * `fusedForInference`): it has no further one, so `fusedForInference` must not be called on it.
   */
  readonly isInferenceForm?: boolean;
}

/** Shared options with their defaults filled in, plus the model-specific ones. */
export type ResolvedOptions<T> = Required<Omit<SharedModelOptions, 'imageSize'>> & { imageSize: number } & T;

/**
 * Validate a factory's options: shared ones are checked (types, ranges), model-specific ones must be
 * keys of `specific` (whose values are the defaults); anything else is an error listing what the model
 * accepts. `defaultSize` fills `imageSize`. A shared option's default is the contract's (numClasses 1000,
 * seed 0, dropRate 0, dropPathRate 0) unless `specific` names it too: a reference whose default differs
 * (Microscopic-Mamba's drop_path_rate 0.1) puts it there, e.g. `{ dropPathRate: 0.1, depths: [...] }`.
 */
export function resolveOptions<T extends Record<string, unknown>>(
  model: string,
  opts: ModelOptions,
  specific: T,
  defaultSize: number,
): ResolvedOptions<T> {
  const shared: readonly string[] = SHARED_OPTION_NAMES;
  const accepted = [...SHARED_OPTION_NAMES, ...Object.keys(specific).filter((k) => !shared.includes(k))];
  const unknown = Object.keys(opts).filter((k) => opts[k] !== undefined && !accepted.includes(k));
  if (unknown.length > 0) {
    throw new Error(`${model}: unknown option(s) ${unknown.join(', ')}. Accepted: ${accepted.join(', ')}`);
  }
  const num = (key: keyof SharedModelOptions, fallback: number, ok: (v: number) => boolean, rule: string): number => {
    const v = opts[key];
    if (v === undefined) return typeof specific[key] === 'number' ? (specific[key] as number) : fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
      throw new Error(`${model}: option ${key} must be ${rule}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const resolved: Record<string, unknown> = { ...specific };
  for (const k of Object.keys(specific)) if (opts[k] !== undefined) resolved[k] = opts[k];
  return {
    ...(resolved as T),
    numClasses: num('numClasses', 1000, (v) => Number.isInteger(v) && v >= 1, 'an integer ≥ 1'),
    seed: num('seed', 0, Number.isInteger, 'an integer'),
    dropRate: num('dropRate', 0, (v) => v >= 0 && v < 1, 'in [0, 1)'),
    dropPathRate: num('dropPathRate', 0, (v) => v >= 0 && v < 1, 'in [0, 1)'),
    imageSize: num('imageSize', defaultSize, (v) => Number.isInteger(v) && v >= 1, 'a positive integer'),
  };
}
