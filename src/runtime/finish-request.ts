// The last phase of an inference (DeqModel.finish, finishTogether): the head on z*, alone or
// shared by several requests, or slices of z* when the bundle has no head.
import { openPrepared, type Prepared, type TensorValue } from './infer-types.js';
import { stateOutputs, type Manifest } from './manifest.js';
import { createTensor, type OnnxGraph, type Tensor } from './onnx.js';
import type { PreparedRef } from './solve-plan.js';

/** The head (`headGraph`, open when the manifest has one) on z* (batch × n), or slices of z*. */
export async function finishRequest(m: Manifest, headGraph: OnnxGraph | undefined, prep: Prepared, z: Float32Array, outputs?: readonly string[]): Promise<Record<string, TensorValue>> {
  const { batch, n, stateDims } = prep;
  const wanted = outputs ?? Object.values(m.outputs);
  const result: Record<string, TensorValue> = {};
  const head = m.graphs.head;
  if (head) {
    const feeds: Record<string, Tensor> = { [head.inputs[0].name]: createTensor('float32', z, stateDims) };
    for (const spec of head.inputs.slice(1)) feeds[spec.name] = prep.feeds[spec.name];
    const fetches: Record<string, null> = {};
    for (const name of wanted) fetches[name] = null;
    const headOut = await headGraph!.run(feeds, fetches);
    for (const name of wanted) {
      const t = headOut[name];
      result[name] = { type: t.type as TensorValue['type'], data: t.data as TensorValue['data'], dims: t.dims.slice() };
    }
  } else {
    for (const s of stateOutputs(m)) if (wanted.includes(s.name)) result[s.name] = sliceState(z, batch, n, s.offset, s.shape, stateDims);
  }
  return result;
}

/** Whether requests prepared like `prep` can share head runs: the head reads z alone, at a shape that does not depend on the request. */
export function canShareHead(m: Manifest, prep: Prepared): boolean {
  const head = m.graphs.head;
  return head !== undefined && head.inputs.length === 1 && prep.length === undefined;
}

/** The model's finish phase (DeqModel.finish), through which every head run goes. */
export type Finish = (prep: Prepared, z: Float32Array, outputs?: readonly string[]) => Promise<Record<string, TensorValue>>;

/** The head over several requests' z* in one `finish` run; each gets its own rows back, as copies. */
export async function finishTogether(m: Manifest, finish: Finish, parts: readonly { prep: PreparedRef; z: Float32Array }[], outputs?: readonly string[]): Promise<Record<string, TensorValue>[]> {
  if (parts.length === 1) return [await finish(openPrepared(parts[0].prep), parts[0].z, outputs)];
  const preps = parts.map((p) => openPrepared(p.prep));
  const first = preps[0], n = first.n;
  let total = 0;
  for (const prep of preps) {
    if (!canShareHead(m, prep) || prep.n !== n) throw new RangeError('finishTogether: these requests cannot share a head run');
    total += prep.batch;
  }
  const z = new Float32Array(total * n);
  for (let i = 0, row = 0; i < parts.length; row += preps[i].batch, i++) z.set(parts[i].z.subarray(0, preps[i].batch * n), row * n);
  const all = await finish({ ...first, batch: total, stateDims: [total, ...first.stateDims.slice(1)] }, z, outputs);
  const results: Record<string, TensorValue>[] = [];
  for (let i = 0, row = 0; i < parts.length; row += preps[i].batch, i++) {
    const b = preps[i].batch, own: Record<string, TensorValue> = {};
    for (const [name, t] of Object.entries(all)) {
      const per = t.data.length / total;
      own[name] = { type: t.type, data: t.data.slice(row * per, (row + b) * per) as TensorValue['data'], dims: [b, ...t.dims.slice(1)] };
    }
    results.push(own);
  }
  return results;
}

/** One state slice of every row of z (batch × n) as a tensor of the slice's shape. */
function sliceState(z: Float32Array, batch: number, n: number, offset: number, shape: number[], stateDims: number[]): TensorValue {
  if (shape.includes(-1)) return { type: 'float32', data: z, dims: stateDims.slice() };
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(batch * size);
  for (let b = 0; b < batch; b++) data.set(z.subarray(b * n + offset, b * n + offset + size), b * size);
  return { type: 'float32', data, dims: [batch, ...shape] };
}
