/**
 * Faster replacements for six kernels of the wasm backend that the scans (and gradients in general)
 * lean on: Slice, Unpack and SplitV (zero-copy reads), Identity (no copy at all), Reverse and Concat.
 *
 * Why: tfjs-backend-wasm 4.22's Slice (kernels/Slice.ts) starts with `backend.readSync(x.dataId)`, which
 * copies the WHOLE input out of the wasm heap on every call; Unpack and SplitV call it once per output.
 * `tf.unstack` of a [l, …] tensor therefore costs l full copies (O(l²)): 128 ms to cut a 4.8 M-element
 * tensor into 14 slices on this machine, versus a few ms for the data actually moved. Every sequential
 * scan (reference.ts, chunked.ts) slices per step, so on wasm they were dominated by this copy.
 * The fix reads the input through a view of the heap (`typedArrayFromHeap`) taken after the outputs
 * are allocated (allocation may grow the heap and detach older views). Results are bit-identical.
 *
 *
 * Identity (tf.clone, and the engine's copy of every tensor a gradient saves) copies the whole tensor on
 * wasm; the cpu backend instead shares the data and counts references, which is what this version
 * does (tensors are immutable, and the wasm backend already keeps reference counts). A forward+backward
 * otherwise pays one full copy of every saved input (≈ 110 ms per fused-scan call at 224 px, stage 1).
 *
 * Reverse (SS2D's two flipped scan directions, and its own gradient) runs a generic per-element index
 * loop in 4.22's C++: ~5 ms for a [8, 256, 24] flip at 64 px, 40 % of a forward pass. The version here
 * copies whole innermost runs, reversed along the one axis SS2D flips (other cases: stock kernel).
 *
 * Registered by `registerScanKernels()` (index.ts). These are backend fixes, not scan logic: they belong
 * in lib/backend next to the other wasm kernels, and live here until they are moved.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Info = tf.TensorInfo;

/** Runs shorter than this are copied element by element (e.g. SplitV of x_proj's [b·l, R+2N] output). */
const SHORT_RUN = 64;

type Heap = Float32Array | Int32Array | Uint8Array;

/** out[dst, dst + n) = x[src, src + n): a subarray per short run costs more than the copy itself. */
function copyRun(x: Heap, src: number, out: Heap, dst: number, n: number): void {
  if (n < SHORT_RUN) {
    for (let k = 0; k < n; k++) out[dst + k] = x[src + k];
  } else {
    out.set(x.subarray(src, src + n), dst);
  }
}

/** Copies the block [begin, begin + size) of x (row-major, shape `xShape`) into out, innermost runs at a time. */
function copyBlock(x: Heap, xShape: number[], begin: number[], size: number[], out: typeof x) {
  const rank = xShape.length;
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * xShape[i + 1];
  // Merge the innermost axes that are copied whole, so runs are as long as possible.
  let inner = rank - 1;
  let run = size[inner];
  while (inner > 0 && size[inner] === xShape[inner] && begin[inner] === 0) {
    inner--;
    run *= size[inner];
  }
  const outer = size.slice(0, inner);
  const nRuns = outer.reduce((a, s) => a * s, 1);
  const idx = new Array<number>(inner).fill(0);
  let o = 0;
  for (let r = 0; r < nRuns; r++) {
    let off = begin[inner] * strides[inner];
    for (let i = 0; i < inner; i++) off += (begin[i] + idx[i]) * strides[i];
    copyRun(x, off, out, o, run);
    o += run;
    for (let i = inner - 1; i >= 0; i--) {
      if (++idx[i] < outer[i]) break;
      idx[i] = 0;
    }
  }
}

/** Allocates one output per block, then copies every block from a single heap view of x. */
function sliceMany(backend: BackendWasm, x: Info, blocks: Array<{ begin: number[]; size: number[] }>): Info[] {
  const outs = blocks.map((blk) => backend.makeOutput(blk.size, x.dtype));
  const xv = backend.typedArrayFromHeap(x); // after all allocations: the heap may have grown
  blocks.forEach((blk, i) => {
    if (blk.size.some((s) => s === 0)) return;
    copyBlock(xv, x.shape, blk.begin, blk.size, backend.typedArrayFromHeap(outs[i]));
  });
  return outs;
}

function sliceKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): Info {
  const x = args.inputs.x as Info;
  const a = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, a.begin, a.size);
  return sliceMany(args.backend as BackendWasm, x, [{ begin, size }])[0];
}

function unpackKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): Info[] {
  const value = args.inputs.value as Info;
  const rank = value.shape.length;
  let axis = (args.attrs as unknown as { axis: number }).axis;
  if (axis < 0) axis += rank;
  const size = value.shape.slice();
  size[axis] = 1;
  const blocks = Array.from({ length: value.shape[axis] }, (_, i) => {
    const begin = new Array<number>(rank).fill(0);
    begin[axis] = i;
    return { begin, size };
  });
  const outShape = value.shape.filter((_, i) => i !== axis);
  return sliceMany(args.backend as BackendWasm, value, blocks).map((o) => ({ ...o, shape: outShape }));
}

function splitVKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): Info[] {
  const x = args.inputs.x as Info;
  const a = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number | number[] };
  const axis = tf.util.parseAxisParam(a.axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, a.numOrSizeSplits, axis);
  let start = 0;
  const blocks = sizes.map((s) => {
    const begin = new Array<number>(x.shape.length).fill(0);
    begin[axis] = start;
    start += s;
    const size = x.shape.slice();
    size[axis] = s;
    return { begin, size };
  });
  return sliceMany(args.backend as BackendWasm, x, blocks);
}

/** Shares x's data with the output (reference counted), as the cpu backend's Identity does. */
function identityKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): Info {
  const x = args.inputs.x as Info;
  (args.backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Reverse along one axis: x viewed as [outer, len, inner], out[o, i, :] = x[o, len − 1 − i, :].
 * Several axes (not used by the kit) go to the stock kernel.
 */
function reverseKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap },
  stock: tf.KernelFunc,
): Info {
  const x = args.inputs.x as Info;
  const backend = args.backend as BackendWasm;
  const dims = tf.util.parseAxisParam((args.attrs as unknown as { dims: number | number[] }).dims, x.shape);
  const axes = [...new Set(dims)].filter((a) => x.shape[a] > 1);
  if (axes.length > 1) return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  const out = backend.makeOutput(x.shape.slice(), x.dtype);
  const size = tf.util.sizeFromShape(x.shape);
  if (size === 0) return out;
  const xv = backend.typedArrayFromHeap(x); // after makeOutput: the heap may have grown
  const ov = backend.typedArrayFromHeap(out);
  if (axes.length === 0) {
    ov.set(xv);
    return out;
  }
  const axis = axes[0];
  const len = x.shape[axis];
  const inner = tf.util.sizeFromShape(x.shape.slice(axis + 1));
  const outer = size / (len * inner);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    for (let i = 0; i < len; i++) copyRun(xv, base + (len - 1 - i) * inner, ov, base + i * inner, inner);
  }
  return out;
}

/**
 * Concat: stock 4.22 copies through a generic per-run path (4.3 ms to join [8192, 1 | 16 | 16] along
 * axis 1, the gradient of x_proj's split); here each input is an [outer, inner_i] block of the output rows.
 */
function concatKernel(
  args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap },
  stock: tf.KernelFunc,
): Info {
  const inputs = Object.values(args.inputs) as Info[];
  const backend = args.backend as BackendWasm;
  const dtype = inputs[0]?.dtype;
  if (!dtype || dtype === 'string' || dtype === 'complex64' || inputs.some((t) => t.dtype !== dtype)) {
    return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  }
  const axis = tf.util.parseAxisParam((args.attrs as unknown as { axis: number }).axis, inputs[0].shape)[0];
  const outShape = tf.backend_util.computeOutShape(
    inputs.map((t) => t.shape),
    axis,
  );
  const out = backend.makeOutput(outShape, dtype);
  const parts = inputs.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
  const outer = tf.util.sizeFromShape(outShape.slice(0, axis));
  if (parts.length === 0 || outer === 0) return out;
  const ov = backend.typedArrayFromHeap(out); // views after makeOutput: the heap may have grown
  const row = tf.util.sizeFromShape(outShape.slice(axis));
  let col = 0;
  for (const t of parts) {
    const xv = backend.typedArrayFromHeap(t);
    const inner = tf.util.sizeFromShape(t.shape.slice(axis));
    for (let o = 0; o < outer; o++) copyRun(xv, o * inner, ov, o * row + col, inner);
    col += inner;
  }
  return out;
}

let registered = false;
const stockKernels = new Map<string, tf.KernelFunc>();

/** The tfjs-backend-wasm kernel that `registerWasmKernelFixes` replaced (tests compare against it). */
export function stockWasmKernel(name: string): tf.KernelFunc | undefined {
  return stockKernels.get(name);
}

/** Replaces wasm's Slice, Unpack, SplitV, Identity, Reverse and Concat kernels (once; strings keep the stock kernels). */
export function registerWasmKernelFixes(): void {
  if (registered) return;
  registered = true;
  const kernels: Array<[string, tf.KernelFunc]> = [
    [tf.Slice, sliceKernel as unknown as tf.KernelFunc],
    [tf.Unpack, unpackKernel as unknown as tf.KernelFunc],
    [tf.SplitV, splitVKernel as unknown as tf.KernelFunc],
    [tf.Identity, identityKernel as unknown as tf.KernelFunc],
  ];
  type Args = Parameters<typeof reverseKernel>[0];
  const withStock: Array<[string, (args: Args, stock: tf.KernelFunc) => Info]> = [
    [tf.Reverse, reverseKernel],
    [tf.Concat, concatKernel],
  ];
  for (const [name, fn] of withStock) {
    const stock = tf.getKernel(name, 'wasm')?.kernelFunc;
    if (stock) kernels.push([name, ((args: Args) => fn(args, stock)) as unknown as tf.KernelFunc]);
  }
  for (const [kernelName, kernelFunc] of kernels) {
    const stock = tf.getKernel(kernelName, 'wasm');
    if (stock) {
      stockKernels.set(kernelName, stock.kernelFunc);
      tf.unregisterKernel(kernelName, 'wasm');
    }
    tf.registerKernel({
      kernelName,
      backendName: 'wasm',
      // String tensors are stored outside the heap; leave them to the stock kernel.
      kernelFunc: (args) =>
        (args.inputs.x ?? args.inputs.value)?.dtype === 'string' && stock ? stock.kernelFunc(args) : kernelFunc(args),
    });
  }
}
