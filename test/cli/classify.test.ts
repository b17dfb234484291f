// `deq-serve classify <bundle> <image>` and the task registry it belongs to (pipelines/tasks.ts).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { TINY_IMAGE, TINY_LM } from '../helpers/fixtures.js';
import { TASKS } from '../../src/pipelines/tasks.js';

const PNG = join(import.meta.dirname, '..', 'fixtures', 'hostile', 'ok.png');

describe('deq-serve classify', () => {
  it('prints the top-k labels of the bundle with probabilities, most probable first (--json)', async () => {
    const labels: string[] = JSON.parse(await readFile(join(TINY_IMAGE, 'manifest.json'), 'utf8')).labels;
    const r = await runCli(['classify', TINY_IMAGE, PNG, '--json', '--top-k', '3']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.labels).toHaveLength(Math.min(3, labels.length));
    expect(labels).toContain(out.label);
    expect(out.labels[0].label).toBe(out.label);
    const p = out.labels.map((l: { probability: number }) => l.probability);
    expect(p).toEqual([...p].sort((a, b) => b - a));
    expect(p.reduce((a: number, b: number) => a + b, 0)).toBeLessThanOrEqual(1 + 1e-9);
    expect(out.solver.iterations).toBeGreaterThan(0);
  });

  it('a bundle of another task exits 1 with DEQ_ERR_WRONG_TASK; a missing image is an error', async () => {
    const wrong = await runCli(['classify', TINY_LM, PNG]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/DEQ_ERR_WRONG_TASK/);
    expect((await runCli(['classify', TINY_IMAGE])).code).toBe(2);
  });
});

describe('the task registry', () => {
  it('names a CLI command that exists for every task', async () => {
    const help = (await runCli(['--help'])).stdout;
    for (const t of Object.values(TASKS)) expect(help).toMatch(new RegExp(`deq-serve ${t.command} `));
  });
  it('names each task\'s pipeline class', () => {
    for (const t of Object.values(TASKS)) expect(typeof t.pipeline()).toBe('function');
  });
});
