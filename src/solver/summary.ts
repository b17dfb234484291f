import type { SolveResult } from './types.js';

/** The per-sample arrays of a solve, wherever they came from (a worker reply, a window stream). */
export type SolveRows = Pick<SolveResult, 'iterations' | 'converged' | 'diverged'> & { residual: ArrayLike<number> };

/** A reduction of per-sample solver outcomes over some rows. */
export interface SolveSummary {
  rows: number;
  meanIterations: number;
  maxIterations: number;
  /** Worst residual among the rows; Infinity where a row never produced a finite one. */
  maxResidual: number;
  /** Rows that reached the tolerance. */
  converged: number;
  /** Rows that blew up (they keep their best finite iterate). */
  diverged: number;
}

/**
 * The one reduction of per-sample solver results: every response summary, log
 * line, metric and report goes through it. `rows` restricts it to some samples.
 */
export function summarizeSolve(s: SolveRows, rows?: Iterable<number>): SolveSummary {
  let n = 0, sum = 0, max = 0, maxRes = 0, converged = 0, diverged = 0;
  const visit = (i: number) => {
    n++;
    sum += s.iterations[i];
    if (s.iterations[i] > max) max = s.iterations[i];
    const r = s.residual[i];
    if (!(r <= maxRes)) maxRes = Number.isNaN(r) ? Infinity : r;
    converged += s.converged[i];
    diverged += s.diverged[i];
  };
  if (rows) for (const i of rows) visit(i);
  else for (let i = 0; i < s.iterations.length; i++) visit(i);
  return { rows: n, meanIterations: n ? sum / n : 0, maxIterations: max, maxResidual: maxRes, converged, diverged };
}
