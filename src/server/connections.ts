import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const PROBATION = Symbol('deq.probation');

/** Counts, for the log and the tests. */
export interface ConnectionStats {
  open: number;
  /** Idle connections closed to make room for a new one. */
  evicted: number;
  /** Connections let in past the cap, to health routes only. */
  probation: number;
}

/**
 * Caps open connections below the open-file limit, so that file descriptors never
 * run out and a liveness probe always gets in. Past `max`, a new connection first
 * closes the oldest idle one (no request in progress: an idle keep-alive, or one
 * that has not finished its headers), as nginx reuses idle keep-alive connections
 * when it runs short. When every connection is busy, up to `headroom` more are let
 * in on probation: health routes answer there, anything else gets 503. Past that,
 * Node refuses connections as they are accepted (`server.maxConnections`).
 */
export class ConnectionGuard {
  // Socket → requests in progress; a Map iterates in insertion order, so oldest first.
  private readonly sockets = new Map<Socket, number>();
  private evicted = 0;
  private probation = 0;

  /**
   * `idleMs`: a connection with no request in progress (one that never sends a byte,
   * which Node's headersTimeout does not cover, or an idle keep-alive) is closed after
   * that long without traffic. One with a request in progress is left to its deadline.
   */
  constructor(server: Server, private readonly max: number, headroom: number, private readonly idleMs: number, private readonly onFull?: () => void) {
    server.maxConnections = max + headroom;
    server.on('connection', (socket: Socket) => this.admit(socket));
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.track(req.socket, res));
    // Node emits this when a socket's timeout passes and no request or response took it.
    server.on('timeout', (socket: Socket) => {
      if (!this.sockets.get(socket)) socket.destroy();
    });
  }

  get stats(): ConnectionStats {
    return { open: this.sockets.size, evicted: this.evicted, probation: this.probation };
  }

  private admit(socket: Socket): void {
    this.sockets.set(socket, 0);
    socket.once('close', () => this.sockets.delete(socket));
    socket.setTimeout(this.idleMs);
    if (this.sockets.size <= this.max) return;
    this.onFull?.();
    for (const [s, busy] of this.sockets) {
      if (busy === 0 && s !== socket && !s.destroyed) {
        s.destroy();
        this.sockets.delete(s);
        this.evicted++;
        return;
      }
    }
    (socket as Socket & { [PROBATION]?: boolean })[PROBATION] = true;
    this.probation++;
  }

  private track(socket: Socket, res: ServerResponse): void {
    const n = this.sockets.get(socket);
    if (n === undefined) return;
    this.sockets.set(socket, n + 1);
    res.once('close', () => {
      const m = this.sockets.get(socket);
      if (m !== undefined) this.sockets.set(socket, m - 1);
    });
  }
}

/** True for a connection let in past the cap: it may reach health routes only. */
export function onProbation(socket: Socket | null | undefined): boolean {
  return (socket as (Socket & { [PROBATION]?: boolean }) | null | undefined)?.[PROBATION] === true;
}
