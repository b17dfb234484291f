// Owns "the client went away": one AbortSignal per request (`req.gone`), aborted when the
// connection closes before the answer is written. Every route's solves listen to it (runSolve),
// so a departed client frees its queue place or solver rows at the next iteration boundary on
// every route and in every batching mode. Its request still ends like any other: one log line,
// one duration sample and DEQ_ERR_CANCELLED (499), never a 500.
import type { FastifyReply } from 'fastify';
import { global } from './plugin.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Aborted when the client closes its connection before the answer is written. */
    gone: AbortSignal;
  }
}

/** Status and code a departed client's request is recorded with (nginx's 499 "client closed request"). */
export const GONE_STATUS = 499;
export const GONE_CODE = 'DEQ_ERR_CANCELLED';


export const clientGonePlugin = global('deq-client-gone', async (app) => {
  app.decorateRequest('gone', null as unknown as AbortSignal);
  app.addHook('onRequest', async (req, reply) => {
    const c = new AbortController();
    req.gone = c.signal;
    const res = reply.raw;
    // A response's 'close' comes after it finished, or when its connection closed first.
    // (A request's own 'close' fires once its body is read: no use here.)
    res.once('close', () => { if (!res.writableFinished) c.abort(); });
    if (req.raw.socket?.destroyed) c.abort();
  });
  // Whatever the handler answered (an error, or a result that raced the close), a departed
  // client's request is recorded as cancelled; nothing is written, so 'finish' never comes and
  // fastify would skip its onResponse hooks (the log line, the duration sample): run them.
  app.addHook('onSend', async (req, reply) => {
    if (!req.gone.aborted) return;
    if (reply.statusCode !== GONE_STATUS) req.server.metrics?.countError(GONE_CODE);
    reply.code(GONE_STATUS);
    reply.header('x-deq-error-code', GONE_CODE);
    setImmediate(() => endAbandoned(reply));
  });
  app.addHook('onResponse', async (_req, reply) => { recorded.add(reply); });
});

/** Replies whose onResponse hooks have run. */
const recorded = new WeakSet<FastifyReply>();

/**
 * Runs fastify's end-of-response path (onResponse hooks) for a response no client will read:
 * fastify runs them on the response's 'finish' or 'error', and a response ended on a closed
 * socket emits neither (though Node then reports it writableFinished).
 */
function endAbandoned(reply: FastifyReply): void {
  const res = reply.raw;
  if (!recorded.has(reply) && res.listenerCount('error') > 0) res.emit('error', Object.assign(new Error('the client closed the connection before the answer'), { code: GONE_CODE }));
}
