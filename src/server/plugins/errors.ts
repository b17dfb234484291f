import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DeqError, ERROR_CATALOGUE, excerpt, isDeqError, quote, type ErrorCode } from '../../errors.js';
import { global } from './plugin.js';

/** What a client is told: catalogue code, its status, and a message without internals. */
export interface ClientError {
  status: number;
  code: ErrorCode;
  message: string;
  retryAfterS?: number;
}

// Fastify and @fastify/multipart codes, mapped onto the catalogue once.
const FRAMEWORK_CODES: Readonly<Record<string, ErrorCode>> = Object.freeze({
  FST_ERR_CTP_BODY_TOO_LARGE: 'DEQ_ERR_PAYLOAD_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'DEQ_ERR_PAYLOAD_TOO_LARGE',
  FST_PARTS_LIMIT: 'DEQ_ERR_PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'DEQ_ERR_PAYLOAD_TOO_LARGE',
  FST_FIELDS_LIMIT: 'DEQ_ERR_PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'DEQ_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'DEQ_ERR_INVALID_INPUT',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'DEQ_ERR_INVALID_INPUT',
  FST_ERR_CTP_INVALID_JSON_BODY: 'DEQ_ERR_INVALID_INPUT',
  FST_PROTO_VIOLATION: 'DEQ_ERR_INVALID_INPUT',
  FST_ERR_BAD_URL: 'DEQ_ERR_INVALID_INPUT',
  FST_ERR_MAX_PARAM_LENGTH: 'DEQ_ERR_URI_TOO_LONG',
});

/** Messages for framework errors whose own message would reflect the request (the raw path). */
const FIXED_MESSAGES: Readonly<Record<string, string>> = Object.freeze({
  FST_ERR_BAD_URL: 'the URL path is not valid percent-encoded UTF-8',
  FST_ERR_MAX_PARAM_LENGTH: 'a path segment (model name) is longer than 200 characters',
});

/** Maps any thrown value to what the client may see. Unknown errors say only "internal error". */
export function toClientError(err: unknown): ClientError {
  if (isDeqError(err)) {
    const e = err as DeqError;
    const retry = e.details?.retryAfterS;
    return { status: ERROR_CATALOGUE[e.code].status, code: e.code, message: e.message, ...(typeof retry === 'number' ? { retryAfterS: retry } : {}) };
  }
  const fe = err as { code?: string; statusCode?: number; validation?: SchemaError[]; validationContext?: string; message?: string };
  if (fe && fe.validation) return validationError(fe.validation, fe.validationContext, fe.message);
  const mapped = fe && typeof fe.code === 'string' ? FRAMEWORK_CODES[fe.code] : undefined;
  if (mapped) {
    const message = FIXED_MESSAGES[fe.code!] ??
      (mapped === 'DEQ_ERR_INVALID_INPUT' && /JSON/i.test(fe.code ?? '') ? `malformed JSON body: ${fe.message ?? ''}` : fe.message ?? ERROR_CATALOGUE[mapped].summary);
    return { status: ERROR_CATALOGUE[mapped].status, code: mapped, message };
  }
  if (err instanceof SyntaxError && fe.statusCode === 400) return { status: 400, code: 'DEQ_ERR_INVALID_INPUT', message: `malformed JSON body: ${err.message}` };
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: 400, code: 'DEQ_ERR_INVALID_INPUT', message: fe.message ?? 'invalid request' };
  }
  return { status: 500, code: 'DEQ_ERR_INTERNAL', message: 'internal error' };
}

/** What ajv reports (verbose: the failing schema and value are included). */
interface SchemaError {
  instancePath: string;
  keyword: string;
  message?: string;
  params?: Record<string, unknown>;
  parentSchema?: { description?: string };
  data?: unknown;
}

const SOLVER_PARAM_NAMES = new Set(['tol', 'max_iter', 'solver', 'stop_mode', 'deadline_ms', 'patience', 'prediction_tol', 'prediction_margin']);

/**
 * A schema failure as a client error that names the parameter: an unknown one is
 * listed as such, a solver knob out of range gets DEQ_ERR_INVALID_SOLVER_OPTION and
 * what it must be (the schema's `description`).
 */
