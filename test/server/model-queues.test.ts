// The pool's per-model queues (src/server/model-queues.ts): FIFO per model, round robin across
// models, the queue-full refusal, and deadline expiry while a request waits.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ModelQueues, type Queued } from '../../src/server/model-queues.js';

const FAR = 1e15;
let id = 0;
const req = (model: string, deadline = FAR): Queued => ({ id: ++id, model, deadline });

function queues(models: string[], queueSize = 10) {
  const expired: Queued[] = [];
  const q = new ModelQueues<Queued>({ models, queueSize, retryAfterS: 7, onExpire: (r) => expired.push(r) });
  return { q, expired };
}

// Takes every request that can go, the way the pool's pump does: `accept` says which heads may go.
function takeAll(q: ModelQueues<Queued>, accept: (r: Queued) => boolean = () => true): Queued[] {
  const out: Queued[] = [];
  for (let next = q.take((r) => (accept(r) ? true : undefined)); next; next = q.take((r) => (accept(r) ? true : undefined))) out.push(next[0]);
  return out;
}

describe('ModelQueues', () => {
  it('serves models in round-robin turn, FIFO within each', () => {
    const { q } = queues(['a', 'b', 'c']);
    const a = [req('a'), req('a'), req('a')];
    const b = [req('b')];
    const c = [req('c'), req('c')];
    for (const r of [...a, ...b, ...c]) q.push(r);
    expect(takeAll(q)).toEqual([a[0], b[0], c[0], a[1], c[1], a[2]]);
    expect(q.length()).toBe(0);
  });

  it('a head that must wait does not stop the other models, and keeps its place', () => {
    const { q } = queues(['a', 'b']);
    const a = [req('a'), req('a')];
    const b = [req('b'), req('b')];
    for (const r of [...a, ...b]) q.push(r);
    expect(takeAll(q, (r) => r.model === 'b')).toEqual(b);
    expect(q.length('a')).toBe(2);
    expect(takeAll(q)).toEqual(a);
  });

  it('the turn moves on from the model last served, not back to the first', () => {
    const { q } = queues(['a', 'b']);
    const a1 = req('a');
    q.push(a1);
    expect(q.take(() => true)?.[0]).toBe(a1);
    const a2 = req('a');
    const b1 = req('b');
    q.push(a2);
    q.push(b1);
    expect(q.take(() => true)?.[0]).toBe(b1);
  });

  it('refuses one more with DEQ_ERR_QUEUE_FULL at --queue-size, counting requests waiting elsewhere', () => {
    const { q } = queues(['a', 'b'], 2);
    q.push(req('a'));
    expect(q.refusal('a')).toBeUndefined();
    expect(q.refusal('a', 1)).toMatchObject({ code: 'DEQ_ERR_QUEUE_FULL', details: { retryAfterS: 7 } });
    q.push(req('a'));
    expect(q.refusal('a')).toMatchObject({ code: 'DEQ_ERR_QUEUE_FULL' });
    expect(q.refusal('b')).toBeUndefined();
  });

  it('a queue size of 0 refuses every wait', () => {
    const { q } = queues(['a'], 0);
    expect(q.refusal('a')?.code).toBe('DEQ_ERR_QUEUE_FULL');
  });

  it('requeue puts requests back at the front of their own queues, in order', () => {
    const { q } = queues(['a', 'b']);
    const waiting = req('a');
    q.push(waiting);
    const back = [req('a'), req('b'), req('a')];
    q.requeue(back);
    expect(takeAll(q, (r) => r.model === 'a')).toEqual([back[0], back[2], waiting]);
    expect(takeAll(q)).toEqual([back[1]]);
  });

  it('remove takes one request out by id; drain empties every queue', () => {
    const { q } = queues(['a', 'b']);
    const rs = [req('a'), req('b'), req('a')];
    for (const r of rs) q.push(r);
    expect(q.remove(rs[1].id)).toBe(rs[1]);
    expect(q.remove(rs[1].id)).toBeUndefined();
    expect(q.drain()).toEqual([rs[0], rs[2]]);
    expect(q.length()).toBe(0);
  });

  it('refuses a model it does not serve', () => {
    const { q } = queues(['a']);
    expect(q.has('zz')).toBe(false);
    expect(() => q.push(req('zz'))).toThrow(/no model named zz/);
  });
});

describe('ModelQueues deadlines', () => {
  beforeEach(() => { vi.useFakeTimers(); });
  afterEach(() => { vi.useRealTimers(); });

  it('a request whose deadline passes while it waits leaves its queue and is reported once', () => {
    const { q, expired } = queues(['a']);
    const soon = req('a', Date.now() + 100);
    const later = req('a', Date.now() + 1000);
    q.push(soon);
    q.push(later);
    vi.advanceTimersByTime(99);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual([soon]);
    expect(q.length('a')).toBe(1);
    expect(q.take(() => true)?.[0]).toBe(later);
    vi.advanceTimersByTime(5000);
    expect(expired).toEqual([soon]);
  });

  it('a request taken, removed or drained before its deadline never expires', () => {
    const { q, expired } = queues(['a']);
    const rs = [req('a', Date.now() + 50), req('a', Date.now() + 50), req('a', Date.now() + 50)];
    for (const r of rs) q.push(r);
    q.take(() => true);
    q.remove(rs[1].id);
    q.drain();
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual([]);
  });

  it('a deadline already past expires on the next turn; a requeued request is timed again', () => {
    const { q, expired } = queues(['a']);
    const past = req('a', Date.now() - 10);
    q.push(past);
    expect(q.length('a')).toBe(1);
    vi.advanceTimersByTime(0);
    expect(expired).toEqual([past]);
    const back = req('a', Date.now() + 20);
    q.requeue([back]);
    vi.advanceTimersByTime(20);
    expect(expired).toEqual([past, back]);
  });
});
