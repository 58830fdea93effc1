/**
 * A chunked selective scan from tf ops only: differentiable by tfjs' autograd and runnable on every
 * backend (wasm, cpu, webgpu, tensorflow, webgl). It computes exactly the recurrence of `reference.ts`
 * (docs/architecture.md §Selective scan), reorganised into two short sequential loops instead of one long one:
 *
 *   1. Cut the sequence into K chunks of T steps (T ≈ √l, so both loops below are short).
 *   2. Intra-chunk: run the recurrence inside every chunk at once, starting each chunk from h = 0:
 *        hloc_i = Ā_i ⊙ hloc_{i−1} + B̄u_i,        P_i = Ā_i ⊙ P_{i−1}   (P_i = Π_{j≤i} Ā_j)
 *      T steps, each one op over all chunks, batches and channels.
 *   3. Inter-chunk: carry the state across chunk boundaries, H_k = P_last,k−1 ⊙ H_{k−1} + hloc_last,k−1
 *      (K steps over [b, d, n]).
 *   4. Correct every step: h_i = hloc_i + P_i ⊙ H_k, then y_i = Σ_n h_i C_i + D u_i.
 *
 * Numerically safe for any Δ ≥ 0, A ≤ 0: the only exponential is Ā = exp(Δ·A) ≤ 1, and P is a product of
 * such factors, so nothing is ever exp(positive cumulative sum) (the log-space trick
 * h_i = e^{S_i} Σ_j e^{−S_j} B̄u_j overflows float32 once Σ Δ·A < −88 inside a chunk).
 * It does materialise [b, d, l, n] tensors (and autograd keeps several), so it is a portable fallback,
 * not the fast path (see fused-cpu.ts / webgpu.ts).
 *
 * Layout: time-within-chunk outermost, [T, K·b, d, n], so every loop step slices a contiguous block.
 * Shapes: b batch, d channels (g groups of e), l length, n state size, T chunk length, K chunks, M = K·b
 * (code names as in common.ts: d = K·E of docs/architecture.md §Glossary; K here counts chunks, not directions).
 */
import * as tf from '@tensorflow/tfjs';
import { asGroups, checkScanArgs, ScanArgs, softplusThresholded, unstack0 } from './common';

/** Default chunk length: √l balances the two sequential loops (T + K steps in all). */
export function defaultChunkLength(l: number): number {
  return Math.max(1, Math.ceil(Math.sqrt(l)));
}

/** Two-level chunked scan (module doc); `chunk` overrides the chunk length T. */
export function selectiveScanChunked(args: ScanArgs, opts: { chunk?: number } = {}): tf.Tensor3D {
  const dims = checkScanArgs(args, 'selectiveScanChunked');
  const { b, d, l, n, g, e } = dims;
  const T = opts.chunk ?? defaultChunkLength(l);
  if (!Number.isInteger(T) || T < 1)
    throw new Error(`selectiveScanChunked: chunk must be a positive integer, got ${T}`);
  const K = Math.ceil(l / T);
  const lp = K * T; // padded length
  const M = K * b;
  return tf.tidy(() => {
    // Zero padding at the end: the scan is causal, so padded steps never reach the first l outputs.
    const padL = <R extends tf.Rank>(x: tf.Tensor<R>): tf.Tensor<R> =>
      lp === l ? x : tf.pad(x, [...x.shape.slice(0, -1).map((): [number, number] => [0, 0]), [0, lp - l]]);
    // [b, d, l] -> [T, K·b, d]
    const chunks3 = (x: tf.Tensor3D): tf.Tensor3D =>
      padL(x).reshape([b, d, K, T]).transpose([3, 2, 0, 1]).reshape([T, M, d]);
    // [b, g, n, l] -> [T, K·b, g, 1, n]  (the 1 broadcasts over the e channels of a group)
    const chunksBC = (x: tf.Tensor): tf.Tensor =>
      padL(asGroups(x, dims)).reshape([b, g, n, K, T]).transpose([4, 3, 0, 1, 2]).reshape([T, M, g, 1, n]);

    const x = args.deltaBias ? tf.add(args.delta, args.deltaBias.reshape([1, d, 1])) : args.delta; // [b, d, l]
    const delta = chunks3(softplusThresholded(x) as tf.Tensor3D); // [T, M, d]
    const u = chunks3(args.u); // [T, M, d]

    const dA = tf.exp(tf.mul(delta.reshape([T, M, d, 1]), args.A)); // [T, M, d, n]   Ā = exp(Δ·A) ≤ 1
    const Bu = tf
      .mul(tf.mul(delta, u).reshape([T, M, g, e, 1]), chunksBC(args.B)) // [T, M, g, e, n]
      .reshape([T, M, d, n]); // B̄u

    // 2. Intra-chunk recurrence, all chunks at once, each chunk starting from h = 0.
    const dAs = unstack0(dA); // T × [M, d, n]
    const Bus = unstack0(Bu); // T × [M, d, n]
    const hloc: tf.Tensor[] = [Bus[0]];
    const P: tf.Tensor[] = [dAs[0]];
    for (let i = 1; i < T; i++) {
      hloc.push(tf.add(tf.mul(dAs[i], hloc[i - 1]), Bus[i])); // [M, d, n]
      P.push(tf.mul(dAs[i], P[i - 1])); // [M, d, n]
    }

    // 3. Inter-chunk carries: the state entering chunk k.
    const Plast = unstack0(P[T - 1].reshape([K, b, d, n])); // K × [b, d, n]
    const hlast = unstack0(hloc[T - 1].reshape([K, b, d, n])); // K × [b, d, n]
    const carries: tf.Tensor[] = [tf.zeros([b, d, n])];
    for (let k = 1; k < K; k++) carries.push(tf.add(tf.mul(Plast[k - 1], carries[k - 1]), hlast[k - 1])); // [b, d, n]
    const H = tf.stack(carries).reshape([1, M, d, n]); // [1, M, d, n]

    // 4. Full states and outputs.
    const h = tf.add(tf.stack(hloc), tf.mul(tf.stack(P), H)); // [T, M, d, n]
    const yc = tf.sum(tf.mul(h.reshape([T, M, g, e, n]), chunksBC(args.C)), 4); // [T, M, g, e]
    let y = yc
      .reshape([T, K, b, d])
      .transpose([2, 3, 1, 0]) // [b, d, K, T]
      .reshape([b, d, lp]);
    if (lp !== l) y = tf.slice(y, [0, 0, 0], [b, d, l]); // [b, d, l]
    if (args.D) y = tf.add(y, tf.mul(args.u, args.D.reshape([1, d, 1])));
    return y as tf.Tensor3D;
  });
}
