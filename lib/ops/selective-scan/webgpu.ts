/**
 * The fused selective scan as WGSL compute shaders for tfjs' webgpu backend: the same two kernels as
 * fused-cpu.ts (MsmSelectiveScan, MsmSelectiveScanGrad, same inputs, outputs and gradient), registered
 * for 'webgpu' and run through `WebGPUBackend.runWebGPUProgram` (docs/platform.md §WebGPU).
 *
 * Parallel over (batch, channel, state): one invocation owns one state h[b, c, k] and walks time
 * sequentially (the recurrence is sequential in t). A workgroup holds CPW channels × n states of one
 * group of channels; sums over the state (y_t, ⟨G_t, B_t⟩) and over the workgroup's channels (∂B, ∂C)
 * go through workgroup memory, TT time steps at a time. Per-block partial sums of ∂B, ∂C (and per-batch
 * ∂A, ∂D, ∂b_Δ) are reduced by small follow-up shaders, so no [b, d, l, n] tensor is ever formed.
 * The backward recomputes h chunk by chunk (T = 64 steps) from the checkpoints of the forward, keeping
 * the chunk's h and Ā in private arrays, like the CPU kernels.
 *
 * Layouts: inputs as in ScanArgs (u, δ [b, d, l]; A [d, n]; B, C [b, g, n, l]); B and C are transposed
 * to time-major [b, g, l, n] first (one buffer for both), so the n invocations of a channel read
 * consecutive addresses; A, D, b_Δ travel as one [d, n + 2] buffer. tfjs programs have a single output,
 * so each scan shader writes one packed buffer that copy/reduce shaders split into the kernel's outputs. The checkpoint tensor has the CPU kernels' shape
 * [b, d, K, np] but is only meaningful to this backward.
 *
 * Control flow around barriers depends only on uniforms (WGSL uniformity rules); invocations without a
 * channel (partial blocks, padding workgroups) run the loops but neither read out of range nor write.
 *
 * Shape glossary: b batch, d channels (g groups of e), l length, n state size, np = n rounded up to 4,
 * CPW channels per workgroup, nblk = ceil(e / CPW) blocks per group, TT time steps per shared-memory
 * tile, T checkpoint chunk length, K = ceil(l / T) chunks
 * (code names as in common.ts: d = K·E of docs/architecture.md §Glossary; K here counts chunks, not directions).
 */
import * as tf from '@tensorflow/tfjs';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { chunking, paddedState } from './cpu-kernel';
import { registerScanGradient, SCAN_GRAD_KERNEL, SCAN_KERNEL } from './fused-cpu';

/** Time steps per workgroup-memory tile. */
const TILE = 8;

/** The program object tfjs' webgpu backend expects (webgpu_program.ts WebGPUProgram, fields we use). */
interface Program {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  variableNames: string[];
  uniforms?: string;
  size?: boolean;
  getUserCode(): string;
}

type Uniform = { type: 'int32'; data: number[] };

function run(backend: WebGPUBackend, p: Program, inputs: tf.TensorInfo[], uniforms: number[]): tf.TensorInfo {
  const data: Uniform[] = uniforms.map((x) => ({ type: 'int32', data: [x] })); // one scalar per declared field
  return (
    backend as unknown as {
      runWebGPUProgram(p: Program, i: tf.TensorInfo[], dtype: 'float32', u?: Uniform[]): tf.TensorInfo;
    }
  ).runWebGPUProgram(p, inputs, 'float32', data);
}

/** A flat elementwise program: one invocation per output element, `body` sets `result[index]`. */
function flatProgram(
  key: string,
  outputShape: number[],
  variableNames: string[],
  ints: string[],
  body: string,
): Program {
  const size = outputShape.reduce((a, s) => a * s, 1);
  const wg = 64;
  return {
    outputShape,
    shaderKey: `msmscan_${key}`,
    dispatchLayout: { x: outputShape.map((_, i) => i) },
    dispatch: [Math.ceil(size / wg), 1, 1],
    workgroupSize: [wg, 1, 1],
    variableNames,
    uniforms: ints.map((n) => `${n} : i32,`).join(' '),
    size: true,
    getUserCode: () => `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`,
  };
}

