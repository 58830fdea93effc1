/**
 * The selective scan (Mamba's S6 recurrence, docs/architecture.md §Selective scan) and SS2D's four-direction cross-scan
 * (docs/architecture.md §Cross-scan).
 *
 * One entry point, several implementations with identical semantics:
 *   reference  sequential loop of tf ops (reference.ts): the executable spec, slow.
 *   chunked    two-level chunked scan of tf ops (chunked.ts): any backend, differentiable by autograd.
 *   fused      registered kernels with a hand-written backward: on wasm/cpu the CPU engine (cpu-kernel.ts,
 *              SIMD in wasm-simd.ts), on webgpu WGSL shaders (webgpu.ts).
 *   auto       fused where the active backend has it, else chunked.
 * crossScanSSM on wasm with the fused kernels adds a forward-only form for when no gradient tape records:
 * everything after x_proj as one kernel (crossScanSSMInference), bit-identical to the differentiable one.
 *
 * Symbols (docs/architecture.md §Glossary): one scan runs K groups of E channels, each group with its own B
 * and C (SS2D: the K = 4 directions, E = d_inner), over L = h·w steps with state size N; R is the dt rank.
 * Layouts (the contract with the model), channels-first like mamba_ssm:
 *   u, delta: [b, K·E, L]   A: [K·E, N]   B, C: [b, K, N, L] (or [b, N, L] when K = 1)   D, deltaBias: [K·E]
 *   ->  y: [b, K·E, L].
 * Channels-first keeps each channel's sequence contiguous, which is what the sequential kernels walk;
 * B and C are turned time-major ([b, K, L, N]) inside the fused kernels, where the state index is the
 * inner loop. crossScanSSM takes and returns NHWC maps, as the rest of the model.
 *
 * Code names in this folder are mamba_ssm's: d = K·E (all channels of one call; NOT SS2D's d_model),
 * g = K (groups), e = E (channels per group), l = L, n = N, r = R; h, w map height and width.
 */
import * as tf from '@tensorflow/tfjs';
import { crossScanAvailable, fusedCrossMerge, fusedCrossScan } from '../../backend/cross-scan';
import { onBackendInit } from '../../backend/hooks';
import { selectiveScanChunked } from './chunked';
import { asGroups, asShape, checkScanArgs, ScanArgs } from './common';
import { CROSS_FORWARD_KERNEL, crossForwardAvailable, registerCpuScanKernels, SCAN_KERNEL } from './fused-cpu';
import { selectiveScanReference } from './reference';
import { registerWebGPUScanKernels } from './webgpu';
import { SIMD_STATE_SIZES } from './wasm-simd';
import { reportMacs } from '../../nn/macs';

export type { ScanArgs } from './common';
export { selectiveScanReference } from './reference';
export { selectiveScanChunked } from './chunked';

export type ScanImpl = 'auto' | 'reference' | 'chunked' | 'fused';

/** Registers the fused kernels (all backends; the wasm copy-kernel fixes they lean on are lib/backend's). Idempotent. */
export function registerScanKernels(): void {
  registerCpuScanKernels();
  registerWebGPUScanKernels();
}
onBackendInit(() => registerScanKernels());

/** Does the active (or named) backend have the fused kernel? */
export function hasFusedScan(backendName: string = tf.getBackend()): boolean {
  registerScanKernels();
  return tf.getKernel(SCAN_KERNEL, backendName) != null;
}

/** The implementation `impl` resolves to on the active backend. */
export function resolveScanImpl(impl: ScanImpl = 'auto'): Exclude<ScanImpl, 'auto'> {
  if (impl !== 'auto') return impl;
  return hasFusedScan() ? 'fused' : 'chunked';
}

