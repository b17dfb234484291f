import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { DeqError } from '../../errors.js';
import type { ServerState } from '../state.js';
import { global } from './plugin.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Takes a well-formed `x-request-id` from the caller (a gateway's), else makes one. */
export function requestId(req: IncomingMessage): string {
  const h = req.headers['x-request-id'];
  return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Fields the route adds to the request's single log line (model, solver summary). */
    logFields?: Record<string, unknown>;
    /** performance.now() when the request arrived (deadline messages say where the time went). */
    startedAt: number;
  }
}

/**
 * Echoes the request id, refuses work while shutting down, and writes one log
 * line per request. Bodies and headers are never logged.
 */
export const requestLogPlugin = global('deq-request-log', async (app, opts: { state: ServerState }) => {
  const shuttingDown = new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down');
  app.decorateRequest('startedAt', 0);
  app.addHook('onRequest', async (req, reply) => {
    req.startedAt = performance.now();
    reply.header('x-request-id', req.id);
    if (opts.state.closing && !req.routeOptions.config?.open) {
      reply.header('connection', 'close');
      throw shuttingDown;
    }
  });
  // While draining, close each connection after its response, so keep-alive
  // clients do not hold the shutdown open until the grace period ends.
  app.addHook('onSend', async (_req, reply) => {
    if (opts.state.closing) reply.header('connection', 'close');
  });
  app.addHook('onResponse', async (req, reply) => {
    const status = reply.statusCode;
    const line = {
      method: req.method,
      route: req.routeOptions.url,
      url: req.url.length > 200 ? `${req.url.slice(0, 200)}…` : req.url,
      status,
      ms: Math.round(reply.elapsedTime * 100) / 100,
      code: reply.getHeader('x-deq-error-code'),
      ...req.logFields,
    };
    // A readiness 503 (starting up, shutting down) is the probe working as designed, not an error.
    const expected = status === 503 && req.routeOptions.config?.open === true;
    if (line.code === 'DEQ_ERR_OVERLOADED') req.log.warn(line, 'request'); // load shed at the edge, by design
    else if (status >= 500 && !expected) req.log.error(line, 'request');
    else req.log.info(line, 'request');
  });
});
