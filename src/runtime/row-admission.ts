// The scheduler's admission policy: which waiting rows take which free slots at an iteration
// boundary. Idle solves wait for company up to the queue delay; jobs take turns one row at a
// time; in continuous mode no request holds more than its share of the slots; a static
// batch takes no one mid-solve.
import type { SchedulerOptions } from './scheduler-options.js';
import type { Group, Job } from './solve-group.js';

/**
 * Admits waiting rows of `jobs` into free slots of their groups (`open` makes a missing one,
 * `admit` seats a row). Returns how long (ms) idle solves should still wait for company, 0
 * when nothing waits.
 */
export function admitWaiting(
  jobs: Iterable<Job>, groups: ReadonlyMap<string, Group>, options: Readonly<SchedulerOptions>,
  open: (key: string, first: Job) => Group, admit: (g: Group, job: Job, row: number, slot: number) => void,
): number {
  const { maxRows, requestShare, maxQueueDelayMs, mode } = options;
  const perJob = Math.max(1, Math.floor(maxRows * requestShare));
  let wait = 0;
  const byKey = new Map<string, Job[]>();
  for (const job of jobs) {
    if (!job.plan || job.pending.length === 0) continue;
    let list = byKey.get(job.plan.key);
    if (!list) byKey.set(job.plan.key, (list = []));
    list.push(job);
  }
  for (const [key, waiting] of byKey) {
    let g = groups.get(key);
    const idle = !g || g.session.activeCount === 0;
    if (mode === 'static' && !idle) continue; // a static batch takes no one mid-solve
    if (idle) {
      // Wait for company up to the queue delay, unless the rows already fill a solve.
      const rows = waiting.reduce((a, j) => a + j.pending.length, 0);
      const age = performance.now() - Math.min(...waiting.map((j) => j.submittedAt));
      if (rows < maxRows && age < maxQueueDelayMs) {
        wait = Math.max(wait, maxQueueDelayMs - age);
        continue;
      }
    }
    g ??= open(key, waiting[0]);
    // Round-robin over the waiting jobs, one row at a time. In continuous mode no request holds
    // more than its share of the slots, even alone: a newcomer can always join at the next
    // boundary instead of waiting for a big request's rows to finish (measured cost: the cell's
    // per-sample time barely changes between half and full batch width).
    let progress = true;
    while (progress) {
      progress = false;
      for (const job of waiting) {
        if (job.pending.length === 0) continue;
        if (mode === 'continuous' && job.active >= perJob) continue;
        const slot = g.session.freeSlot();
        if (slot < 0) break;
        admit(g, job, job.pending.shift()!, slot);
        progress = true;
      }
    }
  }
  return wait;
}
