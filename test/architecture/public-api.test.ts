// The package's public API is what docs/api.md lists: no internal class (Scheduler, TurnGate,
// the worker pool) leaks through `export *`.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as api from '../../src/index.js';

const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');

describe('public API', () => {
  const names = Object.keys(api).sort();

  it('every runtime export is documented in docs/api.md', () => {
    const undocumented = names.filter((n) => !doc.includes(`\`${n}\``));
    expect(undocumented).toEqual([]);
  });

  it('every value docs/api.md lists in its table is exported', () => {
    const table = doc.split('\n').filter((l) => l.startsWith('| `'));
    const listed = table.flatMap((l) => [...l.split('|')[1].matchAll(/`([A-Za-z_]+)`/g)].map((m) => m[1]));
    expect(listed.filter((n) => !names.includes(n))).toEqual([]);
  });

  it('internals stay internal', () => {
    for (const n of ['Scheduler', 'TurnGate', 'SolveSession', 'SolverWorkspace', 'WorkerPool']) expect(names).not.toContain(n);
  });
});
