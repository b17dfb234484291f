// A minimal ONNX ModelProto writer: enough to build small graphs at load time (the
// device-resident solver's steps, runtime/device-broyden-graphs.ts) without Python or a
// protobuf library. It writes the wire format of the handful of onnx.proto messages it needs.

/** ONNX TensorProto.DataType values used here. */
export const DTYPE = { float32: 1, int64: 7, bool: 9 } as const;
export type ProtoDtype = keyof typeof DTYPE;

export interface ValueSpec {
  name: string;
  dtype: ProtoDtype;
  /** A number is a fixed dim; a string is a symbolic one (e.g. "B"). */
  shape: readonly (number | string)[];
}

export type AttrValue = number | readonly number[];

export interface NodeSpec {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  /** Integer attributes (a list is INTS), or `{ f: x }` for a float. */
  attrs?: Record<string, AttrValue | { f: number }>;
}

export interface Initializer {
  name: string;
  dtype: 'float32' | 'int64';
  dims: readonly number[];
  values: readonly number[];
}

export interface GraphSpec {
  name: string;
  inputs: readonly ValueSpec[];
  outputs: readonly ValueSpec[];
  nodes: readonly NodeSpec[];
  initializers?: readonly Initializer[];
  opset?: number;
}

/** The graph as ONNX model bytes (IR version 8). */
export function encodeModel(g: GraphSpec): Uint8Array {
  const graph = new ProtoWriter();
  g.nodes.forEach((n, i) => graph.message(1, encodeNode(n, `${n.op}_${i}`)));
  graph.string(2, g.name);
  for (const t of g.initializers ?? []) graph.message(5, encodeTensor(t));
  for (const v of g.inputs) graph.message(11, encodeValueInfo(v));
  for (const v of g.outputs) graph.message(12, encodeValueInfo(v));
  const opset = new ProtoWriter();
  opset.string(1, '');
  opset.varint(2, g.opset ?? 17);
  const model = new ProtoWriter();
  model.varint(1, 8);
  model.string(2, 'deq-serve');
  model.message(7, graph.finish());
  model.message(8, opset.finish());
  return model.finish();
}

function encodeNode(n: NodeSpec, name: string): Uint8Array {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, name);
  w.string(4, n.op);
  for (const [key, value] of Object.entries(n.attrs ?? {})) {
    const a = new ProtoWriter();
    a.string(1, key);
    if (typeof value === 'number') {
      a.varint(3, value);
      a.varint(20, 2); // INT
    } else if (Array.isArray(value)) {
      for (const x of value as readonly number[]) a.varint(8, x);
      a.varint(20, 7); // INTS
    } else {
      a.float(2, (value as { f: number }).f);
      a.varint(20, 1); // FLOAT
    }
    w.message(5, a.finish());
  }
  return w.finish();
}

function encodeValueInfo(v: ValueSpec): Uint8Array {
  const shape = new ProtoWriter();
  for (const d of v.shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim.finish());
  }
  const tensor = new ProtoWriter();
  tensor.varint(1, DTYPE[v.dtype]);
  tensor.message(2, shape.finish());
  const type = new ProtoWriter();
  type.message(1, tensor.finish());
  const w = new ProtoWriter();
  w.string(1, v.name);
  w.message(2, type.finish());
  return w.finish();
}

function encodeTensor(t: Initializer): Uint8Array {
  const w = new ProtoWriter();
  for (const d of t.dims) w.varint(1, d);
  w.varint(2, DTYPE[t.dtype]);
  w.string(8, t.name);
  const raw = t.dtype === 'float32' ? new Uint8Array(Float32Array.from(t.values).buffer) : new Uint8Array(BigInt64Array.from(t.values.map(BigInt)).buffer);
  w.bytes(9, raw);
  return w.finish();
}

/** Protobuf wire format, the few field kinds ONNX needs. */
class ProtoWriter {
  readonly #parts: number[] = [];

  varint(field: number, value: number): void {
    this.#tag(field, 0);
    this.#rawVarint(value);
  }

  float(field: number, value: number): void {
    this.#tag(field, 5);
    for (const b of new Uint8Array(Float32Array.of(value).buffer)) this.#parts.push(b);
  }

  string(field: number, value: string): void {
    this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, bytes: Uint8Array): void {
    this.bytes(field, bytes);
  }

  bytes(field: number, bytes: Uint8Array): void {
    this.#tag(field, 2);
    this.#rawVarint(bytes.length);
    for (const b of bytes) this.#parts.push(b);
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }

  #tag(field: number, wire: number): void {
    this.#rawVarint(field * 8 + wire);
  }

  // Negative int64 values (e.g. -1 in a shape) take the 10-byte two's-complement form.
  #rawVarint(value: number): void {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.#parts.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#parts.push(Number(v));
  }
}
