import { build, type Histogram } from 'hdr-histogram-js';
import { Pool } from 'undici';

// A bounded HTTP load generator: closed loop (N clients, each sends its next request
// when the last one returns) or open loop (Poisson arrivals at a rate, latency counted
// from the intended send time so a slow server cannot hide its queue: no coordinated
// omission). Latencies go into HDR histograms, one per traffic class.

/** One request to send. */
export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

/** A kind of traffic and its share of the requests (shares are normalized). */
export interface TrafficClass {
  name: string;
  share: number;
  /** The k-th request of this class (payloads rotate through a pool). */
  request(k: number): LoadRequest;
  /** Optional: units of work in a successful response (e.g. tokens scored), for units/s. */
  units?(status: number, body: string): number;
}

export type LoadShape = { mode: 'closed'; concurrency: number } | { mode: 'open'; rate: number };

export interface LoadLimits {
  /** Measured time in seconds (after warm-up). */
  durationS: number;
  /** Stop issuing after this many measured requests. */
  maxRequests: number;
  /** Requests sent before measuring, unrecorded. */
  warmupRequests: number;
  /** Per-request timeout. */
  timeoutMs: number;
}

export interface ClassStats {
  requests: number;
  ok: number;
  /** 503s (shed load). */
  rejected: number;
  /** Other non-2xx answers, timeouts and connection errors. */
  errors: number;
  units: number;
  p50_ms: number;
  p90_ms: number;
  p95_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface LoadResult extends ClassStats {
  shape: LoadShape;
  seconds: number;
  rps: number;
  units_per_s: number;
  classes: Record<string, ClassStats>;
}

const newHistogram = (): Histogram => build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });

/** A small seeded PRNG (mulberry32): the same seed gives the same arrival times and class picks. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Recorder {
  hist: Histogram;
  stats: Omit<ClassStats, 'p50_ms' | 'p90_ms' | 'p95_ms' | 'p99_ms' | 'max_ms'>;
  sent: number;
}

/** Runs one load level against `baseUrl` and reports latency percentiles per class and overall. */
export async function runLoad(baseUrl: string, classes: TrafficClass[], shape: LoadShape, limits: LoadLimits, seed = 1): Promise<LoadResult> {
  if (classes.length === 0) throw new RangeError('at least one traffic class is needed');
  const total = classes.reduce((a, c) => a + c.share, 0);
  if (!(total > 0)) throw new RangeError('class shares must add up to more than 0');
  const cumulative = classes.map((_, i) => classes.slice(0, i + 1).reduce((a, c) => a + c.share, 0) / total);
  const rand = prng(seed);
  const pick = () => {
    const r = rand();
    const i = cumulative.findIndex((c) => r < c);
    return i === -1 ? classes.length - 1 : i;
  };
  const connections = shape.mode === 'closed' ? shape.concurrency : 256;
  const pool = new Pool(baseUrl, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const rec: Recorder[] = classes.map(() => ({ hist: newHistogram(), stats: { requests: 0, ok: 0, rejected: 0, errors: 0, units: 0 }, sent: 0 }));
  const all = newHistogram();

  const send = async (ci: number, measured: boolean, intendedAt: number): Promise<void> => {
    const c = classes[ci], r = rec[ci];
    const req = c.request(r.sent++);
    let status = 0, text = '';
    try {
      const res = await pool.request({
        method: req.method, path: req.path, headers: req.headers, body: req.body,
        headersTimeout: limits.timeoutMs, bodyTimeout: limits.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch {
      status = 0;
    }
    if (!measured) return;
    const us = Math.max(1, Math.round((performance.now() - intendedAt) * 1000));
    r.stats.requests++;
    if (status >= 200 && status < 300) {
      r.stats.ok++;
      if (c.units) r.stats.units += c.units(status, text);
    } else if (status === 503) r.stats.rejected++;
    else r.stats.errors++;
    r.hist.recordValue(us);
    all.recordValue(us);
  };

  try {
    // Warm-up: the same traffic, unrecorded (first runs at each shape are slow).
    const warm: Promise<void>[] = [];
    for (let i = 0; i < limits.warmupRequests; i++) warm.push(send(pick(), false, performance.now()));
    await Promise.all(warm);

    const t0 = performance.now();
    const end = t0 + limits.durationS * 1000;
    let issued = 0;
    if (shape.mode === 'closed') {
      const client = async () => {
        while (performance.now() < end && issued < limits.maxRequests) {
          issued++;
          await send(pick(), true, performance.now());
        }
      };
      await Promise.all(Array.from({ length: shape.concurrency }, client));
    } else {
      const inflight = new Set<Promise<void>>();
      let next = t0;
      while (issued < limits.maxRequests) {
        next += (-Math.log(1 - rand()) / shape.rate) * 1000;
        if (next >= end) break;
        const wait = next - performance.now();
        if (wait > 1) await new Promise((r) => setTimeout(r, wait));
        issued++;
        const p = send(pick(), true, next).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await Promise.all(inflight);
    }
    const seconds = (performance.now() - t0) / 1000;
    const summary = (h: Histogram, s: Recorder['stats']): ClassStats => ({
      ...s,
      p50_ms: h.getValueAtPercentile(50) / 1000,
      p90_ms: h.getValueAtPercentile(90) / 1000,
      p95_ms: h.getValueAtPercentile(95) / 1000,
      p99_ms: h.getValueAtPercentile(99) / 1000,
      max_ms: h.maxValue / 1000,
    });
    const totals = rec.reduce((a, r) => ({
      requests: a.requests + r.stats.requests, ok: a.ok + r.stats.ok, rejected: a.rejected + r.stats.rejected,
      errors: a.errors + r.stats.errors, units: a.units + r.stats.units,
    }), { requests: 0, ok: 0, rejected: 0, errors: 0, units: 0 });
    return {
      shape,
      seconds,
      ...summary(all, totals),
      rps: totals.ok / seconds,
      units_per_s: totals.units / seconds,
      classes: Object.fromEntries(classes.map((c, i) => [c.name, summary(rec[i].hist, rec[i].stats)])),
    };
  } finally {
    await pool.close();
  }
}
