// The playground's residual source (web/playground/residual.ts): its event-stream parser, and a
// solve's stream read as it arrives, against a live server, in chunks of any size.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventStreamParser, readSolveStream, streamSource, type IterationSample, type StreamFailure } from '../../web/playground/residual.js';
import { postJson, startTestServer, type TestServer } from '../server/helpers.js';

/** A body that delivers `bytes` `size` bytes at a time, as a slow network would. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

class Failed extends Error {
  constructor(readonly f: StreamFailure) { super(f.error); }
}

describe('EventStreamParser', () => {
  it('splits events at blank lines, across chunks, with any line ending; joins data lines; skips comments', () => {
    const text = ': hello\r\nevent: iteration\r\ndata: {"a":1}\r\n\r\nevent: result\ndata: x\ndata: y\n\ndata: plain\r\rid: 4\n';
    for (let size = 1; size <= text.length; size++) {
      const p = new EventStreamParser();
      const got = [];
      for (let i = 0; i < text.length; i += size) got.push(...p.push(text.slice(i, i + size)));
      expect(got, `chunks of ${size}`).toEqual([
        { event: 'iteration', data: '{"a":1}' },
        { event: 'result', data: 'x\ny' },
        { event: 'message', data: 'plain' },
      ]);
    }
  });

  it('yields nothing for an event whose blank line has not arrived', () => {
    const p = new EventStreamParser();
    expect(p.push('event: result\ndata: {}\n')).toEqual([]);
    expect(p.push('\n')).toEqual([{ event: 'result', data: '{}' }]);
  });
});

describe('a solve read from its event stream', () => {
  let s: TestServer;
  beforeAll(async () => { s = await startTestServer({}); });
  afterAll(async () => { await s?.cleanup(); });

  const sse = async (path: string, body: unknown) => new Uint8Array(await (await postJson(`${s.url}${path}`, body, { accept: 'text/event-stream' })).arrayBuffer());

  it('gives every iteration in order, then the answer: the traced residuals, in chunks of any size', async () => {
    const x = [Array.from({ length: 8 }, (_, r) => Array.from({ length: 8 }, (_, c) => Math.sin(r * 8 + c)))];
    const traced: any = await (await postJson(`${s.url}/v1/models/tiny-image/predict`, { inputs: { x: [x] }, parameters: { trace: true, tol: 1e-5 } })).json();
    const bytes = await sse('/v1/models/tiny-image/predict', { inputs: { x: [x] }, parameters: { tol: 1e-5 } });
    for (const size of [1, 7, 100, bytes.length]) {
      const seen: IterationSample[] = [];
      const answer: any = await readSolveStream(chunked(bytes, size), (samples) => seen.push(...samples), (f) => new Failed(f));
      expect(seen.map((e) => e.iteration)).toEqual(Array.from({ length: traced.solver.iterations }, (_, i) => i + 1));
      expect(seen.map((e) => e.residual)).toEqual(traced.solver.trace[0].residual);
      expect(answer.outputs).toEqual(traced.outputs);
    }
  });

  it('streamSource puts each row on its curve: /score windows, one curve each', async () => {
    const text = Array.from({ length: 40 }, (_, i) => ['the', 'man', 'said', 'it', 'was'][i % 5]).join(' ');
    const bytes = await sse('/v1/models/tiny-lm/score', { text });
    const source = streamSource<any>((on) => readSolveStream(chunked(bytes, 64), on, (f) => new Failed(f)), (x) => `window ${x.window}`);
    const curves = new Map<string, number[]>();
    const answer = await source.run((name, p) => curves.set(name, [...(curves.get(name) ?? []), p.iteration]));
    expect(answer.results[0].windows).toBeGreaterThan(2);
    expect([...curves.keys()]).toEqual(Array.from({ length: answer.results[0].windows }, (_, w) => `window ${w}`));
    for (const its of curves.values()) expect(its).toEqual(Array.from({ length: its.length }, (_, i) => i + 1));
    expect(Math.max(...[...curves.values()].map((c) => c.length))).toBe(answer.results[0].solver.iterations);
  });

  it('an error event rejects with the server\'s message and code; a stream cut short rejects too', async () => {
    const bad = new TextEncoder().encode('event: iteration\ndata: {"samples":[{"sample":0,"iteration":1,"residual":0.5}]}\n\nevent: error\ndata: {"error":"too slow","code":"DEQ_ERR_DEADLINE_EXCEEDED","status":504}\n\n');
    await expect(readSolveStream(chunked(bad, 5), () => {}, (f) => new Failed(f))).rejects.toMatchObject({ f: { code: 'DEQ_ERR_DEADLINE_EXCEEDED', status: 504 } });
    const cut = new TextEncoder().encode('event: iteration\ndata: {"samples":[]}\n\n');
    await expect(readSolveStream(chunked(cut, 5), () => {}, (f) => new Failed(f))).rejects.toThrow(/ended before the answer/);
  });
});
