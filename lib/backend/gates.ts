/**
 * MIFA's cross gate (lib/models/microscopic-mamba/mifa.ts, official `MIFA_block` L953–981) as one fused
 * wasm kernel each way. With wl = W(l), wg = W(g) the depthwise-conv outputs and l, g the branch inputs,
 * all [..., c]:
 *
 *   out = channel_shuffle(concat(σ(ReLU(wl)) ⊙ g, σ(GELU(wg)) ⊙ l), groups = c/2)      [..., 2c]
 *
 * (`plainLocalGate`: σ(wl) instead of σ(ReLU(wl)).) As tf ops (`crossGateReference`, the reference of
 * the tests) that is ~13 kernel calls forward — ReLU, two Sigmoids, GELU's five ops, two multiplies, a
 * concat and the shuffle's transpose — and about twice that backward, each a full pass with tfjs' per-call
 * bookkeeping (tfjs-wasm's Erf is also a slow scalar loop). Here one heap kernel computes the two gates,
 * the products and the shuffled layout in one pass (./simd/gates.ts), and one recomputes the gates
 * and writes all four gradients. exp, σ and erf are ./simd/math.ts's (erf: the same A&S 7.1.26 formula
 * as tfjs' Erf). NOT bit-identical to the tf ops: tested to ≤ 1e-5 forward and ≤ 1e-4 gradients against
 * them; MSM_FUSED_KERNELS=0 keeps them (./fused.ts).
 *
 * Also MIFA's ECA (k_size = 1): y = x ⊙ σ(w ⊙ mean_hw(x)) — Mean, two Multiplies and a Sigmoid forward,
 * ~12 kernels backward — as one kernel each way built from the heap's colsum / bcast / bngradsums / affine.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { BCAST_OP } from './broadcast';
import { fusedKernelsAvailable } from './fused';
import { heapKernels, HeapExports, offsetOf } from './heap';

export const CROSS_GATE_KERNEL = 'MsmCrossGate';
export const CROSS_GATE_GRAD_KERNEL = 'MsmCrossGateGrad';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

export interface CrossGateOptions {
  /** σ(wl) instead of σ(ReLU(wl)) (the fix of quirk Q5). */
  plainLocalGate: boolean;
}

function heap(backend: BackendWasm, kernel: string): HeapExports {
  const k = heapKernels(backend);
  if (!k) throw new Error(`${kernel}: the wasm heap is not reachable (check crossGateAvailable() first)`);
  return k;
}

/** rows and c of x [..., c], and the ReLU floor (−∞ leaves wl as is). */
function layout(x: Info, attrs: tf.NamedAttrMap | undefined): [number, number, number] {
  const c = x.shape[x.shape.length - 1] ?? 1;
  const rows = c === 0 ? 0 : tf.util.sizeFromShape(x.shape) / c;
  return [rows, c, (attrs as unknown as CrossGateOptions).plainLocalGate ? -Infinity : 0];
}

/** inputs wl, wg, l, g [..., c]; attrs plainLocalGate → out [..., 2c] (shuffled). */
export function crossGateKernel(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { wl, wg, l, g } = args.inputs as Record<string, Info>;
  const [rows, c, floor] = layout(wl, args.attrs);
  const out = backend.makeOutput([...wl.shape.slice(0, -1), 2 * c], 'float32');
  const o = (t: Info) => offsetOf(backend, t);
  if (rows > 0) heap(backend, CROSS_GATE_KERNEL).crossgate(o(wl), o(wg), o(l), o(g), o(out), rows, c, floor);
  return out;
}

/** inputs dy [..., 2c] (shuffled), wl, wg, l, g [..., c]; attrs plainLocalGate → [dwl, dwg, dl, dg]. */
export function crossGateGradKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { dy, wl, wg, l, g } = args.inputs as Record<string, Info>;
  const [rows, c, floor] = layout(wl, args.attrs);
  const outs = [0, 1, 2, 3].map(() => backend.makeOutput(wl.shape, 'float32'));
  const o = (t: Info) => offsetOf(backend, t);
  const [pdwl, pdwg, pdl, pdg] = outs.map(o);
  if (rows > 0) {
    heap(backend, CROSS_GATE_GRAD_KERNEL).crossgategrad(
      o(dy),
      o(wl),
      o(wg),
      o(l),
      o(g),
      pdwl,
      pdwg,
      pdl,
      pdg,
      rows,
      c,
      floor,
    );
  }
  return outs;
}

