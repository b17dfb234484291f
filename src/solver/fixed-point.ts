import type { SolverWorkspace } from './workspace.js';

/** Damped Picard step: z ← z + d·(f(z) − z). */
export function fixedPointNext(ws: SolverWorkspace, i: number, damping: number): void {
  const n = ws.n, o = i * n, z = ws.z, g = ws.g;
  for (let k = 0; k < n; k++) z[o + k] += damping * g[o + k];
}
