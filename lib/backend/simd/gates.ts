/**
 * The heap kernels behind MIFA's fused cross gate (../gates.ts has the formulas and the tf-op reference).
 * Inputs are row-major [rows, c] (rows = b·h·w); the output is [rows, 2c] in channel-shuffled order
 * (groups G = c/2 of 4 channels: concat channel 4·gi + j lands at output channel j·G + gi). Four groups
 * at a time are four vectors q_0..q_3 (concat channels 16·gb … 16·gb + 15); their 4×4 transpose is four
 * vectors that are contiguous in the output (channels j·G + 4·gb …), so the shuffle costs 8 shuffles per
 * 16 floats and no extra pass. Needs c % 8 = 0 (the op checks). Each vector lies wholly in the local half
 * (concat channels [0, c): σ(ReLU(W l)) ⊙ g) or the global half ([c, 2c): σ(GELU(W g)) ⊙ l).
 * ReLU is max(x, floor) with floor 0, or −∞ for the plain local gate (quirk Q5's fix). Assembled by ../heap.ts.
 */
import {
  emitTranspose4,
  Expr,
  Fn,
  get,
  i32,
  i32add,
  i32divU,
  i32lt,
  i32mul,
  i32sub,
  Local,
  ValType,
  vadd,
  vconst,
  vgt,
  vload,
  vmax,
  vmul,
  vselect,
  vsplat,
  vzero,
} from '../../util/wasm-asm';
import { at } from './address';
import { emitErf, emitSigmoid, sigmoidSlope, vecMath, VecMath } from './math';

/** Shared state of a row/block walk: the loop locals and the 4-vector groups. */
interface Walk {
  r: Local;
  gb: Local;
  rowIn: Local; // r·c
  rowOut: Local; // r·2c
  half: Local; // G = c/2
  q: Local[];
  o: Local[];
  tmp: Local[];
}

/** For each row and each block of 4 groups: body(walk, ch), ch(k) the concat channel of vector k's first lane. */
function walk(f: Fn, rows: Local, c: Local, body: (w: Walk, ch: (k: number) => Expr) => void): void {
  const w: Walk = {
    r: f.local('i32'),
    gb: f.local('i32'),
    rowIn: f.local('i32'),
    rowOut: f.local('i32'),
    half: f.local('i32'),
    q: [0, 1, 2, 3].map(() => f.local('v128')),
    o: [0, 1, 2, 3].map(() => f.local('v128')),
    tmp: [0, 1, 2, 3].map(() => f.local('v128')),
  };
  f.set(w.half, i32divU(get(c), i32(2)));
  f.forUp(w.r, i32(0), get(rows), () => {
    f.set(w.rowIn, i32mul(get(w.r), get(c)));
    f.set(w.rowOut, i32add(get(w.rowIn), get(w.rowIn)));
    // gb = the first of 4 groups (steps of 4 up to G); vector k holds concat channels 4·(gb + k) …
    f.forUp(w.gb, i32(0), get(w.half), () => body(w, (k) => i32add(i32mul(get(w.gb), i32(4)), i32(4 * k))), 4);
  });
}

/** The local gate: s = σ(max(x, floor)). */
function localGate(f: Fn, m: VecMath, s: Local, x: Expr, floor: Local): void {
  emitSigmoid(f, m, s, vmax(x, get(floor)));
}

/** s = σ(GELU(x)) with GELU(x) = (x·½)·(erf(x·√½) + 1); leaves erf in `erf` and e^{−x²/2} in `gauss`. */
function globalGate(f: Fn, m: VecMath, s: Local, x: Local, erf: Local, gauss: Local): void {
  emitErf(f, m, erf, vmul(get(x), vconst(Math.SQRT1_2)), gauss);
  emitSigmoid(f, m, s, vmul(vmul(get(x), get(m.half)), vadd(get(erf), get(m.one))));
}

/**
 * crossgate(wl, wg, l, g, out, rows, c, floor): out = shuffle(concat(σ(max(wl, floor)) ⊙ g, σ(GELU(wg)) ⊙ l)).
 */
