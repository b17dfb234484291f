import type { FastifyPluginAsync } from 'fastify';
import { DeqError } from '../../errors.js';
import { parseJsonBody } from '../json-body.js';
import type { ServerState } from '../state.js';

const ENTRY = { type: 'object', required: ['name'], properties: { name: { type: 'string' }, version: { type: 'string' }, state: { type: 'string' }, reason: { type: 'string' } } } as const;
// Triton's bodies: index takes {"ready": bool}; load and unload take {"parameters": {...}}. A bundle
// is loaded as it is on disk, so load's `config` / `file:` overrides are refused, not ignored;
// unload's `unload_dependents` (tritonclient always sends it) has nothing to act on: no ensembles.
const INDEX_BODY = { type: ['object', 'null'], additionalProperties: false, properties: { ready: { type: 'boolean' } } } as const;
const controlBody = (params: Record<string, object>) => ({
  type: ['object', 'null'], additionalProperties: false,
  properties: { parameters: { type: 'object', additionalProperties: false, properties: params } },
}) as const;
const LOAD_BODY = controlBody({});
const UNLOAD_BODY = controlBody({ unload_dependents: { type: 'boolean' } });

/**
 * The model repository extension (Triton's): list the bundles in the models folder with their
 * state, load (or reload a changed) bundle, unload one. Registered only with --model-control
 * explicit or poll, which needs --api-keys: these routes are never open.
 */
export const repositoryRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const repo = state.repository!;
  // tritonclient posts these with no Content-Type, and often no body: JSON either way.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => {
    if ((body as Buffer).length === 0) return done(null, null);
    parseJsonBody(req, body as Buffer, done, { maxDepth: state.config.maxJsonDepth, parser: jsonParser });
  });

  app.post<{ Body: { ready?: boolean } | null }>('/v2/repository/index', {
    schema: { body: INDEX_BODY, response: { 200: { type: 'array', items: ENTRY } } },
  }, async (req) => {
    const all = await repo.index();
    return req.body?.ready ? all.filter((e) => e.state === 'READY') : all;
  });

  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/load', {
    schema: { body: LOAD_BODY, response: { 200: { ...ENTRY, properties: { ...ENTRY.properties, changed: { type: 'boolean' } } } } },
  }, async (req) => {
    const { version, changed } = await repo.load(req.params.name);
    return { name: req.params.name, version, state: 'READY', changed };
  });

  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/unload', { schema: { body: UNLOAD_BODY, response: { 200: ENTRY } } }, async (req) => {
    if (state.closing) throw new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down');
    await repo.unload(req.params.name);
    return { name: req.params.name, state: 'UNAVAILABLE' };
  });
};