function validationError(errors: SchemaError[], context: string | undefined, fallback: string | undefined): ClientError {
  const e = errors[0];
  if (!e) return { status: 400, code: 'DEQ_ERR_INVALID_INPUT', message: fallback ?? 'invalid request' };
  const where = context === 'querystring' ? 'query parameter' : 'field';
  if (e.keyword === 'additionalProperties') {
    const name = String(e.params?.additionalProperty ?? '').slice(0, 64);
    return { status: 400, code: 'DEQ_ERR_INVALID_INPUT', message: `unknown ${where} ${JSON.stringify(name)}${e.instancePath ? ` in ${e.instancePath}` : ''}` };
  }
  const name = e.instancePath.split('/').filter(Boolean).pop() ?? '';
  const must = e.parentSchema?.description;
  if (must && e.keyword !== 'required') {
    const got = excerpt(e.data, 40);
    const code = SOLVER_PARAM_NAMES.has(name) ? 'DEQ_ERR_INVALID_SOLVER_OPTION' : 'DEQ_ERR_INVALID_INPUT';
    return { status: 400, code, message: `${name} must be ${must} (got ${got})` };
  }
  return { status: 400, code: 'DEQ_ERR_INVALID_INPUT', message: fallback ?? `${context ?? 'request'}${e.instancePath} ${e.message ?? 'is invalid'}` };
}

/** v2 (Open Inference Protocol) routes answer `{ error }`; the rest `{ error, code }`. */
export function sendError(req: FastifyRequest, reply: FastifyReply, e: ClientError): FastifyReply {
  req.server.metrics?.countError(e.code);
  reply.code(e.status);
  reply.header('x-deq-error-code', e.code);
  reply.header('x-content-type-options', 'nosniff');
  if (e.retryAfterS !== undefined) reply.header('retry-after', String(e.retryAfterS));
  if (e.code === 'DEQ_ERR_UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  const v2 = req.url.startsWith('/v2');
  return reply.type('application/json; charset=utf-8').send(v2 ? { error: e.message } : { error: e.message, code: e.code });
}

/**
 * Errors fastify raises before routing (bad percent-encoding, an over-long
 * path parameter): answered like every other error.
 */
export function frameworkErrors(err: Error, req: FastifyRequest, reply: FastifyReply): void {
  sendError(req, reply, toClientError(err));
}

/** Writes a catalogue-shaped error straight to a socket or raw response (before fastify has a request). */
function rawError(code: ErrorCode, message: string): { status: number; headers: Record<string, string | number>; body: string } {
  const status = ERROR_CATALOGUE[code].status;
  const body = JSON.stringify({ error: message, code });
  return {
    status,
    headers: {
      'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body),
      'x-deq-error-code': code, 'x-content-type-options': 'nosniff', connection: 'close',
    },
    body,
  };
}

/** Node's HTTP parser errors (header overflow, request timeout, garbage): answered in the catalogue's shape. */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [code, message]: [ErrorCode, string] =
    err.code === 'HPE_HEADER_OVERFLOW' ? ['DEQ_ERR_HEADERS_TOO_LARGE', 'request headers exceed the size limit']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? ['DEQ_ERR_REQUEST_TIMEOUT', 'the request was not received in time']
        : ['DEQ_ERR_BAD_REQUEST', 'malformed HTTP request'];
  if (!socket.writable) {
    socket.destroy(err);
    return;
  }
  const r = rawError(code, message);
  const head = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n');
  socket.end(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status]}\r\n${head}\r\n\r\n${r.body}`);
}

/** An Expect header other than 100-continue: 417 with a body, not Node's empty default. */
export function expectationFailed(req: IncomingMessage, res: ServerResponse): void {
  const r = rawError('DEQ_ERR_EXPECTATION_FAILED', `unsupported Expect header (only 100-continue is understood)`);
  res.writeHead(r.status, r.headers);
  res.end(r.body);
  req.resume();
}

/** One error handler and one 404 handler for the whole server. No stack trace leaves the process. */
export const errorsPlugin = global('deq-errors', async (app) => {
  app.setErrorHandler((err, req, reply) => {
    // A client gone mid-request (a stream cut short included) is ordinary client behaviour.
    const e: ClientError = req.gone?.aborted ? { status: 499, code: 'DEQ_ERR_CANCELLED', message: 'the client went away' } : toClientError(err);
    // Expected 503/504s are in the request line; a 500 gets the full error, server-side only.
    if (e.status === 500) req.log.error({ err, code: e.code }, 'request failed');
    return sendError(req, reply, e);
  });
  app.setNotFoundHandler((req, reply) => {
    sendError(req, reply, { status: 404, code: 'DEQ_ERR_NOT_FOUND', message: `no route ${req.method} ${quote(req.url.split('?')[0], 100)}` });
  });
});
