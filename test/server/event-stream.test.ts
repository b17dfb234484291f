// Issue 23: convergence you can watch. With Accept: text/event-stream, classify, /predict and
// /score send an `iteration` event per solver iteration, in order, then the answer last; a
// client that disconnects cancels its solve. Both batching modes.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LONG_TEXT, postJson, startTestServer, until, type TestServer } from './helpers.js';

interface Sse { event: string; data: any }

/** Reads a whole event stream; fails on anything that is not `event:` + `data:` blocks. */
async function readEvents(res: Response): Promise<Sse[]> {
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const text = await res.text();
  expect(text.endsWith('\n\n')).toBe(true);
  return text.slice(0, -2).split('\n\n').map((block) => {
    const m = /^event: (\w+)\ndata: (.*)$/.exec(block);
    expect(m, block).not.toBeNull();
    return { event: m![1], data: JSON.parse(m![2]) };
  });
}

const SSE = { accept: 'text/event-stream' };

async function png(): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 20, g: 200, b: 90 } } }).png().toBuffer();
}

for (const batching of ['off', 'on'] as const) {
  describe(`server-sent events (batching ${batching})`, () => {
    let s: TestServer;
    beforeAll(async () => { s = await startTestServer({ batching, maxIterCap: 100_000, requestTimeoutMs: 60_000 }); });
    afterAll(async () => { await s?.cleanup(); });
    const classify = async (query: string, headers: Record<string, string> = {}, signal?: AbortSignal) =>
      fetch(`${s.url}/v1/models/tiny-image/classify${query}`, { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: await png(), signal });

    it('classify: one event per iteration, in order, with the traced residual and top-1, then the answer', async () => {
      const traced = await (await classify('?trace=true&tol=1e-5')).json() as any;
      const events = await readEvents(await classify('?tol=1e-5&top_k=2', SSE));
      const last = events.at(-1)!;
      expect(last.event).toBe('result');
      const steps = events.slice(0, -1);
      expect(steps.every((e) => e.event === 'iteration')).toBe(true);
      expect(steps.map((e) => e.data.samples[0].iteration)).toEqual(Array.from({ length: traced.solver.iterations }, (_, i) => i + 1));
      expect(steps.map((e) => e.data.samples[0].residual)).toEqual(traced.solver.trace[0].residual);
      expect(steps.map((e) => e.data.samples[0].top1)).toEqual(traced.solver.trace[0].top1);
      expect(steps.at(-1)!.data.samples[0].label).toBe(last.data.label);
      // The current top-k of every iterate: top_k entries, most probable first, led by the top-1.
      for (const e of steps) {
        const [x] = e.data.samples;
        expect(x.top_k).toHaveLength(2);
        expect(x.top_k[0].index).toBe(x.top1);
        expect(x.top_k[0].label).toBe(x.label);
        expect(x.top_k[0].probability).toBeGreaterThanOrEqual(x.top_k[1].probability);
      }
      const final = steps.at(-1)!.data.samples[0].top_k;
      expect(final.map((t: any) => t.label)).toEqual(last.data.labels.map((l: any) => l.label));
      expect(final[0].probability).toBeCloseTo(last.data.labels[0].probability, 4);
      expect(last.data.labels).toEqual(traced.labels.slice(0, 2));
      expect(last.data.solver.iterations).toBe(traced.solver.iterations);
    });

    it('/predict: events carry every sample of a batch, and the answer comes last', async () => {
      const x = (k: number) => [Array.from({ length: 8 }, (_, r) => Array.from({ length: 8 }, (_, c) => Math.sin(r * 8 + c + k)))];
      const events = await readEvents(await postJson(`${s.url}/v1/models/tiny-image/predict`, { inputs: { x: [x(0), x(1)] } }, SSE));
      const result = events.at(-1)!;
      expect(result.event).toBe('result');
      expect(result.data.shapes.logits).toEqual([2, 3]);
      const perSample = [0, 1].map((k) => events.slice(0, -1).flatMap((e) => e.data.samples.filter((x: any) => x.sample === k).map((x: any) => x.iteration)));
      expect(perSample[0]).toEqual(Array.from({ length: perSample[0].length }, (_, i) => i + 1));
      expect(perSample[1]).toEqual(Array.from({ length: perSample[1].length }, (_, i) => i + 1));
      expect(Math.max(perSample[0].length, perSample[1].length)).toBe(result.data.solver.iterations);
    });

    it('/score: iteration events name their text and solve; the scores come last', async () => {
      const events = await readEvents(await postJson(`${s.url}/v1/models/tiny-lm/score`, { texts: ['the man said .', 'it was the man .'] }, SSE));
      const result = events.at(-1)!;
      expect(result.event).toBe('result');
      expect(result.data.results).toHaveLength(2);
      const texts = events.slice(0, -1).map((e) => e.data.samples[0].text);
      expect(texts).toEqual([...texts].sort((a, b) => a - b));
      expect(new Set(texts)).toEqual(new Set([0, 1]));
    });

    it('/score: each iteration names its window, so a client draws one curve per window', async () => {
      for (const warm_start of [false, true]) {
        const events = await readEvents(await postJson(`${s.url}/v1/models/tiny-lm/score`, { texts: [LONG_TEXT, 'the man said .'], warm_start }, SSE));
        const result = events.at(-1)!;
        expect(result.event).toBe('result');
        const samples = events.slice(0, -1).flatMap((e) => e.data.samples);
        result.data.results.forEach((r: any, text: number) => {
          const mine = samples.filter((x: any) => x.text === text);
          // Every window of the text has a curve, and only those: iterations 1, 2, … each.
          expect(new Set(mine.map((x: any) => x.window)), `warm_start ${warm_start}`).toEqual(new Set(Array.from({ length: r.windows }, (_, w) => w)));
          for (let w = 0; w < r.windows; w++) {
            const its = mine.filter((x: any) => x.window === w).map((x: any) => x.iteration);
            expect(its).toEqual(Array.from({ length: its.length }, (_, i) => i + 1));
          }
          expect(Math.max(...mine.map((x: any) => x.iteration))).toBe(r.solver.iterations);
        });
        expect(result.data.results[0].windows).toBeGreaterThan(2);
        // Solves run the text's windows in order: a later solve never holds an earlier window.
        const first = samples.filter((x: any) => x.text === 0);
        for (let i = 1; i < first.length; i++) if (first[i].solve > first[i - 1].solve) expect(first[i].window).toBeGreaterThan(first[i - 1].window);
        // One window at a time with warm starts: the window is the solve.
        if (warm_start) expect(first.every((x: any) => x.window === x.solve)).toBe(true);
      }
    });

    it('a bad request is a plain 400, not a stream', async () => {
      const res = await classify('?max_iter=0', SSE);
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    });

    it('a client that disconnects mid-stream cancels its solve', async () => {
      // Fixed-point iteration to an abs tol float32 never reaches: the cap decides how long a solve runs.
      const slow = '?solver=fixed-point&tol=1e-8&stop_mode=abs&max_iter=30000';
      let t0 = performance.now();
      const full = await (await classify(slow)).json() as any;
      const fullMs = performance.now() - t0;
      expect(full.solver.iterations).toBe(30000);
      const gone = new AbortController();
      const res = await classify(slow, SSE, gone.signal);
      const reader = res.body!.getReader();
      let seen = '';
      while (!seen.includes('event: iteration')) seen += new TextDecoder().decode((await reader.read()).value);
      t0 = performance.now();
      gone.abort();
      await until(async () => s.state.pool.inFlight() === 0, 30_000);
      // The worker is free long before the whole solve could have run (generous: a third of it).
      expect(performance.now() - t0).toBeLessThan(fullMs / 3);
      const after = await (await classify('?tol=1e-3')).json() as any;
      expect(after.label).toBeDefined();
    }, 60_000);
  });
}
