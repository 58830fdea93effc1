/**
 * Heap access for the kit's WebAssembly SIMD kernels on the wasm backend: the functions of ./simd/*.ts
 * are assembled into one module at first use by lib/util/wasm-asm.ts (no toolchain) and instantiated on
 * the backend's own WebAssembly.Memory, so nothing is copied: arguments are byte offsets into the heap
 * (`offsetOf`). Where the heap cannot be reached (e.g. a build without SIMD), `heapKernels` returns
 * undefined and every caller keeps the stock kernel.
 *
 * Which kernel uses which function: ./broadcast.ts bcast; ./reductions.ts colsum; ./cross-scan.ts sum4, transpose2ds; ./optimizer.ts adam; ./conv-gradients.ts
 * dwfilter; ./depthwise-conv.ts dwconv; ./matmul.ts gemm_m / gemm_n; ./copies.ts copyruns, transpose2d, fillrows; ./norms.ts colsums,
 * affine, bngradsums, bngradapply, lnforward, lnbackward; ./activations.ts psilu, psilugrad, gelu,
 * gelugrad, relu, relugrad; ./norms.ts also silugate, silugategrad; ./gates.ts crossgate, crossgategrad
 * (with ./simd/math.ts's exp, σ and erf). Why each exists
 * and what it must match bit for bit: the header of the file that uses it. On the threaded build the
 * GEMMs and the row-wise passes run split over the worker pool (./heap-threads.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type HeapModule, heapModule } from './heap-module';
import { buildDepthwiseFilterGrad } from './simd/conv-gradients';
import { buildDepthwiseConv } from './simd/depthwise';
import { buildCopyRuns, buildFillRows, buildTranspose2d, buildTranspose2dStrided } from './simd/copies';
import {
  buildGelu,
  buildGeluGrad,
  buildPartialSilu,
  buildPartialSiluGrad,
  buildRelu,
  buildReluGrad,
  buildSiluGate,
  buildSiluGateGrad,
} from './simd/activations';
import { buildCrossGate, buildCrossGateGrad } from './simd/gates';
import { buildGemm } from './simd/matmul';
import {
  buildAffine,
  buildBatchNormGradApply,
  buildBatchNormGradSums,
  buildColSums,
  buildLayerNormBackward,
  buildLayerNormForward,
} from './simd/norms';
import { buildAdam } from './simd/optimizer';
import { buildColSum, buildSum4 } from './simd/reductions';
import { buildBroadcastBinary } from './simd/broadcast';

/** gemm_m / gemm_n (see buildGemm): byte addresses a, b, c; sizes; a's strides; b's row length; k block. */
type Gemm = (
  a: number,
  b: number,
  c: number,
  M: number,
  N: number,
  K: number,
  sam: number,
  sak: number,
  ldb: number,
  kc: number,
) => void;

/** The heap kernels' entry points (byte addresses and sizes; see each build* function). */
export interface HeapExports {
  colsum(x: number, out: number, outer: number, rows: number, cols: number, mean: number): void;
  adam(...args: number[]): void;
  dwfilter(...args: number[]): void;
  dwconv(...args: number[]): void;
  copyruns(src: number, dst: number, count: number, run: number, srcStride: number, dstStride: number): void;
  transpose2d(src: number, dst: number, rows: number, cols: number): void;
  transpose2ds(src: number, dst: number, rows: number, cols: number, srcStride: number, dstStride: number): void;
  fillrows(base: number, count: number, rep: number, stride: number): void;
  gemm_m: Gemm;
  gemm_n: Gemm;
  colsums(x: number, n: number, c: number, mu: number, s: number, mode: number, ld: number): void;
  affine(x: number, y: number, n: number, c: number, a: number, b: number): void;
  bngradsums(dy: number, x: number, n: number, c: number, mu: number, sdy: number, sdx: number, ld: number): void;
  bngradapply(...args: number[]): void;
  lnforward(...args: number[]): void;
  lnbackward(...args: number[]): void;
  psilu(x: number, s: number, y: number, rows: number, c: number, p: number): void;
  psilugrad(dy: number, x: number, s: number, dx: number, rows: number, c: number, p: number): void;
  crossgate(wl: number, wg: number, l: number, g: number, out: number, rows: number, c: number, floor: number): void;
  crossgategrad(...args: number[]): void;
  gelu(x: number, y: number, n: number): void;
  relu(x: number, y: number, n: number): void;
  silugate(n: number, z: number, y: number, s: number, count: number): void;
  silugategrad(dy: number, n: number, z: number, s: number, dn: number, dz: number, count: number): void;
  relugrad(dy: number, x: number, dx: number, n: number): void;
  sum4(a: number, b: number, c: number, d: number, out: number, n: number): void;
  bcast(a: number, b: number, out: number, O: number, M: number, I: number, op: number): void;
  gelugrad(x: number, dy: number, dx: number, n: number): void;
}

/**
 * The kernels bound to this wasm backend's memory (shared or not), or undefined where that memory is not
 * reachable or the module does not compile (e.g. no wasm SIMD: the stock kernels keep working).
 */
export const heapKernels: HeapModule<HeapExports> = heapModule<HeapExports>(() => [
  buildColSum(),
  buildAdam(),
  buildDepthwiseFilterGrad(),
  buildDepthwiseConv(),
  buildGemm('m'),
  buildGemm('n'),
  buildCopyRuns(),
  buildTranspose2d(),
  buildFillRows(),
  buildColSums(),
  buildAffine(),
  buildBatchNormGradSums(),
  buildBatchNormGradApply(),
  buildLayerNormForward(),
  buildLayerNormBackward(),
  buildPartialSilu(),
  buildPartialSiluGrad(),
  buildCrossGate(),
  buildCrossGateGrad(),
  buildGelu(),
  buildGeluGrad(),
  buildRelu(),
  buildReluGrad(),
  buildSiluGate(),
  buildSiluGateGrad(),
  buildSum4(),
  buildTranspose2dStrided(),
  buildBroadcastBinary(),
]);

/** Byte offset of a tensor's data in the heap. */
export function offsetOf(backend: BackendWasm, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId)!.memoryOffset;
}
