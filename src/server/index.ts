import type { FastifyInstance } from 'fastify';
import { DeqError } from '../errors.js';
import { modelBudget } from './admission.js';
import { buildApp, type AppOptions } from './app.js';
import { describeConfig, type ServerConfig } from './config.js';
import { startGrpc, type GrpcServer } from './grpc/service.js';
import { discoverModels } from './models.js';
import { ModelRepository } from './model-repository.js';
import { poolSettings, WorkerPool, type PoolOptions } from './pool.js';
import { FixedPointCache } from './response-cache.js';
import { SequenceStore } from './sequence-store.js';
import { installSignalHandlers } from './signals.js';
import { startupTable } from './startup-table.js';
import type { ServerState } from './state.js';

export { DEFAULT_CONFIG, SETTINGS, describeConfig, loadConfig } from './config.js';
export type { DeadlinePolicy, ServerConfig } from './config.js';
export type { AppOptions } from './app.js';

/** After the grace period, how long the 503s to aborted requests get to reach their clients. */
const FLUSH_MS = 2000;

export interface StartOptions extends AppOptions {
  /**
   * Install SIGTERM/SIGINT handlers: drain within the grace period, release the
   * sessions, exit 0; a second signal exits at once. The CLI sets this.
   */
  handleSignals?: boolean;
}

export interface RunningServer {
  app: FastifyInstance;
  state: ServerState;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  port: number;
  /** The gRPC port, when --grpc-port turned gRPC on. */
  grpcPort?: number;
  /** Graceful stop: readiness false, drain in-flight within the grace period, release sessions. */
  close(): Promise<void>;
}

/**
 * Starts `deq-serve serve`: verifies every bundle in the models folder, listens
 * (liveness answers at once), starts the solver workers, and resolves once every
 * model has loaded and warmed up in every worker (readiness turns true).
 * A bad bundle or configuration rejects with a DeqError after cleaning up.
 */
