/**
 * Adam and AdamW with PyTorch's exact update rule and a state that can be saved and restored bit for bit.
 *
 * Why not `tf.train.adam`: the official recipe is `torch.optim.Adam(lr=1e-4)` (docs/architecture.md §Training recipe,
 * train.py L89), whose ε is added to the bias-corrected √v̂, and whose learning rate is changed every step by a
 * LambdaLR schedule; a checkpoint must also hold the moments under the parameters' PyTorch names so that `--resume`
 * continues the same trajectory. Writing the update on tf ops keeps all three in view.
 *
 * Update for parameter p with gradient g at step t (torch.optim.Adam / AdamW, amsgrad=False):
 *   Adam  (L2 decay):       g ← g + λ·p
 *   AdamW (decoupled):      p ← p·(1 − lr·λ)
 *   m ← β1·m + (1 − β1)·g                  (exp_avg)
 *   v ← β2·v + (1 − β2)·g²                 (exp_avg_sq)
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 * The bias-correction scalars are computed in float64 on the host and enter as scalars.
 * On wasm the whole update of one parameter is one fused kernel call (lib/backend/optimizer.ts),
 * operation for operation the tf ops below and bit-identical to them; other backends run the tf ops.
 */
import * as tf from '@tensorflow/tfjs';
import { ADAM_KERNEL, adamKernelAvailable, AdamKernelAttrs } from '../backend/optimizer';

export type OptimizerName = 'adam' | 'adamw';

export interface AdamOptions {
  /** Base learning rate; the trainer passes the scheduled value to each `step`. */
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** λ. Adam: added to the gradient (L2); AdamW: decoupled decay of the weights. */
  weightDecay?: number;
  /** 'adamw' decouples the weight decay (Loshchilov & Hutter); 'adam' is the official optimizer. */
  kind?: OptimizerName;
  /** Use the fused wasm kernel where the backend has it (default true; false: always the tf ops). */
  fusedKernel?: boolean;
}

/** What a checkpoint stores besides the moment tensors. */
export interface OptimizerStateMeta {
  kind: OptimizerName;
  /** Number of updates applied so far (PyTorch's per-parameter `step`, identical for all here). */
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Parameter names in update order, so a restore can check it is the same model. */
  params: string[];
}

interface Slot {
  name: string;
  param: tf.Variable;
  m: tf.Variable; // exp_avg, same shape as param
  v: tf.Variable; // exp_avg_sq, same shape as param
}

export class Adam {
  readonly kind: OptimizerName;
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly fusedKernel: boolean;
  /** Updates applied so far. */
  step = 0;
  private readonly slots: Slot[];
  private readonly byVariable = new Map<string, Slot>();

  /** `params`: [PyTorch name, variable] pairs, e.g. from `namedTrainable(model)`. */
  constructor(params: Array<[string, tf.Variable]>, opts: AdamOptions) {
    this.kind = opts.kind ?? 'adam';
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    this.fusedKernel = opts.fusedKernel ?? true;
    if (!(this.lr > 0)) throw new Error(`Adam: lr must be > 0, got ${opts.lr}`);
    if (!(this.beta1 >= 0 && this.beta1 < 1) || !(this.beta2 >= 0 && this.beta2 < 1)) {
      throw new Error(`Adam: betas must be in [0, 1), got (${this.beta1}, ${this.beta2})`);
    }
    this.slots = params.map(([name, param]) => ({
      name,
      param,
      m: zerosVariable(param),
      v: zerosVariable(param),
    }));
    for (const s of this.slots) {
      if (this.byVariable.has(s.param.name)) throw new Error(`Adam: parameter '${s.name}' is listed twice`);
      this.byVariable.set(s.param.name, s);
    }
  }

  /** The variables this optimizer updates, in order (pass them to `tf.variableGrads`). */
  variables(): tf.Variable[] {
    return this.slots.map((s) => s.param);
  }

