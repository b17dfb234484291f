import { describe, expect, it } from 'vitest';
import { barPlot, logPlot, niceTicks } from '../../src/eval/svg-plot.js';

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

describe('barPlot', () => {
  const svg = barPlot(
    [{ label: 'on c=16', bars: [{ low: 10, high: 50 }, { low: 75, high: 190 }] }, { label: 'off c=16', bars: [{ low: 50, high: 120 }, { low: 51, high: 150 }] }],
    [{ label: 'jr', color: '#d62728' }, { label: 'plain', color: '#1f77b4' }],
    'per model', 'latency (ms)', { low: 'p50', high: 'p99' },
  );
  // Bars only: the legend's swatches are 12 px wide.
  const heights = (fill: string, opacity: boolean) => [...svg.matchAll(new RegExp(`<rect x="[^"]+" y="[^"]+" width="([^"]+)" height="([^"]+)" fill="${fill}"${opacity ? ' fill-opacity="0.3"' : '/>'}`, 'g'))]
    .filter((m) => m[1] !== '12').map((m) => Number(m[2]));

  it('draws every class with p50 solid over its p99, heights in proportion on an axis from 0', () => {
    const jrLow = heights('#d62728', false), jrHigh = heights('#d62728', true);
    expect(jrLow).toHaveLength(2);
    expect(jrHigh).toHaveLength(2);
    expect(jrHigh[0] / jrLow[0]).toBeCloseTo(5, 1);
    expect(heights('#1f77b4', true)[0] / jrLow[0]).toBeCloseTo(19, 1);
    const yLabels = [...svg.matchAll(/<text x="64" y="[^"]+" text-anchor="end">([^<]+)<\/text>/g)].map((m) => m[1]);
    expect(yLabels).toEqual(['0', '50', '100', '150', '200']);
  });

  it('labels the groups and says which part is which', () => {
    expect(svg).toContain('>on c=16<');
    expect(svg).toContain('>off c=16<');
    expect(svg).toContain('>solid: p50, pale: p99<');
  });
});
