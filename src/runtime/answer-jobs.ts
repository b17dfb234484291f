// How the scheduler answers requests whose rows have all stopped: those whose head reads z
// alone and that want the same outputs share one head run (DeqModel.finishTogether); each
// answer carries its request's own solver stats and timing.
import type { DeqModel } from './deq-model.js';
import type { TensorValue } from './infer-types.js';
import type { Job } from './solve-group.js';

/** Runs the head for `jobs` (already off the scheduler's books) and settles each. */
export async function answerJobs(model: DeqModel, jobs: readonly Job[]): Promise<void> {
  const heads = new Map<string, Job[]>();
  for (const job of jobs) {
    const key = model.canShareHead(job.plan!.prepared) ? `outputs:${job.req.outputs?.join(',') ?? '*'}` : `own:${job.id}`;
    const list = heads.get(key);
    if (list) list.push(job);
    else heads.set(key, [job]);
  }
  for (const list of heads.values()) await headRun(model, list);
}

async function headRun(model: DeqModel, jobs: readonly Job[]): Promise<void> {
  const t0 = performance.now();
  let outputs: Record<string, TensorValue>[];
  try {
    outputs = await model.finishTogether(jobs.map((j) => ({ prep: j.plan!.prepared, z: j.z! })), jobs[0].req.outputs);
  } catch (err) {
    for (const job of jobs) job.reject(err as Error);
    return;
  }
  const t1 = performance.now();
  jobs.forEach((job, i) => {
    const plan = job.plan!;
    job.resolve({
      outputs: outputs[i],
      ...(job.req.returnState ? { state: { type: 'float32' as const, data: job.z!, dims: plan.stateDims } } : {}),
      solver: { ...job.stats!, calls: job.calls, stopped: job.stopped },
      options: plan.options,
      queueMs: (job.admittedAt || t0) - job.submittedAt,
      timing: { injectMs: job.prepMs, solveMs: t0 - (job.admittedAt || t0), cellMs: job.cellMs, headMs: t1 - t0, totalMs: t1 - job.submittedAt },
    });
  });
}
