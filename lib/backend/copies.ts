/**
 * Faster replacements for ten copying kernels of the wasm backend that the scans (and gradients in
 * general) lean on: Slice, Unpack and SplitV (zero-copy reads), Identity and same-dtype Cast (no copy at
 * all), Reverse, Concat, Pack, Tile and Transpose. All of them only move data, so results are bit-identical to the stock kernels'.
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
 * Tile (broadcastTo; the gradients of Sum and Mean, see gradient-fixes.ts) and Transpose also index
 * element by element in C++; here they are block copies and 4×4 register transposes.
 *
 * The runs are copied by the SIMD `copyruns` heap kernel (./simd/copies.ts), in one call per evenly
 * spaced group of runs; a JS loop per element cost ~3 ns (≈ 30 ms of Reverse per 64-px training step).
 *
 * Registered by ./registrations.ts, each through `leaveStringsToStock`.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { heapKernels } from './heap';

type Info = tf.TensorInfo;
/** What tfjs passes a kernel (the parts these kernels read). */
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap };

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

/**
 * `count` runs of n elements: run i goes from x[src + i·srcStride] to out[dst + i·dstStride] (element
 * units, strides may be negative). 4-byte data is copied by the SIMD heap kernel (./simd/copies.ts)
 * in one call; other data (bool) run by run in JS.
 */
function copyRuns(
  backend: BackendWasm,
  x: Heap,
  src: number,
  out: Heap,
  dst: number,
  count: number,
  n: number,
  srcStride: number,
  dstStride: number,
): void {
  if (count === 0 || n === 0) return;
  const k = x.BYTES_PER_ELEMENT === 4 ? heapKernels(backend) : undefined;
  if (k) {
    k.copyruns(x.byteOffset + 4 * src, out.byteOffset + 4 * dst, count, 4 * n, 4 * srcStride, 4 * dstStride); // bytes
    return;
  }
  for (let i = 0; i < count; i++) copyRun(x, src + i * srcStride, out, dst + i * dstStride, n);
}

/** Copies the block [begin, begin + size) of x (row-major, shape `xShape`) into out, innermost runs at a time. */
function copyBlock(backend: BackendWasm, x: Heap, xShape: number[], begin: number[], size: number[], out: typeof x) {
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
  if (inner === 0) {
    copyRuns(backend, x, begin[0] * strides[0], out, 0, 1, run, 0, 0);
    return;
  }
  // The runs along the last outer axis (inner − 1) are evenly spaced: one copyRuns call each.
  const last = inner - 1;
  const outer = size.slice(0, last);
  const nGroups = outer.reduce((a, s) => a * s, 1);
  const idx = new Array<number>(last).fill(0);
  let o = 0;
  for (let r = 0; r < nGroups; r++) {
    let off = begin[inner] * strides[inner] + begin[last] * strides[last];
    for (let i = 0; i < last; i++) off += (begin[i] + idx[i]) * strides[i];
    copyRuns(backend, x, off, out, o, size[last], run, strides[last], run);
    o += size[last] * run;
    for (let i = last - 1; i >= 0; i--) {
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
    copyBlock(backend, xv, x.shape, blk.begin, blk.size, backend.typedArrayFromHeap(outs[i]));
  });
  return outs;
}

export function sliceKernel(args: KernelArgs): Info {
  const x = args.inputs.x as Info;
  const a = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
  const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, a.begin, a.size);
  return sliceMany(args.backend as BackendWasm, x, [{ begin, size }])[0];
}

export function unpackKernel(args: KernelArgs): Info[] {
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

export function splitVKernel(args: KernelArgs): Info[] {
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
export function identityKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): Info {
  const x = args.inputs.x as Info;
  (args.backend as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Reverse along one axis: x viewed as [outer, len, inner], out[o, i, :] = x[o, len − 1 − i, :].
 * Several axes (not used by the kit) go to the stock kernel.
 */
export function reverseKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
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
    copyRuns(backend, xv, base + (len - 1) * inner, ov, base, len, inner, -inner, inner); // run i ← run len−1−i
  }
  return out;
}

/**
 * Concat: stock 4.22 copies through a generic per-run path (4.3 ms to join [8192, 1 | 16 | 16] along
 * axis 1, the gradient of x_proj's split); here each input is an [outer, inner_i] block of the output rows.
 */
export function concatKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
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
    copyRuns(backend, xv, 0, ov, col, outer, inner, inner, row);
    col += inner;
  }
  return out;
}

/**
 * Tile (and so broadcastTo, e.g. the gradients of Sum and Mean): stock 4.22 computes every output element's
 * source index in a generic C++ loop: the broadcasts of the Sum and Mean gradients alone cost ~1 s per 64-px
 * training step that way (measured). Here: x is placed into the first tile of the output, then each axis
 * from the innermost out is replicated by whole-block copies — every output element is written once.
 */
