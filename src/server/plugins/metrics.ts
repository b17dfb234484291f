import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from '../../errors.js';
import { RowEnd, summarizeSolve } from '../../solver/index.js';
import type { BatchStats, PoolResult } from '../pool.js';
import type { ServerState } from '../state.js';
import { global } from './plugin.js';

/** The server's Prometheus metrics, on a registry of its own (several servers may share a process in tests). */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'method' | 'route' | 'status'>;
  readonly queueDuration: Histogram<'model'>;
  readonly solveDuration: Histogram<'model'>;
  readonly iterations: Histogram<'model' | 'method'>;
  readonly residual: Histogram<'model' | 'method'>;
  readonly samples: Counter<'model'>;
  readonly notConverged: Counter<'model'>;
  readonly diverged: Counter<'model'>;
  readonly deadlineStops: Counter<'model'>;
  readonly earlyExits: Counter<'model'>;
  readonly cacheHits: Counter<'model'>;
  readonly cacheMisses: Counter<'model'>;
  readonly cacheEvictions: Counter<'model'>;
  readonly errors: Counter<'code'>;
  readonly batchRows: Histogram<'model'>;
  readonly batchJoins: Histogram<'model'>;
  readonly batchLeaves: Histogram<'model'>;
  readonly batchPositions: Counter<'model'>;
  readonly batchPadPositions: Counter<'model'>;
  readonly modelLoads: Counter<'model' | 'result'>;

  constructor(state: Pick<ServerState, 'models' | 'pool' | 'config' | 'cache' | 'sequences'>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'deq_' });
    // Histograms, not summaries: they aggregate across replicas.
    this.requestDuration = new Histogram({
      name: 'deq_request_duration_seconds', help: 'HTTP request duration, receipt to response', registers,
      labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.queueDuration = new Histogram({
      name: 'deq_queue_duration_seconds', help: 'Time a request waited: for a worker, then (batching) for a place in a solve', registers,
      labelNames: ['model'], buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    });
    this.solveDuration = new Histogram({
      name: 'deq_solve_duration_seconds', help: 'Worker time per request: inject, solve and head', registers,
      labelNames: ['model'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    });
    this.iterations = new Histogram({
      name: 'deq_solver_iterations', help: 'Cell evaluations per sample', registers,
      labelNames: ['model', 'method'], buckets: [1, 2, 3, 5, 8, 12, 16, 24, 32, 48, 64, 100, 200, 500],
    });
    this.residual = new Histogram({
      name: 'deq_solver_final_residual', help: 'Residual of the returned iterate, per sample (in its stop mode)', registers,
      labelNames: ['model', 'method'], buckets: [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1],
    });
    this.samples = new Counter({ name: 'deq_solver_samples_total', help: 'Samples solved', labelNames: ['model'], registers });
    this.notConverged = new Counter({ name: 'deq_solver_not_converged_total', help: 'Samples that stopped above tol, early exits on a stable prediction not counted', labelNames: ['model'], registers });
    this.diverged = new Counter({ name: 'deq_solver_diverged_total', help: 'Samples whose residual blew up or became non-finite', labelNames: ['model'], registers });
    this.earlyExits = new Counter({ name: 'deq_solver_early_exits_total', help: 'Samples stopped on a stable prediction (stop_mode "prediction"), before tol', labelNames: ['model'], registers });
    this.deadlineStops = new Counter({ name: 'deq_solver_deadline_stops_total', help: 'Solves cut short by the request deadline', labelNames: ['model'], registers });
    this.errors = new Counter({ name: 'deq_errors_total', help: 'Error responses by catalogue code', labelNames: ['code'], registers });
    const rowBuckets = [1, 2, 4, 8, 16, 32, 64, 128];
    this.batchRows = new Histogram({ name: 'deq_batch_rows', help: 'Samples per cell run (batching)', labelNames: ['model'], buckets: rowBuckets, registers });
    this.batchJoins = new Histogram({ name: 'deq_batch_joins', help: 'Samples that joined a running solve, per solve (batching)', labelNames: ['model'], buckets: [0, ...rowBuckets], registers });
    this.batchPositions = new Counter({ name: 'deq_batch_positions_total', help: 'Sequence positions evaluated by cell runs of padded models (state.pad), padding included (batching)', labelNames: ['model'], registers });
    this.batchPadPositions = new Counter({ name: 'deq_batch_pad_positions_total', help: 'Of deq_batch_positions_total, the padding positions (batching)', labelNames: ['model'], registers });
    this.batchLeaves = new Histogram({ name: 'deq_batch_leaves', help: 'Samples that left a solve while others ran on, per solve (batching)', labelNames: ['model'], buckets: [0, ...rowBuckets], registers });
    this.cacheHits = new Counter({ name: 'deq_cache_hits_total', help: 'Requests (solves) answered from the fixed-point response cache, with no solve', labelNames: ['model'], registers });
    this.cacheMisses = new Counter({ name: 'deq_cache_misses_total', help: 'Cacheable solves not found in the response cache', labelNames: ['model'], registers });
    this.cacheEvictions = new Counter({ name: 'deq_cache_evictions_total', help: 'Response cache entries evicted (least recently used) to make room', labelNames: ['model'], registers });
    this.modelLoads = new Counter({ name: 'deq_model_loads_total', help: 'Repository API loads, reloads and unloads by model and result (loaded, unchanged, failed, unloaded)', labelNames: ['model', 'result'], registers });
    const { pool, models, config } = state;
    // Model control changes the model set: every per-model gauge is rebuilt from it on each scrape.
    new Gauge({
      name: 'deq_model_loaded', help: 'Models being served, by version (1 each); a reload changes the version, an unload removes the series', labelNames: ['model', 'version'], registers,
      collect() { this.reset(); for (const m of models.values()) this.set({ model: m.name, version: m.manifest.version ?? '1' }, 1); },
    });
    const { cache, sequences } = state;
    new Gauge({ name: 'deq_sequences_live', help: 'Stateful sequences (sequence_id) whose last fixed point is kept', registers, collect() { if (sequences) this.set(sequences.size); } });
    new Gauge({ name: 'deq_sequence_state_bytes', help: 'Bytes of fixed-point state the live sequences hold (budget: --sequence-bytes)', registers, collect() { if (sequences) this.set(sequences.bytes); } });
    new Gauge({
      name: 'deq_cache_bytes', help: 'Bytes the response cache holds (its budget: --cache-bytes)', labelNames: ['model'], registers,
      collect() { if (cache) for (const m of models.keys()) if (cache.enabled(m)) this.set({ model: m }, cache.usage(m).bytes); },
    });
    new Gauge({
      name: 'deq_cache_entries', help: 'Answers the response cache holds', labelNames: ['model'], registers,
      collect() { if (cache) for (const m of models.keys()) if (cache.enabled(m)) this.set({ model: m }, cache.usage(m).entries); },
    });
    // The settings that decide throughput, as labels of a constant 1 (the `_info` idiom), so a
    // dashboard or a load test (bench http) can say what it measured.
    new Gauge({
      name: 'deq_server_info', help: 'Serving settings: solver workers, ONNX Runtime intra-op threads, batching mode, solver kernel, providers', registers,
      labelNames: ['workers', 'intra_op_threads', 'batching', 'solver_kernel', 'providers'],
    }).set({
      workers: String(config.workers), intra_op_threads: String(config.intraOpThreads), batching: config.batching,
      solver_kernel: config.solverKernel, providers: config.providers.join(','),
    }, 1);
    new Gauge({
      name: 'deq_inflight_requests', help: 'Solves running on a worker', labelNames: ['model'], registers,
      collect() { this.reset(); for (const m of models.keys()) this.set({ model: m }, pool.inFlight(m)); },
    });
    new Gauge({
      name: 'deq_queued_requests', help: 'Solves waiting for a worker', labelNames: ['model'], registers,
      collect() { this.reset(); for (const m of models.keys()) this.set({ model: m }, pool.queued(m)); },
    });
  }

  /** Records one finished solve. */
  observeSolve(model: string, r: PoolResult): void {
    const method = r.options.method;
    this.queueDuration.observe({ model }, r.queueMs / 1000);
    this.solveDuration.observe({ model }, r.timing.totalMs / 1000);
    const s = r.solver;
    this.samples.inc({ model }, s.iterations.length);
    // Histograms take every sample; the counts come from the shared reduction.
    for (let i = 0; i < s.iterations.length; i++) {
      this.iterations.observe({ model, method }, s.iterations[i]);
      if (Number.isFinite(s.residual[i])) this.residual.observe({ model, method }, s.residual[i]);
    }
    const sum = summarizeSolve(s);
    let early = 0;
    for (let i = 0; i < s.end.length; i++) if (s.end[i] === RowEnd.Predicted) early++;
    if (early) this.earlyExits.inc({ model }, early);
    if (sum.rows > sum.converged + early) this.notConverged.inc({ model }, sum.rows - sum.converged - early);
    if (sum.diverged) this.diverged.inc({ model }, sum.diverged);
    if (s.stopped) this.deadlineStops.inc({ model });
  }

  countError(code: ErrorCode): void {
    this.errors.inc({ code });
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ServerMetrics;
  }
}

/** The HTTP edge's limits (#22): how close the server is to them, and how often it closed connections to stay under. */
function edgeMetrics(registry: Registry, edge: FastifyInstance['edge']): void {
  const registers = [registry];
  const { connections, bodyBudget } = edge;
  new Gauge({ name: 'deq_open_connections', help: 'Open client connections (--max-connections caps them)', registers, collect() { this.set(connections.stats.open); } });
  new Gauge({ name: 'deq_body_bytes_in_flight', help: 'Request-body bytes charged to --body-budget', registers, collect() { this.set(bodyBudget.inFlight); } });
  // Cumulative counts kept by the guard, reported as counters.
  let evicted = 0;
  let probation = 0;
  new Counter({
    name: 'deq_connections_evicted_total', help: 'Idle connections closed to make room under --max-connections', registers,
    collect() { const n = connections.stats.evicted; this.inc(n - evicted); evicted = n; },
  });
  new Counter({
    name: 'deq_connections_probation_total', help: 'Connections let in past --max-connections, to health routes only', registers,
    collect() { const n = connections.stats.probation; this.inc(n - probation); probation = n; },
  });
}

/** Serves GET /metrics and times every request by route template (never raw URLs: bounded labels). */
export const metricsPlugin = global('deq-metrics', async (app, opts: { state: ServerState }) => {
  const metrics = new ServerMetrics(opts.state);
  app.decorate('metrics', metrics);
  const onBatch = (b: BatchStats) => {
    for (const r of b.rows) metrics.batchRows.observe({ model: b.model }, r);
    for (const j of b.joins) metrics.batchJoins.observe({ model: b.model }, j);
    for (const l of b.leaves) metrics.batchLeaves.observe({ model: b.model }, l);
    if (b.positions) {
      metrics.batchPositions.inc({ model: b.model }, b.positions);
      metrics.batchPadPositions.inc({ model: b.model }, b.padPositions);
    }
  };
  opts.state.pool.events.on('batch', onBatch);
  edgeMetrics(metrics.registry, app.edge);
  app.addHook('onResponse', async (req, reply) => {
    metrics.requestDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  app.get('/metrics', { config: { open: true } }, async (_req, reply) => {
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.addHook('onClose', async () => {
    opts.state.pool.events.off('batch', onBatch);
    metrics.registry.clear();
  });
});
