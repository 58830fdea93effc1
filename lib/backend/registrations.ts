/**
 * Every kernel and gradient the kit registers with tfjs, in the order it registers them: the one place
 * to read what runs instead of stock tfjs 4.22. `initBackend` (./index.ts) calls `registerKitKernels`
 * after each backend switch; each part registers once (the wasm kernels once tfjs-backend-wasm is loaded,
 * the Cumsum / Cumprod fix once per backend whose kernels are loaded).
 *
 * What each entry fixes and why is in the file it comes from (named by what it does); docs/platform.md
 * has the measurements. A replacement keeps the stock kernel (./wasm-registry.ts `stockWasmKernel`):
 * it falls back to it for the cases it does not cover, and the tests compare against it bit for bit.
 */
import * as tf from '@tensorflow/tfjs';
import {
  conv2dBackpropFilterKernel,
  conv2dBackpropInputKernel,
  depthwiseBackpropFilterKernel,
  depthwiseBackpropInputKernel,
} from './conv-gradients';
import {
  castKernel,
  concatKernel,
  identityKernel,
  leaveStringsToStock,
  packKernel,
  reverseKernel,
  sliceKernel,
  splitVKernel,
  tileKernel,
  transposeKernel,
  unpackKernel,
} from './copies';
import { conv2dFilterGradKernel, conv2dForwardKernel, conv2dInputGradKernel } from './conv-gemm';
import { depthwiseConvKernel } from './depthwise-conv';
import { CUMULATIVE_BACKENDS, fixNegativeAxis } from './cumulative-axis';
import {
  batchMatMulGrad,
  cumsumGrad,
  maximumGrad,
  meanGrad,
  minimumGrad,
  mirrorPadGrad,
  multiplyGrad,
  squaredDifferenceGrad,
  stridedSliceGrad,
  sumGrad,
} from './gradient-fixes';
import {
  GELU_GRAD_KERNEL,
  GELU_KERNEL,
  geluGradKernel,
  geluKernel,
  PARTIAL_SILU_GRAD_KERNEL,
  PARTIAL_SILU_KERNEL,
  partialSiluGradKernel,
  partialSiluKernel,
  RELU_GRAD_KERNEL,
  RELU_KERNEL,
  reluGradKernel,
  reluKernel,
} from './activations';
import { broadcastBinaryKernel } from './broadcast';
import { CROSS_MERGE_KERNEL, CROSS_SCAN_KERNEL, crossMergeKernel, crossScanKernel } from './cross-scan';
import {
  CROSS_GATE_GRAD_KERNEL,
  CROSS_GATE_KERNEL,
  crossGateGradKernel,
  crossGateKernel,
  ECA_GRAD_KERNEL,
  ECA_KERNEL,
  ecaGradKernel,
  ecaKernel,
} from './gates';
import { fastBatchMatMul, fastFusedMatMul } from './matmul';
import {
  BATCH_NORM_GRAD_KERNEL,
  BATCH_NORM_INFERENCE_KERNEL,
  BATCH_NORM_KERNEL,
  batchNormGradKernel,
  batchNormInferenceKernel,
  batchNormKernel,
  LAYER_NORM_GATE_GRAD_KERNEL,
  LAYER_NORM_GATE_KERNEL,
  LAYER_NORM_GRAD_KERNEL,
  LAYER_NORM_KERNEL,
  layerNormGateGradKernel,
  layerNormGateKernel,
  layerNormGradKernel,
  layerNormKernel,
} from './norms';
import { ADAM_KERNEL, adamKernel } from './optimizer';
import { maxPoolGradHeapKernel } from './max-pool-grad-heap';
import { maxPoolGradKernel } from './pool-gradients';
import { reductionKernel, unsortedSegmentSumKernel } from './reductions';
import { replaceWasmKernel } from './wasm-registry';

/** A wasm kernel the kit adds (stock tfjs-backend-wasm has none of that name) or puts around the stock one. */
type WasmRegistration =
  { kernel: string; add: tf.KernelFunc } | { kernel: string; replace: (stock: tf.KernelFunc) => tf.KernelFunc };

