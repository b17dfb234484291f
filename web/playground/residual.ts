/** One point of a residual curve: the residual after `iteration` evaluations of f. */
export interface ResidualPoint {
  iteration: number;
  residual: number;
}

/**
 * One row's iteration as the server streams it (`event: iteration`, one entry of its
 * `samples`). /score adds the text, the solve and the window (its index in the text).
 */
export interface IterationSample {
  sample: number;
  iteration: number;
  /** null when not finite. */
  residual: number | null;
  text?: number;
  solve?: number;
  window?: number;
}

/**
 * Where residual-against-iteration curves come from. The chart only sees points arriving,
 * each for a named curve; a source decides how they are obtained. `run` performs the solve
 * and resolves with its answer; aborting `signal` cancels it.
 */
export interface ResidualSource<T> {
  /** Shown under the chart: how the points were obtained. */
  readonly description: string;
  run(onPoint: (curve: string, p: ResidualPoint) => void, signal?: AbortSignal): Promise<T>;
}

/** The error event the server ends a failed stream with. */
export interface StreamFailure {
  error: string;
  code?: string;
  status: number;
}

/**
 * The server's per-iteration stream (`Accept: text/event-stream`): every iteration event
 * becomes a point on the curve `curveOf` names for its row, as it arrives. `solve` sends the
 * request with that header and `signal` (a POST body rules out EventSource); closing the
 * connection cancels the solve on the server.
 */
export function streamSource<T>(
  solve: (onIteration: (samples: IterationSample[]) => void, signal?: AbortSignal) => Promise<T>,
  curveOf: (s: IterationSample) => string,
): ResidualSource<T> {
  return {
    description: 'Drawn live from the server\'s event stream: one point per solver iteration as it arrives (the residual of that iterate, in the stop mode).',
    run: (onPoint, signal) => solve((samples) => {
      for (const s of samples) {
        // Log scale: a non-finite or zero residual has no place on it.
        if (s.residual !== null && s.residual > 0 && Number.isFinite(s.residual)) onPoint(curveOf(s), { iteration: s.iteration, residual: s.residual });
      }
    }, signal),
  };
}

/** Splits text/event-stream text into events as chunks arrive (the `event` and `data` fields; comments and ids ignored). */
export class EventStreamParser {
  #buf = '';
  #event = '';
  #data: string[] = [];

  push(chunk: string): { event: string; data: string }[] {
    this.#buf += chunk;
    const out: { event: string; data: string }[] = [];
    let nl: number;
    while ((nl = this.#buf.search(/\r\n|\r|\n/)) >= 0) {
      // A lone \r at the end of a chunk may be half of \r\n: wait for the next chunk.
      if (this.#buf[nl] === '\r' && nl === this.#buf.length - 1) break;
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + (this.#buf.startsWith('\r\n', nl) ? 2 : 1));
      if (line === '') {
        if (this.#data.length) out.push({ event: this.#event || 'message', data: this.#data.join('\n') });
        this.#event = '';
        this.#data = [];
        continue;
      }
      const colon = line.indexOf(':');
      if (colon === 0) continue;
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1));
      if (field === 'event') this.#event = value;
      else if (field === 'data') this.#data.push(value);
    }
    return out;
  }
}

/**
 * Reads a solve's event stream as it arrives: `onIteration` gets each iteration event's
 * samples, the `result` event's data is the answer; an `error` event rejects with what
 * `fail` makes of it, and so does a stream that ends without an answer.
 */
export async function readSolveStream<T>(body: ReadableStream<Uint8Array>, onIteration: (samples: IterationSample[]) => void, fail: (f: StreamFailure) => Error): Promise<T> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new EventStreamParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      for (const e of parser.push(done ? decoder.decode() : decoder.decode(value, { stream: true }))) {
        const data = JSON.parse(e.data);
        if (e.event === 'iteration') onIteration(data.samples);
        else if (e.event === 'result') return data as T;
        else if (e.event === 'error') throw fail(data as StreamFailure);
      }
      if (done) throw fail({ error: 'the event stream ended before the answer', status: 502 });
    }
  } finally {
    // Nothing more is wanted: an early return or a throw closes the connection.
    reader.cancel().catch(() => {});
  }
}

/** The iteration at which a curve first goes under `tol`, or null. */
export function firstBelow(points: readonly ResidualPoint[], tol: number): number | null {
  for (const p of points) if (p.residual < tol) return p.iteration;
  return null;
}
