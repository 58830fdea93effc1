/**
 * MIFA — Modulation Interaction Feature Aggregation (v2: FMIAM), official `MIFA_block` L935–981,
 * docs/architecture.md §MIFA, and its ECA gate (`eca_layer(channel = C, k_size = 1)`).
 *
 * Shapes (NHWC):  b batch   h, w  map size   c  branch width (C/2)   C = 2c  output width
 *
 *   W(·)  = DWConv3×3_c(·) + bias           ONE depthwise conv, applied to both inputs
 *   M_l   = sigmoid(ReLU(W(l)))             local map, always in [0.5, 1) (quirk Q5)
 *   M_g   = sigmoid(GELU(W(g)))             global map
 *   O     = concat(M_l ⊙ g, M_g ⊙ l)        [b, h, w, C]: the local map gates the global features and vice versa
 *   O     = channel_shuffle(O, groups = c/2)          4 channels per group
 *   O     = O ⊙ sigmoid(w ⊙ mean_hw(O))     ECA as built: k = 1, one learnable weight per channel
 *
 * l is the conv branch's output, g the SSM branch's, both [b, h, w, c].
 */
import * as tf from '@tensorflow/tfjs';
import { crossGateAvailable, ecaAvailable, fusedCrossGate, fusedEca } from '../../backend/gates';
import { Conv2d, gelu, Module, reportConvMacs, reportElementwiseMacs } from '../../nn/index';
import { Rng } from '../../util/random';
import { channelShuffle } from './shuffle';
import { innerTap, type InnerTapContext } from './taps';

/**
 * eca_layer with k_size = 1 (L935–951). The official Conv1d(C, C, 1, groups = C, bias = False) over the
 * pooled channels reduces to one scalar per channel: y = x ⊙ sigmoid(w_c · mean_hw(x_c)).
 * The weight keeps PyTorch's shape [C, 1, 1] in the state dict (stored here as [C]).
 */
export class ECA extends Module {
  readonly conv: ECAConv;

  constructor(
    readonly channels: number,
    rng: Rng,
  ) {
    super();
    this.conv = this.addModule('conv', new ECAConv(channels, rng));
  }

  /** x [b, h, w, C] → [b, h, w, C]. */
  forward(x: tf.Tensor): tf.Tensor {
    // The official modules, computed functionally here: AdaptiveAvgPool2d(1), the Conv1d, nn.Sigmoid.
    const [b, , , c] = x.shape;
    reportElementwiseMacs('AdaptiveAvgPool2d', x.shape);
    reportConvMacs('Conv1d', [b, c], 1, c, c, false);
    reportElementwiseMacs('Sigmoid', [b, c]);
    // On wasm the three lines below are one kernel each way (same formula, lib/backend/gates.ts).
    if (ecaAvailable(x)) return fusedEca(x, this.conv.weight); // [b, h, w, C]
    return tf.tidy(() => {
      const pooled = tf.mean(x, [1, 2], true); // [b, 1, 1, C]   AdaptiveAvgPool2d(1)
      return tf.mul(x, tf.sigmoid(tf.mul(pooled, this.conv.weight))); // [b, h, w, C]
    });
  }
}

/**
 * The grouped Conv1d's weight only (no bias); PyTorch default init U(−1, 1) since fan_in = 1
 * (docs/architecture.md §Initialisation).
 */
export class ECAConv extends Module {
  readonly weight: tf.Variable; // [C]  (torch [C, 1, 1])

  constructor(channels: number, rng: Rng) {
    super();
    this.weight = this.addParameter('weight', tf.tensor1d(rng.fillUniform(channels, -1, 1)), {
      torchShape: [channels, 1, 1],
    });
  }
}

export interface MIFAOptions {
  rng: Rng;
  eca: boolean;
  /** Fix of quirk Q5: local map sigmoid(W(l)) instead of sigmoid(ReLU(W(l))). */
  plainLocalGate: boolean;
}

export class MIFA extends Module {
  readonly DWConv: Conv2d;
  readonly attention?: ECA;
  /** Prefix of this module's inner taps (`<path>.gate_local`, `<path>.gate_global`); set by the model. */
  tapName = 'MIFA';

  constructor(
    readonly ch: number,
    readonly opts: MIFAOptions,
  ) {
    super();
    this.DWConv = this.addModule('DWConv', new Conv2d(ch, ch, 3, { padding: 1, groups: ch, rng: opts.rng }));
    if (opts.eca) this.attention = this.addModule('attention', new ECA(2 * ch, opts.rng));
  }

  /** l, g [b, h, w, c] → [b, h, w, 2c]. `ctx.tapInner` sees (and may replace) the two gate maps. */
  forward(l: tf.Tensor, g: tf.Tensor, ctx?: InnerTapContext): tf.Tensor {
    return tf.tidy(() => {
      const wl = this.DWConv.forward(l); // [b, h, w, c]
      const wg = this.DWConv.forward(g); // [b, h, w, c]   same weights
      // The official gates are nn modules (ReLU, GELU, two Sigmoids): counted as ptflops hooks them.
      if (!this.opts.plainLocalGate) reportElementwiseMacs('ReLU', wl.shape);
      reportElementwiseMacs('Sigmoid', wl.shape);
      reportElementwiseMacs('GELU', wg.shape);
      reportElementwiseMacs('Sigmoid', wg.shape);
      // On wasm the gates, products, concat and shuffle below are one kernel each way (same formula,
      // lib/backend/gates.ts); not while a caller taps (and may replace) the gate maps.
      if (!ctx?.tapInner && crossGateAvailable(wl, wg, l, g)) {
        const out = fusedCrossGate(wl, wg, l, g, { plainLocalGate: this.opts.plainLocalGate }); // [b, h, w, 2c] shuffled
        return this.attention ? this.attention.forward(out) : out;
      }
      const mapL = tf.sigmoid(this.opts.plainLocalGate ? wl : tf.relu(wl)); // [b, h, w, c]
      const mapG = tf.sigmoid(gelu(wg)); // [b, h, w, c]
      // ctx.tapInner sees (and may replace) the two gate maps
      const gateL = innerTap(ctx, `${this.tapName}.gate_local`, mapL);
      const gateG = innerTap(ctx, `${this.tapName}.gate_global`, mapG);
      const fused = tf.concat([tf.mul(gateL, g), tf.mul(gateG, l)], 3); // [b, h, w, 2c]
      const shuffled = channelShuffle(fused, this.ch / 2); // [b, h, w, 2c]
      return this.attention ? this.attention.forward(shuffled) : shuffled;
    });
  }
}
