// The pool's dispatch policy (src/server/dispatch.ts), and the admission budgets (admission.ts).
import { describe, expect, it } from 'vitest';
import { pickWorker, type DispatchRequest, type WorkerLoad } from '../../src/server/dispatch.js';
import { admitRequest, modelBudget, requestCost } from '../../src/server/admission.js';
import type { Manifest } from '../../src/runtime/index.js';

const idle = (): WorkerLoad => ({ ready: true, jobs: 0, serialJobs: 0, rows: 0, cost: 0 });
/** A busy worker; `serialJobs` defaults to all its jobs (every model with batching off). */
const busy = (cost: number, jobs = 1, rows = 1, serialJobs = jobs): WorkerLoad => ({ ready: true, jobs, serialJobs, rows, cost });
const policy = { prefetch: 1, maxRows: 32, models: 2 };
/** Requests of a model with batching off (`off`) or on (`on`). */
const off = (r: Omit<DispatchRequest, 'serial'>): DispatchRequest => ({ ...r, serial: true });
const on = (r: Omit<DispatchRequest, 'serial'>): DispatchRequest => ({ ...r, serial: false });
const light = { rows: 1, cost: 10, modelCost: 0, modelBudget: 1000 };

describe('pickWorker, batching off', () => {
  it('takes an idle worker first, skipping ones not ready', () => {
    expect(pickWorker([busy(5), { ...idle(), ready: false }, idle()], off(light), policy)).toBe(2);
  });
  it('with none idle, the busy worker whose work costs least holds it, never one already holding its prefetch', () => {
    expect(pickWorker([busy(32_000), busy(40)], off(light), policy)).toBe(1);
    expect(pickWorker([busy(32_000), busy(40, 2)], off(light), policy)).toBe(0);
    expect(pickWorker([busy(50, 2), busy(40, 2)], off(light), policy)).toBe(-1);
  });
  it('a model over its budget waits while it has work on the workers, even with a worker idle', () => {
    expect(pickWorker([busy(32_000), idle()], off({ rows: 64, cost: 32_000, modelCost: 32_000, modelBudget: 4_000 }), policy)).toBe(-1);
  });
  it('a request over its model\'s budget still runs alone', () => {
    expect(pickWorker([idle(), idle()], off({ rows: 64, cost: 32_000, modelCost: 0, modelBudget: 4_000 }), policy)).toBe(0);
  });
  it('within its budget, a model shares the workers', () => {
    expect(pickWorker([busy(1000), idle()], off({ rows: 1, cost: 1000, modelCost: 1000, modelBudget: 4_000 }), policy)).toBe(1);
  });
  it('with one model served, nobody is waiting for a share: the budget does not hold it back', () => {
    expect(pickWorker([busy(32_000), idle()], off({ rows: 64, cost: 32_000, modelCost: 32_000, modelBudget: 4_000 }), { ...policy, models: 1 })).toBe(1);
  });
});

describe('pickWorker, batching on', () => {
  it('the least loaded worker with room for the rows (up to twice a solve)', () => {
    expect(pickWorker([busy(0, 3, 40), busy(0, 2, 20)], on(light), policy)).toBe(1);
    expect(pickWorker([busy(0, 3, 64), busy(0, 2, 64)], on(light), policy)).toBe(-1);
  });
  it('a request bigger than that goes to an idle worker', () => {
    expect(pickWorker([busy(0, 1, 10), idle()], on({ ...light, rows: 100 }), policy)).toBe(1);
    expect(pickWorker([busy(0, 1, 10)], on({ ...light, rows: 100 }), policy)).toBe(-1);
  });
  it('fair share applies as with batching off', () => {
    expect(pickWorker([idle()], on({ rows: 1, cost: 900, modelCost: 200, modelBudget: 1000 }), policy)).toBe(-1);
  });
});

describe('pickWorker, models in different batching modes (issue #20)', () => {
  // A worker whose jobs are all of a batching model: its lane (batching off) is free.
  const batched = (cost: number, jobs = 1, rows = 1) => busy(cost, jobs, rows, 0);
  it('a batching model\'s request joins a worker whose lane is busy: it is not held behind that solve', () => {
    expect(pickWorker([busy(32_000, 2, 2)], on(light), policy)).toBe(0);
    expect(pickWorker([busy(32_000, 2, 2)], off(light), policy)).toBe(-1);
  });
  it('a request with batching off goes where its lane is free before a cheaper worker that would only hold it', () => {
    expect(pickWorker([busy(40), batched(32_000, 3, 3)], off(light), policy)).toBe(1);
    expect(pickWorker([batched(32_000, 3, 3), busy(40)], off(light), policy)).toBe(0);
    expect(pickWorker([batched(32_000, 3, 3), batched(500, 5, 5)], off(light), policy)).toBe(1);
  });
  it('a lane counts only the requests of models with batching off against the prefetch', () => {
    // Three jobs on it, one of them on the lane: it may still hold one more.
    expect(pickWorker([busy(900, 3, 3, 1)], off(light), policy)).toBe(0);
    expect(pickWorker([busy(900, 3, 3, 2)], off(light), policy)).toBe(-1);
  });
  it('a batching model\'s request counts the rows of every model on the worker: they share its thread', () => {
    expect(pickWorker([busy(32_000, 1, 60, 1), busy(0, 2, 10, 0)], on(light), policy)).toBe(1);
    expect(pickWorker([busy(32_000, 1, 64, 1)], on(light), policy)).toBe(-1);
  });
});

describe('admission', () => {
  const manifest = (shape: number[], maxIter: number, context?: number) => ({ state: { shape }, solver: { max_iter: maxIter }, ...(context ? { tokenizer: { context } } : {}) }) as unknown as Manifest;
  it('cost is batch × max_iter × state values per sample, a sequence model\'s at its length', () => {
    expect(requestCost(manifest([4, 3, 3], 30), 2, 10)).toBe(2 * 10 * 36);
    expect(requestCost(manifest([-1, 8], 30), 3, 5, 7)).toBe(3 * 5 * 56);
  });
  it('the per-request budget refuses over it with DEQ_ERR_TOO_COSTLY naming the setting; 0 is no budget', () => {
    expect(() => admitRequest(101, 100, 'this solve')).toThrow(/--max-request-cost/);
    try { admitRequest(101, 100, 'x'); } catch (e) { expect((e as { code: string }).code).toBe('DEQ_ERR_TOO_COSTLY'); }
    expect(() => admitRequest(100, 100, 'x')).not.toThrow();
    expect(() => admitRequest(1e12, 0, 'x')).not.toThrow();
  });
  it('a model\'s default budget holds a largest batch at its own max_iter on each worker; a setting overrides it', () => {
    const m = manifest([2, 2], 30);
    expect(modelBudget(m, 0, 2, 64)).toBe(2 * 64 * 30 * 4);
    expect(modelBudget(m, 0, 2, 64)).toBeLessThan(requestCost(m, 64, 500));
    expect(modelBudget(manifest([-1, 4], 20, 16), 0, 1, 8)).toBe(8 * 20 * 64);
    expect(modelBudget(m, 123, 2, 64)).toBe(123);
  });
});
