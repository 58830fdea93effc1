/**
 * The selective scan, written as plainly as possible: one loop step per time step, tf ops only.
 * This is the executable specification every other implementation is tested against (and the one
 * notebook 01 walks through). It is slow: l sequential steps, each a handful of small ops.
 *
 * Mirrors mamba_ssm v1.0.1 `selective_scan_interface.py::selective_scan_ref` (L86–152),
 * docs/architecture.md §Selective scan:
 *   Δ_t   = softplus(δ_t + b_Δ)                     softplus(x) = x for x > 20     (ref L105–107)
 *   Ā_t   = exp(Δ_t · A)                                                           (ref L121)
 *   B̄u_t  = Δ_t · B_t · u_t                                                       (ref L126)
 *   h_t   = Ā_t ⊙ h_{t−1} + B̄u_t,   h_0 = 0                                       (ref L134)
 *   y_t   = Σ_n h_t[n] · C_t[n] + D · u_t                                          (ref L134–148)
 *
 * Shapes (code names as in common.ts; docs/architecture.md §Glossary writes d = K·E, g = K, e = E, l = L, n = N):
 * b batch, d channels (g groups of e), l length, n state size.
 *   u, δ: [b, d, l]   A: [d, n]   B, C: [b, g, n, l]   D, b_Δ: [d]   →   y: [b, d, l]
 */
import * as tf from '@tensorflow/tfjs';
import { asGroups, checkScanArgs, ScanArgs, softplusThresholded, unstack0 } from './common';

/** Sequential reference scan (docs/architecture.md §Selective scan). Differentiable through ordinary tf ops. */
export function selectiveScanReference(args: ScanArgs): tf.Tensor3D {
  const dims = checkScanArgs(args, 'selectiveScanReference');
  const { b, d, l, n, g, e } = dims;
  return tf.tidy(() => {
    const x = args.deltaBias ? tf.add(args.delta, args.deltaBias.reshape([1, d, 1])) : args.delta; // [b, d, l]
    const delta = softplusThresholded(x); // [b, d, l]

    // One slice per time step (time-major first, so every slice is a contiguous block). B and C hold one
    // row per group; the e channels of a group read it by broadcasting [b, g, 1, n] against [b, g, e, ·].
    const us = unstack0(tf.transpose(args.u, [2, 0, 1])); // l × [b, d]
    const deltas = unstack0(tf.transpose(delta, [2, 0, 1])); // l × [b, d]
    const Bs = unstack0(tf.transpose(asGroups(args.B, dims), [3, 0, 1, 2])); // l × [b, g, n]
    const Cs = unstack0(tf.transpose(asGroups(args.C, dims), [3, 0, 1, 2])); // l × [b, g, n]
    const A = args.A.reshape([g, e, n]); // [g, e, n]

    let h: tf.Tensor = tf.zeros([b, g, e, n]); // [b, g, e, n]
    const ys: tf.Tensor[] = [];
    for (let t = 0; t < l; t++) {
      const dt = deltas[t].reshape([b, g, e, 1]); // [b, g, e, 1]
      const dA = tf.exp(tf.mul(dt, A)); // [b, g, e, n]      Ā_t
      const dBu = tf.mul(tf.mul(dt, us[t].reshape([b, g, e, 1])), Bs[t].reshape([b, g, 1, n])); // [b, g, e, n]   B̄u_t
      h = tf.add(tf.mul(dA, h), dBu); // [b, g, e, n]
      ys.push(tf.sum(tf.mul(h, Cs[t].reshape([b, g, 1, n])), 3).reshape([b, d])); // [b, d]
    }
    let y = tf.transpose(tf.stack(ys), [1, 2, 0]); // [l, b, d] -> [b, d, l]
    if (args.D) y = tf.add(y, tf.mul(args.u, args.D.reshape([1, d, 1]))); // [b, d, l]
    return y as tf.Tensor3D;
  });
}
