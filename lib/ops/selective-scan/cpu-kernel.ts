/**
 * The fused selective scan on plain Float32Arrays: forward and backward in one pass each, no tensors.
 * This is the readable version of the algorithm; `wasm-simd.ts` runs the same steps with 4-wide SIMD
 * and is what the wasm and cpu backends use when WebAssembly SIMD is available (tests check both).
 *
 * Math (docs/architecture.md §Selective scan, mamba_ssm selective_scan_ref; the CUDA kernels
 * selective_scan_fwd/bwd_kernel.cuh do the same per channel): per batch row and channel c, sequentially over t,
 *   Δ_t = softplus(δ_t + b_Δ[c]),  h_t = exp(Δ_t A_c) ⊙ h_{t−1} + Δ_t u_t B_t,  y_t = ⟨h_t, C_t⟩ + D_c u_t.
 * Backward (reverse time), with G_t = ∂L/∂h_t = g_t C_t + exp(Δ_{t+1} A_c) ⊙ G_{t+1}, g = ∂L/∂y:
 *   ∂C_t += g_t h_t                 ∂B_t += G_t Δ_t u_t           (summed over the channels of a group)
 *   ∂u_t  = Δ_t ⟨G_t, B_t⟩ + g_t D_c
 *   ∂Δ_t  = ⟨G_t, B_t⟩ u_t + Σ_n G_t ⊙ A_c ⊙ exp(Δ_t A_c) ⊙ h_{t−1}
 *   ∂A_c += Σ_t G_t ⊙ Δ_t exp(Δ_t A_c) ⊙ h_{t−1}
 *   ∂δ_t  = ∂Δ_t · sigmoid(δ_t + b_Δ) (1 above the softplus threshold),  ∂b_Δ = Σ ∂δ,  ∂D_c = Σ g u.
 *
 * Memory: the backward never holds h for the whole sequence. The forward writes the state at the start
 * of every chunk of T steps (the "checkpoints", [b, d, K, np]); the backward walks the chunks from last
 * to first, recomputes h and exp(ΔA) inside one chunk ((T+1)·n floats) and runs the reverse recurrence
 * over it. This is the CUDA kernel's strategy (it keeps chunk-boundary states and recomputes).
 *
 * Layouts: u, δ, y, ∂u, ∂δ, ∂y are [b, d, l] (time contiguous per channel). B and C are read as
 * [b, g, l, n] (state contiguous per time step), so they and ∂B, ∂C are transposed on the way in/out.
 * Checkpoints use np = n rounded up to a multiple of 4 so that the SIMD engine can share them.
 *
 * Shape glossary: b batch, d channels (g groups of e), l length, n state size, np padded n, T chunk
 * length, K = ceil(l / T) chunks (code names as in common.ts: d = K·E of docs/architecture.md §Glossary;
 * K here counts chunks, not directions).
 */

/** Steps per checkpoint chunk: the backward's working set is (2T+1)·np floats (8 KB at n = 16). */
export const CHECKPOINT_CHUNK = 64;

export interface ScanSizes {
  b: number;
  d: number;
  l: number;
  n: number;
  g: number;
}

/** Sizes of SS2D's whole cross-scan forward (wasm-simd.ts `crossForward`): b rows of h × w maps of e channels, dt rank r, state size n. */
export interface CrossSizes {
  b: number;
  h: number;
  w: number;
  e: number;
  r: number;
  n: number;
}

/** Inputs of SS2D's whole cross-scan forward: x [b, h, w, e], xdbl [b, h, w, 4·(r+2n)], A [4e, n], W [4, e, r], D, bias [4e]. */
export interface CrossArrays {
  x: Float32Array;
  xdbl: Float32Array;
  A: Float32Array;
  W: Float32Array;
  D: Float32Array;
  bias: Float32Array;
}

/** State size padded to whole 4-lane vectors. */
export function paddedState(n: number): number {
  return (n + 3) & ~3;
}

