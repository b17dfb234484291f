import type { ServerConfig } from './config.js';
import type { ServedModel } from './models.js';
import type { ModelRepository, SolverPool } from './model-repository.js';
import type { FixedPointCache } from './response-cache.js';
import type { SequenceStore } from './sequence-store.js';

/** What every route and plugin shares; decorated on the fastify instance as `deq`. */
export interface ServerState {
  readonly config: Readonly<ServerConfig>;
  readonly models: ReadonlyMap<string, ServedModel>;
  readonly pool: SolverPool;
  /** Model control (--model-control explicit|poll): the registry that loads and unloads versions. */
  readonly repository?: ModelRepository;
  /** The fixed-point response cache (disabled when --cache-bytes is 0). */
  readonly cache?: FixedPointCache;
  /** Stateful sequences' last fixed points (sequence_id). */
  readonly sequences?: SequenceStore;
  /** Set once every model has loaded and warmed up in every worker. */
  loaded: boolean;
  /** Set on shutdown: readiness false, new work refused. */
  closing: boolean;
}

/** Ready = loaded, not shutting down, and at least one live worker. */
export function isReady(s: ServerState): boolean {
  return s.loaded && !s.closing && s.pool.ready;
}

declare module 'fastify' {
  interface FastifyInstance {
    deq: ServerState;
  }
}
