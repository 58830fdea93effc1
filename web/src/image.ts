/**
 * A dropped or chosen file → RGB uint8 HWC (lib/data's `RgbImage`), as the kit's decoder (lib/data/decode.ts,
 * sharp) gives it for the same file:
 *   - the file is identified by its signature first (lib/data/sniff.ts): anything else is refused by name;
 *   - PNG, JPEG, WebP, GIF, BMP: the browser's decoder (`createImageBitmap` without colour-space conversion or
 *     premultiplication), drawn to a canvas and read back; alpha is dropped without compositing, as the kit
 *     does. PNG is lossless, so the pixels equal sharp's; a JPEG decoder may differ from libjpeg-turbo's in
 *     the last bit of some pixels (a difference far below the model's sensitivity, but not zero).
 *   - TIFF: browsers have no TIFF decoder, so it is refused with a message saying how to convert it.
 */
import type { RgbImage } from '../../lib/data/decode';
import { sniffImageFormat } from '../../lib/data/sniff';

/** What went wrong with one input file, said so a person can act on it. */
export class InputError extends Error {
  constructor(file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'InputError';
  }
}

export async function decodeImageFile(file: File): Promise<RgbImage> {
  if (file.size === 0) throw new InputError(file.name, 'empty file (0 bytes)');
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const format = sniffImageFormat(head);
  if (!format) {
    const hex = [...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join('');
    throw new InputError(file.name, `not an image (unrecognised file signature 0x${hex}); give a PNG or JPEG`);
  }
  if (format === 'tiff') {
    throw new InputError(
      file.name,
      'TIFF is not supported in the browser (browsers have no TIFF decoder): convert it to PNG, ' +
        'e.g. `vips copy in.tif out.png`, or use `npm run predict`, which reads TIFF',
    );
  }
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  } catch (e) {
    throw new InputError(
      file.name,
      `cannot decode ${format} image (${(e as Error).message || 'corrupt or truncated'})`,
    );
  }
  const { width, height } = bitmap;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true }) as OffscreenCanvasRenderingContext2D;
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { data, width, height };
}