/** Chunk length T and count K of the checkpoints for length l. */
export function chunking(l: number): { T: number; K: number } {
  const T = Math.max(1, Math.min(CHECKPOINT_CHUNK, l));
  return { T, K: Math.ceil(l / T) };
}

/** Shape of the checkpoint tensor the forward kernel returns next to y. */
export function checkpointShape(s: ScanSizes): [number, number, number, number] {
  return [s.b, s.d, chunking(s.l).K, paddedState(s.n)];
}

/** Inputs of one scan as flat arrays in the layouts of `ScanArgs` (B, C as [b, g, n, l]). */
export interface ScanArrays {
  u: Float32Array;
  delta: Float32Array;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  D: Float32Array;
  bias: Float32Array;
}

/** Outputs of the backward kernel (∂B, ∂C as [b, g, n, l]). */
export interface ScanGradArrays {
  du: Float32Array;
  ddelta: Float32Array;
  dA: Float32Array;
  dB: Float32Array;
  dC: Float32Array;
  dD: Float32Array;
  dbias: Float32Array;
}

/** softplus with the CUDA kernel's threshold: x above 20 is returned as is. */
function softplus(x: number): number {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** d softplus / dx: sigmoid, and exactly 1 above the threshold. */
function softplusGrad(x: number): number {
  return x > 20 ? 1 : 1 / (1 + Math.exp(-x));
}

/** [rows, n, l] -> [rows, l, n] (B and C to time-major). */
export function toTimeMajor(x: Float32Array, rows: number, n: number, l: number): Float32Array {
  const out = new Float32Array(rows * l * n);
  for (let r = 0; r < rows; r++) {
    const base = r * n * l;
    for (let k = 0; k < n; k++) {
      const src = base + k * l;
      for (let t = 0; t < l; t++) out[base + t * n + k] = x[src + t];
    }
  }
  return out;
}

/** [rows, l, n] -> [rows, n, l] into `out` (∂B and ∂C back to the caller's layout). */
export function fromTimeMajor(x: Float32Array, rows: number, n: number, l: number, out: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const base = r * n * l;
    for (let k = 0; k < n; k++) {
      const dst = base + k * l;
      for (let t = 0; t < l; t++) out[dst + t] = x[base + t * n + k];
    }
  }
}

/** Forward: writes y [b, d, l] and the chunk-start states hs [b, d, K, np] (module doc). */
export function scanForwardJS(s: ScanSizes, x: ScanArrays, y: Float32Array, hs: Float32Array): void {
  const { b, d, l, n, g } = s;
  const e = d / g;
  const np = paddedState(n);
  const { T, K } = chunking(l);
  const BT = toTimeMajor(x.B, b * g, n, l); // [b, g, l, n]
  const CT = toTimeMajor(x.C, b * g, n, l); // [b, g, l, n]
  const h = new Float64Array(n);
  hs.fill(0);
  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < d; c++) {
      const row = (bi * d + c) * l; // start of u, δ, y for this channel
      const bc = (bi * g + Math.floor(c / e)) * l * n; // start of this group's B, C
      const ck = (bi * d + c) * K * np; // this channel's checkpoints
      const aOff = c * n;
      const Dc = x.D[c];
      const bias = x.bias[c];
      h.fill(0);
      for (let t = 0; t < l; t++) {
        const dt = softplus(x.delta[row + t] + bias); // Δ_t
        const ut = x.u[row + t];
        const dtu = dt * ut;
        const bt = bc + t * n;
        let yt = 0;
        for (let k = 0; k < n; k++) {
          h[k] = Math.exp(dt * x.A[aOff + k]) * h[k] + dtu * BT[bt + k]; // h_t = Ā ⊙ h_{t−1} + B̄u
          yt += h[k] * CT[bt + k];
        }
        y[row + t] = yt + Dc * ut;
        if ((t + 1) % T === 0 && t + 1 < l) {
          const at = ck + ((t + 1) / T) * np; // state entering chunk (t+1)/T
          for (let k = 0; k < n; k++) hs[at + k] = h[k];
        }
      }
    }
  }
}

