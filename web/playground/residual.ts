import type { SolverSummary } from './api.js';

/** One point of a residual curve: the residual after `iteration` evaluations of f. */
export interface ResidualPoint {
  iteration: number;
  residual: number;
}

/**
 * Where a solve's residual-against-iteration curve comes from. The chart only
 * sees points arriving; a source decides how they are obtained. A per-iteration
 * server stream (SSE) is one more implementation of this interface: it calls
 * `onPoint` as each event arrives.
 */
export interface ResidualSource {
  /** Shown under the chart: how the points were obtained. */
  readonly description: string;
  /** Calls `onPoint` for each point, in iteration order; resolves with all of them. */
  points(onPoint: (p: ResidualPoint) => void, signal?: AbortSignal): Promise<ResidualPoint[]>;
}

/**
 * Replays a finished solve with max_iter = 1, 2, …, n − 1, one request each, with
 * every other setting unchanged. The solver is deterministic, so the k-th replay
 * runs the same first k iterations and answers the lowest residual reached in
 * them: the iterate the server returns when it stops after k. The last point is
 * the full solve's own answer. Costs n − 1 extra requests (n ≤ the max_iter cap).
 */
export function replaySource(full: SolverSummary, solveWithMaxIter: (maxIter: number) => Promise<SolverSummary>): ResidualSource {
  return {
    description: 'Each point is the server\'s own answer to the same request stopped after k iterations (max_iter = k): the lowest residual reached by then.',
    async points(onPoint, signal) {
      const out: ResidualPoint[] = [];
      const push = (p: ResidualPoint) => {
        out.push(p);
        onPoint(p);
      };
      for (let k = 1; k < full.iterations; k++) {
        if (signal?.aborted) break;
        const s = await solveWithMaxIter(k);
        if (s.residual === null) break; // diverged: nothing to draw on a log scale
        push({ iteration: s.iterations, residual: s.residual });
        if (s.converged) break;
      }
      if (full.residual !== null && !signal?.aborted) push({ iteration: full.iterations, residual: full.residual });
      return out;
    },
  };
}

/** The iteration at which a curve first goes under `tol`, or null. */
export function firstBelow(points: readonly ResidualPoint[], tol: number): number | null {
  for (const p of points) if (p.residual < tol) return p.iteration;
  return null;
}
