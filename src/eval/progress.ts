/** Progress of a long loop, on stderr so that stdout (and --json) stays the report's. */
export interface Progress {
  /** `n` more units done. */
  tick(n?: number): void;
  /** Ends the line (a terminal) or prints the final count. */
  done(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Milliseconds between redraws on a terminal, and between plain lines elsewhere. */
  everyMs?: number;
  now?: () => number;
}

/**
 * On a terminal: one line redrawn in place, `label  37/64 [#####-----] 12.3/s ETA 3 s`.
 * Elsewhere (CI logs, pipes): a plain line at most every `everyMs` (5 s), and one at the end.
 */
export function progress(label: string, total: number, o: ProgressOptions = {}): Progress {
  const stream = o.stream ?? process.stderr;
  const now = o.now ?? (() => performance.now());
  const tty = stream.isTTY === true;
  const every = o.everyMs ?? (tty ? 100 : 5000);
  const start = now();
  let doneCount = 0, last = -Infinity;
  const line = () => {
    const elapsed = (now() - start) / 1000;
    const rate = elapsed > 0 ? doneCount / elapsed : 0;
    const eta = rate > 0 ? Math.max(0, (total - doneCount) / rate) : NaN;
    const width = 20, filled = total > 0 ? Math.round((width * Math.min(doneCount, total)) / total) : 0;
    const bar = tty ? ` [${'#'.repeat(filled)}${'-'.repeat(width - filled)}]` : '';
    return `${label}  ${doneCount}/${total}${bar} ${rate.toFixed(1)}/s${Number.isFinite(eta) && doneCount < total ? ` ETA ${Math.ceil(eta)} s` : ''}`;
  };
  const draw = (force: boolean) => {
    const t = now();
    if (!force && t - last < every) return;
    last = t;
    stream.write(tty ? `\r${line()}\x1b[K` : `${line()}\n`);
  };
  return {
    tick(n = 1) {
      doneCount += n;
      draw(false);
    },
    done() {
      draw(true);
      if (tty) stream.write('\n');
    },
  };
}
