import { Ajv, type Options as AjvOptions } from 'ajv';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { DestinationStream } from 'pino';
import { DeqError } from '../errors.js';
import { PROBE_HEADROOM, REQUEST_RECEIVE_MS } from './config.js';
import { ConnectionGuard } from './connections.js';
import { parseJsonBody } from './json-body.js';
import { authPlugin } from './plugins/auth.js';
import { BodyBudget, bodyGuardPlugin, edgePlugin, originForm } from './plugins/edge.js';
import { clientGonePlugin } from './plugins/client-gone.js';
import { clientErrorHandler, errorsPlugin, expectationFailed, frameworkErrors } from './plugins/errors.js';
import { metricsPlugin } from './plugins/metrics.js';
import { registerOpenApi, serveOpenApi } from './openapi.js';
import { servePlayground } from './playground.js';
import { requestId, requestLogPlugin } from './plugins/request-log.js';
import { classifyRoutes } from './routes/classify.js';
import { healthRoutes } from './routes/health.js';
import { modelRoutes } from './routes/models.js';
import { predictRoutes } from './routes/predict.js';
import { repositoryRoutes } from './routes/repository.js';
import { scoreRoutes } from './routes/score.js';
import { v2Routes } from './routes/v2.js';
import type { ServerState } from './state.js';

export interface AppOptions {
  /** Where log lines go (default stdout). */
  logStream?: DestinationStream;
}

// verbose: errors carry the failing schema and value, so a 400 can say what was expected.
const AJV_OPTIONS: AjvOptions = { allErrors: false, allowUnionTypes: true, removeAdditional: false, useDefaults: true, verbose: true, strict: false };

/** Secrets never reach a log line, even if a header object is logged by mistake. */
const REDACT = ['req.headers.authorization', 'headers.authorization', 'req.headers.cookie', 'headers.cookie', 'config.apiKeys'];

/** Builds the fastify instance: plugins first (errors, request log, auth, metrics), then routes. */
export async function buildApp(state: ServerState, opts: AppOptions = {}): Promise<FastifyInstance> {
  const { config } = state;
  const logger = { level: config.logLevel, redact: { paths: REDACT, censor: '[redacted]' } };
  const app = Fastify({
    ...(opts.logStream ? { logger: { ...logger, stream: opts.logStream } } : { logger }),
    // One line per request, written by requestLogPlugin with the solve summary in it.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: requestId,
    requestIdHeader: false,
    bodyLimit: config.bodyLimitBytes,
    // Our onRequest hook answers 503 DEQ_ERR_SHUTTING_DOWN in the catalogue's shape instead.
    return503OnClosing: false,
    // requestTimeout covers receiving the request only (slow clients); solves have their own deadline.
    requestTimeout: REQUEST_RECEIVE_MS,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    // Node checks headers and request timeouts on this interval (default 30 s), so an idle
    // connection used to live 60–90 s; a Host header is checked by edgePlugin, in the catalogue's shape.
    http: { connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs), requireHostHeader: false },
    routerOptions: { maxParamLength: 200 },
    rewriteUrl: originForm,
    frameworkErrors,
    clientErrorHandler,
  });
  // JSON bodies are taken as typed ({"tol": "1e-3"} is an error); query strings are
  // text, so only their schemas coerce. Unknown parameters are refused, not dropped.
  const body = new Ajv({ ...AJV_OPTIONS, coerceTypes: false });
  const query = new Ajv({ ...AJV_OPTIONS, coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'querystring' ? query : body).compile(schema));
  app.server.headersTimeout = config.headersTimeoutMs;
  const connections = new ConnectionGuard(app.server, config.maxConnections, PROBE_HEADROOM, config.headersTimeoutMs, capWarning(app, config.maxConnections));
  const bodyBudget = new BodyBudget(config.bodyBudgetBytes);
  app.decorate('deq', state);
  app.decorate('edge', { connections, bodyBudget });
  app.server.on('checkExpectation', expectationFailed);
  // Every response, errors included: a JSON body that quotes client input is never sniffed as HTML.
  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });
  await app.register(errorsPlugin);
  await app.register(clientGonePlugin);
  await app.register(requestLogPlugin, { state });
  await app.register(edgePlugin, { config });
  await app.register(authPlugin, { apiKeys: config.apiKeys, openHealth: config.openHealth });
  await app.register(bodyGuardPlugin, { config, budget: bodyBudget });
  // Before any route (metrics has one): it records each route as it is added.
  if (config.openapi) await registerOpenApi(app, state);
  await app.register(metricsPlugin, { state });
  queryBooleans(app);
  // Every JSON body is checked for nesting depth before it is parsed (v2 adds its binary form).
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    parseJsonBody(req, body as Buffer, done, { maxDepth: config.maxJsonDepth, parser: jsonParser });
  });

  // JSON endpoints refuse other content types up front (415), rather than failing schema checks.
  const jsonOnly = async (req: FastifyRequest) => {
    const type = req.headers['content-type'] ?? '';
    // v2 binary tensor extension: JSON header + raw tensor bytes, whatever the Content-Type
    // (tritonclient sends none); the v2 routes parse it, other routes have no parser for it.
    const binary = req.headers['inference-header-content-length'] !== undefined;
    // v2 also takes JSON with no Content-Type at all (tritonclient's all-JSON requests; Triton does).
    const untypedV2 = req.headers['content-type'] === undefined && req.url.startsWith('/v2/');
    if (!binary && !untypedV2 && !/^application\/json\s*(;|$)/i.test(type)) {
      throw new DeqError('DEQ_ERR_UNSUPPORTED_MEDIA_TYPE', `send Content-Type: application/json (got ${JSON.stringify(type.slice(0, 60))})`);
    }
  };
  await app.register(healthRoutes, { state });
  await app.register(modelRoutes, { state });
  await app.register(classifyRoutes, { state });
  await app.register(async (scope) => {
    scope.addHook('preValidation', async (req) => { if (req.method === 'POST') await jsonOnly(req); });
    await scope.register(scoreRoutes, { state });
    await scope.register(predictRoutes, { state });
    await scope.register(v2Routes, { state });
  });
  // Model control (--model-control explicit|poll): behind the API keys, its own body parser.
  if (state.repository) await app.register(repositoryRoutes, { state });
  if (config.openapi) await serveOpenApi(app, config.docs);
  if (config.playground) await servePlayground(app);
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The connection cap and the body budget, for tests and diagnostics. */
    edge: { connections: ConnectionGuard; bodyBudget: BodyBudget };
  }
}

/** Logs that the connection cap was reached, at most once a minute. */
function capWarning(app: FastifyInstance, max: number): () => void {
  let last = -Infinity;
  return () => {
    const now = Date.now();
    if (now - last < 60_000) return;
    last = now;
    app.log.warn({ maxConnections: max }, 'connection cap reached: closing idle connections; new ones reach health routes only while all are busy');
  };
}

/**
 * Query-string booleans take true/false/1/0, as most servers do: ajv's coercion
 * takes only true/false from strings, so 1 and 0 are rewritten for the
 * parameters a route's schema declares boolean.
 */
function queryBooleans(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const props = (route.schema?.querystring as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
    const keys = props ? Object.keys(props).filter((k) => props[k].type === 'boolean') : [];
    if (keys.length === 0) return;
    const hook = async (req: FastifyRequest) => {
      const q = req.query as Record<string, unknown>;
      for (const k of keys) {
        if (q[k] === '1') q[k] = 'true';
        else if (q[k] === '0') q[k] = 'false';
      }
    };
    route.preValidation = [...(route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation]), hook];
  });
}
