import sharp from 'sharp';
import { DeqError } from '../errors.js';
import type { ImagePreprocess } from '../runtime/manifest.js';
import { incompleteImage } from './image-complete.js';
import { normalizePixels } from './normalize.js';
import { directPngPixels } from './png-direct.js';

/** Formats an untrusted upload may be in (sharp's `metadata().format` names). */
export const IMAGE_FORMATS: readonly string[] = Object.freeze(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

// libvips buffer loaders for the formats above (AVIF decodes through heif).
const ALLOWED_LOADERS = [
  'VipsForeignLoadJpegBuffer', 'VipsForeignLoadPngBuffer', 'VipsForeignLoadWebpBuffer',
  'VipsForeignLoadNsgifBuffer', 'VipsForeignLoadTiffBuffer', 'VipsForeignLoadHeifBuffer',
];

let restricted = false;

/**
 * Blocks every libvips loader except the allow-list (SVG, PDF, magick… refused).
 * Process-wide, so done once, on first use rather than at import.
 */
export function restrictImageLoaders(): void {
  if (restricted) return;
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: ALLOWED_LOADERS });
  restricted = true;
}

export interface ImageLimits {
  /** Largest width × height the header may declare. */
  maxPixels: number;
}

/**
 * Decodes an untrusted image and writes the model input (channels × height ×
 * width, normalized per the manifest) into `out` at `offset`. Throws
 * DEQ_ERR_IMAGE_DECODE (corrupt, truncated, empty), DEQ_ERR_UNSUPPORTED_MEDIA_TYPE
 * (a format not allowed) or DEQ_ERR_PAYLOAD_TOO_LARGE (too many pixels).
 */
export async function imageToTensor(bytes: Uint8Array, p: ImagePreprocess, limits: ImageLimits, out?: Float32Array, offset = 0): Promise<Float32Array> {
  // Most uploads are PNGs already at the model's size: those skip libvips (png-direct.ts).
  const pixels = (p.width * p.height <= limits.maxPixels ? directPngPixels(bytes, p) : undefined) ?? await sharpPixels(bytes, p, limits);
  const target = out ?? new Float32Array(p.channels * p.width * p.height);
  normalizePixels(pixels, p, target, offset);
  return target;
}

/**
 * Any accepted image through libvips: oriented, flattened on the model's
 * background, converted to its channels and resized to its size. Returns
 * height × width × channels 8-bit pixels; throws as imageToTensor does.
 */
export async function sharpPixels(bytes: Uint8Array, p: ImagePreprocess, limits: ImageLimits): Promise<Uint8Array> {
  restrictImageLoaders();
  if (bytes.length === 0) throw new DeqError('DEQ_ERR_IMAGE_DECODE', 'the image is empty');
  const options: sharp.SharpOptions = { limitInputPixels: limits.maxPixels, failOn: 'error', sequentialRead: true };
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, options).metadata();
  } catch (err) {
    throw decodeError(err);
  }
  if (!meta.format || !IMAGE_FORMATS.includes(meta.format)) {
    throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', `image format ${meta.format ?? 'unknown'} is not accepted (JPEG, PNG, WebP, GIF, TIFF, AVIF)`);
  }
  const incomplete = incompleteImage(bytes, meta.format);
  if (incomplete) throw new DeqError('DEQ_ERR_IMAGE_DECODE', `the image is truncated: ${incomplete}`);
  // Headers can lie; libvips enforces limitInputPixels too, this gives the clearer message first.
  if ((meta.width ?? 0) * (meta.height ?? 0) > limits.maxPixels) {
    throw new DeqError('DEQ_ERR_PAYLOAD_TOO_LARGE', `image is ${meta.width}×${meta.height}, over the ${limits.maxPixels}-pixel limit`);
  }
  // Padding (resize "contain") and transparency become the background the model was trained on.
  const background = p.invert ? { r: 255, g: 255, b: 255 } : { r: 0, g: 0, b: 0 };
  let pipeline = sharp(bytes, options).rotate().flatten({ background });
  pipeline = p.channels === 1 ? pipeline.greyscale() : pipeline.toColourspace('srgb');
  pipeline = pipeline
    .resize(p.width, p.height, { fit: p.resize ?? 'contain', background: { ...background, alpha: 1 } })
    .removeAlpha()
    .raw();
  let data: Buffer, info: sharp.OutputInfo;
  try {
    ({ data, info } = await pipeline.toBuffer({ resolveWithObject: true }));
  } catch (err) {
    throw decodeError(err);
  }
  if (info.channels !== p.channels || info.width !== p.width || info.height !== p.height) {
    throw new DeqError('DEQ_ERR_IMAGE_DECODE', `decoded to ${info.width}×${info.height}×${info.channels}, expected ${p.width}×${p.height}×${p.channels}`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

function decodeError(err: unknown): DeqError {
  const msg = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(msg)) return new DeqError('DEQ_ERR_PAYLOAD_TOO_LARGE', 'image dimensions exceed the pixel limit');
  if (/unsupported image format|blocked/i.test(msg)) return new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', 'not an image in an accepted format (JPEG, PNG, WebP, GIF, TIFF, AVIF)');
  // libvips' own wording is useful and holds no request data beyond the bytes' structure.
  return new DeqError('DEQ_ERR_IMAGE_DECODE', `image could not be decoded: ${msg.split('\n')[0].slice(0, 200)}`);
}
