// What a worker pool is configured with: the settings it takes, named as in ServerConfig and
// defaulting to DEFAULT_CONFIG's values (server/config.ts, the one defaults object), and the
// WorkerInit each of its workers starts from, with each model's batching mode.
import { batchingOf, DEFAULT_CONFIG, type BatchingSetting, type ServerConfig } from './config.js';
import type { BatchingConfig, WorkerInit } from './protocol.js';

export interface PoolLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The settings a pool takes, by their ServerConfig names (config.ts documents them). */
export const POOL_SETTINGS = [
  'workers', 'providers', 'intraOpThreads', 'queueSize', 'retryAfterS',
  'batching', 'modelBatching', 'batchRows', 'maxQueueDelayMs', 'requestShare',
  'maxRowsPerRun', 'ortMemArena', 'ortMemPattern', 'solverKernel',
] as const satisfies readonly (keyof ServerConfig)[];

export type PoolSettings = Pick<ServerConfig, (typeof POOL_SETTINGS)[number]>;

/** A setting left out takes DEFAULT_CONFIG's value. */
export interface PoolOptions extends Partial<PoolSettings> {
  models: { name: string; dir: string }[];
  logger?: PoolLogger;
  /** Per model, the cost its requests together may have on the workers (admission.ts modelBudget); default: no limit. */
  modelBudgets?: Record<string, number>;
}

/** The pool's settings out of a configuration: those it sets (undefined ones left out). */
export function poolSettings(config: Readonly<Partial<ServerConfig>>): Partial<PoolSettings> {
  const out: Partial<Record<keyof PoolSettings, unknown>> = {};
  for (const k of POOL_SETTINGS) if (config[k] !== undefined) out[k] = config[k];
  return out as Partial<PoolSettings>;
}

/** Every pool setting: `opts`' own, else DEFAULT_CONFIG's. */
export function resolvePoolSettings(opts: Readonly<Partial<PoolSettings>>): Readonly<PoolSettings> {
  return Object.freeze({ ...poolSettings(DEFAULT_CONFIG), ...poolSettings(opts) } as PoolSettings);
}

/** A batching setting as the worker names it (protocol.ts BatchingConfig). */
function workerMode(b: BatchingSetting): BatchingConfig['mode'] {
  return b === 'on' ? 'continuous' : b;
}

/** What each worker starts from: the models, and the settings as the worker names them (protocol.ts). */
export function workerInit(models: PoolOptions['models'], s: Readonly<PoolSettings>): WorkerInit {
  return {
    models,
    providers: [...s.providers],
    intraOpThreads: s.intraOpThreads,
    batching: { mode: workerMode(s.batching), maxRows: s.batchRows, maxQueueDelayMs: s.maxQueueDelayMs, requestShare: s.requestShare },
    modelBatching: Object.fromEntries(models.map((m) => [m.name, workerMode(batchingOf(s, m.name))])),
    ortMemArena: s.ortMemArena,
    ortMemPattern: s.ortMemPattern,
    solverKernel: s.solverKernel,
    maxRowsPerRun: s.maxRowsPerRun,
  };
}
