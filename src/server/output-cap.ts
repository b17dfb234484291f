// The response-size guarantee every route shares: an answer's tensor elements are counted from
// the model's output shapes before any solve, and a request over --max-output-elements is
// refused with 413 DEQ_ERR_OUTPUT_TOO_LARGE (what is under it is streamed: json-stream.ts).
import { DeqError } from '../errors.js';
import { modelOutputs } from '../runtime/index.js';
import { elementCount } from './json-stream.js';
import type { ServedModel } from './models.js';

/** Throws DEQ_ERR_OUTPUT_TOO_LARGE when the `wanted` outputs at this batch (and length) exceed `cap` values. */
export function checkOutputSize(m: ServedModel, wanted: readonly string[], batch: number, length: number | undefined, cap: number, extra: { name: string; dims: number[] }[] = [], byDefault = false): void {
  let total = 0;
  const parts: string[] = [];
  const count = (name: string, dims: number[]) => {
    total += elementCount(dims);
    parts.push(`${name} [${dims.join('×')}]`);
  };
  for (const name of wanted) {
    const spec = modelOutputs(m.manifest).find((o) => o.name === name)!;
    count(name, [batch, ...spec.shape.map((d) => (d === -1 ? length ?? 1 : d))]);
  }
  for (const e of extra) count(e.name, e.dims);
  if (total > cap) {
    // v2 with no outputs named returns them all, as the protocol says: the fix is to name fewer
    const why = byDefault ? 'the request names no outputs, so all are returned, as the protocol says: ' : '';
    throw new DeqError('DEQ_ERR_OUTPUT_TOO_LARGE',
      `${why}the outputs hold ${total} values (${parts.join(', ')}), over the ${cap}-value limit (--max-output-elements); name only the outputs you need in the request's \`outputs\` field, or send a smaller batch`);
  }
}

/** Throws DEQ_ERR_OUTPUT_TOO_LARGE when an answer of `total` values (`what`) exceeds `cap`. */
export function checkOutputCount(total: number, cap: number, what: string): void {
  if (total > cap) {
    throw new DeqError('DEQ_ERR_OUTPUT_TOO_LARGE', `the answer would hold ${total} values (${what}), over the ${cap}-value limit (--max-output-elements); ask for fewer outputs or send less`);
  }
}

/** The per-iteration trace a request asked for (trace=true), as an extra output: batch × max_iter residuals. */
export function traceOutput(trace: boolean | undefined, batch: number, maxIter: number): { name: string; dims: number[] }[] {
  return trace ? [{ name: 'trace', dims: [batch, maxIter] }] : [];
}