export function tileKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
  const x = args.inputs.x as Info;
  const backend = args.backend as BackendWasm;
  const reps = (args.attrs as unknown as { reps: number[] }).reps;
  const xs = x.shape;
  const rank = xs.length;
  if (rank === 0 || reps.length !== rank || x.dtype === 'string' || x.dtype === 'complex64') {
    return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  }
  const os = xs.map((d, i) => d * reps[i]);
  const out = backend.makeOutput(os, x.dtype);
  if (tf.util.sizeFromShape(os) === 0) return out;
  const xv = backend.typedArrayFromHeap(x); // after makeOutput: the heap may have grown
  const ov = backend.typedArrayFromHeap(out);
  const oStride = new Array<number>(rank);
  oStride[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) oStride[i] = oStride[i + 1] * os[i + 1];
  /** Calls fn(offsetOfPrefixInOut, prefixIndex) for every index (i_0..i_{d-1}) < (xs_0..xs_{d-1}). */
  const forPrefixes = (d: number, fn: (outOff: number, flat: number) => void) => {
    const n = tf.util.sizeFromShape(xs.slice(0, d));
    const idx = new Array<number>(d).fill(0);
    for (let f = 0; f < n; f++) {
      let off = 0;
      for (let i = 0; i < d; i++) off += idx[i] * oStride[i];
      fn(off, f);
      for (let i = d - 1; i >= 0; i--) {
        if (++idx[i] < xs[i]) break;
        idx[i] = 0;
      }
    }
  };
  // 1. x into the first tile: its rows (last axis) grouped along the axis before, one copyRuns per group.
  const run = xs[rank - 1];
  if (rank === 1) copyRuns(backend, xv, 0, ov, 0, 1, run, 0, 0);
  else {
    forPrefixes(rank - 2, (off, f) =>
      copyRuns(backend, xv, f * xs[rank - 2] * run, ov, off, xs[rank - 2], run, run, oStride[rank - 2]),
    );
  }
  // 2. replicate along each axis d, innermost first: the filled block [xs_d, os_{d+1}, …] repeats reps_d times.
  for (let d = rank - 1; d >= 0; d--) {
    if (reps[d] === 1) continue;
    const k = ov.BYTES_PER_ELEMENT === 4 ? heapKernels(backend) : undefined;
    if (k && d === rank - 1 && xs[d] === 1 && reps.slice(0, d).every((r) => r === 1)) {
      // only the innermost axis repeats, one element each (LayerNorm's dy): one call fills every row
      k.fillrows(ov.byteOffset, tf.util.sizeFromShape(xs.slice(0, d)), reps[d], reps[d]);
      continue;
    }
    const block = xs[d] * oStride[d];
    forPrefixes(d, (off) => copyRuns(backend, ov, off, ov, off + block, reps[d] - 1, block, 0, block));
  }
  return out;
}

/**
 * `perm` on `shape` with size-1 axes dropped and input axes that stay adjacent and in order merged:
 * e.g. [32, 4, 256, 24] with [0, 1, 3, 2] is [128, 256, 24] with [0, 2, 1]. Same memory movement.
 */
export function collapsePermutation(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const index = new Map<number, number>(); // old axis → axis among the kept ones
  shape.forEach((d, a) => d !== 1 && index.set(a, index.size));
  const s = shape.filter((d) => d !== 1);
  const p = perm.filter((a) => shape[a] !== 1).map((a) => index.get(a)!);
  const groups: number[][] = []; // in output order; each a run of consecutive input axes
  for (const a of p) {
    const g = groups[groups.length - 1];
    if (g && g[g.length - 1] + 1 === a) g.push(a);
    else groups.push([a]);
  }
  const byInput = [...groups].sort((g1, g2) => g1[0] - g2[0]);
  return {
    shape: byInput.map((g) => g.reduce((acc, a) => acc * s[a], 1)),
    perm: groups.map((g) => byInput.indexOf(g)),
  };
}

/**
 * Transpose: stock 4.22 walks the output element by element through generic index arithmetic (~4 ns
 * per element: 5 ms for a [1536, 768] weight). After collapsing the permutation: when the innermost
 * axis stays innermost, the output is a reordering of whole runs (SIMD run copies); when the last two
 * axes swap (matMul operands, the scan's [l, n] ↔ [n, l] layouts), each trailing matrix is transposed
 * in 4×4 register blocks. Other permutations (and 1-byte data): the stock kernel.
 */
