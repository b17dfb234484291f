// The admission policy on its own: which waiting rows take which free slots, with stand-in
// groups and jobs (a group is its free slots and active count; admitting a row takes a slot).
import { describe, expect, it } from 'vitest';
import { admitWaiting } from '../../src/runtime/row-admission.js';
import { SCHEDULER_DEFAULTS, type SchedulerOptions } from '../../src/runtime/scheduler-options.js';
import type { Group, Job } from '../../src/runtime/solve-group.js';
import type { SolvePlan } from '../../src/runtime/solve-plan.js';

interface FakeGroup { key: string; session: { activeCount: number; freeSlot(): number }; free: number[] }

function group(key: string, slots: number, activeCount = 0): FakeGroup {
  const free = Array.from({ length: slots }, (_, i) => i);
  return { key, free, session: { activeCount, freeSlot: () => (free.length > 0 ? free[0] : -1) } };
}

function job(id: number, rows: number, opts: { key?: string; prepared?: boolean; submittedAt?: number } = {}): Job {
  return {
    id, plan: opts.prepared === false ? null : ({ key: opts.key ?? 'k' } as SolvePlan), pending: Array.from({ length: rows }, (_, i) => i),
    active: 0, submittedAt: opts.submittedAt ?? performance.now() - 1e6,
  } as Job;
}

/** Runs admitWaiting; returns what it admitted (`job id:row@slot`, in order), the groups it opened and its wait. */
function run(jobs: Job[], existing: FakeGroup[], options: Partial<SchedulerOptions>, slots = 8) {
  const groups = new Map(existing.map((g) => [g.key, g as unknown as Group]));
  const admitted: string[] = [], opened: string[] = [];
  const wait = admitWaiting(jobs, groups, { ...SCHEDULER_DEFAULTS, ...options },
    (key) => { opened.push(key); const g = group(key, slots) as unknown as Group; groups.set(key, g); return g; },
    (g, j, row, slot) => {
      const fake = g as unknown as FakeGroup;
      expect(fake.free[0]).toBe(slot);
      fake.free.shift();
      fake.session.activeCount++;
      j.active++;
      admitted.push(`${j.id}:${row}@${slot}`);
    });
  return { admitted, opened, wait };
}

describe('admitWaiting', () => {
  it('takes turns between jobs, one row at a time, until the slots run out', () => {
    const { admitted, opened, wait } = run([job(1, 3), job(2, 3)], [], { maxRows: 4, requestShare: 1 }, 4);
    expect(opened).toEqual(['k']);
    expect(admitted).toEqual(['1:0@0', '2:0@1', '1:1@2', '2:1@3']);
    expect(wait).toBe(0);
  });

  it('holds a lone request to its share of the slots in continuous mode', () => {
    const j = job(1, 8);
    const { admitted } = run([j], [], { mode: 'continuous', maxRows: 8, requestShare: 0.5 });
    expect(admitted).toHaveLength(4);
    expect(j.pending).toEqual([4, 5, 6, 7]);
  });

  it('lets a static batch take every slot, and no one into a running one', () => {
    expect(run([job(1, 8)], [], { mode: 'static', maxRows: 8, requestShare: 0.5 }).admitted).toHaveLength(8);
    expect(run([job(1, 2)], [group('k', 8, 3)], { mode: 'static', maxRows: 8 }).admitted).toEqual([]);
  });

  it('joins a running solve in continuous mode', () => {
    expect(run([job(1, 2)], [group('k', 2, 6)], { mode: 'continuous', maxRows: 8 }).admitted).toEqual(['1:0@0', '1:1@1']);
  });

  it('keeps an idle solve waiting for company up to the queue delay, unless its rows fill it', () => {
    const young = run([job(1, 2, { submittedAt: performance.now() })], [], { maxRows: 8, maxQueueDelayMs: 500 });
    expect(young.admitted).toEqual([]);
    expect(young.opened).toEqual([]);
    expect(young.wait).toBeGreaterThan(0);
    expect(young.wait).toBeLessThanOrEqual(500);
    const full = run([job(1, 4, { submittedAt: performance.now() }), job(2, 4, { submittedAt: performance.now() })], [], { maxRows: 8, maxQueueDelayMs: 500 });
    expect(full.admitted).toHaveLength(8);
    expect(full.wait).toBe(0);
    expect(run([job(1, 2)], [], { maxRows: 8, maxQueueDelayMs: 500 }).admitted).toHaveLength(2); // old enough
  });

  it('keeps shapes apart and skips requests still being prepared', () => {
    const { admitted, opened } = run([job(1, 1, { key: 'a' }), job(2, 1, { key: 'b' }), job(3, 1, { key: 'a', prepared: false })], [], { maxRows: 8 });
    expect(opened).toEqual(['a', 'b']);
    expect(admitted).toEqual(['1:0@0', '2:0@0']);
  });
});
