// The Open Inference Protocol's binary tensor data extension (Triton, KServe): a JSON header
// of `Inference-Header-Content-Length` bytes, then each binary tensor's raw little-endian
// bytes, row-major, in the order the header lists them, each `binary_data_size` bytes long.
import { endianness } from 'node:os';
import { DeqError, quote } from '../errors.js';

/** The header's name, lower case as Node presents request headers. */
export const HEADER_LENGTH = 'inference-header-content-length';

/** Bytes per element of the datatypes deq-serve serves. */
const ELEMENT_BYTES: Record<string, number> = { FP32: 4, INT64: 8 };

// Typed arrays use the host's byte order; the extension's is little-endian.
if (endianness() !== 'LE') throw new Error('the v2 binary tensor extension assumes a little-endian host');

/** Splits a request body at the header length; undefined when the header is absent. */
export function splitBody(body: Buffer, header: string | string[] | undefined): { json: Buffer; tail: Buffer } | undefined {
  if (header === undefined) return undefined;
  const raw = Array.isArray(header) ? header[0] : header;
  const n = /^\d{1,12}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > body.length) {
    throw invalid(`Inference-Header-Content-Length must be an integer in [1, ${body.length}] (the body's length; got ${quote(String(raw), 20)})`);
  }
  return { json: body.subarray(0, n), tail: body.subarray(n) };
}

interface BinaryInput {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown;
  parameters?: Record<string, unknown>;
}

/**
 * Replaces each input's `binary_data_size` with its typed data, read in order from the
 * body's binary tail (copied, so the request buffer is not kept or transferred). The tail
 * must be used exactly.
 */
export function attachBinaryInputs(inputs: BinaryInput[], tail: Buffer | undefined): void {
  let offset = 0;
  for (const t of inputs) {
    const size = t.parameters?.binary_data_size;
    if (size === undefined) {
      if (t.data === undefined) throw invalid(`input ${t.name} has neither data nor parameters.binary_data_size`);
      continue;
    }
    if (t.data !== undefined) throw invalid(`input ${t.name} has both data and parameters.binary_data_size`);
    if (!tail) throw invalid(`input ${t.name} has parameters.binary_data_size but the request has no Inference-Header-Content-Length header`);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`input ${t.name}: binary_data_size must be a non-negative integer`);
    const width = ELEMENT_BYTES[t.datatype];
    if (!width) throw invalid(`input ${t.name}: binary data of datatype ${quote(String(t.datatype))} is not served (FP32, INT64)`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (size !== count * width) throw invalid(`input ${t.name}: binary_data_size ${size} does not match shape [${t.shape.join(', ')}] of ${t.datatype} (${count * width} bytes)`);
    if (offset + size > tail.length) throw invalid(`input ${t.name}: the body ends ${offset + size - tail.length} bytes before its binary data does`);
    const bytes = new Uint8Array(size);
    bytes.set(tail.subarray(offset, offset + size));
    t.data = width === 4 ? new Float32Array(bytes.buffer) : new BigInt64Array(bytes.buffer);
    offset += size;
  }
  if (tail && offset !== tail.length) throw invalid(`the body has ${tail.length - offset} bytes after the last binary input`);
}

/**
 * A binary response: the JSON header (outputs sent as binary carry binary_data_size and no
 * data) followed by their bytes. Returns the body and the header length for the response header.
 */
export function encodeBinaryResponse(json: object, binaries: (Float32Array | BigInt64Array | Buffer)[]): { body: Buffer; headerLength: number } {
  const head = Buffer.from(JSON.stringify(json), 'utf8');
  const parts = [head, ...binaries.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))];
  return { body: Buffer.concat(parts), headerLength: head.length };
}

/**
 * A tensor's bytes as the extension (and gRPC's raw_output_contents) carries them: FP32 and
 * INT64 little-endian, BOOL one byte per element, BYTES each element as a 4-byte
 * little-endian length and its UTF-8 bytes.
 */
export function tensorBytes(datatype: string, data: Float32Array | BigInt64Array | Uint8Array | string[]): Buffer {
  if (Array.isArray(data)) {
    const parts = data.map((s) => Buffer.from(s, 'utf8'));
    const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.writeUInt32LE(p.length, at);
      p.copy(out, at + 4);
      at += 4 + p.length;
    }
    return out;
  }
  if (datatype === 'BOOL' && !(data instanceof Uint8Array)) throw new Error('BOOL data must be a Uint8Array');
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function invalid(message: string): DeqError {
  return new DeqError('DEQ_ERR_INVALID_INPUT', message);
}
