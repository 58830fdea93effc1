/**
 * Initialisers with PyTorch's semantics, driven by the kit's seeded Rng (docs/architecture.md §Initialisation lists
 * which the official model uses where). Shapes here are tfjs shapes; fans are computed from the PyTorch view.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../util/random';

/** Shared default generator for modules built without an explicit `rng` (deterministic per process). */
export const defaultInitRng = new Rng(0);

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** U(lo, hi). */
export function uniform(shape: number[], lo: number, hi: number, rng: Rng = defaultInitRng): tf.Tensor {
  return tf.tensor(rng.fillUniform(size(shape), lo, hi), shape, 'float32');
}

/** N(0, std²). */
export function normal(shape: number[], std: number, rng: Rng = defaultInitRng): tf.Tensor {
  return tf.tensor(rng.fillNormal(size(shape), 0, std), shape, 'float32');
}

/** timm 0.4.12 `trunc_normal_(std)`: N(0, std²) cut at ±2 absolute (docs/architecture.md §Initialisation). */
export function truncNormal(shape: number[], std: number, rng: Rng = defaultInitRng, a = -2, b = 2): tf.Tensor {
  return tf.tensor(rng.fillTruncNormal(size(shape), std, a, b), shape, 'float32');
}

export function constant(shape: number[], value: number): tf.Tensor {
  return tf.fill(shape, value, 'float32');
}

/**
 * PyTorch's default for nn.Linear / nn.Conv2d weights, kaiming_uniform_(a=√5), which is U(±1/√fan_in);
 * the bias default is the same bound. fan_in = (in/groups)·kh·kw.
 */
export function torchDefaultBound(fanIn: number): number {
  return fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
}

/**
 * kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2/fan_out), fan_out = out·kh·kw
 * (docs/architecture.md §Initialisation).
 */
export function kaimingNormalFanOut(shape: number[], fanOut: number, rng: Rng = defaultInitRng): tf.Tensor {
  return normal(shape, Math.sqrt(2 / fanOut), rng);
}