/** The fused kernel with its registered gradient (fused-cpu.ts / webgpu.ts). */
export function selectiveScanFused(args: ScanArgs): tf.Tensor3D {
  const dims = checkScanArgs(args, 'selectiveScanFused');
  const backendName = tf.getBackend();
  if (!hasFusedScan(backendName)) {
    throw new Error(
      `selectiveScanFused: no fused selective-scan kernel for backend '${backendName}' (use impl 'chunked')`,
    );
  }
  return tf.tidy(() => {
    const inputs = {
      u: args.u,
      delta: args.delta,
      A: args.A,
      B: asGroups(args.B, dims), // [b, g, n, l]
      C: asGroups(args.C, dims), // [b, g, n, l]
      D: args.D ?? tf.zeros([dims.d]), // absent D / deltaBias = zeros (their gradients are then unused)
      deltaBias: args.deltaBias ?? tf.zeros([dims.d]),
    };
    const [y] = tf.engine().runKernel(SCAN_KERNEL, inputs as unknown as tf.NamedTensorMap) as tf.Tensor[];
    return y as tf.Tensor3D; // the checkpoint output is disposed by tidy (autograd keeps its own copy)
  });
}

/**
 * One selective scan (mamba_ssm selective_scan_ref semantics, docs/architecture.md §Selective scan), g = K groups
 * of channels with their own B, C (code names: d = K·E channels, l = L, n = N). u, delta: [b, d, l]; A: [d, n];
 * B, C: [b, g, n, l] with d % g == 0 (or [b, n, l] = one group); D?: [d]; deltaBias?: [d]; softplus applied to
 * delta + deltaBias. Returns y: [b, d, l]. Differentiable w.r.t. all tensor inputs.
 */
export function selectiveScan(args: {
  u: tf.Tensor3D;
  delta: tf.Tensor3D;
  A: tf.Tensor2D;
  B: tf.Tensor;
  C: tf.Tensor;
  D?: tf.Tensor1D;
  deltaBias?: tf.Tensor1D;
  impl?: ScanImpl;
}): tf.Tensor3D {
  const { impl, ...scan } = args;
  switch (resolveScanImpl(impl)) {
    case 'reference':
      return selectiveScanReference(scan);
    case 'chunked':
      return selectiveScanChunked(scan);
    case 'fused':
      return selectiveScanFused(scan);
    default:
      throw new Error(`selectiveScan: unknown impl '${impl}' (auto | reference | chunked | fused)`);
  }
}

/** SS2D parameters, stacked over the K = 4 directions exactly as in the official checkpoint. */
export interface CrossScanParams {
  xProjWeight: tf.Tensor; // [4, R+2N, E]   official x_proj_weight
  dtProjsWeight: tf.Tensor; // [4, E, R]      official dt_projs_weight
  dtProjsBias: tf.Tensor; // [4, E]         official dt_projs_bias
  ALogs: tf.Tensor; // [4E, N]        official A_logs
  Ds: tf.Tensor; // [4E]           official Ds
}

/**
 * SS2D's cross-scan core (docs/architecture.md §Cross-scan, official forward_corev2 L609–683): x = conv-activated map,
 * NHWC. Builds the 4 directions (row-major, column-major, and both reversed), projects x_proj (dt, B, C) and dt_proj
 * per direction with plain matmuls (no einsum), runs one scan over the 4 directions as 4 groups of E channels with
 * A = -exp(A_logs), and merges back to row-major: y = y0 + flip(y2) + T(y1) + T(flip(y3)). Returns y: [b, h, w, E]
 * (before out_norm). Differentiable w.r.t. all inputs.
 */
