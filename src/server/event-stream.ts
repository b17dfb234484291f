import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { toClientError } from './plugins/errors.js';
import type { IterationEvent } from './protocol.js';

/** Whether the client asked for server-sent events (`Accept: text/event-stream`). */
export function wantsEventStream(req: FastifyRequest): boolean {
  const accept = req.headers.accept;
  return typeof accept === 'string' && /(^|,)\s*text\/event-stream\s*(;|,|$)/i.test(accept);
}

/** How a route reports one solve's iterations: a label per class index, for classifiers. */
export type ProgressSink = (events: IterationEvent[]) => void;

/**
 * Answers as server-sent events: an `iteration` event per solver iteration while `work`
 * runs (`{ samples: [{ sample, iteration, residual, top1 }] }`), then `result` with the body
 * the JSON answer would have, or `error` with `{ error, code }`; then the stream ends. The
 * request was validated before this is called, so a bad request still gets a plain 4xx.
 * A client that disconnects cancels the solve (runSolve listens to the socket).
 */
export function sendEventStream(reply: FastifyReply, work: (progress: ProgressSink) => Promise<object>, decorate: (e: IterationEvent) => object = (e) => e): FastifyReply {
  const out = new PassThrough();
  const write = (event: string, data: unknown) => {
    if (!out.writableEnded && !out.destroyed) out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  work((events) => write('iteration', { samples: events.map(decorate) })).then(
    (body) => { write('result', body); out.end(); },
    (err: unknown) => {
      const e = toClientError(err);
      write('error', { error: e.message, code: e.code, status: e.status });
      out.end();
    },
  );
  return reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no')
    .send(out);
}
