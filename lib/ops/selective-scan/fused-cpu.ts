/**
 * The fused selective scan as registered tfjs kernels for the `wasm` and `cpu` backends, plus the
 * gradient that ties forward and backward together.
 *
 *   MsmSelectiveScan      inputs u, delta, A, B, C, D, deltaBias  ->  [y [b, d, l], hs [b, d, K, np]]
 *   MsmSelectiveScanGrad  the same inputs + hs + dy               ->  [du, ddelta, dA, dB, dC, dD, ddeltaBias]
 *
 * hs holds the chunk-start states the backward recomputes from (cpu-kernel.ts). The gradient of
 * MsmSelectiveScan is registered once with tf.registerGradient, so tf.grad / optimizers see an ordinary
 * op; the webgpu backend registers its own kernels under the same two names (webgpu.ts).
 *
 * The kernels read and write the backends' own typed arrays: on wasm the outputs are allocated on the
 * wasm heap by `backend.makeOutput` and viewed with `typedArrayFromHeap` (after all allocations: a
 * heap growth detaches older views); on cpu they are plain Float32Arrays handed to `makeTensorInfo`.
 * The arithmetic is done by an engine: the SIMD WebAssembly engine (wasm-simd.ts) when available,
 * else the plain-JS kernels of cpu-kernel.ts. MSM_SCAN_ENGINE=js|simd forces one.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import {
  checkpointShape,
  CrossArrays,
  CrossSizes,
  paddedState,
  ScanArrays,
  scanBackwardJS,
  scanForwardJS,
  ScanGradArrays,
  ScanSizes,
} from './cpu-kernel';
import { backendHeapMemory, WasmMemory } from '../../util/wasm-api';

export const SCAN_KERNEL = 'MsmSelectiveScan';
export const SCAN_GRAD_KERNEL = 'MsmSelectiveScanGrad';
/** SS2D's whole cross-scan forward without a gradient (inference): x, xdbl, A, W, D, deltaBias -> y [b, h, w, e]. */
export const CROSS_FORWARD_KERNEL = 'MsmCrossScanForward';

/** Order of the inputs of both kernels (the gradient saves them in this order). */
export const SCAN_INPUTS = ['u', 'delta', 'A', 'B', 'C', 'D', 'deltaBias'] as const;

/**
 * The wasm backend's heap, for engines that can work on tensors in place: every array handed to the
 * engine is then a view of `memory` (its byteOffset is the tensor's address), and scratch space comes
 * from the backend's own allocator. Allocating may grow the heap and detach those views, so engines
 * note each array's (byteOffset, length) first and view them again after allocating.
 */
export interface WasmHeap {
  memory: WasmMemory;
  malloc(bytes: number): number;
  free(ptr: number): void;
}

/** Something that runs the fused forward and backward on flat arrays (cpu-kernel.ts layouts). */
export interface ScanEngine {
  name: string;
  forward(s: ScanSizes, x: ScanArrays, y: Float32Array, hs: Float32Array, heap?: WasmHeap): void;
  backward(s: ScanSizes, x: ScanArrays, hs: Float32Array, dy: Float32Array, out: ScanGradArrays, heap?: WasmHeap): void;
  /** SS2D's whole cross-scan forward for inference (wasm-simd.ts; engines without it leave it out). */
  crossForward?(s: CrossSizes, x: CrossArrays, y: Float32Array, heap?: WasmHeap): void;
}

export const jsEngine: ScanEngine = { name: 'js', forward: scanForwardJS, backward: scanBackwardJS };

let engineOverride: ScanEngine | undefined;
let simdEngineFactory: (() => ScanEngine | undefined) | undefined;

/** Lets wasm-simd.ts offer its engine without this file importing it (keeps the JS path standalone). */
export function provideSimdEngine(factory: () => ScanEngine | undefined): void {
  simdEngineFactory = factory;
}

/** Forces an engine (tests compare them); `undefined` restores the automatic choice. */
export function setScanEngine(engine: ScanEngine | undefined): void {
  engineOverride = engine;
}