/** The wasm backend's kernels, in registration order. */
export const WASM_REGISTRATIONS: readonly WasmRegistration[] = [
  // convolution gradients (./conv-gradients.ts): three missing, one naive; dense Conv2D's two as
  // im2col/col2im + GEMM (./conv-gemm.ts), the composites of ./conv-gradients.ts behind them
  { kernel: 'Conv2DBackpropFilter', add: conv2dFilterGradKernel(conv2dBackpropFilterKernel) },
  { kernel: 'DepthwiseConv2dNativeBackpropFilter', add: depthwiseBackpropFilterKernel },
  { kernel: 'DepthwiseConv2dNativeBackpropInput', add: depthwiseBackpropInputKernel },
  // gather's gradient, missing (./reductions.ts)
  { kernel: 'UnsortedSegmentSum', add: unsortedSegmentSumKernel },
  { kernel: 'Conv2DBackpropInput', replace: () => conv2dInputGradKernel(conv2dBackpropInputKernel) },
  // the depthwise conv forward in XNNPACK's order (bit-identical), on the heap threads (./depthwise-conv.ts)
  { kernel: 'DepthwiseConv2dNative', replace: depthwiseConvKernel },
  { kernel: 'FusedDepthwiseConv2D', replace: depthwiseConvKernel },
  // Conv2D with a large filter (≥ 1 Mi weights) as im2col + GEMM: no XNNPACK repacking per step (./conv-gemm.ts)
  { kernel: 'Conv2D', replace: conv2dForwardKernel },
  // matrix products: XNNPACK's order on the heap GEMM, transposes free (./matmul.ts)
  { kernel: 'BatchMatMul', replace: fastBatchMatMul },
  { kernel: '_FusedMatMul', replace: fastFusedMatMul },
  // wrong for all-negative windows (./pool-gradients.ts), its loop in SIMD (./max-pool-grad-heap.ts)
  { kernel: 'MaxPoolGrad', replace: () => maxPoolGradHeapKernel(maxPoolGradKernel) },
  // Sum / Mean over leading axes without the transpose (./reductions.ts)
  { kernel: tf.Sum, replace: (stock) => reductionKernel(stock, false) },
  { kernel: tf.Mean, replace: (stock) => reductionKernel(stock, true) },
  // the whole Adam update of one parameter in one call (./optimizer.ts, used by lib/train/optim.ts)
  { kernel: ADAM_KERNEL, add: adamKernel as unknown as tf.KernelFunc },
  // LayerNorm and training-mode BatchNorm in one call each way (./norms.ts, used by lib/nn/layers.ts)
  { kernel: LAYER_NORM_KERNEL, add: layerNormKernel as unknown as tf.KernelFunc },
  { kernel: LAYER_NORM_GRAD_KERNEL, add: layerNormGradKernel as unknown as tf.KernelFunc },
  { kernel: BATCH_NORM_KERNEL, add: batchNormKernel as unknown as tf.KernelFunc },
  { kernel: BATCH_NORM_GRAD_KERNEL, add: batchNormGradKernel as unknown as tf.KernelFunc },
  { kernel: BATCH_NORM_INFERENCE_KERNEL, add: batchNormInferenceKernel as unknown as tf.KernelFunc },
  { kernel: LAYER_NORM_GATE_KERNEL, add: layerNormGateKernel as unknown as tf.KernelFunc },
  { kernel: LAYER_NORM_GATE_GRAD_KERNEL, add: layerNormGateGradKernel as unknown as tf.KernelFunc },
  // SiLU (on the first p channels) with a one-call gradient (./activations.ts, used by lib/nn/layers.ts)
  { kernel: PARTIAL_SILU_KERNEL, add: partialSiluKernel as unknown as tf.KernelFunc },
  { kernel: PARTIAL_SILU_GRAD_KERNEL, add: partialSiluGradKernel as unknown as tf.KernelFunc },
  // the exact GELU and ReLU (./activations.ts, used by lib/nn/layers.ts)
  { kernel: GELU_KERNEL, add: geluKernel as unknown as tf.KernelFunc },
  { kernel: GELU_GRAD_KERNEL, add: geluGradKernel as unknown as tf.KernelFunc },
  { kernel: RELU_KERNEL, add: reluKernel as unknown as tf.KernelFunc },
  { kernel: RELU_GRAD_KERNEL, add: reluGradKernel as unknown as tf.KernelFunc },
  // MIFA's cross gate (both gates, the products, the concat and the shuffle) and its ECA, one kernel each way (./gates.ts)
  { kernel: CROSS_GATE_KERNEL, add: crossGateKernel as unknown as tf.KernelFunc },
  { kernel: CROSS_GATE_GRAD_KERNEL, add: crossGateGradKernel as unknown as tf.KernelFunc },
  { kernel: ECA_KERNEL, add: ecaKernel as unknown as tf.KernelFunc },
  { kernel: ECA_GRAD_KERNEL, add: ecaGradKernel as unknown as tf.KernelFunc },
  // SS2D's cross-scan / cross-merge: the four scan orders in the scan's layout and back (./cross-scan.ts)
  { kernel: CROSS_SCAN_KERNEL, add: crossScanKernel as unknown as tf.KernelFunc },
  { kernel: CROSS_MERGE_KERNEL, add: crossMergeKernel as unknown as tf.KernelFunc },
  // copies without the stock kernels' whole-tensor reads and element-by-element index loops (./copies.ts)
  { kernel: tf.Slice, replace: leaveStringsToStock(sliceKernel) },
  { kernel: tf.Unpack, replace: leaveStringsToStock(unpackKernel) },
  { kernel: tf.SplitV, replace: leaveStringsToStock(splitVKernel) },
  { kernel: tf.Identity, replace: leaveStringsToStock(identityKernel) },
  { kernel: tf.Reverse, replace: leaveStringsToStock(reverseKernel) },
  { kernel: tf.Concat, replace: leaveStringsToStock(concatKernel) },
  { kernel: tf.Tile, replace: leaveStringsToStock(tileKernel) },
  { kernel: tf.Transpose, replace: leaveStringsToStock(transposeKernel) },
  { kernel: tf.Pack, replace: leaveStringsToStock(packKernel) },
  { kernel: tf.Cast, replace: leaveStringsToStock(castKernel) },
  // add / multiply / subtract with a broadcast operand (a bias, a per-channel scale): bit-identical (./broadcast.ts)
  { kernel: tf.Add, replace: broadcastBinaryKernel('add') },
  { kernel: tf.Multiply, replace: broadcastBinaryKernel('mul') },
  { kernel: tf.Sub, replace: broadcastBinaryKernel('sub') },
];

