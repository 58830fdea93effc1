/**
 * Image decoding: any supported file → RGB uint8, row-major HWC.
 *
 * The official code loads images with torchvision's `ImageFolder` (PIL, then `.convert('RGB')`); this
 * mirrors that on sharp/libvips:
 *   - PNG, JPEG, TIFF (8- and 16-bit), WebP, GIF (first frame), HEIF/AVIF: sharp.
 *   - BMP: sharp's prebuilt libvips has no BMP loader, so uncompressed BMPs (1/4/8-bit palette, 16/24/32-bit)
 *     are decoded here (`decodeBmp`). RLE-compressed BMPs are refused with a clear message.
 *   - grey → R=G=B; palette → its RGB colours; an alpha channel is dropped without compositing (as PIL's
 *     `convert('RGB')` does).
 *   - 16-bit samples are scaled to 8 bits (v/257, libvips' cast). PIL would clip 16-bit greys at 255
 *     instead; scaling keeps the image usable, so this is a deliberate difference.
 *   - EXIF orientation is not applied (neither does PIL's loader). Embedded ICC profiles are converted to
 *     sRGB by libvips (PIL ignores them); microscopy images rarely carry one.
 * Decoding runs on libuv's thread pool, so many `decodeImage` calls in flight decode in parallel.
 */
import * as fs from 'fs';
import sharp from 'sharp';
import { DataError, describeError } from './errors';
import { sniffImageFormat } from './sniff';

export { sniffImageFormat } from './sniff';

/** A decoded image: `data` holds height·width·3 bytes, row-major, channels last (RGB). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** File extensions the folder sources treat as images (lower case, with the dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.webp', '.gif'];

/** Names that image folders may contain and that are silently ignored (OS metadata, not data). */
export function isIgnorableName(name: string): boolean {
  const lower = name.toLowerCase();
  return name.startsWith('.') || lower === 'thumbs.db' || lower === 'desktop.ini' || lower === '__macosx';
}

/**
 * Decode an image file (path) or its bytes to RGB uint8. Throws a `DataError` naming `label` (default:
 * the path) for unreadable, empty, non-image, truncated or corrupt input.
 */
export async function decodeImage(input: string | Uint8Array, label?: string): Promise<RgbImage> {
  const name = label ?? (typeof input === 'string' ? input : '<buffer>');
  let bytes: Uint8Array;
  if (typeof input === 'string') {
    try {
      bytes = await fs.promises.readFile(input);
    } catch (e) {
      throw new DataError(`cannot read file (${describeError(e)})`, name);
    }
  } else {
    bytes = input;
  }
  if (bytes.length === 0) throw new DataError('empty file (0 bytes)', name);
  const format = sniffImageFormat(bytes);
  if (!format) {
    const hex = Buffer.from(bytes.subarray(0, 8)).toString('hex');
    throw new DataError(`not an image: unrecognised file signature 0x${hex}`, name);
  }
  if (format === 'bmp') return decodeBmp(bytes, name);
  try {
    // failOn 'error': refuse truncated or undecodable data, accept files that only raise libvips warnings
    // (e.g. extraneous bytes after a JPEG marker), which PIL also loads.
    const { data, info } = await sharp(bytes, { failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw new DataError(`cannot decode ${format} image (${describeError(e)})`, name);
  }
}

/**
 * Uncompressed Windows BMP → RGB (BITMAPCOREHEADER and BITMAPINFOHEADER and later; BI_RGB and BI_BITFIELDS).
 * Rows are stored bottom-up unless the height is negative, each padded to 4 bytes; pixels are BGR(A).
 */
export function decodeBmp(bytes: Uint8Array, name = '<bmp>'): RgbImage {
  const fail = (why: string): never => {
    throw new DataError(`cannot decode bmp image (${why})`, name);
  };
  if (bytes.length < 26) fail('file too short for a BMP header');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataOffset = dv.getUint32(10, true);
  const headerSize = dv.getUint32(14, true);
  let width: number,
    height: number,
    bpp: number,
    compression = 0,
    colorsUsed = 0;
  const core = headerSize === 12;
  if (core) {
    width = dv.getUint16(18, true);
    height = dv.getInt16(20, true);
    bpp = dv.getUint16(24, true);
  } else {
    if (headerSize < 40 || bytes.length < 54) fail(`unsupported DIB header size ${headerSize}`);
    width = dv.getInt32(18, true);
    height = dv.getInt32(22, true);
    bpp = dv.getUint16(28, true);
    compression = dv.getUint32(30, true);
    colorsUsed = dv.getUint32(46, true);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0) fail(`invalid size ${width}×${height}`);
  if (compression !== 0 && compression !== 3) fail(`compression ${compression} (RLE/JPEG/PNG-in-BMP) is not supported`);

  // Channel masks for 16/32-bit pixels: explicit (BI_BITFIELDS) or the defaults (5-5-5, 8-8-8).
  let masks = bpp === 16 ? [0x7c00, 0x03e0, 0x001f] : [0xff0000, 0x00ff00, 0x0000ff];
  if (compression === 3) {
    if (bpp !== 16 && bpp !== 32) fail(`BI_BITFIELDS with ${bpp} bits per pixel`);
    masks = [0, 1, 2].map((k) => dv.getUint32(14 + 40 + 4 * k, true));
  }

  // Palette (1/4/8 bits): 4 bytes per entry (BGRx), 3 for the old core header.
  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const entry = core ? 3 : 4;
    const count = colorsUsed || 1 << bpp;
    const start = 14 + headerSize;
    if (start + count * entry > bytes.length) fail('palette runs past the end of the file');
    palette = new Uint8Array(count * 3);
    for (let i = 0; i < count; i++) {
      palette[3 * i] = bytes[start + entry * i + 2];
      palette[3 * i + 1] = bytes[start + entry * i + 1];
      palette[3 * i + 2] = bytes[start + entry * i];
    }
  } else if (bpp !== 16 && bpp !== 24 && bpp !== 32) {
    fail(`${bpp} bits per pixel is not supported`);
  }

  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  if (dataOffset + stride * height > bytes.length) fail('pixel data is truncated');
  const out = new Uint8Array(width * height * 3);
  const field = (v: number, mask: number) => {
    if (mask === 0) return 0;
    const shift = 31 - Math.clz32(mask & -mask); // lowest set bit
    const max = mask >>> shift;
    return Math.round((((v & mask) >>> shift) * 255) / max);
  };
  for (let row = 0; row < height; row++) {
    const y = topDown ? row : height - 1 - row;
    const src = dataOffset + row * stride;
    for (let x = 0; x < width; x++) {
      const o = 3 * (y * width + x);
      if (palette) {
        const bitPos = x * bpp;
        const byte = bytes[src + (bitPos >> 3)];
        const idx = (byte >> (8 - bpp - (bitPos & 7))) & ((1 << bpp) - 1);
        if (3 * idx + 2 >= palette.length) fail(`palette index ${idx} out of range`);
        out[o] = palette[3 * idx];
        out[o + 1] = palette[3 * idx + 1];
        out[o + 2] = palette[3 * idx + 2];
      } else if (bpp === 24) {
        out[o] = bytes[src + 3 * x + 2];
        out[o + 1] = bytes[src + 3 * x + 1];
        out[o + 2] = bytes[src + 3 * x];
      } else {
        const v = bpp === 16 ? dv.getUint16(src + 2 * x, true) : dv.getUint32(src + 4 * x, true);
        out[o] = field(v, masks[0]);
        out[o + 1] = field(v, masks[1]);
        out[o + 2] = field(v, masks[2]);
      }
    }
  }
  return { data: out, width, height };
}
