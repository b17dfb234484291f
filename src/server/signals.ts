import closeWithGrace from 'close-with-grace';
import type { FastifyBaseLogger } from 'fastify';
import type { WorkerPool } from './pool.js';

type SettlingPool = Pick<WorkerPool, 'settle' | 'abortAll'>;

/** How long an exit waits for workers to leave native ONNX Runtime calls (one cell run, normally milliseconds). */
const SETTLE_MS = 10_000;

/**
 * SIGTERM/SIGINT: drain within the grace period, release the sessions, exit 0.
 * A second signal exits 1 without draining, but only once no worker is inside
 * a native run: exiting mid-run aborts the process (exit 134). Fatal errors
 * (uncaught exception, unhandled rejection) go through close-with-grace.
 */
export function installSignalHandlers(o: { close: () => Promise<void>; pool: SettlingPool; log: FastifyBaseLogger; graceMs: number }): void {
  const { close, pool, log } = o;
  let exiting = false;
  let closing: Promise<unknown> | undefined;
  const exit = async (code: number): Promise<never> => {
    if (!(await pool.settle(SETTLE_MS))) log.error('a worker is still inside a native run; exiting anyway');
    // The first signal's close() may be releasing sessions and terminating workers right now
    // (native calls too): exiting in the middle of that aborts the process as a run would.
    if (closing) await Promise.race([closing, new Promise((r) => setTimeout(r, SETTLE_MS).unref())]);
    process.exit(code);
  };
  const second = (signal: NodeJS.Signals) => {
    if (exiting) return;
    exiting = true;
    log.warn({ signal }, 'second signal: stopping running solves and exiting without draining');
    pool.abortAll();
    void exit(1);
  };
  const first = (signal: NodeJS.Signals) => {
    process.removeListener('SIGTERM', first);
    process.removeListener('SIGINT', first);
    process.on('SIGTERM', second);
    process.on('SIGINT', second);
    log.info({ signal }, 'shutting down');
    const done = close();
    closing = done.catch(() => undefined);
    done.then(
      () => (exiting ? undefined : exit(0)),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        return exiting ? undefined : exit(1);
      },
    );
  };
  process.on('SIGTERM', first);
  process.on('SIGINT', first);
  closeWithGrace({ delay: o.graceMs + SETTLE_MS, logger: log, skip: ['SIGTERM', 'SIGINT'] }, async ({ signal, err }) => {
    if (err) log.error({ err }, 'fatal error; shutting down');
    else log.info({ signal }, 'shutting down');
    await close();
    await pool.settle(SETTLE_MS);
  });
}