/** The engine the kernels use now: override > MSM_SCAN_ENGINE > SIMD if available > JS. */
export function activeScanEngine(): ScanEngine {
  if (engineOverride) return engineOverride;
  const want = (process.env.MSM_SCAN_ENGINE ?? '').toLowerCase();
  if (want === 'js') return jsEngine;
  const simd = simdEngineFactory?.();
  if (want === 'simd' && !simd)
    throw new Error('MSM_SCAN_ENGINE=simd but the WebAssembly SIMD scan engine is unavailable');
  return simd ?? jsEngine;
}

/** Kernel inputs by name (all present: the callers always pass every input). */
type Inputs = Record<string, tf.TensorInfo>;
type KernelArgs = { inputs: Inputs; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

function sizesOf(inputs: Inputs): ScanSizes {
  const [b, d, l] = inputs.u.shape;
  const [, g, n] = inputs.B.shape; // B is always passed as [b, g, n, l]
  return { b, d, l, n, g };
}

/** How a backend's tensors are read and its outputs allocated. */
interface HeapAccess {
  view(t: tf.TensorInfo): Float32Array;
  alloc(shape: number[]): tf.TensorInfo;
  heap?: WasmHeap;
}

function wasmAccess(backend: tf.KernelBackend): HeapAccess {
  const be = backend as unknown as BackendWasm;
  const mod = be.wasm as unknown as { _malloc(bytes: number): number; _free(ptr: number): void };
  const memory = backendHeapMemory(mod);
  return {
    view: (t) => be.typedArrayFromHeap(t) as Float32Array,
    alloc: (shape) => be.makeOutput(shape, 'float32'),
    // the emscripten module's memory: asm.memory, or wasmMemory in the threaded build (tfjs-backend-wasm 4.22)
    heap: memory ? { memory, malloc: (n) => mod._malloc(n) >>> 0, free: (p) => mod._free(p) } : undefined,
  };
}

function cpuAccess(backend: tf.KernelBackend): HeapAccess & { made: Map<tf.TensorInfo, Float32Array> } {
  const be = backend as unknown as {
    readSync(id: tf.DataId): Float32Array;
    makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
  };
  const made = new Map<tf.TensorInfo, Float32Array>();
  return {
    made,
    view: (t) => made.get(t) ?? (be.readSync(t.dataId) as Float32Array),
    alloc: (shape) => {
      const values = new Float32Array(shape.reduce((a, s) => a * s, 1));
      const info = be.makeTensorInfo(shape, 'float32', values);
      made.set(info, values);
      return info;
    },
  };
}

function forwardKernel(access: (b: tf.KernelBackend) => HeapAccess) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
    const s = sizesOf(inputs);
    const io = access(backend);
    const y = io.alloc([s.b, s.d, s.l]);
    const hs = io.alloc(checkpointShape(s));
    // Views only after every allocation (wasm heap growth detaches earlier views).
    const x = Object.fromEntries(SCAN_INPUTS.map((k) => [k === 'deltaBias' ? 'bias' : k, io.view(inputs[k])]));
    activeScanEngine().forward(s, x as unknown as ScanArrays, io.view(y), io.view(hs), io.heap);
    return [y, hs];
  };
}

function backwardKernel(access: (b: tf.KernelBackend) => HeapAccess) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo[] => {
    const s = sizesOf(inputs);
    const io = access(backend);
    const shapes = [
      inputs.u.shape,
      inputs.delta.shape,
      inputs.A.shape,
      inputs.B.shape,
      inputs.C.shape,
      inputs.D.shape,
      inputs.deltaBias.shape,
    ];
    const outs = shapes.map((sh) => io.alloc(sh));
    const x = Object.fromEntries(SCAN_INPUTS.map((k) => [k === 'deltaBias' ? 'bias' : k, io.view(inputs[k])]));
    const [du, ddelta, dA, dB, dC, dD, dbias] = outs.map((o) => io.view(o));
    const out = { du, ddelta, dA, dB, dC, dD, dbias };
    activeScanEngine().backward(s, x as unknown as ScanArrays, io.view(inputs.hs), io.view(inputs.dy), out, io.heap);
    return outs;
  };
}

