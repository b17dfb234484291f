import type { FastifyPluginAsync } from 'fastify';
import { isReady, type ServerState } from '../state.js';

const HEALTH_SCHEMA = { type: 'object', properties: { live: { type: 'boolean' }, ready: { type: 'boolean' } } } as const;

/** Open Inference Protocol health: 200 means true; readiness is 503 until every model has warmed up. */
export const healthRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const open = { open: true };
  app.get('/v2/health/live', { config: open, schema: { response: { 200: HEALTH_SCHEMA } } }, async () => ({ live: true }));
  app.get('/v2/health/ready', { config: open, schema: { response: { 200: HEALTH_SCHEMA, 503: HEALTH_SCHEMA } } }, async (_req, reply) => {
    const ready = isReady(state);
    return reply.code(ready ? 200 : 503).send({ ready });
  });
};