export function transposeKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
  const x = args.inputs.x as Info;
  const backend = args.backend as BackendWasm;
  const perm = (args.attrs as unknown as { perm: number[] }).perm;
  const outShape = perm.map((a) => x.shape[a]);
  const size = tf.util.sizeFromShape(x.shape);
  const bytes4 = x.dtype === 'float32' || x.dtype === 'int32';
  const c = collapsePermutation(x.shape, perm);
  const r = c.shape.length;
  const lastStays = r <= 1 || c.perm[r - 1] === r - 1;
  const lastTwoSwap = r >= 2 && c.perm[r - 1] === r - 2 && c.perm[r - 2] === r - 1;
  // one JS call per trailing run group or matrix: worth it only when those hold ≥ 64 elements on average
  const calls = r <= 2 ? 1 : tf.util.sizeFromShape(c.perm.slice(0, r - 2).map((a) => c.shape[a]));
  if (!bytes4 || size === 0 || !(lastStays || lastTwoSwap) || size < 64 * calls) {
    return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  }
  const out = backend.makeOutput(outShape, x.dtype);
  const xv = backend.typedArrayFromHeap(x); // after makeOutput: the heap may have grown
  const ov = backend.typedArrayFromHeap(out);
  if (r <= 1) {
    copyRuns(backend, xv, 0, ov, 0, 1, size, 0, 0);
    return out;
  }
  const stride = new Array<number>(r); // input strides (elements) of the collapsed shape
  stride[r - 1] = 1;
  for (let i = r - 2; i >= 0; i--) stride[i] = stride[i + 1] * c.shape[i + 1];
  const oShape = c.perm.map((a) => c.shape[a]);
  /** Calls fn(sourceOffset, outputOffset) for every index over output axes [0, d), in output order. */
  const forOutputPrefixes = (d: number, block: number, fn: (src: number, dst: number) => void) => {
    const idx = new Array<number>(d).fill(0);
    const n = tf.util.sizeFromShape(oShape.slice(0, d));
    for (let k = 0; k < n; k++) {
      let src = 0;
      for (let i = 0; i < d; i++) src += idx[i] * stride[c.perm[i]];
      fn(src, k * block);
      for (let i = d - 1; i >= 0; i--) {
        if (++idx[i] < oShape[i]) break;
        idx[i] = 0;
      }
    }
  };
  if (lastStays) {
    // runs of the innermost axis; along output axis r − 2 they are evenly spaced in the input
    const run = c.shape[r - 1];
    const along = c.perm[r - 2];
    forOutputPrefixes(r - 2, oShape[r - 2] * run, (src, dst) =>
      copyRuns(backend, xv, src, ov, dst, c.shape[along], run, stride[along], run),
    );
  } else {
    const [R, C] = [c.shape[r - 2], c.shape[r - 1]];
    const k = heapKernels(backend);
    forOutputPrefixes(r - 2, R * C, (src, dst) => {
      if (k) k.transpose2d(xv.byteOffset + 4 * src, ov.byteOffset + 4 * dst, R, C);
      else for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) ov[dst + j * R + i] = xv[src + i * C + j];
    });
  }
  return out;
}

/**
 * Pack (tf.stack): stock 4.22 expands every input and calls its own JS concat (which the Concat
 * replacement above never sees). Here: input i fills every (i)-th block of the output rows directly.
 */
export function packKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
  const inputs = Object.values(args.inputs) as Info[];
  const backend = args.backend as BackendWasm;
  const first = inputs[0];
  const sameKind = inputs.every((t) => t.dtype === first.dtype && tf.util.arraysEqual(t.shape, first.shape));
  if (!first || first.dtype === 'string' || first.dtype === 'complex64' || !sameKind) {
    return stock(args as Parameters<tf.KernelFunc>[0]) as Info; // its own checks and messages
  }
  const rank = first.shape.length;
  let axis = (args.attrs as unknown as { axis: number }).axis;
  if (axis < 0) axis += rank + 1;
  const outShape = [...first.shape.slice(0, axis), inputs.length, ...first.shape.slice(axis)];
  const out = backend.makeOutput(outShape, first.dtype);
  const outer = tf.util.sizeFromShape(first.shape.slice(0, axis));
  const inner = tf.util.sizeFromShape(first.shape.slice(axis));
  if (outer * inner === 0) return out;
  const ov = backend.typedArrayFromHeap(out); // after makeOutput: the heap may have grown
  const n = inputs.length;
  inputs.forEach((t, i) =>
    copyRuns(backend, backend.typedArrayFromHeap(t), 0, ov, i * inner, outer, inner, inner, n * inner),
  );
  return out;
}

/** Cast to the dtype a tensor already has (every float32 gradient of Identity, tf.cast in op gradients): share the data, as Identity does. */
export function castKernel(args: KernelArgs, stock: tf.KernelFunc): Info {
  const x = args.inputs.x as Info;
  if ((args.attrs as unknown as { dtype: string }).dtype !== x.dtype)
    return stock(args as Parameters<tf.KernelFunc>[0]) as Info;
  return identityKernel(args);
}

/** A copy kernel's body: it gets the stock kernel for the cases it leaves to it. */
export type CopyKernel = (args: KernelArgs, stock: tf.KernelFunc) => Info | Info[];

/** The replacement for a stock kernel: `fn`, except for string tensors (stored outside the heap), which stay with the stock kernel. */
export function leaveStringsToStock(fn: CopyKernel): (stock: tf.KernelFunc) => tf.KernelFunc {
  return (stock) => (args) =>
    (args.inputs.x ?? args.inputs.value)?.dtype === 'string' ? stock(args) : fn(args as unknown as KernelArgs, stock);
}
