// Model control (Triton's repository extension, --model-control explicit|poll): a registry
// above the worker pool. Each loaded model version has a WorkerPool of its own, so a version
// can be loaded, verified (sha256 checks), warmed up and swapped in while the one before it
// keeps serving, then drained and released, without touching the pool's internals.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DeqError, isDeqError, quote } from '../errors.js';
import type { ServerConfig } from './config.js';
import { loadServedModel, MODEL_NAME, type ServedModel } from './models.js';
import { WorkerPool, type PoolLogger, type PoolOptions, type PoolResult } from './pool.js';
import type { InferJob, IterationEvent } from './protocol.js';

/** What the server asks of a pool: a WorkerPool, or this registry standing in for one. */
export type SolverPool = Pick<WorkerPool, 'inFlight' | 'queued' | 'ready' | 'events' | 'modelInfo' | 'start' | 'close' | 'abortAll' | 'settle' | 'crashBusyWorkers'> & {
  logger: PoolLogger;
  /** `model`: the version the request was checked against (the registry runs it there). */
  submit(name: string, job: InferJob, signal?: AbortSignal, onProgress?: (events: IterationEvent[]) => void, model?: ServedModel): Promise<PoolResult>;
};

/** One entry of POST /v2/repository/index (Triton's fields). */
export interface RepositoryEntry {
  name: string;
  version?: string;
  state?: 'READY' | 'LOADING' | 'UNLOADING' | 'UNAVAILABLE';
  reason?: string;
}

interface Loaded {
  model: ServedModel;
  pool: WorkerPool;
  /** sha256 of the manifest (which holds every file's sha256): "changed" means this changed. */
  fingerprint: string;
  /** Solves submitted and not yet settled. */
  active: number;
  retired: boolean;
  drained?: () => void;
}

export interface RepositoryOptions {
  config: Readonly<ServerConfig>;
  /** The server's model map (state.models), kept in step with what is loaded. */
  models: Map<string, ServedModel>;
  pool: Omit<PoolOptions, 'models'>;
  onChange?: (event: { model: string; result: 'loaded' | 'unchanged' | 'failed' | 'unloaded'; version?: string; reason?: string }) => void;
}

export class ModelRepository implements SolverPool {
  readonly events = new EventEmitter();
  logger: PoolLogger;
  readonly #opts: RepositoryOptions;
  readonly #root: string;
  readonly #current = new Map<string, Loaded>();
  readonly #byModel = new WeakMap<ServedModel, Loaded>();
  readonly #retired = new Set<Loaded>();
  /** Per model name: the load or unload in progress, so they run one at a time. */
  readonly #busy = new Map<string, Promise<unknown>>();
  readonly #states = new Map<string, RepositoryEntry>();
  /** The manifest fingerprint a load last failed on (poll mode retries only once it changes). */
  readonly #failed = new Map<string, string>();
  #started = false;
  #closing = false;

  constructor(opts: RepositoryOptions) {
    this.#opts = opts;
    this.#root = resolve(opts.config.modelsDir);
    this.logger = opts.pool.logger ?? { info() {}, warn() {}, error() {} };
  }

