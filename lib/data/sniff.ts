/**
 * What kind of image a file is, from its first bytes (its signature), without decoding it. No Node
 * modules: the browser app (web/) uses it too, to refuse a non-image before trying to decode it.
 */

/** Identify an image container from its first bytes; undefined for anything that is not an image. */
export function sniffImageFormat(head: Uint8Array): string | undefined {
  const at = (i: number, ...bytes: number[]) => bytes.every((b, k) => head[i + k] === b);
  if (at(0, 0x89, 0x50, 0x4e, 0x47)) return 'png';
  if (at(0, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (at(0, 0x49, 0x49, 0x2a, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  if (at(0, 0x49, 0x49, 0x2b, 0x00) || at(0, 0x4d, 0x4d, 0x00, 0x2b)) return 'tiff'; // BigTIFF
  if (at(0, 0x42, 0x4d)) return 'bmp';
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return 'webp';
  if (at(0, 0x47, 0x49, 0x46, 0x38)) return 'gif';
  if (at(4, 0x66, 0x74, 0x79, 0x70)) return 'heif'; // ISO-BMFF 'ftyp' (HEIF / AVIF)
  return undefined;
}
