// Issue 23: stateful sequences. The store's bounds (live sequences, bytes, idle time), its
// flags and shape check; over HTTP, a sequence's next request starts from its last z*.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SequenceStore } from '../../src/server/sequence-store.js';
import { postJson, startTestServer, type TestServer } from './helpers.js';

const state = (n: number, v = 1) => new Float32Array(n).fill(v);

describe('SequenceStore', () => {
  it('starts a sequence cold, then from its last state; start drops the state, end forgets the sequence', () => {
    const s = new SequenceStore({ maxSequences: 4, maxBytes: 1 << 20, idleMs: 1000 });
    expect(s.begin('m', 'a', [1, 4], false).z0).toBeUndefined();
    s.finish('m', 'a', [1, 4], state(4, 2), false);
    expect(Array.from(s.begin('m', 'a', [1, 4], false).z0!)).toEqual([2, 2, 2, 2]);
    expect(s.begin('other-model', 'a', [1, 4], false).z0).toBeUndefined();
    expect(s.begin('m', 'a', [2, 4], false).z0).toBeUndefined(); // another shape: cold, state dropped
    expect(s.size).toBe(0);
    s.finish('m', 'a', [1, 4], state(4), false);
    expect(s.begin('m', 'a', [1, 4], true).z0).toBeUndefined();
    s.finish('m', 'a', [1, 4], state(4), true);
    expect(s.size).toBe(0);
  });

  it('keeps at most maxSequences and maxBytes, dropping the least recently used', () => {
    const s = new SequenceStore({ maxSequences: 2, maxBytes: 48, idleMs: 1000 });
    s.finish('m', 'a', [1, 4], state(4), false);
    s.finish('m', 'b', [1, 4], state(4), false);
    s.begin('m', 'a', [1, 4], false); // a is now the most recent
    s.finish('m', 'c', [1, 4], state(4), false);
    expect(s.size).toBe(2);
    expect(s.begin('m', 'b', [1, 4], false).z0).toBeUndefined();
    expect(s.begin('m', 'a', [1, 4], false).z0).toBeDefined();
    s.finish('m', 'd', [1, 8], state(8), false); // 32 bytes: only one 16-byte state fits beside it
    expect(s.bytes).toBeLessThanOrEqual(48);
    expect(s.begin('m', 'd', [1, 8], false).z0).toBeDefined();
    s.finish('m', 'huge', [1, 64], state(64), false); // bigger than the budget: not kept
    expect(s.begin('m', 'huge', [1, 64], false).z0).toBeUndefined();
  });

  it('forgets a sequence idle past idleMs', () => {
    let now = 0;
    const s = new SequenceStore({ maxSequences: 8, maxBytes: 1 << 20, idleMs: 100 }, () => now);
    s.finish('m', 'a', [1, 4], state(4), false);
    now = 50;
    s.finish('m', 'b', [1, 4], state(4), false);
    now = 120;
    expect(s.begin('m', 'a', [1, 4], false).z0).toBeUndefined();
    expect(s.begin('m', 'b', [1, 4], false).z0).toBeDefined();
  });
});

describe('stateful sequences over HTTP', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({ batching: 'on' }); });
  afterAll(async () => { await s?.cleanup(); });
  const x = { name: 'x', datatype: 'FP32', shape: [1, 1, 8, 8], data: Array.from({ length: 64 }, (_, i) => Math.sin(i)) };
  const infer = async (parameters: Record<string, unknown>) => (await postJson(`${s.url}/v2/models/tiny-image/infer`, { inputs: [x], parameters: { tol: 1e-4, ...parameters } })).json() as Promise<any>;

  it('a sequence\'s next request starts from its last fixed point; start and end reset it; sequences do not mix', async () => {
    const first = await infer({ sequence_id: 'cam-1', sequence_start: true });
    expect(first.parameters.warm_start).toBeUndefined();
    expect(first.parameters.iterations).toBeGreaterThan(1);
    const next = await infer({ sequence_id: 'cam-1' });
    expect(next.parameters.warm_start).toBe(true);
    expect(next.parameters.iterations).toBe(1); // a batch of one: the worst sample is the sample
    expect(next.outputs[0].data[0]).toBeCloseTo(first.outputs[0].data[0], 5);
    expect((await infer({ sequence_id: 'cam-2' })).parameters.iterations).toBe(first.parameters.iterations);
    expect((await infer({ sequence_id: 'cam-1', sequence_start: true })).parameters.warm_start).toBeUndefined();
    await infer({ sequence_id: 'cam-1', sequence_end: true });
    expect((await infer({ sequence_id: 'cam-1' })).parameters.warm_start).toBeUndefined();
    expect(next.outputs.map((o: any) => o.name)).toEqual(['logits']); // the state is not returned unless asked
    const m = await (await fetch(`${s.url}/metrics`)).text();
    expect(Number(/^deq_sequences_live (\S+)$/m.exec(m)?.[1])).toBe(2); // cam-2, and cam-1 begun again after its end
    expect(Number(/^deq_sequence_state_bytes (\S+)$/m.exec(m)?.[1])).toBeGreaterThan(0);
  });
});
