/**
 * safetensors read/write (https://github.com/huggingface/safetensors, format described in its README):
 *
 *   [8 bytes: little-endian u64 N] [N bytes: JSON header] [raw little-endian tensor bytes]
 *   header = { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
 *              "__metadata__"?: { string: string } }   offsets are relative to the end of the header.
 *
 * The kit stores weights in this format in PyTorch layout and naming, so official checkpoints
 * (`torch.save` → `safetensors.torch.save_file`) and the kit's own checkpoints are the same thing.
 * Reading converts F16/BF16/F64 to float32 and integer types to int32 (tfjs has no int64).
 */
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { atomicWriteFile } from '../util/fs';

export interface SafetensorsFile {
  tensors: Map<string, tf.Tensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export class SafetensorsError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

/** Parse a safetensors buffer into tfjs tensors (float32 or int32). The caller owns the tensors. */
export function parseSafetensors(buf: Uint8Array, label = '<buffer>'): SafetensorsFile {
  if (buf.byteLength < 8) throw new SafetensorsError(label, `too short to be safetensors (${buf.byteLength} bytes)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen <= 0 || 8 + headerLen > buf.byteLength) {
    throw new SafetensorsError(label, `bad header length ${headerLen} for a ${buf.byteLength}-byte file`);
  }
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new SafetensorsError(label, `header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const metadata = ((header as Record<string, unknown>).__metadata__ ?? {}) as Record<string, string>;
  const tensors = new Map<string, tf.Tensor>();
  try {
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const width = BYTES[info.dtype];
      if (!width) throw new SafetensorsError(label, `tensor '${name}' has unsupported dtype ${info.dtype}`);
      const [begin, end] = info.data_offsets;
      const count = info.shape.reduce((a, b) => a * b, 1);
      if (end - begin !== count * width || dataStart + end > buf.byteLength) {
        throw new SafetensorsError(
          label,
          `tensor '${name}' (${info.dtype} [${info.shape.join(', ')}]) has inconsistent offsets [${begin}, ${end}]`,
        );
      }
      // Copy so the tensor data is aligned and independent of the file buffer.
      const bytes = buf.slice(dataStart + begin, dataStart + end);
      const dv = new DataView(bytes.buffer);
      tensors.set(name, decode(info.dtype, dv, count, info.shape));
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
  return { tensors, metadata };
}

function decode(dtype: string, dv: DataView, n: number, shape: number[]): tf.Tensor {
  switch (dtype) {
    case 'F32':
      return tf.tensor(new Float32Array(dv.buffer, dv.byteOffset, n), shape, 'float32');
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return tf.tensor(out, shape, 'float32');
    }
    case 'F16':
    case 'BF16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const h = dv.getUint16(i * 2, true);
        out[i] = dtype === 'F16' ? halfToFloat(h) : bf16ToFloat(h);
      }
      return tf.tensor(out, shape, 'float32');
    }
    default: {
      const out = new Int32Array(n);
      const w = BYTES[dtype];
      for (let i = 0; i < n; i++) {
        const o = i * w;
        out[i] =
          dtype === 'I64'
            ? Number(dv.getBigInt64(o, true))
            : dtype === 'I32'
              ? dv.getInt32(o, true)
              : dtype === 'I16'
                ? dv.getInt16(o, true)
                : dtype === 'I8'
                  ? dv.getInt8(o)
                  : dv.getUint8(o);
      }
      return tf.tensor(out, shape, 'int32');
    }
  }
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

function bf16ToFloat(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, h << 16, false);
  return dv.getFloat32(0, false);
}

/** Read a .safetensors file. Errors name the file. */
export function readSafetensors(file: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new SafetensorsError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), file);
}

/** Serialise float32/int32 tensors (F32 / I32) in key order, with optional string metadata. */
export function serializeSafetensors(
  tensors: Map<string, tf.Tensor> | Record<string, tf.Tensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new Error(`safetensors: tensor '${name}' has dtype ${t.dtype}; only float32 and int32 are written`);
    }
    const data = t.dataSync() as Float32Array | Int32Array;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    header[name] = {
      dtype: t.dtype === 'float32' ? 'F32' : 'I32',
      shape: t.shape,
      data_offsets: [offset, offset + bytes.byteLength],
    };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  // Pad the header with spaces to a multiple of 8 bytes so the data is aligned (as the reference writer does).
  // (TextEncoder rather than Buffer: this function also runs in the browser.)
  const text = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (text.byteLength % 8)) % 8;
  const json = new Uint8Array(text.byteLength + pad).fill(0x20);
  json.set(text);
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/** Write a .safetensors file atomically (temp file in the same folder, then rename). */
export function writeSafetensors(
  file: string,
  tensors: Map<string, tf.Tensor> | Record<string, tf.Tensor>,
  metadata: Record<string, string> = {},
): void {
  atomicWriteFile(file, serializeSafetensors(tensors, metadata));
}
