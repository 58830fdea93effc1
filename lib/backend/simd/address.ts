/**
 * Address arithmetic shared by the heap kernels' builders (lib/backend/simd/*.ts): their arguments are
 * byte offsets into the wasm backend's heap, and every array they touch holds 4-byte elements.
 */
import { Expr, get, i32, i32add, i32mul, Local } from '../../util/wasm-asm';

/** Byte address `base + 4·index`. */
export const at = (base: Local, index: Expr): Expr => i32add(get(base), i32mul(index, i32(4)));