/** The wasm kernels stock tfjs lacks or gets wrong: test/op-coverage.ts must exercise every one of them. */
export const WASM_KERNEL_FIXES = [
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'UnsortedSegmentSum',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPoolGrad',
] as const;

/** Gradient overrides (./gradient-fixes.ts), global to every backend, in registration order. */
export const GRADIENT_OVERRIDES: readonly tf.GradConfig[] = [
  cumsumGrad,
  batchMatMulGrad,
  stridedSliceGrad,
  squaredDifferenceGrad,
  maximumGrad,
  minimumGrad,
  mirrorPadGrad,
  sumGrad,
  meanGrad,
  multiplyGrad,
];

/** Kernels whose negative axis every backend mishandles (./cumulative-axis.ts). */
export const NEGATIVE_AXIS_FIXES = [tf.Cumsum, tf.Cumprod] as const;

let wasmDone = false;
let gradientsDone = false;

/**
 * Registers WASM_REGISTRATIONS (once tfjs-backend-wasm is loaded: returns false, doing nothing, before),
 * the negative-axis fix on every loaded backend, and GRADIENT_OVERRIDES (once). Idempotent.
 */
export function registerKitKernels(): void {
  registerWasmKernels();
  for (const backend of CUMULATIVE_BACKENDS) for (const kernel of NEGATIVE_AXIS_FIXES) fixNegativeAxis(kernel, backend);
  if (gradientsDone) return;
  gradientsDone = true;
  const quiet = silenceOverrideWarnings();
  try {
    for (const config of GRADIENT_OVERRIDES) tf.registerGradient(config);
  } finally {
    quiet.restore();
  }
}

function registerWasmKernels(): boolean {
  if (wasmDone) return true;
  if (!tf.getKernel('Conv2D', 'wasm')) return false;
  wasmDone = true;
  for (const r of WASM_REGISTRATIONS) {
    if ('add' in r) {
      if (tf.getKernel(r.kernel, 'wasm')) tf.unregisterKernel(r.kernel, 'wasm'); // a future tfjs may ship its own
      tf.registerKernel({ kernelName: r.kernel, backendName: 'wasm', kernelFunc: r.add });
    } else if (!replaceWasmKernel(r.kernel, r.replace)) {
      throw new Error(`lib/backend/registrations.ts: wasm kernel '${r.kernel}' to replace is not registered`);
    }
  }
  return true;
}

/** tfjs warns "Overriding the gradient for ..." on every override; ours are deliberate. */
function silenceOverrideWarnings(): { restore(): void } {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith('Overriding the gradient for')) return;
    warn(...args);
  };
  return { restore: () => (console.warn = warn) };
}
