/**
 * Initialisation of Microscopic-Mamba as the official `VSSM.__init__` leaves it (L1155–1175,
 * docs/architecture.md §Initialisation): construction, then `self.apply(_init_weights)`, then a re-init of every Conv2d
 * weight.
 *
 *   nn.Linear     weight trunc_normal(std 0.02, cut at ±2), bias 0   (in_proj, PatchMerging, head, and
 *                                                                     the dead proj / out_proj)
 *   nn.LayerNorm  γ = 1, β = 0                                        (already so at construction)
 *   nn.Conv2d     weight kaiming_normal(fan_out, relu): N(0, 2/(out·kh·kw)); bias keeps PyTorch's
 *                 default U(±1/√fan_in) from construction
 *   BatchNorm2d   γ = 1, β = 0, running stats 0 / 1                   (construction)
 *   SS2D raw parameters, ECA weight, skip_scale: their construction-time values (see ss2d.ts, mifa.ts)
 *
 * The numbers come from the kit's seeded Rng, so a seed reproduces a model exactly; they cannot equal
 * PyTorch's draws (different generator), only their distributions.
 */
import * as tf from '@tensorflow/tfjs';
import { Conv2d, kaimingNormalFanOut, Linear, Module, truncNormal } from '../../nn/index';
import { Rng } from '../../util/random';

export function initMicroscopicMamba(model: Module, rng: Rng): void {
  const set = (v: tf.Variable, value: tf.Tensor) => {
    v.assign(value);
    value.dispose();
  };
  for (const [, m] of model.namedModules()) {
    if (m instanceof Linear) {
      set(m.weight, truncNormal(m.weight.shape, 0.02, rng));
      if (m.bias) set(m.bias, tf.zeros(m.bias.shape));
    }
  }
  for (const [, m] of model.namedModules()) {
    if (m instanceof Conv2d) set(m.weight, kaimingNormalFanOut(m.weight.shape, m.fanOut, rng));
  }
}
