/**
 * SS2D — the 2-D selective-scan module (paper: ARVSS; v2: REVSSM), official L430–841, docs/architecture.md §SS2D and
 * §Cross-scan.
 *
 * Shapes (NHWC), in the symbols of docs/architecture.md §Glossary (the code's variables are their lower-case
 * names: e = E, n = N, r = R):
 *   b  batch (here: batch × G, the PVM groups)   h, w  map size   L = h·w  scan length
 *   d  d_model   E = 2d  d_inner   N  state size (16)   R = ceil(d/16)  dt rank   K = 4  scan directions
 *
 *   [xi, z] = split(x · W_in)                      x [b, h, w, d] → [b, h, w, E] each   (L826–827)
 *   xc      = SiLU(DWConv3×3_E(xi) + bias)                                             (L829–830)
 *   y       = LayerNorm_E(CrossScanSSM(xc))         K directions, merged row-major      (L609–683; norm L681)
 *   y       = y ⊙ SiLU(z)                           gate after the norm (VMamba style)  (L833–834)
 *   out     = PSFFN(y), H/W-transposed (quirk Q1), or out_proj(y) without PSFFN      (L836–838)
 *   return out + x                                  SS2D's own residual                 (L841)
 *
 * The scan's parameters are stored stacked over the K directions exactly as the official raw
 * Parameters: x_proj_weight [K, R+2N, E], dt_projs_weight [K, E, R], dt_projs_bias [K, E],
 * A_logs [K·E, N] (A = −exp(A_logs)), Ds [K·E].
 */
import * as tf from '@tensorflow/tfjs';
import {
  Conv2d,
  Layer,
  LayerNorm,
  layerNormSiluGate,
  Linear,
  reportElementwiseMacs,
  reportLinearMacs,
  silu,
} from '../../nn/index';
import { Rng } from '../../util/random';
import { crossScanSSM, ScanImpl } from '../../ops/selective-scan/index';
import { PSFFN } from './psffn';
import { innerTap, type InnerTapContext } from './taps';

export interface SS2DOptions {
  dState: number;
  rng: Rng;
  /** PSFFN replaces out_proj (official). */
  psffn: boolean;
  /** PSFFN's partial ratio (official 0.25; only read when `psffn` is set). */
  psffnRatio?: number;
  /** Reproduce the official H/W transpose of PSFFN's output (quirk Q1). */
  transposeHW: boolean;
  /** Create the unused out_proj anyway (official, counted in the totals). */
  keepDeadParams: boolean;
  scanImpl: ScanImpl;
  /** Add the input back (official L840, default); MedMamba's SS2D returns out_proj(y) alone. */
  addInput?: boolean;
}

const K = 4; // scan directions: row-major, column-major, and both reversed

export class SS2D extends Layer {
  readonly dInner: number;
  readonly dtRank: number;
  readonly x_proj_weight: tf.Variable; // [k, r+2n, e]
  readonly dt_projs_weight: tf.Variable; // [k, e, r]
  readonly dt_projs_bias: tf.Variable; // [k, e]
  readonly A_logs: tf.Variable; // [k·e, n]
  readonly Ds: tf.Variable; // [k·e]
  readonly in_proj: Linear;
  readonly conv2d: Conv2d;
  readonly out_norm: LayerNorm;
  readonly out_proj?: Linear;
  readonly PSFFN?: PSFFN;
  /** Prefix of this module's inner tap (`<path>.scan_input`); set by the model. */
  tapName = 'SS2D';

  constructor(
    readonly dModel: number,
    readonly opts: SS2DOptions,
  ) {
    super();
    const d = dModel;
    const n = opts.dState;
    const e = 2 * d; // expand = 2
    const r = Math.ceil(d / 16); // dt_rank "auto"
    this.dInner = e;
    this.dtRank = r;
    const { rng } = opts;
    // Raw parameters first: PyTorch lists a module's own parameters before its children's.
    this.x_proj_weight = this.addParameter('x_proj_weight', uniformT([K, r + 2 * n, e], 1 / Math.sqrt(e), rng));
    this.dt_projs_weight = this.addParameter('dt_projs_weight', uniformT([K, e, r], r ** -0.5, rng));
    this.dt_projs_bias = this.addParameter(
      'dt_projs_bias',
      tf.tidy(() => dtBiasInit(K * e, rng).reshape([K, e])),
    );
    this.A_logs = this.addParameter('A_logs', aLogInit(K * e, n));
    this.Ds = this.addParameter('Ds', tf.ones([K * e]));
    this.in_proj = this.addModule('in_proj', new Linear(d, 2 * e, { bias: false, rng }));
    this.conv2d = this.addModule('conv2d', new Conv2d(e, e, 3, { padding: 1, groups: e, rng }));
    this.out_norm = this.addModule('out_norm', new LayerNorm(e));
    if (!opts.psffn || opts.keepDeadParams) {
      this.out_proj = this.addModule('out_proj', new Linear(e, d, { bias: false, rng, dead: opts.psffn }));
    }
    if (opts.psffn)
      this.PSFFN = this.addModule('PSFFN', new PSFFN(e, d, rng, opts.transposeHW, opts.psffnRatio ?? 0.25));
  }