/** out[i] = X[off + i]: cuts one tensor out of a packed buffer. */
function copyOut(backend: WebGPUBackend, packed: tf.TensorInfo, off: number, shape: number[]): tf.TensorInfo {
  const p = flatProgram('copy', shape, ['X'], ['off'], 'result[index] = X[uniforms.off + index];');
  return run(backend, p, [packed], [off]);
}

/** out[i] = Σ_r X[off + r·size + i]: sums R per-batch partials (each of the output's size). */
function sumPartials(backend: WebGPUBackend, packed: tf.TensorInfo, off: number, R: number, shape: number[]) {
  const p = flatProgram(
    'sumpartials',
    shape,
    ['X'],
    ['off', 'rr'],
    `var s = 0.0;
     for (var r = 0; r < uniforms.rr; r++) { s += X[uniforms.off + r * uniforms.size + index]; }
     result[index] = s;`,
  );
  return run(backend, p, [packed], [off, R]);
}

/** B, C [rows, n, l] -> one buffer [2, rows, l, n] (time-major B, then C). */
function bcTimeMajor(backend: WebGPUBackend, B: tf.TensorInfo, C: tf.TensorInfo, rows: number, n: number, l: number) {
  const p = flatProgram(
    'bctimemajor',
    [2, rows, l, n],
    ['X', 'Y'],
    ['n', 'l', 'half'],
    `let j = index % uniforms.half;
     let k = j % uniforms.n;
     let t = (j / uniforms.n) % uniforms.l;
     let r = j / (uniforms.n * uniforms.l);
     let src = (r * uniforms.n + k) * uniforms.l + t;
     if (index < uniforms.half) { result[index] = X[src]; } else { result[index] = Y[src]; }`,
  );
  return run(backend, p, [B, C], [n, l, rows * l * n]);
}

/** Per-channel parameters in one buffer [d, n + 2]: A (n values), D, b_Δ. */
function packParams(
  backend: WebGPUBackend,
  A: tf.TensorInfo,
  D: tf.TensorInfo,
  bias: tf.TensorInfo,
  d: number,
  n: number,
) {
  const p = flatProgram(
    'params',
    [d, n + 2],
    ['X', 'Y', 'Z'],
    ['n'],
    `let c = index / (uniforms.n + 2);
     let k = index % (uniforms.n + 2);
     if (k < uniforms.n) { result[index] = X[c * uniforms.n + k]; }
     else if (k == uniforms.n) { result[index] = Y[c]; }
     else { result[index] = Z[c]; }`,
  );
  return run(backend, p, [A, D, bias], [n]);
}

/** ∂B / ∂C: sum the nblk per-block partials [b·g, nblk, l, n] and transpose to [b, g, n, l]. */
function finishBC(backend: WebGPUBackend, packed: tf.TensorInfo, off: number, geo: Geometry) {
  const { nblk, n, l } = geo;
  const p = flatProgram(
    'finishbc',
    [geo.b, geo.g, n, l],
    ['X'],
    ['off', 'nblk', 'n', 'l'],
    `let t = index % uniforms.l;
     let k = (index / uniforms.l) % uniforms.n;
     let r = index / (uniforms.l * uniforms.n);
     var s = 0.0;
     for (var j = 0; j < uniforms.nblk; j++) {
       s += X[uniforms.off + (((r * uniforms.nblk + j) * uniforms.l + t) * uniforms.n + k)];
     }
     result[index] = s;`,
  );
  return run(backend, p, [packed], [off, nblk, n, l]);
}

/** Sizes and the workgroup geometry of one scan. */
function geometry(inputs: Inputs) {
  const [b, d, l] = inputs.u.shape;
  const [, g, n] = inputs.B.shape;
  const e = d / g;
  const cpw = Math.max(1, Math.floor(64 / n)); // channels per workgroup: 64 invocations at n = 16
  const nblk = Math.ceil(e / cpw);
  const { T, K } = chunking(l);
  return { b, d, l, n, g, e, cpw, nblk, T, K, np: paddedState(n), nwg: b * g * nblk };
}
type Geometry = ReturnType<typeof geometry>;

const SCAN_UNIFORMS = ['b', 'd', 'l', 'g', 'e', 'nblk', 'kk', 'nwg'];

