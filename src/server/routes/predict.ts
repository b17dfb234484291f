import type { FastifyPluginAsync } from 'fastify';
import { DeqError, quote } from '../../errors.js';
import { nestedInputs, nestedOutput, nestedShape, stateInput, STATE_TENSOR, tensorInputs } from '../../pipelines/tensor.js';
import { nestedJsonStream, type NestedTensor } from '../json-stream.js';
import { checkOutputSize, traceOutput } from '../output-cap.js';
import { modelOutputs, resolveDims } from '../../runtime/index.js';
import { findModel } from '../models.js';
import { runSequenced, SEQUENCE_PARAMS_SCHEMA, sequenceFlags, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerConfig } from '../config.js';
import type { ServerState } from '../state.js';
import { sendEventStream, wantsEventStream, type ProgressSink } from '../event-stream.js';

interface PredictBody {
  /** Model inputs by name; `deq_state` is a warm start (the solve's initial state). */
  inputs: Record<string, unknown>;
  outputs?: string[];
  parameters?: WireSolverOptions;
  /** Also return z* as output `deq_state` (to warm-start a later request). */
  return_state?: boolean;
  /** A stateful sequence: each request starts from the last one's z* (docs/solver.md). */
  sequence_id?: string | number;
  sequence_start?: boolean;
  sequence_end?: boolean;
}

const predictBody = (config: Readonly<ServerConfig>) => ({
  type: 'object',
  required: ['inputs'],
  additionalProperties: false,
  properties: {
    inputs: { type: 'object', minProperties: 1, maxProperties: 16, additionalProperties: { type: 'array' } },
    outputs: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 128 } },
    // Solver settings, typed with the server caps as ranges (as v2 `parameters`); nothing else.
    parameters: { type: 'object', additionalProperties: false, properties: solverParamsSchema(config) },
    return_state: { type: 'boolean', description: 'true or false' },
    ...SEQUENCE_PARAMS_SCHEMA,
  },
} as const);

const PREDICT_RESPONSE = {
  type: 'object',
  required: ['model', 'outputs', 'shapes', 'solver', 'timing'],
  properties: {
    model: { type: 'string' },
    // Nested arrays of numbers, row-major (serialized as given).
    outputs: { type: 'object', additionalProperties: {} },
    shapes: { type: 'object', additionalProperties: { type: 'array', items: { type: 'integer' } } },
    solver: SOLVER_SUMMARY_SCHEMA,
    timing: { type: 'object', properties: { queue_ms: { type: 'number' }, solve_ms: { type: 'number' }, total_ms: { type: 'number' } } },
  },
} as const;

/**
 * POST /v1/models/:name/predict: `{ inputs: { name: nested array } }` for any model (the
 * friendly JSON form of v2 infer). Inputs with a leading batch dim give batched outputs;
 * without it, one sample in and one out.
 */
export const predictRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  app.post<{ Params: { name: string }; Body: PredictBody }>('/v1/models/:name/predict', {
    schema: { body: predictBody(state.config), response: { 200: PREDICT_RESPONSE } },
  }, async (req, reply) => {
    const t0 = performance.now();
    const model = findModel(state.models, req.params.name);
    const m = model.manifest;
    const control = requestControl(model, req.body.parameters ?? {}, state.config);
    const { [STATE_TENSOR]: given, ...modelIns } = req.body.inputs;
    const { tensors, unbatched } = nestedInputs(m, modelIns);
    const batch = tensorInputs(m, tensors, { maxBatch: state.config.maxBatch, vocabSize: model.vocab?.length, context: m.tokenizer?.context });
    let z0: Float32Array | undefined;
    if (given !== undefined) {
      const shape = nestedShape(STATE_TENSOR, given, m.state.shape.length + 1);
      z0 = stateInput(m, { name: STATE_TENSOR, shape: unbatched ? [1, ...shape] : shape, data: given }, batch.batch, batch.length);
    }
    const returnState = req.body.return_state === true;
    const available = modelOutputs(m).map((o) => o.name);
    const wanted = req.body.outputs ?? Object.values(m.outputs);
    for (const name of wanted) {
      if (!available.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output ${quote(name)}; ${model.name} has ${available.join(', ')}`);
    }
    const stateDims = [batch.batch, ...resolveDims(m.state.shape, batch.length)];
    checkOutputSize(model, wanted, batch.batch, batch.length, state.config.maxOutputElements, [...(returnState ? [{ name: STATE_TENSOR, dims: stateDims }] : []), ...traceOutput(control.solver.trace, batch.batch, control.solver.maxIter)]);
    const solve = (progress?: ProgressSink) => runSequenced(req, model, { ...batch, outputs: wanted, solver: control.solver, deadline: control.deadline, z0, returnState }, sequenceFlags(req.body), progress);
    const answer = async (progress?: ProgressSink) => {
      const result = await solve(progress);
      const outputs: Record<string, unknown> = {};
      const shapes: Record<string, number[]> = {};
      for (const name of wanted) {
        const o = nestedOutput(result.outputs[name], unbatched);
        outputs[name] = o.data;
        shapes[name] = o.shape;
      }
      if (returnState) {
        const o = nestedOutput(result.state!, unbatched);
        outputs[STATE_TENSOR] = o.data;
        shapes[STATE_TENSOR] = o.shape;
      }
      return {
        model: model.name,
        outputs,
        shapes,
        solver: solverSummary(result),
        timing: { queue_ms: result.queueMs, solve_ms: result.timing.solveMs, total_ms: performance.now() - t0 },
      };
    };
    if (wantsEventStream(req)) return sendEventStream(reply, answer);
    // Streamed in chunks: a large answer never holds the HTTP thread (json-stream.ts).
    const result = await solve();
    const nested: Record<string, NestedTensor> = {};
    const shapes: Record<string, number[]> = {};
    const add = (name: string, t: { dims: number[]; data: NestedTensor['data'] }) => {
      nested[name] = { shape: unbatched ? t.dims.slice(1) : t.dims, data: t.data };
      shapes[name] = nested[name].shape.slice();
    };
    for (const name of wanted) add(name, result.outputs[name]);
    if (returnState) add(STATE_TENSOR, result.state!);
    const head = { model: model.name, shapes, solver: solverSummary(result), timing: { queue_ms: result.queueMs, solve_ms: result.timing.solveMs, total_ms: performance.now() - t0 } };
    return reply.type('application/json; charset=utf-8').send(nestedJsonStream(head, nested));
  });
};
