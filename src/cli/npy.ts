import { DeqError } from '../errors.js';

export interface NdArray {
  shape: number[];
  /** Values as float64 or bigint, row-major. */
  data: Float64Array | BigInt64Array;
}

const MAGIC = '\x93NUMPY';

/** Parses a .npy file (format 1.0–3.0, little-endian, C order; f4, f8, i4, i8, u1). */
export function parseNpy(buf: Uint8Array, file: string): NdArray {
  const bad = (why: string) => new DeqError('DEQ_ERR_INVALID_INPUT', `${file}: ${why}`);
  if (buf.length < 10 || Buffer.from(buf.subarray(0, 6)).toString('latin1') !== MAGIC) throw bad('not a .npy file');
  const major = buf[6];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = Buffer.from(buf.subarray(start, start + headerLen)).toString('latin1');
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw bad('malformed .npy header');
  if (fortran === 'True') throw bad('Fortran-ordered arrays are not supported; save with np.ascontiguousarray');
  const shape = shapeText.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const body = start + headerLen;
  const kinds: Record<string, [number, (o: number) => number | bigint]> = {
    '<f4': [4, (o) => view.getFloat32(o, true)],
    '<f8': [8, (o) => view.getFloat64(o, true)],
    '<i4': [4, (o) => view.getInt32(o, true)],
    '<i8': [8, (o) => view.getBigInt64(o, true)],
    '|u1': [1, (o) => view.getUint8(o)],
  };
  const kind = kinds[descr];
  if (!kind) throw bad(`dtype ${descr} is not supported (use float32, float64, int32, int64 or uint8)`);
  const [size, read] = kind;
  if (buf.length < body + count * size) throw bad('file is shorter than its shape says');
  if (descr === '<i8') {
    const data = new BigInt64Array(count);
    for (let i = 0; i < count; i++) data[i] = read(body + i * size) as bigint;
    return { shape, data };
  }
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(body + i * size) as number;
  return { shape, data };
}

/** Flattens a nested JSON array, returning its shape; rejects ragged or non-numeric arrays. */
export function fromNested(value: unknown, what: string): NdArray {
  const shape: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const flat: number[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth === shape.length) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${what}: every value must be a finite number`);
      flat.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[depth]) throw new DeqError('DEQ_ERR_INVALID_INPUT', `${what}: ragged array at depth ${depth}`);
    for (const x of v) walk(x, depth + 1);
  };
  walk(value, 0);
  return { shape, data: Float64Array.from(flat) };
}