/** WGSL shared by both scan shaders: constants, indices of this invocation, softplus. */
function scanPrelude(geo: Geometry): string {
  return `
  const N : i32 = ${geo.n};
  const NP : i32 = ${geo.np};
  const CPW : i32 = ${geo.cpw};
  const TT : i32 = ${TILE};
  const CT : i32 = ${geo.T};
  const WG : i32 = ${geo.cpw * geo.n};

  // softplus with the CUDA kernel's threshold (x above 20 is returned as is)
  fn softplus(x : f32) -> f32 {
    if (x > 20.0) { return x; }
    return max(x, 0.0) + log(1.0 + exp(-abs(x)));
  }

  // per-channel parameters, packed [d, n + 2] = A | D | b_Δ
  fn paramA(c : i32, k : i32) -> f32 { return sP[c * (N + 2) + k]; }
  fn paramD(c : i32) -> f32 { return sP[c * (N + 2) + N]; }
  fn paramBias(c : i32) -> f32 { return sP[c * (N + 2) + N + 1]; }
  // time-major B and C, packed [2, b, g, l, n]
  fn getBt(at : i32) -> f32 { return sBC[at]; }
  fn getCt(at : i32) -> f32 { return sBC[uniforms.b * uniforms.g * uniforms.l * N + at]; }

  struct Who { wg : i32, lid : i32, ch : i32, k : i32, bi : i32, gi : i32, blk : i32, valid : bool, c : i32 };
  fn who() -> Who {
    var w : Who;
    w.wg = i32(workgroupId.x + workgroupId.y * numWorkgroups.x + workgroupId.z * numWorkgroups.x * numWorkgroups.y);
    w.lid = i32(localIndex);
    w.ch = w.lid / N;
    w.k = w.lid % N;
    w.blk = w.wg % uniforms.nblk;
    w.gi = (w.wg / uniforms.nblk) % uniforms.g;
    w.bi = min(w.wg / (uniforms.nblk * uniforms.g), uniforms.b - 1);
    let cl = w.blk * CPW + w.ch;
    w.valid = w.wg < uniforms.nwg && cl < uniforms.e;
    w.c = w.gi * uniforms.e + min(cl, uniforms.e - 1); // clamped: invalid invocations read in range
    return w;
  }`;
}

/** Forward: packed output [y (b·d·l) | checkpoints (b·d·K·np)]. */
function forwardProgram(geo: Geometry): Program {
  const size = geo.b * geo.d * geo.l + geo.b * geo.d * geo.K * geo.np;
  return {
    outputShape: [size],
    shaderKey: `msmscan_fwd_${geo.n}_${geo.cpw}_${geo.T}`,
    dispatchLayout: { x: [0] },
    dispatch: [geo.nwg, 1, 1],
    workgroupSize: [geo.cpw * geo.n, 1, 1],
    variableNames: ['su', 'sdelta', 'sP', 'sBC'],
    uniforms: SCAN_UNIFORMS.map((n) => `${n} : i32,`).join(' '),
    getUserCode: () => `
  ${scanPrelude(geo)}
  var<workgroup> tile : array<f32, ${geo.cpw * TILE * geo.n}>;

  fn main(index : i32) {
    let w = who();
    let a = paramA(w.c, w.k);
    let bias = paramBias(w.c);
    let row = (w.bi * uniforms.d + w.c) * uniforms.l;
    let bc = (w.bi * uniforms.g + w.gi) * uniforms.l * N; // time-major B, C of this group
    let ck = uniforms.b * uniforms.d * uniforms.l + (w.bi * uniforms.d + w.c) * uniforms.kk * NP;
    var h = 0.0;
    if (w.valid) { result[ck + w.k] = 0.0; } // chunk 0 starts from h = 0
    for (var t0 = 0; t0 < uniforms.l; t0 += TT) {
      for (var tt = 0; tt < TT; tt++) {
        let t = t0 + tt;
        var contrib = 0.0;
        if (w.valid && t < uniforms.l) {
          let dt = softplus(sdelta[row + t] + bias);
          h = exp(dt * a) * h + dt * su[row + t] * getBt(bc + t * N + w.k); // h_t = Ā h_{t−1} + B̄u
          contrib = h * getCt(bc + t * N + w.k);
          if ((t + 1) % CT == 0 && t + 1 < uniforms.l) { result[ck + ((t + 1) / CT) * NP + w.k] = h; }
        }
        tile[(w.ch * TT + tt) * N + w.k] = contrib;
      }
      workgroupBarrier();
      // y_t = Σ_n h C + D u for the tile's (channel, step) pairs
      for (var r = w.lid; r < CPW * TT; r += WG) {
        let rch = r / TT;
        let rtt = r % TT;
        let t = t0 + rtt;
        let rcl = w.blk * CPW + rch;
        if (w.wg < uniforms.nwg && rcl < uniforms.e && t < uniforms.l) {
          var s = 0.0;
          for (var kk = 0; kk < N; kk++) { s += tile[(rch * TT + rtt) * N + kk]; }
          let rc = w.gi * uniforms.e + rcl;
          let rrow = (w.bi * uniforms.d + rc) * uniforms.l;
          result[rrow + t] = s + paramD(rc) * su[rrow + t];
        }
      }
      workgroupBarrier();
    }
  }`,
  };
}

