/**
 * A small PyTorch-like module tree on TensorFlow.js.
 *
 * Why not tf.layers: the kit must load official PyTorch state dicts 1:1, so every parameter needs the
 * exact dot-separated name PyTorch gives it (`layers.0.blocks.1.op.ln_1.weight`), buffers (BatchNorm
 * running statistics) must live next to parameters, and train/eval mode must switch BatchNorm and
 * DropPath the way `nn.Module.train()` does. A module here is a plain class that registers
 * parameters, buffers and children by name; names are joined with dots exactly as PyTorch does.
 *
 * Layouts: activations are NHWC throughout. Weights are stored in the layout tfjs kernels want
 * (conv `[kh, kw, in, out]`, depthwise `[kh, kw, C, mult]`, linear `[in, out]`); each parameter also
 * records its PyTorch shape and a layout tag, so `stateDict({ layout: 'pytorch' })` and
 * `loadStateDict(sd, { layout: 'pytorch' })` convert on the way out and in.
 */
import * as tf from '@tensorflow/tfjs';

/** How a parameter's tfjs layout maps to PyTorch's. */
export type ParamLayout =
  | 'plain' // same element order; PyTorch shape may differ only by reshape (e.g. ECA conv1d [C,1,1] ↔ [C])
  | 'linear' // tfjs [in, out]          ↔ torch [out, in]
  | 'conv2d' // tfjs [kh, kw, in, out]  ↔ torch [out, in, kh, kw]
  | 'depthwise'; // tfjs [kh, kw, C, m] ↔ torch [C·m, 1, kh, kw]  (output channel c·m + j in both)

export interface ParamOptions {
  layout?: ParamLayout;
  /** PyTorch shape, when it differs from the tfjs shape by more than the layout's transpose. */
  torchShape?: number[];
  trainable?: boolean;
  /**
   * Created by the official model but never used in its forward pass (docs/architecture.md §Quirks Q3). Counted in
   * `total` (the paper does) but not in `used`. Dead parameters get no gradient.
   */
  dead?: boolean;
}

export interface ParamEntry {
  variable: tf.Variable;
  layout: ParamLayout;
  torchShape: number[];
  trainable: boolean;
  dead: boolean;
}

/** Options every forward pass receives. `rng` drives DropPath (and anything stochastic). */
export interface ForwardContext {
  training: boolean;
  rng?: { uniform(): number };
}

export type TensorMap = Map<string, tf.Tensor> | Record<string, tf.Tensor>;

export class StateDictError extends Error {
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: Array<{ key: string; expected: number[]; got: number[] }>,
  ) {
    super(message);
    this.name = 'StateDictError';
  }
}

let variableCounter = 0;

export abstract class Module {
  /** Mirrors nn.Module.training; toggled by train()/eval() over the whole tree. */
  training = true;
  private readonly _params = new Map<string, ParamEntry>();
  private readonly _buffers = new Map<string, tf.Variable>();
  private readonly _children = new Map<string, Module>();

  /** Register a parameter under `name`; the tensor is kept (wrapped in a tf.Variable). */
  protected addParameter(name: string, value: tf.Tensor, opts: ParamOptions = {}): tf.Variable {
    checkName(name, this._params, this._buffers, this._children);
    const layout = opts.layout ?? 'plain';
    const variable = tf.variable(value, opts.trainable !== false && !opts.dead, `p${++variableCounter}_${name}`);
    value.dispose();
    this._params.set(name, {
      variable,
      layout,
      torchShape: opts.torchShape ?? torchShapeOf(variable.shape, layout),
      trainable: opts.trainable !== false,
      dead: opts.dead === true,
    });
    return variable;
  }

  /** Register a persistent, non-trainable buffer (e.g. BatchNorm running_mean). */
  protected addBuffer(name: string, value: tf.Tensor): tf.Variable {
    checkName(name, this._params, this._buffers, this._children);
    const variable = tf.variable(value, false, `b${++variableCounter}_${name}`);
    value.dispose();
    this._buffers.set(name, variable);
    return variable;
  }

  /** Register a child module; its parameters appear as `name.<child param>`. */
  protected addModule<M extends Module>(name: string, module: M): M {
    checkName(name, this._params, this._buffers, this._children);
    this._children.set(name, module);
    return module;
  }