export async function startServer(config: Readonly<ServerConfig>, opts: StartOptions = {}): Promise<RunningServer> {
  const models = await discoverModels(config.modelsDir, config);
  const poolOptions = {
    ...poolSettings(config),
    modelBudgets: Object.fromEntries([...models.values()].map((m) => [m.name, modelBudget(m.manifest, config.modelCostBudget, config.workers, config.maxBatch)])),
  } satisfies Omit<PoolOptions, 'models'>;
  // Model control: each model version gets workers of its own, so one can be swapped alone.
  const repository = config.modelControl === 'none' ? undefined : new ModelRepository({
    config, models, pool: poolOptions,
    onChange: (e) => {
      if (e.result !== 'unchanged') cache.forget(e.model);
      app.metrics.modelLoads.inc({ model: e.model, result: e.result });
      if (e.result === 'failed') log.error({ model: e.model, reason: e.reason }, 'model load failed; the version before it (if any) keeps serving');
      else log.info({ model: e.model, version: e.version, result: e.result }, 'model repository');
    },
  });
  const pool = repository ?? new WorkerPool({ ...poolOptions, models: [...models.values()].map((m) => ({ name: m.name, dir: m.dir })) });
  const unknownCached = config.cacheModels.filter((m) => !models.has(m));
  if (unknownCached.length) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --cache-models: no model named ${unknownCached.join(', ')} (serving ${[...models.keys()].join(', ')})`, { setting: 'cacheModels' });
  const unknownBatching = Object.keys(config.modelBatching).filter((m) => !models.has(m));
  if (unknownBatching.length) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --model-batching: no model named ${unknownBatching.join(', ')} (serving ${[...models.keys()].join(', ')})`, { setting: 'modelBatching' });
  const cache = new FixedPointCache(config.cacheBytes, config.cacheModels);
  const sequences = new SequenceStore({ maxSequences: config.maxSequences, maxBytes: config.sequenceBytes, idleMs: config.sequenceIdleMs });
  const state: ServerState = { config, models, pool, ...(repository ? { repository } : {}), cache, sequences, loaded: false, closing: false };
  const app = await buildApp(state, opts);
  const log = app.log;
  pool.logger = log;
  log.info({ config: describeConfig(config), models: [...models.keys()] }, 'effective configuration');
  for (const m of models.values()) {
    if (m.clamped.length) log.warn({ model: m.name, clamped: m.clamped }, 'manifest solver defaults exceed the server caps; clamped');
  }
  const cores = (describeConfig(config).cores as number);
  if (config.workers * config.intraOpThreads > cores) {
    log.warn({ workers: config.workers, threads: config.intraOpThreads, cores }, 'workers × threads exceeds the cores: solves will contend for CPU');
  }

  let grpcServer: GrpcServer | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      state.closing = true;
      clearInterval(pollTimer);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), config.shutdownGraceMs); });
      const drained = Promise.all([app.close(), grpcServer?.close(config.shutdownGraceMs + FLUSH_MS)]).then(() => {});
      if ((await Promise.race([drained, graceOver])) === 'timeout') {
        // Queued and running requests are answered 503 DEQ_ERR_SHUTTING_DOWN first
        // (a running solve stops at its next iteration); only connections still
        // open after that are closed, so no request sees a bare reset.
        log.warn({ graceMs: config.shutdownGraceMs }, 'grace period over; failing queued and running requests');
        pool.abortAll();
        const flushed = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), FLUSH_MS); });
        if ((await Promise.race([drained, flushed])) === 'timeout') {
          log.warn('closing remaining connections');
          app.server.closeAllConnections();
        }
      }
      await drained;
      clearTimeout(timer);
      await pool.close();
      log.info('server stopped; sessions released');
    })();
    return closing;
  };

  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (err) {
    await app.close().catch(() => {});
    throw listenError(err, config);
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`;

  if (config.grpcPort >= 0) {
    try {
      grpcServer = await startGrpc(app, state, config.host, config.grpcPort);
    } catch (err) {
      await app.close().catch(() => {});
      throw err;
    }
    log.info({ port: grpcServer.port }, 'gRPC (inference.GRPCInferenceService) listening');
  }

  if (opts.handleSignals) installSignalHandlers({ close, pool, log, graceMs: config.shutdownGraceMs });

  try {
    const t0 = performance.now();
    await pool.start();
    state.loaded = true;
    if (repository && config.modelControl === 'poll') {
      let polling = false;
      pollTimer = setInterval(() => {
        if (polling || state.closing) return;
        polling = true;
        repository.poll().catch((err: Error) => log.error({ err: err.message }, 'model repository poll failed')).finally(() => { polling = false; });
      }, config.repositoryPollMs);
      pollTimer.unref();
    }
    for (const [name, m] of pool.modelInfo) {
      if (m.fallbacks.length) log.warn({ model: name, provider: m.provider, fallbacks: m.fallbacks }, `${name}: running on ${m.provider}; ${m.fallbacks.join('; ')}`);
    }
    log.info({ ms: Math.round(performance.now() - t0), workers: config.workers, models: Object.fromEntries(pool.modelInfo) }, 'ready');
    // A person at a terminal gets the models as a table too; log collectors see only the JSON lines.
    if (opts.handleSignals && process.stderr.isTTY) process.stderr.write(startupTable(models, pool.modelInfo, url));
  } catch (err) {
    await close();
    throw err;
  }
  return { app, state, url, port, ...(grpcServer ? { grpcPort: grpcServer.port } : {}), close };
}

// A port that cannot be had is a configuration problem: say which and how to choose another.
function listenError(err: unknown, config: Readonly<ServerConfig>): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${config.host}:${config.port}`;
  if (code === 'EADDRINUSE') return new DeqError('DEQ_ERR_CONFIG_INVALID', `${where} is already in use: stop the process listening there, or choose another port with --port N (DEQ_PORT)`);
  if (code === 'EACCES') return new DeqError('DEQ_ERR_CONFIG_INVALID', `${where}: permission denied (ports below 1024 need privileges): choose another port with --port N (DEQ_PORT)`);
  if (code === 'EADDRNOTAVAIL') return new DeqError('DEQ_ERR_CONFIG_INVALID', `${where}: this machine has no such address: choose an interface with --host (DEQ_HOST)`);
  return err;
}
