// libvips decodes some truncated files without complaint, even with failOn set:
// a PNG without its IEND chunk, a GIF without its trailer byte, a TIFF whose
// strips run past the end of the buffer (measured with sharp 0.34; the test
// corpus is test/fixtures/hostile/). These structural checks close that gap.

const PNG_IEND = Uint8Array.of(0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82);

/**
 * Why `bytes`, in `format` (sharp's name), is incomplete, or null when its
 * structure ends where it should. Formats not listed (JPEG, WebP: their decoders
 * already refuse a cut file) are left to the decoder.
 */
export function incompleteImage(bytes: Uint8Array, format: string): string | null {
  switch (format) {
    case 'png': {
      // IEND may be followed by a few stray bytes in files from the wild; its absence is truncation.
      const from = Math.max(0, bytes.length - 1024);
      for (let at = bytes.length - PNG_IEND.length; at >= from; at--) {
        let i = 0;
        while (i < PNG_IEND.length && bytes[at + i] === PNG_IEND[i]) i++;
        if (i === PNG_IEND.length) return null;
      }
      return 'the PNG has no IEND chunk at its end';
    }
    case 'gif':
      return bytes[bytes.length - 1] === 0x3b ? null : 'the GIF has no trailer byte at its end';
    case 'tiff':
      return tiffIncomplete(bytes);
    default:
      return null;
  }
}

const STRIP_OFFSETS = 273, STRIP_BYTE_COUNTS = 279, TILE_OFFSETS = 324, TILE_BYTE_COUNTS = 325;

/** Checks that the first IFD and every strip or tile it points at lie inside the buffer (classic TIFF). */
function tiffIncomplete(b: Uint8Array): string | null {
  if (b.length < 8) return 'the TIFF header is cut short';
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = b[0] === 0x49;
  if (view.getUint16(2, le) !== 42) return null; // BigTIFF: left to libtiff
  const ifd = view.getUint32(4, le);
  if (ifd + 2 > b.length) return 'the TIFF directory lies past the end of the file';
  const n = view.getUint16(ifd, le);
  if (ifd + 2 + n * 12 > b.length) return 'the TIFF directory is cut short';
  const read = (entry: number): number[] | null => {
    const type = view.getUint16(entry + 2, le);
    const count = view.getUint32(entry + 4, le);
    const size = type === 3 ? 2 : type === 4 ? 4 : 0;
    if (size === 0) return null;
    let at = entry + 8;
    if (count * size > 4) at = view.getUint32(entry + 8, le);
    if (at + count * size > b.length) return [Infinity];
    const out: number[] = [];
    for (let i = 0; i < count; i++) out.push(size === 2 ? view.getUint16(at + i * 2, le) : view.getUint32(at + i * 4, le));
    return out;
  };
  const tags = new Map<number, number[] | null>();
  for (let i = 0; i < n; i++) {
    const entry = ifd + 2 + i * 12;
    const tag = view.getUint16(entry, le);
    if (tag === STRIP_OFFSETS || tag === STRIP_BYTE_COUNTS || tag === TILE_OFFSETS || tag === TILE_BYTE_COUNTS) tags.set(tag, read(entry));
  }
  for (const [offTag, countTag] of [[STRIP_OFFSETS, STRIP_BYTE_COUNTS], [TILE_OFFSETS, TILE_BYTE_COUNTS]]) {
    const offs = tags.get(offTag), counts = tags.get(countTag);
    if (!offs || !counts) continue;
    for (let i = 0; i < offs.length; i++) {
      if (!(offs[i] + (counts[i] ?? 0) <= b.length)) return 'the TIFF image data runs past the end of the file';
    }
  }
  return null;
}