  /**
   * x [b, h, w, d] → [b, h, w, d] (with the transpose quirk the first term is [b, w, h, d]; h = w).
   * `ctx.tapInner` sees (and may replace) the cross-scan's input xc as `<tapName>.scan_input`.
   */
  forward(x: tf.Tensor, ctx?: InnerTapContext): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, w, d] = x.shape;
      const e = this.dInner;
      // in_proj then chunk(2): as two matMuls with the two halves of the weight, which avoids splitting
      // (and, backward, re-concatenating) the [b·h·w, 2e] activation.
      const [wx, wz] = tf.split(this.in_proj.weight, 2, 1); // [d, e] each
      const x2 = x.reshape([-1, d]); // [b·h·w, d]
      const xi = tf.matMul(x2, wx).reshape([b, h, w, e]); // [b, h, w, e]
      const z = tf.matMul(x2, wz).reshape([b, h, w, e]); // [b, h, w, e]
      reportLinearMacs(x.shape, 2 * e, false); // in_proj, as its nn.Linear would count
      const xc = silu(this.conv2d.forward(xi)) as tf.Tensor4D; // [b, h, w, e]
      reportElementwiseMacs('SiLU', xc.shape); // the official self.act module (y ⊙ F.silu(z) is functional: not counted)
      const ys = crossScanSSM(
        innerTap(ctx, `${this.tapName}.scan_input`, xc) as tf.Tensor4D, // ctx.tapInner sees the scan's input
        {
          xProjWeight: this.x_proj_weight,
          dtProjsWeight: this.dt_projs_weight,
          dtProjsBias: this.dt_projs_bias,
          ALogs: this.A_logs,
          Ds: this.Ds,
        },
        { impl: this.opts.scanImpl },
      ); // [b, h, w, e]
      const y = layerNormSiluGate(this.out_norm, ys, z); // [b, h, w, e]   out_norm(y) ⊙ SiLU(z)
      const out = this.PSFFN ? this.PSFFN.forward(y) : this.out_proj!.forward(y); // [b, ·, ·, d]
      return this.opts.addInput === false ? out : tf.add(out, x); // [b, h, w, d]
    });
  }
}

function uniformT(shape: number[], bound: number, rng: Rng): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(rng.fillUniform(size, -bound, bound), shape);
}

/**
 * dt_projs_bias (official `dt_init` L552–577, its bias L565–573): dt = exp(U[0,1)·(ln dt_max − ln dt_min) + ln dt_min),
 * clamped ≥ 1e-4, stored as its inverse softplus dt + log(−expm1(−dt)), so softplus(bias) ∈ [1e-3, 0.1].
 */
export function dtBiasInit(count: number, rng: Rng, dtMin = 0.001, dtMax = 0.1, floor = 1e-4): tf.Tensor {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const dt = Math.max(Math.exp(rng.uniform() * (Math.log(dtMax) - Math.log(dtMin)) + Math.log(dtMin)), floor);
    out[i] = dt + Math.log(-Math.expm1(-dt));
  }
  return tf.tensor1d(out);
}

/** A_logs (S4D-real, official `A_log_init` L580–595): row k·E + c holds ln(1..N), so A = −(1, 2, …, N). */
export function aLogInit(rows: number, n: number): tf.Tensor {
  const out = new Float32Array(rows * n);
  for (let i = 0; i < rows; i++) for (let j = 0; j < n; j++) out[i * n + j] = Math.log(j + 1);
  return tf.tensor2d(out, [rows, n]);
}