export function crossScanSSM(x: tf.Tensor4D, p: CrossScanParams, opts: { impl?: ScanImpl } = {}): tf.Tensor4D {
  const [b, h, w, e] = x.shape;
  const K = 4;
  const l = h * w;
  const where = 'crossScanSSM';
  if (p.xProjWeight.rank !== 3 || p.xProjWeight.shape[0] !== K || p.xProjWeight.shape[2] !== e) {
    throw new Error(`${where}: xProjWeight must be [4, R+2N, E] with E = ${e}, got [${p.xProjWeight.shape}]`);
  }
  const n = p.ALogs.shape[1] ?? 0;
  const r = (p.xProjWeight.shape[1] as number) - 2 * n;
  const expect: Array<[string, tf.Tensor, number[]]> = [
    ['dtProjsWeight', p.dtProjsWeight, [K, e, r]],
    ['dtProjsBias', p.dtProjsBias, [K, e]],
    ['ALogs', p.ALogs, [K * e, n]],
    ['Ds', p.Ds, [K * e]],
  ];
  for (const [name, t, shape] of expect) {
    if (t.rank !== shape.length || t.shape.some((s, i) => s !== shape[i]) || r < 1) {
      throw new Error(
        `${where}: ${name} must be [${shape}] (from x [${x.shape}], xProjWeight [${p.xProjWeight.shape}], ` +
          `ALogs [${p.ALogs.shape}]), got [${t.shape}]`,
      );
    }
  }
  // SS2D's raw-parameter work, invisible to ptflops' module hooks: reported as 'extra' MACs
  // (lib/models/complexity.ts): the x_proj and dt_proj einsums and VMamba's 9·l·e·n scan, per direction.
  reportMacs('xProj', b * K * l * e * (r + 2 * n), 'extra');
  reportMacs('dtProj', b * K * l * r * e, 'extra');
  reportMacs('scan', b * K * 9 * l * e * n, 'extra');
  if (resolveScanImpl(opts.impl) === 'fused' && crossScanAvailable(x)) {
    if (crossForwardWanted(n)) return crossScanSSMInference(x, p, { b, h, w, e, r, n });
    return crossScanSSMFused(x, p, { b, h, w, e, r, n });
  }
  return tf.tidy(() => {
    // The four scan orders, channels-last: [b, l, e] each.
    const rowMajor = x.reshape([b, l, e]); // l = i·w + j
    const colMajor = tf.transpose(x, [0, 2, 1, 3]).reshape([b, l, e]); // l = j·h + i
    const dirs = [rowMajor, colMajor, tf.reverse(rowMajor, 1), tf.reverse(colMajor, 1)]; // 4 × [b, l, e]

    // x_proj per direction as a 2-D matmul over all b·l positions (fast on wasm; no einsum).
    const Wx = tf.unstack(p.xProjWeight); // 4 × [R+2N, E]
    const Wdt = tf.unstack(p.dtProjsWeight); // 4 × [E, R]
    const dbl = tf.stack(
      dirs.map((d, k) => tf.matMul(d.reshape([b * l, e]), Wx[k], false, true).reshape([b, l, r + 2 * n])),
      1,
    ); // [b, 4, l, R+2N]
    // Into the scan layout with one transpose and one split along whole rows of l (splitting [b·l, R+2N] by
    // columns instead copies runs of 1 and N floats): dt, B and C of all four directions.
    const [dtT, Bs, Cs] = tf.split(tf.transpose(dbl, [0, 1, 3, 2]), [r, n, n], 2); // [b, 4, R|N|N, l]
    // dt_proj per direction on positions × R (its bias is the scan's deltaBias).
    const dts = tf.unstack(tf.transpose(dtT, [0, 1, 3, 2]), 1); // 4 × [b, l, R]
    const deltas = dts.map((dt, k) => tf.matMul(dt.reshape([b * l, r]), Wdt[k], false, true).reshape([b, l, e])); // 4 × [b, l, E]

    // Scan layout: channels-first, the 4 directions as 4 groups of E channels (d = 4E).
    const toScan = (parts: tf.Tensor[], c: number) =>
      tf.transpose(tf.stack(parts, 1), [0, 1, 3, 2]).reshape([b, K * c, l]); // [b,4,l,c] -> [b, 4c, l]
    const y = selectiveScan({
      u: toScan(dirs, e) as tf.Tensor3D,
      delta: toScan(deltas, e) as tf.Tensor3D,
      A: tf.neg(tf.exp(p.ALogs)) as tf.Tensor2D, // [4E, N]
      B: Bs as tf.Tensor4D, // [b, 4, N, l]
      C: Cs as tf.Tensor4D, // [b, 4, N, l]
      D: p.Ds.reshape([K * e]) as tf.Tensor1D,
      deltaBias: p.dtProjsBias.reshape([K * e]) as tf.Tensor1D,
      impl: opts.impl,
    }); // [b, 4E, l]

    // Merge back to row-major order, channels-last.
    const ys = tf.unstack(tf.transpose(y.reshape([b, K, e, l]), [1, 0, 3, 2])); // 4 × [b, l, e]
    const unT = (t: tf.Tensor) => tf.transpose(t.reshape([b, w, h, e]), [0, 2, 1, 3]); // col-major -> [b, h, w, e]
    const y0 = ys[0].reshape([b, h, w, e]);
    const y2 = tf.reverse(ys[2], 1).reshape([b, h, w, e]);
    const y1 = unT(ys[1]);
    const y3 = unT(tf.reverse(ys[3], 1));
    return tf.addN([y0, y2, y1, y3]) as tf.Tensor4D;
  });
}

