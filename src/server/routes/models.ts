import type { FastifyPluginAsync } from 'fastify';
import { SOLVER_METHODS, STOP_MODES } from '../../solver/index.js';
import { batchingOf } from '../config.js';
import { findModel, type ServedModel } from '../models.js';
import { isReady, type ServerState } from '../state.js';

/** GET /v1/models and /v1/models/:name: what a client needs to call a model. */
export const modelRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const summary = (m: ServedModel) => {
    const man = m.manifest;
    const c = state.config;
    return {
      name: m.name,
      version: man.version ?? '1',
      task: man.task,
      description: man.description ?? '',
      ready: isReady(state),
      provider: state.pool.modelInfo.get(m.name)?.provider ?? null,
      // Where the solver's row algebra runs: 'wasm' (SIMD kernels) or 'js' (scalar fallback).
      solver_kernel: state.pool.modelInfo.get(m.name)?.solverKernel ?? null,
      // How its requests share solves: 'on' (continuous batching), 'static' or 'off' (--model-batching, else --batching).
      batching: batchingOf(c, m.name),
      endpoint: `/v1/models/${m.name}/${{ 'image-classification': 'classify', 'language-model': 'score', tensor: 'predict' }[man.task]}`,
      labels: man.labels,
      preprocess: man.preprocess,
      tokenizer: man.tokenizer && { kind: man.tokenizer.kind, context: man.tokenizer.context, stride: man.tokenizer.stride ?? null, vocab_size: m.vocab?.length ?? 0 },
      // Effective: the manifest's defaults clamped to the caps (what a request without overrides runs with).
      solver_defaults: { method: m.solver.method, tol: m.solver.tol, stop_mode: m.solver.stopMode, max_iter: m.solver.maxIter, history: m.solver.history },
      ...(m.clamped.length ? { solver_defaults_clamped: m.clamped } : {}),
      caps: {
        tol: [c.tolMin, c.tolMax],
        max_iter: [1, c.maxIterCap],
        solver: SOLVER_METHODS,
        stop_mode: STOP_MODES,
        deadline_ms: [1, c.requestTimeoutMs],
        on_deadline: c.onDeadline,
      },
      provenance: man.provenance ?? {},
    };
  };
  app.get('/v1/models', async () => ({ models: [...state.models.values()].map(summary) }));
  app.get<{ Params: { name: string } }>('/v1/models/:name', async (req) => summary(findModel(state.models, req.params.name)));
};