/** Offsets (in floats) of the backward's packed output. */
function backwardLayout(geo: Geometry) {
  const bdl = geo.b * geo.d * geo.l;
  const bc = geo.b * geo.g * geo.nblk * geo.l * geo.n;
  const du = 0;
  const ddelta = bdl;
  const dA = 2 * bdl;
  const dD = dA + geo.b * geo.d * geo.n;
  const db = dD + geo.b * geo.d;
  const dB = db + geo.b * geo.d;
  const dC = dB + bc;
  return { du, ddelta, dA, dD, db, dB, dC, size: dC + bc };
}

/** Backward: packed [∂u | ∂δ | ∂A per batch | ∂D per batch | ∂b_Δ per batch | ∂B per block | ∂C per block]. */
function backwardProgram(geo: Geometry): Program {
  const L = backwardLayout(geo);
  const tileSize = geo.cpw * TILE * geo.n;
  return {
    outputShape: [L.size],
    shaderKey: `msmscan_bwd_${geo.n}_${geo.cpw}_${geo.T}`,
    dispatchLayout: { x: [0] },
    dispatch: [geo.nwg, 1, 1],
    workgroupSize: [geo.cpw * geo.n, 1, 1],
    variableNames: ['su', 'sdelta', 'sP', 'sBC', 'shsdy'],
    uniforms: [...SCAN_UNIFORMS, 'offdd', 'offda', 'offdd2', 'offdb', 'offbb', 'offcc']
      .map((n) => `${n} : i32,`)
      .join(' '),
    getUserCode: () => `
  ${scanPrelude(geo)}
  var<workgroup> pGB : array<f32, ${tileSize}>;
  var<workgroup> pDA : array<f32, ${tileSize}>;
  var<workgroup> pB : array<f32, ${tileSize}>;
  var<workgroup> pC : array<f32, ${tileSize}>;

  fn main(index : i32) {
    let w = who();
    let a = paramA(w.c, w.k);
    let bias = paramBias(w.c);
    let row = (w.bi * uniforms.d + w.c) * uniforms.l;
    let bc = (w.bi * uniforms.g + w.gi) * uniforms.l * N;
    let ck = (w.bi * uniforms.d + w.c) * uniforms.kk * NP;
    var Hp : array<f32, ${geo.T + 1}>; // h_{t0+i−1}, Hp[0] = checkpoint
    var DAp : array<f32, ${geo.T}>; // Ā_{t0+i}
    var carry = 0.0; // Ā_{t+1} G_{t+1}
    var dAacc = 0.0;
    for (var kc = uniforms.kk - 1; kc >= 0; kc--) {
      let t0 = kc * CT;
      let len = min(CT, uniforms.l - t0);
      var h = 0.0;
      if (w.valid) { h = shsdy[ck + kc * NP + w.k]; }
      Hp[0] = h;
      for (var i = 0; i < len; i++) {
        if (w.valid) {
          let t = t0 + i;
          let dt = softplus(sdelta[row + t] + bias);
          let dA = exp(dt * a);
          DAp[i] = dA;
          h = dA * h + dt * su[row + t] * getBt(bc + t * N + w.k);
          Hp[i + 1] = h;
        }
      }
      for (var j = 0; j < (CT + TT - 1) / TT; j++) {
        let iHi = len - j * TT; // the tile covers steps iHi−1 down to iHi−TT of the chunk
        for (var tt = 0; tt < TT; tt++) {
          let i = iHi - 1 - tt;
          var q1 = 0.0;
          var q2 = 0.0;
          var q3 = 0.0;
          var q4 = 0.0;
          if (w.valid && i >= 0) {
            let t = t0 + i;
            let gt = shsdy[uniforms.offdd2 + row + t];
            let dt = softplus(sdelta[row + t] + bias);
            let G = gt * getCt(bc + t * N + w.k) + carry; // G_t = g C_t + Ā_{t+1} G_{t+1}
            let s = G * DAp[i] * Hp[i]; // G Ā h_{t−1}
            q1 = G * getBt(bc + t * N + w.k);
            q2 = s * a;
            q3 = G * dt * su[row + t];
            q4 = gt * Hp[i + 1];
            dAacc += s * dt;
            carry = G * DAp[i];
          }
          let at = (w.ch * TT + tt) * N + w.k;
          pGB[at] = q1;
          pDA[at] = q2;
          pB[at] = q3;
          pC[at] = q4;
        }
        workgroupBarrier();
        // ∂u, ∂δ per (channel, step): sums over the state
        for (var r = w.lid; r < CPW * TT; r += WG) {
          let rch = r / TT;
          let rtt = r % TT;
          let i = iHi - 1 - rtt;
          let rcl = w.blk * CPW + rch;
          if (w.wg < uniforms.nwg && rcl < uniforms.e && i >= 0) {
            var sGB = 0.0;
            var sDA = 0.0;
            for (var kk = 0; kk < N; kk++) {
              sGB += pGB[(rch * TT + rtt) * N + kk];
              sDA += pDA[(rch * TT + rtt) * N + kk];
            }
            let rc = w.gi * uniforms.e + rcl;
            let rrow = (w.bi * uniforms.d + rc) * uniforms.l;
            let t = t0 + i;
            let x = sdelta[rrow + t] + paramBias(rc);
            let sig = select(1.0 / (1.0 + exp(-x)), 1.0, x > 20.0);
            result[rrow + t] = softplus(x) * sGB + shsdy[uniforms.offdd2 + rrow + t] * paramD(rc);
            result[uniforms.offdd + rrow + t] = (sGB * su[rrow + t] + sDA) * sig;
          }
        }
        // ∂B, ∂C per (step, state): sums over the workgroup's channels (one partial per block)
        for (var r = w.lid; r < TT * N; r += WG) {
          let rtt = r / N;
          let rk = r % N;
          let i = iHi - 1 - rtt;
          if (w.wg < uniforms.nwg && i >= 0) {
            var sB = 0.0;
            var sC = 0.0;
            for (var ch = 0; ch < CPW; ch++) {
              sB += pB[(ch * TT + rtt) * N + rk];
              sC += pC[(ch * TT + rtt) * N + rk];
            }
            let at = (((w.bi * uniforms.g + w.gi) * uniforms.nblk + w.blk) * uniforms.l + t0 + i) * N + rk;
            result[uniforms.offbb + at] = sB;
            result[uniforms.offcc + at] = sC;
          }
        }
        workgroupBarrier();
      }
    }
    if (w.valid) { result[uniforms.offda + (w.bi * uniforms.d + w.c) * N + w.k] = dAacc; }
    // ∂D and ∂b_Δ partials per (batch, channel): Σ_t g u and Σ_t ∂δ (∂δ was written by this workgroup)
    storageBarrier();
    if (w.valid && w.k == 0) {
      var sd = 0.0;
      var sb = 0.0;
      for (var t = 0; t < uniforms.l; t++) {
        sd += shsdy[uniforms.offdd2 + row + t] * su[row + t];
        sb += result[uniforms.offdd + row + t];
      }
      result[uniforms.offda + uniforms.b * uniforms.d * N + w.bi * uniforms.d + w.c] = sd;
      result[uniforms.offda + uniforms.b * uniforms.d * (N + 1) + w.bi * uniforms.d + w.c] = sb;
    }
  }`,
  };
}