/**
 * True where `fusedCrossGate` runs for these inputs: the fused-kernel switch and backend (./fused.ts),
 * four tensors of one shape, and c a multiple of 8 (the kernel shuffles 4 groups of 4 channels at a time).
 */
export function crossGateAvailable(wl: tf.Tensor, wg: tf.Tensor, l: tf.Tensor, g: tf.Tensor): boolean {
  const c = wl.shape[wl.rank - 1] ?? 0;
  const same = [wg, l, g].every((t) => t.dtype === wl.dtype && tf.util.arraysEqual(t.shape, wl.shape));
  return same && c > 0 && c % 8 === 0 && fusedKernelsAvailable(wl, CROSS_GATE_KERNEL);
}

/** The cross gate as one kernel each way (see the header); check `crossGateAvailable` first. */
export function fusedCrossGate(
  wl: tf.Tensor,
  wg: tf.Tensor,
  l: tf.Tensor,
  g: tf.Tensor,
  opts: CrossGateOptions,
): tf.Tensor {
  const attrs = { plainLocalGate: opts.plainLocalGate };
  const f = tf.customGrad((a, b, c, d, save) => {
    const inputs = { wl: a as tf.Tensor, wg: b as tf.Tensor, l: c as tf.Tensor, g: d as tf.Tensor };
    const y = tf.engine().runKernel(CROSS_GATE_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
    (save as tf.GradSaveFunc)([inputs.wl, inputs.wg, inputs.l, inputs.g]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [ws, gs, ls, xs]: tf.Tensor[]) =>
        tf
          .engine()
          .runKernel(
            CROSS_GATE_GRAD_KERNEL,
            { dy, wl: ws, wg: gs, l: ls, g: xs },
            attrs as unknown as tf.NamedAttrMap,
          ) as tf.Tensor[],
    };
  });
  return f(wl, wg, l, g);
}

/** The same function as plain tf ops: the reference of the fused kernels' tests (and MIFA's own formula). */
export function crossGateReference(
  wl: tf.Tensor,
  wg: tf.Tensor,
  l: tf.Tensor,
  g: tf.Tensor,
  opts: CrossGateOptions,
): tf.Tensor {
  return tf.tidy(() => {
    const c = wl.shape[wl.rank - 1] ?? 0;
    const gelu = tf.mul(tf.mul(wg, 0.5), tf.add(tf.erf(tf.mul(wg, Math.SQRT1_2)), 1)); // exact GELU
    const mapL = tf.sigmoid(opts.plainLocalGate ? wl : tf.relu(wl)); // [..., c]
    const mapG = tf.sigmoid(gelu); // [..., c]
    const cat = tf.concat([tf.mul(mapL, g), tf.mul(mapG, l)], -1); // [..., 2c]
    // channel_shuffle(groups = c/2): [rows, c/2, 4] → [rows, 4, c/2]
    return cat
      .reshape([-1, c / 2, 4])
      .transpose([0, 2, 1])
      .reshape([...wl.shape.slice(0, -1), 2 * c]);
  });
}

// ---------------------------------------------------------------------------------------------------
// ECA with k_size = 1 (mifa.ts `ECA`): y = x ⊙ σ(w ⊙ mean_hw(x)), one kernel each way
// ---------------------------------------------------------------------------------------------------

export const ECA_KERNEL = 'MsmEca';
export const ECA_GRAD_KERNEL = 'MsmEcaGrad';

/**
 * inputs x [b, h, w, C], w [C] → [y [b, h, w, C], g = σ(w·m) [b, C], m = mean_hw x [b, C]]: m by the heap
 * `colsum` (in row order, as the kit's Mean), g here, y = x·g by `bcast`.
 */
