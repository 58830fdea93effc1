/**
 * A very small WebAssembly assembler: just enough to write the kit's SIMD kernels (the selective scan in
 * lib/ops/selective-scan/wasm-simd.ts, the reductions and the Adam update in lib/backend/simd/*.ts)
 * in TypeScript, so the kit needs no C compiler or wasm toolchain. It emits the binary format directly
 * (spec: https://webassembly.github.io/spec/core/binary/) for modules with one imported memory and
 * a few exported functions over i32, f32, f64 and v128 values.
 *
 * Code is built from expressions, `Expr = (f: Fn) => void`, each of which emits instructions that push
 * exactly one value; statements (`f.set`, `f.store*`, loops) consume them. Example:
 *   f.set(h, vadd(vmul(get(dA), get(h)), vmul(get(dBu), vload(get(pB), 16))));   // h = Ā·h + B̄u·B
 */

export type ValType = 'i32' | 'f32' | 'f64' | 'v128';
const TYPE_CODE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

export interface Local {
  index: number;
  type: ValType;
}
export type Expr = (f: Fn) => void;

function uleb(n: number, out: number[]): void {
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

function sleb(n: number, out: number[]): void {
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** One function body under construction. */
export class Fn {
  readonly code: number[] = [];
  readonly params: Local[];
  private readonly extra: ValType[] = [];

  constructor(
    readonly name: string,
    paramTypes: ValType[],
  ) {
    this.params = paramTypes.map((type, index) => ({ index, type }));
  }

  /** A fresh local variable. */
  local(type: ValType): Local {
    this.extra.push(type);
    return { index: this.params.length + this.extra.length - 1, type };
  }

  op(...bytes: number[]): void {
    this.code.push(...bytes);
  }
  /** A SIMD instruction: 0xfd prefix, LEB128 opcode, then immediates. */
  simd(opcode: number, ...imm: number[]): void {
    this.code.push(0xfd);
    uleb(opcode, this.code);
    this.code.push(...imm);
  }
  /** memarg: alignment (log2 bytes) and byte offset. */
  memarg(alignLog2: number, offset: number): void {
    uleb(alignLog2, this.code);
    uleb(offset, this.code);
  }

  set(l: Local, e: Expr): void {
    e(this);
    this.op(0x21);
    uleb(l.index, this.code);
  }
  storeF32(addr: Expr, offset: number, value: Expr): void {
    addr(this);
    value(this);
    this.op(0x38);
    this.memarg(2, offset);
  }
  storeI32(addr: Expr, offset: number, value: Expr): void {
    addr(this);
    value(this);
    this.op(0x36);
    this.memarg(2, offset);
  }
  storeF64(addr: Expr, offset: number, value: Expr): void {
    addr(this);
    value(this);
    this.op(0x39);
    this.memarg(3, offset);
  }
  storeV128(addr: Expr, offset: number, value: Expr): void {
    addr(this);
    value(this);
    this.simd(0x0b);
    this.memarg(4, offset);
  }

  /** for (i = from; i < to; i += step) body — `to` is re-evaluated each iteration. */
  forUp(i: Local, from: Expr, to: Expr, body: () => void, step = 1): void {
    this.set(i, from);
    this.op(0x02, 0x40); // block
    this.op(0x03, 0x40); // loop
    i32ge(get(i), to)(this);
    this.op(0x0d, 1); // br_if 1: leave the block
    body();
    this.set(i, i32add(get(i), i32(step)));
    this.op(0x0c, 0); // br 0: next iteration
    this.op(0x0b, 0x0b); // end loop, end block
  }
  /** for (i = from; i >= downTo; i--) body. */
  forDown(i: Local, from: Expr, downTo: Expr, body: () => void): void {
    this.set(i, from);
    this.op(0x02, 0x40);
    this.op(0x03, 0x40);
    i32lt(get(i), downTo)(this);
    this.op(0x0d, 1);
    body();
    this.set(i, i32sub(get(i), i32(1)));
    this.op(0x0c, 0);
    this.op(0x0b, 0x0b);
  }
  if(cond: Expr, then: () => void, otherwise?: () => void): void {
    cond(this);
    this.op(0x04, 0x40);
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    this.op(0x0b);
  }

  /** Body bytes: locals declaration (one entry per local, simple over compact) + code + end. */
  encodeBody(): number[] {
    const out: number[] = [];
    uleb(this.extra.length, out);
    for (const t of this.extra) out.push(1, TYPE_CODE[t]);
    out.push(...this.code, 0x0b);
    const sized: number[] = [];
    uleb(out.length, sized);
    return sized.concat(out);
  }
  typeBytes(): number[] {
    const out = [0x60];
    uleb(this.params.length, out);
    for (const p of this.params) out.push(TYPE_CODE[p.type]);
    out.push(0);
    return out;
  }
}

// ---- expressions -------------------------------------------------------------------------------

export const get =
  (l: Local): Expr =>
  (f) => {
    f.op(0x20);
    uleb(l.index, f.code);
  };
export const i32 =
  (n: number): Expr =>
  (f) => {
    f.op(0x41);
    sleb(n | 0, f.code);
  };
export const f32 =
  (x: number): Expr =>
  (f) => {
    const b = new Uint8Array(new Float32Array([x]).buffer);
    f.op(0x43, ...b);
  };
export const f64 =
  (x: number): Expr =>
  (f) => {
    const b = new Uint8Array(new Float64Array([x]).buffer);
    f.op(0x44, ...b);
  };

const binop =
  (code: number) =>
  (a: Expr, b: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    f.op(code);
  };
const unop =
  (code: number) =>
  (a: Expr): Expr =>
  (f) => {
    a(f);
    f.op(code);
  };
export const i32add = binop(0x6a);
export const i32sub = binop(0x6b);
export const i32mul = binop(0x6c);
export const i32divU = binop(0x6e);
export const i32lt = binop(0x48); // signed
export const i32ltU = binop(0x49); // unsigned: also rejects negative values as huge
export const i32ge = binop(0x4e); // signed
export const i32eq = binop(0x46);
export const i32minU = (a: Expr, b: Expr): Expr => select(a, b, binop(0x49)(a, b)); // a <u b ? a : b
export const f32add = binop(0x92);
export const f32sub = binop(0x93);
export const f32mul = binop(0x94);
export const f32div = binop(0x95);
export const f32sqrt = unop(0x91);
export const f32max = binop(0x97); // NaN-propagating; max(−0, +0) = +0
export const i32and = binop(0x71);
export const f64add = binop(0xa0);
export const f64FromF32 = unop(0xbb); // f64.promote_f32
export const f32FromF64 = unop(0xb6); // f32.demote_f64

/** cond ? a : b (both evaluated). */
export const select =
  (a: Expr, b: Expr, cond: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    cond(f);
    f.op(0x1b);
  };

export const loadF32 =
  (addr: Expr, offset = 0): Expr =>
  (f) => {
    addr(f);
    f.op(0x2a);
    f.memarg(2, offset);
  };

export const loadI32 =
  (addr: Expr, offset = 0): Expr =>
  (f) => {
    addr(f);
    f.op(0x28);
    f.memarg(2, offset);
  };

export const loadF64 =
  (addr: Expr, offset = 0): Expr =>
  (f) => {
    addr(f);
    f.op(0x2b);
    f.memarg(3, offset);
  };

// ---- SIMD (f32x4 unless noted) -----------------------------------------------------------------

const vbin =
  (code: number) =>
  (a: Expr, b: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    f.simd(code);
  };
const vun =
  (code: number) =>
  (a: Expr): Expr =>
  (f) => {
    a(f);
    f.simd(code);
  };
export const vload =
  (addr: Expr, offset = 0): Expr =>
  (f) => {
    addr(f);
    f.simd(0x00);
    f.memarg(4, offset);
  };
/** Loads one f32 and splats it to all four lanes (v128.load32_splat). */
export const vloadSplat =
  (addr: Expr, offset = 0): Expr =>
  (f) => {
    addr(f);
    f.simd(0x09);
    f.memarg(2, offset);
  };
export const vsplat = vun(0x13); // f32x4.splat
/** A constant vector (v128.const, four equal f32 lanes). */
export const vconst =
  (x: number): Expr =>
  (f) => {
    const lane = [...new Uint8Array(new Float32Array([x]).buffer)];
    f.simd(0x0c, ...lane, ...lane, ...lane, ...lane);
  };
export const vzero: Expr = (f) => {
  f.simd(0x0c, ...new Array(16).fill(0));
};
export const vadd = vbin(0xe4);
export const vsub = vbin(0xe5);
export const vmul = vbin(0xe6);
export const vdiv = vbin(0xe7);
export const vsqrt = vun(0xe3); // f32x4.sqrt (correctly rounded, as f32.sqrt)
/** f32x4.pmin / pmax: b < a ? b : a and a < b ? b : a. One minps/maxps each on x64, unlike
 *  f32x4.min/max, whose NaN and ±0 rules cost V8 about eight instructions. */
export const vmin = vbin(0xea);
export const vmax = vbin(0xeb);
export const vabs = vun(0xe0);
export const vneg = vun(0xe1);
export const vnearest = vun(0x6a); // f32x4.nearest (round half to even)
export const vgt = vbin(0x44); // lane mask: a > b
export const vge = vbin(0x46);
export const vand = vbin(0x4e);
/** Lane-wise mask ? a : b (v128.bitselect). */
export const vselect =
  (a: Expr, b: Expr, mask: Expr): Expr =>
  (f) => {
    a(f);
    b(f);
    mask(f);
    f.simd(0x52);
  };
export const i32x4truncSat = vun(0xf8); // i32x4.trunc_sat_f32x4_s
export const i32x4add = vbin(0xae);
export const i32x4shl =
  (a: Expr, bits: Expr): Expr =>
  (f) => {
    a(f);
    bits(f);
    f.simd(0xab);
  };
export const vextract =
  (a: Expr, lane: number): Expr =>
  (f) => {
    a(f);
    f.simd(0x1f, lane);
  };
/** a with lane `lane` replaced by the f32 x (f32x4.replace_lane). */
export const vreplace =
  (a: Expr, lane: number, x: Expr): Expr =>
  (f) => {
    a(f);
    x(f);
    f.simd(0x20, lane);
  };
/** i8x16.shuffle of 32-bit lanes: result lane i = (a ++ b)[lanes[i]] (lanes 0..7). */
export const vshuffle =
  (a: Expr, b: Expr, lanes: [number, number, number, number]): Expr =>
  (f) => {
    a(f);
    b(f);
    const bytes: number[] = [];
    for (const l of lanes) for (let k = 0; k < 4; k++) bytes.push(l * 4 + k);
    f.simd(0x0d, ...bytes);
  };

/** The 4×4 transpose of the rows q[0..3]: lane j of result i = lane i of q[j] (8 shuffles). */
export function emitTranspose4(f: Fn, q: Local[], out: Local[], tmp: Local[]): void {
  f.set(tmp[0], vshuffle(get(q[0]), get(q[1]), [0, 4, 1, 5])); // q0[0] q1[0] q0[1] q1[1]
  f.set(tmp[1], vshuffle(get(q[0]), get(q[1]), [2, 6, 3, 7])); // q0[2] q1[2] q0[3] q1[3]
  f.set(tmp[2], vshuffle(get(q[2]), get(q[3]), [0, 4, 1, 5]));
  f.set(tmp[3], vshuffle(get(q[2]), get(q[3]), [2, 6, 3, 7]));
  f.set(out[0], vshuffle(get(tmp[0]), get(tmp[2]), [0, 1, 4, 5]));
  f.set(out[1], vshuffle(get(tmp[0]), get(tmp[2]), [2, 3, 6, 7]));
  f.set(out[2], vshuffle(get(tmp[1]), get(tmp[3]), [0, 1, 4, 5]));
  f.set(out[3], vshuffle(get(tmp[1]), get(tmp[3]), [2, 3, 6, 7]));
}

// ---- module ------------------------------------------------------------------------------------

/**
 * A module importing `env.mem` (shared if asked; limits in 64 KiB pages, no maximum = any memory) and
 * exporting `fns`.
 * Returns the binary, ready for `new WebAssembly.Module(bytes)`.
 */
export function assembleModule(fns: Fn[], mem: { initial: number; maximum?: number; shared: boolean }): Uint8Array {
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const section = (id: number, body: number[]) => {
    out.push(id);
    uleb(body.length, out);
    out.push(...body);
  };
  const name = (s: string, into: number[]) => {
    const bytes = [...new TextEncoder().encode(s)];
    uleb(bytes.length, into);
    into.push(...bytes);
  };
  // 1 type: one signature per function (duplicates are allowed).
  const types: number[] = [];
  uleb(fns.length, types);
  for (const f of fns) types.push(...f.typeBytes());
  section(1, types);
  // 2 import: env.mem
  const imports: number[] = [];
  uleb(1, imports);
  name('env', imports);
  name('mem', imports);
  if (mem.shared && mem.maximum === undefined) throw new Error('assembleModule: a shared memory needs a maximum');
  imports.push(0x02, mem.shared ? 0x03 : mem.maximum === undefined ? 0x00 : 0x01);
  uleb(mem.initial, imports);
  if (mem.maximum !== undefined) uleb(mem.maximum, imports);
  section(2, imports);
  // 3 function: function i has type i
  const funcs: number[] = [];
  uleb(fns.length, funcs);
  fns.forEach((_, i) => uleb(i, funcs));
  section(3, funcs);
  // 7 export
  const exps: number[] = [];
  uleb(fns.length, exps);
  fns.forEach((f, i) => {
    name(f.name, exps);
    exps.push(0x00);
    uleb(i, exps);
  });
  section(7, exps);
  // 10 code
  const code: number[] = [];
  uleb(fns.length, code);
  for (const f of fns) code.push(...f.encodeBody());
  section(10, code);
  return new Uint8Array(out);
}