/** Kernel inputs by name (all present: the callers always pass every input). */
type Inputs = Record<string, tf.TensorInfo>;
type KernelArgs = { inputs: Inputs; backend: tf.KernelBackend };

function forwardKernel({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const be = backend as unknown as WebGPUBackend;
  const geo = geometry(inputs);
  const BC = bcTimeMajor(be, inputs.B, inputs.C, geo.b * geo.g, geo.n, geo.l);
  const P = packParams(be, inputs.A, inputs.D, inputs.deltaBias, geo.d, geo.n);
  const packed = run(
    be,
    forwardProgram(geo),
    [inputs.u, inputs.delta, P, BC],
    [geo.b, geo.d, geo.l, geo.g, geo.e, geo.nblk, geo.K, geo.nwg],
  );
  const y = copyOut(be, packed, 0, [geo.b, geo.d, geo.l]);
  const hs = copyOut(be, packed, geo.b * geo.d * geo.l, [geo.b, geo.d, geo.K, geo.np]);
  for (const t of [BC, P, packed]) be.disposeData(t.dataId);
  return [y, hs];
}

function backwardKernel({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const be = backend as unknown as WebGPUBackend;
  const geo = geometry(inputs);
  const L = backwardLayout(geo);
  // Few, packed inputs: shaders may bind only 8 storage buffers (4 in WebGPU's compatibility mode).
  const BC = bcTimeMajor(be, inputs.B, inputs.C, geo.b * geo.g, geo.n, geo.l);
  const P = packParams(be, inputs.A, inputs.D, inputs.deltaBias, geo.d, geo.n);
  const hsdy = concatFlat(be, inputs.hs, inputs.dy); // [checkpoints | ∂y]
  const packed = run(
    be,
    backwardProgram(geo),
    [inputs.u, inputs.delta, P, BC, hsdy],
    [geo.b, geo.d, geo.l, geo.g, geo.e, geo.nblk, geo.K, geo.nwg, L.ddelta, L.dA, sizeOf(inputs.hs), L.db, L.dB, L.dC],
  );
  const outs = [
    copyOut(be, packed, L.du, [geo.b, geo.d, geo.l]),
    copyOut(be, packed, L.ddelta, [geo.b, geo.d, geo.l]),
    sumPartials(be, packed, L.dA, geo.b, [geo.d, geo.n]),
    finishBC(be, packed, L.dB, geo),
    finishBC(be, packed, L.dC, geo),
    sumPartials(be, packed, L.dD, geo.b, [geo.d]),
    sumPartials(be, packed, L.db, geo.b, [geo.d]),
  ];
  for (const t of [BC, P, hsdy, packed]) be.disposeData(t.dataId);
  return outs;
}

function sizeOf(t: tf.TensorInfo): number {
  return t.shape.reduce((a, s) => a * s, 1);
}

/** [x | y] as one flat buffer. */
function concatFlat(backend: WebGPUBackend, x: tf.TensorInfo, y: tf.TensorInfo): tf.TensorInfo {
  const nx = sizeOf(x);
  const p = flatProgram(
    'concat2',
    [nx + sizeOf(y)],
    ['X', 'Y'],
    ['nx'],
    'if (index < uniforms.nx) { result[index] = X[index]; } else { result[index] = Y[index - uniforms.nx]; }',
  );
  return run(backend, p, [x, y], [nx]);
}

let registered = false;

/** Registers the WGSL kernels for 'webgpu' (idempotent; needs no GPU until they run). */
export function registerWebGPUScanKernels(): void {
  if (registered) return;
  registered = true;
  registerScanGradient();
  tf.registerKernel({
    kernelName: SCAN_KERNEL,
    backendName: 'webgpu',
    kernelFunc: forwardKernel as unknown as tf.KernelFunc,
  });
  tf.registerKernel({
    kernelName: SCAN_GRAD_KERNEL,
    backendName: 'webgpu',
    kernelFunc: backwardKernel as unknown as tf.KernelFunc,
  });
}