  /**
   * Swap the child `name` for `module` (model surgery, as PyTorch's `setattr(parent, name, new)`; lib/nn/fold.ts
   * builds inference forms with it): the registry entry, and every field of this module that held the old
   * child (directly, or as an element of an array field such as Sequential's layers), now hold the new one,
   * so `forward` uses it. Returns the old child, not disposed.
   */
  replaceChild(name: string, module: Module): Module {
    const old = this._children.get(name);
    if (!old) throw new Error(`replaceChild: ${this.constructor.name} has no child '${name}'`);
    this._children.set(name, module);
    const fields = this as unknown as Record<string, unknown>;
    for (const key of Object.keys(fields)) {
      const value = fields[key];
      if (value === old) fields[key] = module;
      else if (Array.isArray(value)) value.forEach((v, i) => v === old && (value[i] = module));
    }
    return old;
  }

  /** Direct children in registration order. */
  children(): Array<[string, Module]> {
    return [...this._children.entries()];
  }

  /** Every module in the tree, depth first, with its dotted path ('' for this one). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix, this]];
    for (const [name, child] of this._children) out.push(...child.namedModules(join(prefix, name)));
    return out;
  }

  namedParameters(prefix = ''): Array<[string, ParamEntry]> {
    const out: Array<[string, ParamEntry]> = [];
    for (const [name, p] of this._params) out.push([join(prefix, name), p]);
    for (const [name, child] of this._children) out.push(...child.namedParameters(join(prefix, name)));
    return out;
  }

  namedBuffers(prefix = ''): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [];
    for (const [name, b] of this._buffers) out.push([join(prefix, name), b]);
    for (const [name, child] of this._children) out.push(...child.namedBuffers(join(prefix, name)));
    return out;
  }

  /** The variables an optimizer updates: trainable and used. */
  trainableVariables(): tf.Variable[] {
    return this.namedParameters()
      .filter(([, p]) => p.trainable && !p.dead)
      .map(([, p]) => p.variable);
  }

  /** Set training mode for the whole tree (nn.Module.train). */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (nn.Module.eval): BatchNorm uses running statistics, DropPath is the identity. */
  eval(): this {
    return this.train(false);
  }

  /**
   * All parameters and buffers by PyTorch name. With layout 'tfjs' the live variables are returned
   * (do not dispose them); with layout 'pytorch' new tensors in PyTorch layout are returned (the
   * caller owns them). `num_batches_tracked` is not kept by the kit (PyTorch only uses it when
   * BatchNorm momentum is None).
   */
  stateDict(opts: { layout?: 'tfjs' | 'pytorch' } = {}): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [name, p] of this.namedParameters()) {
      out.set(name, opts.layout === 'pytorch' ? toTorchLayout(p.variable, p.layout, p.torchShape) : p.variable);
    }
    for (const [name, b] of this.namedBuffers()) {
      out.set(name, opts.layout === 'pytorch' ? b.clone() : b);
    }
    return out;
  }

  /**
   * Copy tensors into this module's parameters and buffers. Strict by default: every missing,
   * unexpected and mis-shaped key is listed in one error and nothing is assigned. Keys ending in
   * `num_batches_tracked` are ignored. The given tensors are not disposed.
   */
  loadStateDict(sd: TensorMap, opts: { layout?: 'tfjs' | 'pytorch'; strict?: boolean } = {}): void {
    const strict = opts.strict !== false;
    const given = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const params = new Map(this.namedParameters());
    const buffers = new Map(this.namedBuffers());
    const missing: string[] = [];
    const unexpected: string[] = [];
    const mismatched: Array<{ key: string; expected: number[]; got: number[] }> = [];
    const expectedShape = (key: string): number[] | undefined => {
      const p = params.get(key);
      if (p) return opts.layout === 'pytorch' ? p.torchShape : p.variable.shape;
      return buffers.get(key)?.shape;
    };
    for (const key of [...params.keys(), ...buffers.keys()]) if (!given.has(key)) missing.push(key);
    for (const [key, t] of given) {
      if (key.endsWith('num_batches_tracked')) continue;
      const shape = expectedShape(key);
      if (!shape) unexpected.push(key);
      else if (!sameShape(shape, t.shape)) mismatched.push({ key, expected: shape, got: t.shape });
    }
    if (mismatched.length > 0 || (strict && (missing.length > 0 || unexpected.length > 0))) {
      const lines = [
        ...missing.map((k) => `  missing key: ${k}`),
        ...unexpected.map((k) => `  unexpected key: ${k}`),
        ...mismatched.map(
          (m) => `  shape mismatch for ${m.key}: model expects [${m.expected.join(', ')}], got [${m.got.join(', ')}]`,
        ),
      ];
      throw new StateDictError(
        `loadStateDict (${opts.layout ?? 'tfjs'} layout) failed: ${missing.length} missing, ` +
          `${unexpected.length} unexpected, ${mismatched.length} mis-shaped:\n${lines.join('\n')}`,
        missing,
        unexpected,
        mismatched,
      );
    }
    for (const [key, t] of given) {
      const p = params.get(key);
      if (p) {
        const value = opts.layout === 'pytorch' ? fromTorchLayout(t, p.layout, p.variable.shape) : t;
        p.variable.assign(value.dtype === 'float32' ? value : tf.cast(value, 'float32'));
        if (value !== t) value.dispose();
        continue;
      }
      const b = buffers.get(key);
      if (b) b.assign(t.dtype === b.dtype ? t : tf.cast(t, b.dtype));
    }
  }

  /** Release every parameter and buffer of the tree. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.variable.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}

/** Parameter counts as PyTorch reports them (`sum(p.numel())`). */
export interface ParamCount {
  /** Every parameter, dead ones included (what `sum(p.numel() for p in model.parameters())` prints). */
  total: number;
  /** requires_grad parameters (dead ones included, as in PyTorch). */
  trainable: number;
  /** Parameters the forward pass actually uses (total minus dead). */
  used: number;
  /** Buffer elements (BatchNorm running statistics), not counted as parameters. */
  buffers: number;
}

