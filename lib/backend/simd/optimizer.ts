/**
 * The heap kernel behind the fused Adam update (../optimizer.ts): one pass over p, g, m, v per
 * parameter tensor, the operations of lib/train/optim.ts in the same order. Assembled by ../heap.ts.
 */
import {
  Expr,
  f32add,
  f32div,
  f32mul,
  f32sqrt,
  f32sub,
  Fn,
  get,
  i32,
  i32and,
  loadF32,
  Local,
  vadd,
  vdiv,
  vload,
  vmul,
  vsplat,
  vsqrt,
  vsub,
  ValType,
} from '../../util/wasm-asm';
import { at } from './address';

/** Bits of adam's `mode`. */
export const ADAM_L2 = 1; // g ← g + λ·p        (Adam's weight decay)
export const ADAM_DECOUPLED = 2; // p ← p·(1 − lr·λ)   (AdamW's)

/**
 * adam(p, g, m, v, pOut, mOut, vOut, n, β1, 1−β1, β2, 1−β2, √(1−β2ᵗ), ε, lr/(1−β1ᵗ), λ, 1−lr·λ, mode):
 * the update of lib/train/optim.ts `Adam.applyGradients`, operation for operation (see there).
 */
export function buildAdam(): Fn {
  const types: ValType[] = [...Array<ValType>(8).fill('i32'), ...Array<ValType>(9).fill('f32'), 'i32'];
  const f = new Fn('adam', types);
  const [p, g, m, v, pOut, mOut, vOut, n] = f.params.slice(0, 8);
  const scalars = f.params.slice(8, 17); // b1, omb1, b2, omb2, sqrtBc2, eps, stepSize, wd, decay
  const mode = f.params[17];
  const splat = scalars.map((sc) => {
    const l = f.local('v128');
    f.set(l, vsplat(get(sc)));
    return l;
  });
  const i = f.local('i32');
  const n4 = f.local('i32');
  f.set(n4, i32and(get(n), i32(~3)));
  /** The update of elements i..i+3 (vectors) or of element i (scalars): the same operations in the same order. */
  const update = (vec: boolean) => {
    const [b1, omb1, b2, omb2, sqrtBc2, eps, stepSize, wd, decay] = vec ? splat : scalars;
    const ops = vec
      ? { add: vadd, sub: vsub, mul: vmul, div: vdiv, sqrt: vsqrt }
      : { add: f32add, sub: f32sub, mul: f32mul, div: f32div, sqrt: f32sqrt };
    const [tg, pv, mv, vv] = Array.from({ length: 4 }, () => f.local(vec ? 'v128' : 'f32'));
    const load = (base: Local) => (vec ? vload(at(base, get(i))) : loadF32(at(base, get(i))));
    const store = (base: Local, e: Expr) =>
      vec ? f.storeV128(at(base, get(i)), 0, e) : f.storeF32(at(base, get(i)), 0, e);
    return () => {
      f.set(tg, load(g));
      f.set(pv, load(p));
      f.if(i32and(get(mode), i32(ADAM_L2)), () => f.set(tg, ops.add(get(tg), ops.mul(get(pv), get(wd)))));
      f.set(mv, ops.add(ops.mul(load(m), get(b1)), ops.mul(get(tg), get(omb1))));
      f.set(vv, ops.add(ops.mul(load(v), get(b2)), ops.mul(ops.mul(get(tg), get(tg)), get(omb2))));
      store(mOut, get(mv));
      store(vOut, get(vv));
      f.if(i32and(get(mode), i32(ADAM_DECOUPLED)), () => f.set(pv, ops.mul(get(pv), get(decay))));
      const denom = ops.add(ops.div(ops.sqrt(get(vv)), get(sqrtBc2)), get(eps));
      store(pOut, ops.sub(get(pv), ops.mul(ops.div(get(mv), denom), get(stepSize))));
    };
  };
  f.forUp(i, i32(0), get(n4), update(true), 4);
  f.forUp(i, get(n4), get(n), update(false));
  return f;
}