/**
 * MsmCrossScanForward (wasm only, an engine with `crossForward`): x [b, h, w, e], xdbl [b, h, w, 4·(R+2N)],
 * A [4e, N], W [4, e, R], D [4e], deltaBias [4e] → y [b, h, w, e]. It has no gradient: index.ts runs it only
 * while no tape records.
 */
function crossForwardKernel({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const [b, h, w, e] = inputs.x.shape;
  const [, n] = inputs.A.shape;
  const r = inputs.W.shape[2];
  const engine = activeScanEngine();
  if (!engine.crossForward)
    throw new Error(`${CROSS_FORWARD_KERNEL}: the '${engine.name}' scan engine has no cross-scan forward`);
  const io = wasmAccess(backend);
  const y = io.alloc([b, h, w, e]);
  const x = {
    x: io.view(inputs.x),
    xdbl: io.view(inputs.xdbl),
    A: io.view(inputs.A),
    W: io.view(inputs.W),
    D: io.view(inputs.D),
    bias: io.view(inputs.deltaBias),
  };
  engine.crossForward({ b, h, w, e, r, n }, x, io.view(y), io.heap);
  return y;
}

/** Can MsmCrossScanForward run now (wasm backend, an engine with it, a compiled state size)? */
export function crossForwardAvailable(n: number, sizes: readonly number[]): boolean {
  return tf.getBackend() === 'wasm' && !!activeScanEngine().crossForward && sizes.includes(paddedState(n));
}

const registeredFor = new Set<string>();
let gradientRegistered = false;

/** The gradient of MsmSelectiveScan: one MsmSelectiveScanGrad call gives all seven input gradients. */
export function registerScanGradient(): void {
  if (gradientRegistered) return;
  gradientRegistered = true;
  tf.registerGradient({
    kernelName: SCAN_KERNEL,
    inputsToSave: [...SCAN_INPUTS],
    outputsToSave: [false, true],
    gradFunc: (dys, saved) => {
      const dy = Array.isArray(dys) ? dys[0] : dys; // ∂L/∂y; hs has no gradient of its own
      const [u, delta, A, B, C, D, deltaBias, hs] = saved;
      const grads = tf.engine().runKernel(SCAN_GRAD_KERNEL, { u, delta, A, B, C, D, deltaBias, hs, dy }) as tf.Tensor[];
      const byName: Record<string, () => tf.Tensor> = {};
      SCAN_INPUTS.forEach((name, i) => (byName[name] = () => grads[i]));
      return byName;
    },
  });
}

/** Registers the fused kernels for 'wasm' and 'cpu' (idempotent). */
export function registerCpuScanKernels(): void {
  registerScanGradient();
  const table: Array<[string, (b: tf.KernelBackend) => HeapAccess]> = [
    ['wasm', wasmAccess],
    ['cpu', cpuAccess],
  ];
  for (const [backendName, access] of table) {
    if (registeredFor.has(backendName)) continue;
    registeredFor.add(backendName);
    tf.registerKernel({
      kernelName: SCAN_KERNEL,
      backendName,
      kernelFunc: forwardKernel(access) as unknown as tf.KernelFunc,
    });
    tf.registerKernel({
      kernelName: SCAN_GRAD_KERNEL,
      backendName,
      kernelFunc: backwardKernel(access) as unknown as tf.KernelFunc,
    });
  }
  if (!registeredFor.has('wasm-cross')) {
    registeredFor.add('wasm-cross');
    tf.registerKernel({
      kernelName: CROSS_FORWARD_KERNEL,
      backendName: 'wasm',
      kernelFunc: crossForwardKernel as unknown as tf.KernelFunc,
    });
  }
}
