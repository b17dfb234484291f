import { describe, expect, it } from 'vitest';
import { progress } from '../../src/eval/progress.js';

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, write: (s: string) => { chunks.push(s); return true; } } as unknown as NodeJS.WriteStream };
}

describe('progress', () => {
  it('a pipe gets plain lines no more often than everyMs, and a final count', () => {
    let t = 0;
    const s = sink(false);
    const p = progress('eval', 10, { stream: s.stream, everyMs: 5000, now: () => t });
    for (let i = 0; i < 10; i++) { t += 1000; p.tick(); }
    p.done();
    // Ticks at 1…10 s: lines at 1 s (first) and 6 s, then the final one.
    expect(s.chunks).toEqual(['eval  1/10 1.0/s ETA 9 s\n', 'eval  6/10 1.0/s ETA 4 s\n', 'eval  10/10 1.0/s\n']);
  });

  it('a terminal gets one line redrawn in place, with a bar, ended by a newline', () => {
    let t = 0;
    const s = sink(true);
    const p = progress('bench solve', 4, { stream: s.stream, everyMs: 0, now: () => t });
    t = 500; p.tick(2);
    t = 1000; p.done();
    expect(s.chunks[0]).toBe('\rbench solve  2/4 [##########----------] 4.0/s ETA 1 s\x1b[K');
    expect(s.chunks.at(-1)).toBe('\n');
    expect(s.chunks.every((c) => !c.includes('\n') || c === '\n')).toBe(true);
  });
});