export function ecaKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { x, w } = args.inputs as Record<string, Info>;
  const [b, h, wd, c] = x.shape;
  const hw = h * wd;
  const k = heap(backend, ECA_KERNEL);
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput([b, c], 'float32')];
  outs.push(backend.makeOutput([b, c], 'float32'));
  const [y, g, mean] = outs;
  const o = (t: Info) => offsetOf(backend, t);
  if (b * hw * c === 0) return outs;
  k.colsum(o(x), o(mean), b, hw, c, 1);
  const [mv, wv, gv] = [mean, w, g].map((t) => backend.typedArrayFromHeap(t) as Float32Array);
  const f = Math.fround;
  for (let i = 0; i < b * c; i++) gv[i] = 1 / (1 + Math.exp(-f(mv[i] * wv[i % c])));
  k.bcast(o(x), o(g), o(y), b, hw, c, BCAST_OP.mul);
  return outs;
}

/**
 * inputs dy, x [b, h, w, C], w [C], g, m [b, C] → [dx, dw]. With S = Σ_hw dy·x (the heap `bngradsums`
 * with μ = 0) and σ' = g·(1 − g):  dx = dy·g + w·σ'·S/hw (the heap `affine`, per sample),
 * dw = Σ_b σ'·m·S.
 */
export function ecaGradKernel(args: KernelArgs): Info[] {
  const backend = args.backend as BackendWasm;
  const { dy, x, w, g, mean } = args.inputs as Record<string, Info>;
  const [b, h, wd, c] = x.shape;
  const hw = h * wd;
  const k = heap(backend, ECA_GRAD_KERNEL);
  const outs = [backend.makeOutput(x.shape, 'float32'), backend.makeOutput([c], 'float32')];
  const [dx, dw] = outs;
  // scratch: μ = 0 and Σ dy [c]; S and the per-sample shift [b, c]
  const scratch = [backend.makeOutput([c], 'float32'), backend.makeOutput([c], 'float32')];
  scratch.push(backend.makeOutput([b, c], 'float32'), backend.makeOutput([b, c], 'float32'));
  const [zero, sdy, sums, shift] = scratch;
  const o = (t: Info) => offsetOf(backend, t);
  (backend.typedArrayFromHeap(zero) as Float32Array).fill(0);
  for (let i = 0; i < b; i++) {
    k.bngradsums(o(dy) + 4 * i * hw * c, o(x) + 4 * i * hw * c, hw, c, o(zero), o(sdy), o(sums) + 4 * i * c, c);
  }
  const [wv, gv, mv, sv, hv, dwv] = [w, g, mean, sums, shift, dw].map(
    (t) => backend.typedArrayFromHeap(t) as Float32Array,
  );
  dwv.fill(0);
  for (let i = 0; i < b * c; i++) {
    const slope = gv[i] * (1 - gv[i]) * sv[i];
    hv[i] = (wv[i % c] * slope) / hw;
    dwv[i % c] += slope * mv[i];
  }
  for (let i = 0; i < b; i++) {
    k.affine(o(dy) + 4 * i * hw * c, o(dx) + 4 * i * hw * c, hw, c, o(g) + 4 * i * c, o(shift) + 4 * i * c);
  }
  for (const t of scratch) backend.disposeData(t.dataId);
  return outs;
}

/** True where `fusedEca` runs for x (the fused-kernel switch and backend, ./fused.ts; x of rank 4). */
export function ecaAvailable(x: tf.Tensor): boolean {
  return x.rank === 4 && fusedKernelsAvailable(x, ECA_KERNEL);
}

/** ECA (k = 1) as one kernel each way: x [b, h, w, C], w [C] → x ⊙ σ(w ⊙ mean_hw x); check `ecaAvailable` first. */
export function fusedEca(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
  const f = tf.customGrad((xi, wi, save) => {
    const [y, g, mean] = tf.engine().runKernel(ECA_KERNEL, { x: xi as tf.Tensor, w: wi as tf.Tensor }) as tf.Tensor[];
    (save as tf.GradSaveFunc)([xi as tf.Tensor, wi as tf.Tensor, g, mean]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [xs, ws, gs, ms]: tf.Tensor[]) =>
        tf.engine().runKernel(ECA_GRAD_KERNEL, { dy, x: xs, w: ws, g: gs, mean: ms }) as tf.Tensor[],
    };
  });
  return f(x, w);
}

/** ECA as tf ops (the reference of the tests; mifa.ts' own formula). */
export function ecaReference(x: tf.Tensor, w: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(tf.mean(x, [1, 2], true), w)))); // [b, h, w, C]
}
