import type { FastifyReply, FastifyRequest } from 'fastify';
import { DeqError } from '../../errors.js';
import type { ServerConfig } from '../config.js';
import { onProbation } from '../connections.js';
import { sendError } from './errors.js';
import { global } from './plugin.js';

/**
 * Request-body bytes held by all requests together. A request is charged before
 * any of its body is read (its Content-Length, or its route's limit when it sends
 * chunks), and the charge is returned when its response closes: the parsed body
 * lives until then.
 */
export class BodyBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get inFlight(): number {
    return this.used;
  }

  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

/**
 * An absolute-form request target (`GET http://host/v2/health/live`, which proxies
 * send and RFC 9112 §3.2.2 says servers must accept) routed by its path.
 */
export function originForm(req: { url?: string }): string {
  const url = req.url ?? '/';
  const m = /^https?:\/\/[^/?#]*/i.exec(url);
  if (!m) return url;
  const rest = url.slice(m[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/**
 * First on every request: an HTTP/1.1 request without Host gets the catalogue's 400
 * (Node's own check, turned off in app.ts, answers a bare 400), and a connection let
 * in past --max-connections reaches health routes only.
 */
export const edgePlugin = global('deq-edge', async (app, opts: { config: Readonly<ServerConfig> }) => {
  app.addHook('onRequest', async (req, reply) => {
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) {
      reply.header('connection', 'close');
      throw new DeqError('DEQ_ERR_BAD_REQUEST', 'an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)');
    }
    if (onProbation(req.raw.socket)) {
      reply.header('connection', 'close');
      if (req.routeOptions.config?.open) return;
      throw new DeqError('DEQ_ERR_OVERLOADED',
        `the server has ${opts.config.maxConnections} connections open (--max-connections); new connections reach only health routes until some close`,
        { retryAfterS: opts.config.retryAfterS });
    }
  });
});

/**
 * The global body budget and the body-progress timeout (issue #22). Registered
 * after authentication, so a request without a key is refused before it is charged.
 */
export const bodyGuardPlugin = global('deq-body-guard', async (app, opts: { config: Readonly<ServerConfig>; budget: BodyBudget }) => {
  const { config, budget } = opts;
  app.addHook('onRequest', async (req, reply) => {
    const declared = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (declared === undefined && !chunked) return;
    const length = declared === undefined ? NaN : Number(declared);
    // An invalid Content-Length is the parser's to refuse; a chunked body may grow to the route's limit.
    const limit = req.routeOptions.bodyLimit ?? config.bodyLimitBytes;
    const charge = Number.isSafeInteger(length) && length >= 0 && !chunked ? Math.min(length, limit) : limit;
    if (charge === 0) return;
    if (!budget.tryTake(charge)) {
      // Closing the connection stops the body from being read at all.
      reply.header('connection', 'close');
      throw new DeqError('DEQ_ERR_OVERLOADED',
        `request bodies in progress hold ${budget.inFlight} of the ${budget.limit} bytes the server allows (--body-budget); this one needs ${charge}`,
        { retryAfterS: config.retryAfterS });
    }
    reply.raw.once('close', () => budget.give(charge));
    if (!req.raw.complete) armBodyTimeout(req, reply, config.bodyTimeoutMs);
  });
});

/**
 * Answers 408 when no body byte arrives for `ms`: a socket timeout, armed only
 * while the body is being received (a solve may keep the socket quiet for longer).
 */
function armBodyTimeout(req: FastifyRequest, reply: FastifyReply, ms: number): void {
  const socket = req.raw.socket;
  const disarm = () => {
    req.raw.off('timeout', onStall);
    if (!socket.destroyed) socket.setTimeout(0);
  };
  const onStall = () => {
    disarm();
    if (reply.sent) {
      // Answered early (415, 401…) and Node is discarding a body that stopped coming.
      socket.destroy();
      return;
    }
    reply.header('connection', 'close');
    sendError(req, reply, { status: 408, code: 'DEQ_ERR_REQUEST_TIMEOUT', message: `no request body bytes arrived for ${ms} ms (--body-timeout-ms)` });
  };
  // Node emits 'timeout' on the request still being received, and closes the socket only when nobody listens.
  req.raw.on('timeout', onStall);
  req.raw.once('end', disarm);
  socket.setTimeout(ms);
}