  /**
   * One update with learning rate `lr` (the base lr times the schedule factor). `grads` is keyed by
   * variable name, as `tf.variableGrads` returns it; a parameter without a gradient is skipped, as
   * PyTorch skips parameters whose `.grad` is None. The gradients are not disposed.
   */
  applyGradients(grads: Record<string, tf.Tensor>, lr: number): void {
    this.step += 1;
    const t = this.step;
    const bc1 = 1 - Math.pow(this.beta1, t);
    const bc2 = 1 - Math.pow(this.beta2, t);
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    const decoupled = this.kind === 'adamw';
    const fused = this.fusedKernel && adamKernelAvailable();
    const attrs: AdamKernelAttrs = {
      beta1: this.beta1,
      beta2: this.beta2,
      sqrtBc2,
      eps: this.eps,
      stepSize,
      l2: decoupled ? 0 : this.weightDecay,
      decay: decoupled ? 1 - lr * this.weightDecay : 1,
    };
    tf.tidy(() => {
      for (const s of this.slots) {
        let g = grads[s.param.name];
        if (!g) continue;
        if (fused && g.dtype === 'float32') {
          // The same update in one kernel call (lib/backend/optimizer.ts; bit-identical).
          const inputs = { param: s.param, grad: g, m: s.m, v: s.v };
          const [p, m, v] = tf
            .engine()
            .runKernel(ADAM_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
          s.m.assign(m);
          s.v.assign(v);
          s.param.assign(p);
          continue;
        }
        if (this.weightDecay !== 0 && !decoupled) g = tf.add(g, tf.mul(s.param, this.weightDecay)); // L2 into g
        const m = tf.add(tf.mul(s.m, this.beta1), tf.mul(g, 1 - this.beta1)); // same shape as p
        const v = tf.add(tf.mul(s.v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        s.m.assign(m);
        s.v.assign(v);
        const denom = tf.add(tf.div(tf.sqrt(v), sqrtBc2), this.eps);
        let p: tf.Tensor = s.param;
        if (this.weightDecay !== 0 && decoupled) p = tf.mul(p, 1 - lr * this.weightDecay);
        s.param.assign(tf.sub(p, tf.mul(tf.div(m, denom), stepSize)));
      }
    });
  }

  /** Step count and hyper-parameters (JSON) plus the moments as `exp_avg.<name>` / `exp_avg_sq.<name>`. */
  getState(): { meta: OptimizerStateMeta; tensors: Map<string, tf.Tensor> } {
    const tensors = new Map<string, tf.Tensor>();
    for (const s of this.slots) {
      tensors.set(`exp_avg.${s.name}`, s.m);
      tensors.set(`exp_avg_sq.${s.name}`, s.v);
    }
    return {
      meta: {
        kind: this.kind,
        step: this.step,
        lr: this.lr,
        beta1: this.beta1,
        beta2: this.beta2,
        eps: this.eps,
        weightDecay: this.weightDecay,
        params: this.slots.map((s) => s.name),
      },
      tensors,
    };
  }

  /** Restore a state from `getState`; every parameter must be present with its shape. `source` names the file in errors. */
  setState(meta: OptimizerStateMeta, tensors: Map<string, tf.Tensor>, source = 'optimizer state'): void {
    if (meta.kind !== this.kind) {
      throw new Error(`${source}: saved optimizer is '${meta.kind}', this run uses '${this.kind}'`);
    }
    const problems: string[] = [];
    for (const s of this.slots) {
      for (const [key, slot] of [
        [`exp_avg.${s.name}`, s.m],
        [`exp_avg_sq.${s.name}`, s.v],
      ] as const) {
        const t = tensors.get(key);
        if (!t) problems.push(`missing ${key}`);
        else if (t.shape.join(',') !== slot.shape.join(',')) {
          problems.push(`${key} has shape [${t.shape}], expected [${slot.shape}]`);
        }
      }
    }
    if (problems.length > 0) throw new Error(`${source}: cannot restore the optimizer:\n  ${problems.join('\n  ')}`);
    for (const s of this.slots) {
      s.m.assign(tensors.get(`exp_avg.${s.name}`)!);
      s.v.assign(tensors.get(`exp_avg_sq.${s.name}`)!);
    }
    this.step = meta.step;
  }

  dispose(): void {
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
    }
  }
}

/** A non-trainable zero variable shaped like `p` (the temporary zeros tensor is released). */
function zerosVariable(p: tf.Tensor): tf.Variable {
  const z = tf.zerosLike(p);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

/** Create the optimizer a config names. */
export function createOptimizer(params: Array<[string, tf.Variable]>, opts: AdamOptions): Adam {
  const kind = opts.kind ?? 'adam';
  if (kind !== 'adam' && kind !== 'adamw') throw new Error(`Unknown optimizer '${kind}' (choose adam or adamw)`);
  return new Adam(params, { ...opts, kind });
}
