import { describe, expect, it } from 'vitest';
import { logPlot, niceTicks } from '../../src/eval/svg-plot.js';

describe('niceTicks', () => {
  it('gives round steps of 1, 2 or 5 × 10^k inside the range', () => {
    expect(niceTicks(0, 1000, 8)).toEqual([0, 200, 400, 600, 800, 1000]);
    // 888 / 8 = 111 per tick: the smallest of 100, 200, 500 … at least that is 200.
    expect(niceTicks(0, 888, 8)).toEqual([0, 200, 400, 600, 800]);
    expect(niceTicks(0.9, 0.95, 6)).toEqual([0.9, 0.91, 0.92, 0.93, 0.94, 0.95]);
    expect(niceTicks(3, 3, 5)).toEqual([3]);
  });
});

describe('logPlot axes', () => {
  it('labels an x axis of 0 … 888 at round numbers, not at eighths of the range', () => {
    const svg = logPlot([{ label: 'a', color: '#000', values: [0.5, 0.6], x: [0, 888] }], 't', 'x', 'y', { y: 'linear' });
    const xLabels = [...svg.matchAll(/<text x="[^"]+" y="366" text-anchor="middle">([^<]+)<\/text>/g)].map((m) => m[1]);
    expect(xLabels).toEqual(['0', '200', '400', '600', '800']);
  });
});