  /** Starts a pool for every model the server found at startup. */
  async start(): Promise<void> {
    const fingerprints = await Promise.all([...this.#opts.models.values()].map((m) => fingerprint(m.dir)));
    const entries = [...this.#opts.models.values()].map((m, i) => this.#entry(m, fingerprints[i]));
    try {
      await Promise.all(entries.map((e) => e.pool.start()));
    } catch (err) {
      await Promise.all(entries.map((e) => e.pool.close()));
      throw err;
    }
    for (const e of entries) this.#install(e);
    this.#started = true;
  }

  get ready(): boolean {
    return this.#started && !this.#closing && [...this.#current.values()].every((e) => e.pool.ready);
  }

  get modelInfo(): WorkerPool['modelInfo'] {
    const info: WorkerPool['modelInfo'] = new Map();
    for (const [name, e] of this.#current) {
      const i = e.pool.modelInfo.get(name);
      if (i) info.set(name, i);
    }
    return info;
  }

  /**
   * Runs a solve on the version `model` belongs to (the one the request was checked
   * against), or the current version of `name`: a request never mixes versions.
   */
  submit(name: string, job: InferJob, signal?: AbortSignal, onProgress?: (events: IterationEvent[]) => void, model?: ServedModel): Promise<PoolResult> {
    const e = (model && this.#byModel.get(model)) ?? this.#current.get(name);
    if (!e) return Promise.reject(new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${quote(name)} (it was unloaded)`));
    if (e.retired && e.active === 0 && !e.pool.ready) {
      return Promise.reject(new DeqError('DEQ_ERR_MODEL_NOT_READY', `the version of ${name} this request started on was replaced and released; retry`, { retryAfterS: 0 }));
    }
    e.active++;
    return e.pool.submit(name, job, signal, onProgress).finally(() => {
      e.active--;
      if (e.retired && e.active === 0) e.drained?.();
    });
  }

  inFlight(model?: string): number {
    return this.#all().reduce((n, e) => n + (model === undefined || e.model.name === model ? e.pool.inFlight(e.model.name) : 0), 0);
  }

  queued(model?: string): number {
    return this.#all().reduce((n, e) => n + (model === undefined || e.model.name === model ? e.pool.queued(e.model.name) : 0), 0);
  }

  async close(timeoutMs = 2000): Promise<void> {
    this.#closing = true;
    await Promise.all(this.#all().map((e) => e.pool.close(timeoutMs)));
  }

  abortAll(): void {
    this.#closing = true;
    for (const e of this.#all()) e.pool.abortAll();
  }

  async settle(timeoutMs: number): Promise<boolean> {
    const all = await Promise.all(this.#all().map((e) => e.pool.settle(timeoutMs)));
    return all.every(Boolean);
  }

  /** Test hook: every version's busy workers fail as a worker bug would. */
  crashBusyWorkers(): number {
    return this.#all().reduce((n, e) => n + e.pool.crashBusyWorkers(), 0);
  }

  /** Every bundle in the models folder, with its state; a model loaded from a folder since removed too. */
  async index(): Promise<RepositoryEntry[]> {
    const found = await this.#scan();
    const names = new Set([...found.keys(), ...this.#current.keys(), ...this.#states.keys()]);
    return [...names].sort().map((name) => {
      const e = this.#current.get(name);
      const s = this.#states.get(name);
      if (s && (s.state === 'LOADING' || s.state === 'UNLOADING')) return s;
      if (e) return { name, version: e.model.manifest.version ?? '1', state: 'READY', ...(s?.reason ? { reason: s.reason } : {}) };
      return { name, ...(s?.version ? { version: s.version } : {}), state: 'UNAVAILABLE', ...(s?.reason ? { reason: s.reason } : found.has(name) ? { reason: 'unloaded' } : {}) };
    });
  }

  /**
   * Loads the bundle named `name` from the models folder, or reloads it if its manifest
   * changed: the new version is verified and warmed up in workers of its own, then takes new
   * requests; the old one finishes its in-flight requests and is released. On any failure the
   * old version keeps serving and the error says why.
   */
  load(name: string): Promise<{ version: string; changed: boolean }> {
    return this.#serialize(name, async () => {
      const dir = (await this.#scan()).get(name);
      if (!dir) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no bundle named ${quote(name)} in ${this.#root} (a subfolder whose manifest.json says "name": ${quote(name)})`);
      const print = await fingerprint(dir);
      const old = this.#current.get(name);
      if (old && old.fingerprint === print && old.model.dir === dir) return { version: old.model.manifest.version ?? '1', changed: false };
      this.#states.set(name, { name, state: 'LOADING' });
      let next: Loaded | undefined;
      try {
        const model = await loadServedModel(dir, this.#opts.config);
        if (model.name !== name) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${dir}: its manifest now says "name": ${quote(model.name)}`);
        next = this.#entry(model, print);
        await next.pool.start();
      } catch (err) {
        await next?.pool.close().catch(() => {});
        const reason = isDeqError(err) ? err.message : String(err);
        this.#failed.set(name, print);
        this.#states.set(name, { name, state: old ? 'READY' : 'UNAVAILABLE', reason: `load failed: ${reason}` });
        this.#opts.onChange?.({ model: name, result: 'failed', reason });
        const cause = isDeqError(err) ? ` (${err.code})` : '';
        throw new DeqError('DEQ_ERR_MODEL_LOAD_FAILED', `${name} was not loaded${old ? `; version ${old.model.manifest.version ?? '1'} keeps serving` : ''}: ${reason}${cause}`);
      }
      this.#install(next);
      this.#states.delete(name);
      this.#failed.delete(name);
      const version = next.model.manifest.version ?? '1';
      this.#opts.onChange?.({ model: name, result: 'loaded', version });
      if (old) void this.#retire(old);
      return { version, changed: true };
    });
  }

  /** Stops taking requests for `name`, waits for its in-flight ones, and releases its workers. */
  unload(name: string): Promise<void> {
    return this.#serialize(name, async () => {
      const e = this.#current.get(name);
      if (!e) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${quote(name)} is loaded`);
      this.#current.delete(name);
      this.#opts.models.delete(name);
      this.#states.set(name, { name, version: e.model.manifest.version ?? '1', state: 'UNLOADING' });
      await this.#retire(e);
      this.#states.set(name, { name, version: e.model.manifest.version ?? '1', state: 'UNAVAILABLE', reason: 'unloaded' });
      this.#opts.onChange?.({ model: name, result: 'unloaded' });
    });
  }

  /** Poll mode: loads new and changed bundles, unloads removed ones. Failures are logged and leave the old version. */
  async poll(): Promise<void> {
    const found = await this.#scan();
    for (const [name, dir] of found) {
      const e = this.#current.get(name);
      if (e && e.model.dir === dir && e.fingerprint === await fingerprint(dir).catch(() => e.fingerprint)) continue;
      if (this.#failed.get(name) === await fingerprint(dir).catch(() => '')) continue; // tried and refused; wait for a change
      await this.load(name).catch((err: Error) => this.logger.error({ model: name, err: err.message }, 'model load failed; the version before it (if any) keeps serving'));
    }
    for (const name of [...this.#current.keys()]) if (!found.has(name)) await this.unload(name).catch(() => {});
  }

  #all(): Loaded[] {
    return [...this.#current.values(), ...this.#retired];
  }

  #entry(model: ServedModel, print: string): Loaded {
    const pool = new WorkerPool({ ...this.#opts.pool, models: [{ name: model.name, dir: model.dir }], logger: this.logger });
    pool.events.on('batch', (b) => this.events.emit('batch', b));
    for (const ev of ['enqueue', 'dispatch']) pool.events.on(ev, (m: string) => this.events.emit(ev, m));
    return { model, pool, fingerprint: print, active: 0, retired: false };
  }

  /** The swap: one synchronous step, so a request sees the old version or the new, never neither. */
  #install(e: Loaded): void {
    this.#current.set(e.model.name, e);
    this.#byModel.set(e.model, e);
    this.#opts.models.set(e.model.name, e.model);
  }

  async #retire(e: Loaded): Promise<void> {
    e.retired = true;
    this.#retired.add(e);
    if (e.active > 0) await new Promise<void>((r) => { e.drained = r; });
    this.#retired.delete(e);
    await e.pool.close();
    this.logger.info({ model: e.model.name, version: e.model.manifest.version ?? '1' }, 'model version drained and released');
  }

  #serialize<T>(name: string, run: () => Promise<T>): Promise<T> {
    if (this.#closing) return Promise.reject(new DeqError('DEQ_ERR_SHUTTING_DOWN', 'the server is shutting down'));
    const prev = this.#busy.get(name) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(run);
    this.#busy.set(name, next);
    void next.finally(() => { if (this.#busy.get(name) === next) this.#busy.delete(name); }).catch(() => {});
    return next;
  }

  /** Bundles in the models folder by their manifest's name (names that are not valid, or unreadable manifests, are skipped). */
  async #scan(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let entries: string[];
    try {
      entries = (await readdir(this.#root, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    } catch {
      return out;
    }
    const own = await stat(join(this.#root, 'manifest.json')).then((s) => s.isFile(), () => false);
    const dirs = own ? [this.#root] : entries.map((d) => join(this.#root, d));
    for (const dir of dirs) {
      try {
        const name = (JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { name?: unknown }).name;
        if (typeof name === 'string' && MODEL_NAME.test(name) && !out.has(name)) out.set(name, dir);
      } catch { /* not a bundle, or a manifest being written: skipped until it parses */ }
    }
    return out;
  }
}

async function fingerprint(dir: string): Promise<string> {
  return createHash('sha256').update(await readFile(join(dir, 'manifest.json'))).digest('hex');
}