/**
 * crossScanSSM with the cross-scan and cross-merge as one kernel each (lib/backend/cross-scan.ts, on wasm
 * with the fused kernels on): the same arithmetic, laid out for the scan from the start.
 *   u        = CrossScan(x)                                        [b, K, E, l]   the four scan orders
 *   x_dbl    = CrossScan_blocks(x · [x_proj_weight_0..3]ᵀ)         [b, K, R+2N, l]
 *              (official einsum "b k d l, k c d -> b k c l", L652: a per-position projection commutes with
 *              the permutation, so all four are ONE 2-D matmul on x before it)
 *   dt, B, C = split(x_dbl, [R, N, N])
 *   delta    = dt_projs_weight_k · dt_k                            [b, K, E, l]   (L654; batched over b·K)
 *   y        = CrossMerge(scan(u, delta, A, B, C, D, softplus bias))   [b, h, w, E]
 */
function crossScanSSMFused(
  x: tf.Tensor4D,
  p: CrossScanParams,
  dims: { b: number; h: number; w: number; e: number; r: number; n: number },
): tf.Tensor4D {
  const { b, h, w, e, r, n } = dims;
  const K = 4;
  const l = h * w;
  const c = r + 2 * n;
  return tf.tidy(() => {
    const u = fusedCrossScan(x); // [b, K, E, l]
    const projected = projectAllDirections(x, p.xProjWeight); // [b·l, K·(R+2N)]
    const dbl = fusedCrossScan(projected.reshape([b, h, w, K * c]) as tf.Tensor4D, true); // [b, K, R+2N, l]
    const [dt, Bs, Cs] = tf.split(dbl, [r, n, n], 2); // [b, K, R|N|N, l]
    const dtProj = repeatOverBatch(p.dtProjsWeight as tf.Tensor3D, b); // [b·K, E, R]
    const delta = tf.matMul(dtProj, dt.reshape([b * K, r, l])); // [b·K, E, l]
    const y = selectiveScan({
      u: u.reshape([b, K * e, l]) as tf.Tensor3D,
      delta: delta.reshape([b, K * e, l]) as tf.Tensor3D,
      A: stateMatrix(p.ALogs), // [4E, N]
      B: Bs as tf.Tensor4D, // [b, 4, N, l]
      C: Cs as tf.Tensor4D, // [b, 4, N, l]
      D: asShape(p.Ds, [K * e]) as tf.Tensor1D, // (official Ds is [4E] already)
      deltaBias: p.dtProjsBias.reshape([K * e]) as tf.Tensor1D,
      impl: 'fused',
    }); // [b, 4E, l]
    return fusedCrossMerge(y.reshape([b, K, e, l]) as tf.Tensor4D, h, w); // [b, h, w, E]
  });
}