/** Backward: all seven gradients from ∂y, recomputing h chunk by chunk from the checkpoints. */
export function scanBackwardJS(
  s: ScanSizes,
  x: ScanArrays,
  hs: Float32Array,
  dy: Float32Array,
  out: ScanGradArrays,
): void {
  const { b, d, l, n, g } = s;
  const e = d / g;
  const np = paddedState(n);
  const { T, K } = chunking(l);
  const BT = toTimeMajor(x.B, b * g, n, l); // [b, g, l, n]
  const CT = toTimeMajor(x.C, b * g, n, l); // [b, g, l, n]
  const dBT = new Float32Array(BT.length); // ∂B, [b, g, l, n]
  const dCT = new Float32Array(CT.length); // ∂C, [b, g, l, n]
  const dA = new Float64Array(d * n);
  const dD = new Float64Array(d);
  const dbias = new Float64Array(d);
  // Per-chunk working set: H[i] = h_{t0+i−1} (H[0] = checkpoint), Ā_t, Δ_t and softplus' for the chunk.
  const H = new Float64Array((T + 1) * n);
  const dAbar = new Float64Array(T * n);
  const dts = new Float64Array(T);
  const sig = new Float64Array(T);
  const carry = new Float64Array(n); // Ā_{t+1} ⊙ G_{t+1}

  for (let bi = 0; bi < b; bi++) {
    for (let c = 0; c < d; c++) {
      const row = (bi * d + c) * l;
      const bc = (bi * g + Math.floor(c / e)) * l * n;
      const ck = (bi * d + c) * K * np;
      const aOff = c * n;
      const Dc = x.D[c];
      const bias = x.bias[c];
      carry.fill(0);
      for (let kc = K - 1; kc >= 0; kc--) {
        const t0 = kc * T;
        const len = Math.min(l, t0 + T) - t0;
        // Recompute the chunk's states from its checkpoint.
        for (let k = 0; k < n; k++) H[k] = hs[ck + kc * np + k];
        for (let i = 0; i < len; i++) {
          const t = t0 + i;
          const xin = x.delta[row + t] + bias;
          const dt = softplus(xin);
          dts[i] = dt;
          sig[i] = softplusGrad(xin);
          const dtu = dt * x.u[row + t];
          const bt = bc + t * n;
          for (let k = 0; k < n; k++) {
            const a = Math.exp(dt * x.A[aOff + k]);
            dAbar[i * n + k] = a;
            H[(i + 1) * n + k] = a * H[i * n + k] + dtu * BT[bt + k];
          }
        }
        // Reverse recurrence over the chunk.
        for (let i = len - 1; i >= 0; i--) {
          const t = t0 + i;
          const gt = dy[row + t];
          const dt = dts[i];
          const ut = x.u[row + t];
          const bt = bc + t * n;
          let sumGB = 0; // ⟨G_t, B_t⟩
          let sumDA = 0; // Σ_n G ⊙ A ⊙ Ā ⊙ h_{t−1}
          for (let k = 0; k < n; k++) {
            const G = gt * CT[bt + k] + carry[k];
            const Bk = BT[bt + k];
            dCT[bt + k] += gt * H[(i + 1) * n + k];
            dBT[bt + k] += G * dt * ut;
            const sk = G * dAbar[i * n + k] * H[i * n + k];
            dA[aOff + k] += sk * dt;
            sumDA += sk * x.A[aOff + k];
            sumGB += G * Bk;
            carry[k] = G * dAbar[i * n + k];
          }
          out.du[row + t] = dt * sumGB + gt * Dc;
          const dd = (sumGB * ut + sumDA) * sig[i];
          out.ddelta[row + t] = dd;
          dbias[c] += dd;
          dD[c] += gt * ut;
        }
      }
    }
  }
  fromTimeMajor(dBT, b * g, n, l, out.dB);
  fromTimeMajor(dCT, b * g, n, l, out.dC);
  for (let i = 0; i < d * n; i++) out.dA[i] = dA[i];
  for (let c = 0; c < d; c++) {
    out.dD[c] = dD[c];
    out.dbias[c] = dbias[c];
  }
}
