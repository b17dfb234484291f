import type { FastifyPluginAsync } from 'fastify';
import { DeqError, quote } from '../../errors.js';
import { nestedInputs, nestedOutput, tensorInputs } from '../../pipelines/tensor.js';
import { modelOutputs } from '../../runtime/index.js';
import { findModel } from '../models.js';
import { runSolve, solverSummary, SOLVER_SUMMARY_SCHEMA } from '../solve.js';
import { requestControl, solverParamsSchema, type WireSolverOptions } from '../solver-options.js';
import type { ServerConfig } from '../config.js';
import type { ServerState } from '../state.js';
import { sendEventStream, wantsEventStream, type ProgressSink } from '../event-stream.js';

interface PredictBody {
  inputs: Record<string, unknown>;
  outputs?: string[];
  parameters?: WireSolverOptions;
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
    const { tensors, unbatched } = nestedInputs(m, req.body.inputs);
    const batch = tensorInputs(m, tensors, { maxBatch: state.config.maxBatch, vocabSize: model.vocab?.length, context: m.tokenizer?.context });
    const available = modelOutputs(m).map((o) => o.name);
    const wanted = req.body.outputs ?? Object.values(m.outputs);
    for (const name of wanted) {
      if (!available.includes(name)) throw new DeqError('DEQ_ERR_INVALID_INPUT', `unknown output ${quote(name)}; ${model.name} has ${available.join(', ')}`);
    }
    const answer = async (progress?: ProgressSink) => {
      const result = await runSolve(req, model, { ...batch, outputs: wanted, solver: control.solver, deadline: control.deadline }, progress);
      const outputs: Record<string, unknown> = {};
      const shapes: Record<string, number[]> = {};
      for (const name of wanted) {
        const o = nestedOutput(result.outputs[name], unbatched);
        outputs[name] = o.data;
        shapes[name] = o.shape;
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
    return answer();
  });
};