/**
 * Whether crossScanSSM takes the inference kernel: no gradient tape is recording (eval forwards, predict,
 * evaluate; Grad-CAM records one and keeps the differentiable path), the wasm SIMD engine has the state
 * size, and MSM_CROSS_FORWARD is not 0 (the switch that keeps the training path, for A/B timing).
 */
function crossForwardWanted(n: number): boolean {
  return process.env.MSM_CROSS_FORWARD !== '0' && !tf.engine().isTapeOn() && crossForwardAvailable(n, SIMD_STATE_SIZES);
}

/**
 * crossScanSSM for inference as ONE kernel after x_proj (fused-cpu.ts MsmCrossScanForward, wasm-simd-kernels.ts
 * `xfwd`): the cross-scan, the split into dt, B and C, dt_proj, the scan and the cross-merge of
 * crossScanSSMFused read the maps where they lie instead of materialising u, Δ and the four directions
 * of y, in the same arithmetic order: the same bits, no gradient.
 *   x_dbl = x · [x_proj_weight_0..3]ᵀ                              [b, h, w, K·(R+2N)]   (as crossScanSSMFused)
 *   y     = CrossMerge(scan(CrossScan(x), dt_proj(dt), A, B, C, D, softplus bias))   [b, h, w, E]
 */
function crossScanSSMInference(
  x: tf.Tensor4D,
  p: CrossScanParams,
  dims: { b: number; h: number; w: number; e: number; r: number; n: number },
): tf.Tensor4D {
  const { b, h, w, e, r, n } = dims;
  const K = 4;
  const c = r + 2 * n;
  return tf.tidy(() => {
    const projected = projectAllDirections(x, p.xProjWeight); // [b·l, K·(R+2N)]
    const inputs = {
      x,
      xdbl: projected.reshape([b, h, w, K * c]),
      A: stateMatrix(p.ALogs), // [4E, N]
      W: p.dtProjsWeight, // [4, E, R]
      D: asShape(p.Ds, [K * e]),
      deltaBias: p.dtProjsBias.reshape([K * e]),
    };
    return tf.engine().runKernel(CROSS_FORWARD_KERNEL, inputs as unknown as tf.NamedTensorMap) as tf.Tensor4D;
  });
}

/**
 * x_proj of all four directions as ONE 2-D matmul on the map (official einsum L652; a per-position
 * projection commutes with the cross-scan's permutation): x [b, h, w, E], W [4, R+2N, E] → [b·h·w, 4·(R+2N)].
 * Shared by the training and inference forms, whose bit-identity depends on computing it the same way.
 */
function projectAllDirections(x: tf.Tensor4D, xProjWeight: tf.Tensor): tf.Tensor2D {
  const [b, h, w, e] = x.shape;
  const rows = xProjWeight.shape[0] * (xProjWeight.shape[1] as number);
  return tf.matMul(x.reshape([b * h * w, e]), xProjWeight.reshape([rows, e]), false, true);
}

/** A = −exp(A_logs) [4E, N] (a scalar Multiply: the kit's heap kernel), for both forms. */
function stateMatrix(ALogs: tf.Tensor): tf.Tensor2D {
  return tf.mul(tf.exp(ALogs), -1) as tf.Tensor2D;
}

/** w [K, m, n] repeated b times: [b·K, m, n]; the gradient sums the b copies (one Sum, not Tile's slice loop). */
function repeatOverBatch(w: tf.Tensor3D, b: number): tf.Tensor3D {
  const [k, m, n] = w.shape;
  const f = tf.customGrad((wi) => ({
    value: tf.tile((wi as tf.Tensor).reshape([1, k * m * n]), [b, 1]).reshape([b * k, m, n]),
    gradFunc: (dy: tf.Tensor) => tf.sum(dy.reshape([b, k * m * n]), 0).reshape([k, m, n]),
  }));
  return f(w) as tf.Tensor3D;
}
