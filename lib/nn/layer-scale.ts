/**
 * LayerScale (Touvron et al., CaiT, arXiv 2103.17239): a learnable per-channel gain γ on a residual
 * branch, y = γ ⊙ x, initialised small (1e-5, 1e-6) so a deep net starts close to the identity.
 *
 * References keep γ as a bare `nn.Parameter` on the block, not as a submodule, e.g. SwiftFormer's
 * `self.layer_scale_1 = nn.Parameter(1e-5 * torch.ones(dim).unsqueeze(-1).unsqueeze(-1))` (shape
 * [C, 1, 1], broadcast over an NCHW map), ConvNeXt's `self.gamma` ([C]). So here the owning module
 * registers the parameter under the reference's name with `layerScaleInit` (whose PyTorch shape may
 * carry the trailing 1s), and applies it with `layerScale`:
 *
 *   this.layer_scale_1 = this.addParameter('layer_scale_1', layerScaleInit(dim, 1e-5), { torchShape: [dim, 1, 1] });
 *   y = layerScale(branch, this.layer_scale_1);              // [..., C] ⊙ [C]
 *
 * MACs: ptflops' module hooks never see a raw-parameter product, so the paper count leaves it out; it is
 * reported as `extra` (numel(x) multiplies).
 */
import * as tf from '@tensorflow/tfjs';
import { constant } from './init';
import { reportMacs } from './macs';

/** γ's initial value: [C] filled with `initValue`. */
export function layerScaleInit(channels: number, initValue: number): tf.Tensor {
  return constant([channels], initValue);
}

/** γ ⊙ x over the channel (last) axis: x [..., C], gamma [C] → [..., C]. */
export function layerScale(x: tf.Tensor, gamma: tf.Tensor): tf.Tensor {
  const c = x.shape[x.rank - 1];
  if (gamma.size !== c)
    throw new Error(`layerScale: gamma has ${gamma.size} values, input [${x.shape}] has ${c} channels`);
  reportMacs('LayerScale', x.size, 'extra');
  return tf.tidy(() => tf.mul(x, gamma.reshape([c])));
}