export function countParameters(module: Module): ParamCount {
  let total = 0;
  let trainable = 0;
  let used = 0;
  for (const [, p] of module.namedParameters()) {
    const n = p.variable.size;
    total += n;
    if (p.trainable) trainable += n;
    if (!p.dead) used += n;
  }
  const buffers = module.namedBuffers().reduce((s, [, b]) => s + b.size, 0);
  return { total, trainable, used, buffers };
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

function checkName(name: string, ...maps: Array<Map<string, unknown>>): void {
  if (!name || name.includes('.')) throw new Error(`Invalid module attribute name '${name}'`);
  for (const m of maps) if (m.has(name)) throw new Error(`Attribute '${name}' is registered twice`);
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** PyTorch shape of a tfjs-layout tensor. */
export function torchShapeOf(shape: number[], layout: ParamLayout): number[] {
  switch (layout) {
    case 'plain':
      return shape.slice();
    case 'linear':
      return [shape[1], shape[0]];
    case 'conv2d':
      return [shape[3], shape[2], shape[0], shape[1]];
    case 'depthwise':
      return [shape[2] * shape[3], 1, shape[0], shape[1]];
  }
}

/** tfjs layout → PyTorch layout (a new tensor). */
export function toTorchLayout(t: tf.Tensor, layout: ParamLayout, torchShape: number[]): tf.Tensor {
  return tf.tidy(() => {
    switch (layout) {
      case 'plain':
        return t.reshape(torchShape);
      case 'linear':
        return t.transpose([1, 0]);
      case 'conv2d':
        return t.transpose([3, 2, 0, 1]);
      case 'depthwise': {
        const [kh, kw, c, m] = t.shape;
        return t.transpose([2, 3, 0, 1]).reshape([c * m, 1, kh, kw]); // [C,m,kh,kw] → [C·m,1,kh,kw]
      }
    }
  });
}

/** PyTorch layout → tfjs layout of shape `shape` (a new tensor). */
export function fromTorchLayout(t: tf.Tensor, layout: ParamLayout, shape: number[]): tf.Tensor {
  return tf.tidy(() => {
    switch (layout) {
      case 'plain':
        return t.reshape(shape);
      case 'linear':
        return t.transpose([1, 0]);
      case 'conv2d':
        return t.transpose([2, 3, 1, 0]);
      case 'depthwise': {
        const [kh, kw, c, m] = shape;
        return t.reshape([c, m, kh, kw]).transpose([2, 3, 0, 1]);
      }
    }
  });
}
