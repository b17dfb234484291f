import { createHash, timingSafeEqual } from 'node:crypto';
import { DeqError } from '../../errors.js';
import { global } from './plugin.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Health and metrics routes: reachable without a key when `openHealth` is on. */
    open?: boolean;
  }
}

// Keys are compared as SHA-256 digests: equal lengths for timingSafeEqual, and the
// length of a configured key leaks nothing.
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * Whether an `Authorization` value (`Bearer <key>`) holds one of the keys: every key is
 * compared, in constant time. HTTP's header and gRPC's metadata key of the same name use it.
 */
export function keyChecker(apiKeys: readonly string[]): (header: unknown) => boolean {
  const keys = apiKeys.map(digest);
  return (header) => {
    const m = typeof header === 'string' ? /^Bearer ([\x21-\x7e]{1,512})$/.exec(header) : null;
    if (!m) return false;
    const given = digest(m[1]);
    let ok = false;
    for (const k of keys) ok = timingSafeEqual(k, given) || ok;
    return ok;
  };
}

/** Optional bearer-key authentication. Every key is compared, in constant time, on every request. */
export const authPlugin = global('deq-auth', async (app, opts: { apiKeys: readonly string[]; openHealth: boolean }) => {
  if (opts.apiKeys.length === 0) return;
  const valid = keyChecker(opts.apiKeys);
  const missing = new DeqError('DEQ_ERR_UNAUTHORIZED', 'missing or invalid API key (send Authorization: Bearer <key>)');
  app.addHook('onRequest', async (req) => {
    if (opts.openHealth && req.routeOptions.config?.open) return;
    if (!valid(req.headers.authorization)) throw missing;
  });
});
