// A Scheduler's settings (batching mode, slots, queue delay, request share, the turn gate),
// their defaults and checks, and the hooks it reports metrics through.
import type { TurnGate } from './turn-gate.js';

/**
 * `continuous`: requests join a running solve at the next iteration boundary and
 * leave, with their answer, at the iteration where they stop. `static`: a batch is
 * formed once and answered when its slowest member stops (the baseline a dynamic
 * batcher gives; here as a mode of the same scheduler so the two can be compared).
 */
export type BatchingMode = 'continuous' | 'static';

export interface SchedulerOptions {
  mode: BatchingMode;
  /** Rows (samples) per cell run: the slots of one solve. */
  maxRows: number;
  /** How long an idle solve waits for company before it starts (Triton's max_queue_delay). */
  maxQueueDelayMs: number;
  /** The largest share of the slots one request may hold (continuous mode), in (0, 1]. */
  requestShare: number;
  /**
   * Shared by the schedulers of one worker thread: each cell run waits for its turn, and the
   * model whose rows need the fewest iterations (a running average) goes first.
   */
  gate?: TurnGate;
}

export const SCHEDULER_DEFAULTS: Readonly<SchedulerOptions> = Object.freeze({ mode: 'continuous', maxRows: 32, maxQueueDelayMs: 0, requestShare: 0.5 });

/** What the scheduler reports for metrics. */
export interface SchedulerHooks {
  /**
   * After every cell run: how many rows it evaluated; for padded models (state.pad) also
   * the sequence positions it evaluated (rows × padded length) and how many were padding.
   */
  onRun?(rows: number, positions: number, padPositions: number): void;
  /** When a solve goes idle: rows that joined after it started, rows that left while others ran on. */
  onSolveEnd?(joins: number, leaves: number): void;
  /** At every iteration boundary, before admissions (tests submit here to join mid-solve). */
  onBoundary?(): void;
}

/** `options` over SCHEDULER_DEFAULTS, checked and frozen; a bad value is a RangeError naming it. */
export function schedulerOptions(options: Partial<SchedulerOptions>): Readonly<SchedulerOptions> {
  const o = { ...SCHEDULER_DEFAULTS, ...options };
  if (!(Number.isInteger(o.maxRows) && o.maxRows >= 1)) throw new RangeError(`maxRows must be an integer ≥ 1 (got ${o.maxRows})`);
  if (!(o.maxQueueDelayMs >= 0)) throw new RangeError(`maxQueueDelayMs must be ≥ 0 (got ${o.maxQueueDelayMs})`);
  if (!(o.requestShare > 0 && o.requestShare <= 1)) throw new RangeError(`requestShare must be in (0, 1] (got ${o.requestShare})`);
  return Object.freeze(o);
}