export function buildCrossGate(): Fn {
  const f = new Fn('crossgate', [...Array<ValType>(7).fill('i32'), 'f32']);
  const [wl, wg, l, g, out, rows, c, floorScalar] = f.params;
  const m = vecMath(f);
  const floor = f.local('v128');
  const [x, s, erf, gauss] = [0, 1, 2, 3].map(() => f.local('v128'));
  f.set(floor, vsplat(get(floorScalar)));
  walk(f, rows, c, (w, group) => {
    for (let k = 0; k < 4; k++) {
      const ch = group(k); // concat channel of vector k's first lane
      f.if(
        i32lt(ch, get(c)),
        () => {
          const el = (arr: Local) => at(arr, i32add(get(w.rowIn), ch));
          localGate(f, m, s, vload(el(wl)), floor);
          f.set(w.q[k], vmul(get(s), vload(el(g))));
        },
        () => {
          const el = (arr: Local) => at(arr, i32add(get(w.rowIn), i32sub(ch, get(c))));
          f.set(x, vload(el(wg)));
          globalGate(f, m, s, x, erf, gauss);
          f.set(w.q[k], vmul(get(s), vload(el(l))));
        },
      );
    }
    emitTranspose4(f, w.q, w.o, w.tmp);
    for (let j = 0; j < 4; j++) {
      // o_j = output channels j·G + gb … gb + 3
      f.storeV128(at(out, i32add(get(w.rowOut), i32add(i32mul(get(w.half), i32(j)), get(w.gb)))), 0, get(w.o[j]));
    }
  });
  return f;
}

/**
 * crossgategrad(dy, wl, wg, l, g, dwl, dwg, dl, dg, rows, c, floor): the gradients of crossgate given dy
 * [rows, 2c] in shuffled order (un-shuffled by the same transpose):
 *   local half  (p = ∂concat):  dg = p·s_l,  dwl = p·g·s_l·(1 − s_l)·[wl > floor]
 *   global half:                dl = p·s_g,  dwg = p·l·s_g·(1 − s_g)·(½(erf(u) + 1) + x·e^{−u²}/√(2π)),  u = x·√½
 */
export function buildCrossGateGrad(): Fn {
  const f = new Fn('crossgategrad', [...Array<ValType>(11).fill('i32'), 'f32']);
  const [dy, wl, wg, l, g, dwl, dwg, dl, dg, rows, c, floorScalar] = f.params;
  const m = vecMath(f);
  const floor = f.local('v128');
  const [x, s, erf, gauss] = [0, 1, 2, 3].map(() => f.local('v128'));
  f.set(floor, vsplat(get(floorScalar)));
  walk(f, rows, c, (w, group) => {
    for (let j = 0; j < 4; j++) {
      f.set(w.o[j], vload(at(dy, i32add(get(w.rowOut), i32add(i32mul(get(w.half), i32(j)), get(w.gb))))));
    }
    emitTranspose4(f, w.o, w.q, w.tmp); // q_k = ∂ of concat channels 4·(gb + k) …
    for (let k = 0; k < 4; k++) {
      const ch = group(k);
      f.if(
        i32lt(ch, get(c)),
        () => {
          const el = (arr: Local) => at(arr, i32add(get(w.rowIn), ch));
          f.set(x, vload(el(wl)));
          localGate(f, m, s, get(x), floor);
          f.storeV128(el(dg), 0, vmul(get(w.q[k]), get(s)));
          const slope = vmul(vmul(get(w.q[k]), vload(el(g))), sigmoidSlope(m, get(s)));
          f.storeV128(el(dwl), 0, vselect(slope, vzero, vgt(get(x), get(floor))));
        },
        () => {
          const el = (arr: Local) => at(arr, i32add(get(w.rowIn), i32sub(ch, get(c))));
          f.set(x, vload(el(wg)));
          globalGate(f, m, s, x, erf, gauss);
          f.storeV128(el(dl), 0, vmul(get(w.q[k]), get(s)));
          const geluSlope = vadd(
            vmul(get(m.half), vadd(get(erf), get(m.one))),
            vmul(get(x), vmul(get(gauss), vconst(1 / Math.sqrt(2 * Math.PI)))),
          );
          const slope = vmul(vmul(vmul(get(w.q[k]), vload(el(l))), sigmoidSlope(m, get(s))), geluSlope);
          f.storeV128(el(dwg), 0, slope);
        },
      );
    }
  });
  return f;
}
