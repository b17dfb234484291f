import { describe, expect, it } from 'vitest';
import { startupTable } from '../../src/server/startup-table.js';
import type { ServedModel } from '../../src/server/models.js';

const model = (name: string, task: string, tol: number): ServedModel => ({
  name, dir: `/m/${name}`, manifest: { task } as ServedModel['manifest'], clamped: [],
  solver: { method: 'broyden', tol, stopMode: 'rel', maxIter: 30 } as ServedModel['solver'],
});

describe('startupTable', () => {
  it('lists every model with task, provider (and a fallback), batching mode, solver and status, in aligned columns', () => {
    const models = new Map([['fashion-mnist-jr', model('fashion-mnist-jr', 'image-classification', 1e-3)], ['brown-lm-jr', model('brown-lm-jr', 'language-model', 0.01)]]);
    const info = new Map([['fashion-mnist-jr', { provider: 'cpu', fallbacks: ['cuda: no library'], solverKernel: 'wasm-f32', warmupMs: 41.6, batching: 'on' }]]);
    const lines = startupTable(models, info, 'http://127.0.0.1:8080').split('\n');
    expect(lines[0]).toMatch(/^model\s+task\s+provider\s+batching\s+solver\s+status$/);
    expect(lines[2]).toBe('fashion-mnist-jr  image-classification  cpu (fallback)  on        broyden, tol 0.001 rel, max_iter 30  READY (warm-up 42 ms)');
    expect(lines[3]).toBe('brown-lm-jr       language-model        -               -         broyden, tol 0.01 rel, max_iter 30   NOT LOADED');
    expect(lines).toContain('serving on http://127.0.0.1:8080');
  });
});
