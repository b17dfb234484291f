import { Ajv, type Options as AjvOptions } from 'ajv';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { DestinationStream } from 'pino';
import { DeqError } from '../errors.js';
import { authPlugin } from './plugins/auth.js';
import { clientErrorHandler, errorsPlugin, expectationFailed, frameworkErrors } from './plugins/errors.js';
import { metricsPlugin } from './plugins/metrics.js';
import { registerOpenApi, serveOpenApi } from './openapi.js';
import { servePlayground } from './playground.js';
import { requestId, requestLogPlugin } from './plugins/request-log.js';
import { classifyRoutes } from './routes/classify.js';
import { healthRoutes } from './routes/health.js';
import { modelRoutes } from './routes/models.js';
import { predictRoutes } from './routes/predict.js';
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
    requestTimeout: 60_000,
    routerOptions: { maxParamLength: 200 },
    frameworkErrors,
    clientErrorHandler,
  });
  // JSON bodies are taken as typed ({"tol": "1e-3"} is an error); query strings are
  // text, so only their schemas coerce. Unknown parameters are refused, not dropped.
  const body = new Ajv({ ...AJV_OPTIONS, coerceTypes: false });
  const query = new Ajv({ ...AJV_OPTIONS, coerceTypes: true });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'querystring' ? query : body).compile(schema));
  app.decorate('deq', state);
  app.server.on('checkExpectation', expectationFailed);
  // Every response, errors included: a JSON body that quotes client input is never sniffed as HTML.
  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });
  await app.register(errorsPlugin);
  await app.register(requestLogPlugin, { state });
  await app.register(authPlugin, { apiKeys: config.apiKeys, openHealth: config.openHealth });
  // Before any route (metrics has one): it records each route as it is added.
  if (config.openapi) await registerOpenApi(app, state);
  await app.register(metricsPlugin, { state });

  // JSON endpoints refuse other content types up front (415), rather than failing schema checks.
  const jsonOnly = async (req: FastifyRequest) => {
    const type = req.headers['content-type'] ?? '';
    // v2 binary tensor extension: JSON header + raw tensor bytes, whatever the Content-Type
    // (tritonclient sends none); the v2 routes parse it, other routes have no parser for it.
    const binary = req.headers['inference-header-content-length'] !== undefined;
    if (!binary && !/^application\/json\s*(;|$)/i.test(type)) {
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
  if (config.openapi) await serveOpenApi(app, config.docs);
  if (config.playground) await servePlayground(app);
  return app;
}
