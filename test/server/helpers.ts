import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
// The server runs from dist: its solver workers are compiled .js (npm test builds first).
import { loadConfig, startServer, type RunningServer, type ServerConfig, type StartOptions} from '../../dist/server/index.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A temp models folder holding copies of the fixture bundles. */
export async function makeModelsDir(names: string[] = ['tiny-image', 'tiny-lm']): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'deq-models-'));
  for (const n of names) await cp(join(FIXTURES, n), join(dir, n), { recursive: true });
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface TestServer extends RunningServer {
  cleanup(): Promise<void>;
}

/** A real server on 127.0.0.1, port 0, serving the fixtures; silent logs, one worker. */
export async function startTestServer(overrides: Partial<ServerConfig> = {}, models?: string[], opts: StartOptions = {}): Promise<TestServer> {
  const { dir, cleanup } = await makeModelsDir(models);
  const config = loadConfig([], {}, { port: 0, host: '127.0.0.1', modelsDir: dir, workers: 1, logLevel: 'silent', ...overrides });
  const server = await startServer(config, opts);
  return { ...server, cleanup: async () => { await server.close(); await cleanup(); } };
}

/** JSON POST helper. */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** A v2 infer body for tiny-lm: batch × length tokens with targets shifted by one. */
export function lmInferBody(batch: number, length: number, parameters: Record<string, unknown> = {}) {
  const tokens = Array.from({ length: batch * length }, (_, i) => 3 + (i % 17));
  const targets = tokens.map((t) => (t + 1) % 20);
  return {
    parameters,
    inputs: [
      { name: 'tokens', datatype: 'INT64', shape: [batch, length], data: tokens },
      { name: 'targets', datatype: 'INT64', shape: [batch, length], data: targets },
    ],
  };
}

/** Solver settings that keep tiny-lm iterating until the deadline (float32 never reaches tol 1e-8 abs). */
export const NEVER_CONVERGES = { solver: 'fixed-point', tol: 1e-8, stop_mode: 'abs', max_iter: 100000 };

/** A text of 64 in-vocabulary words for tiny-lm: several windows, and (with NEVER_CONVERGES) a solve that runs to its deadline. */
export const LONG_TEXT = Array.from({ length: 64 }, (_, i) => ['the', 'of', 'and', 'to', 'a', 'in', 'is', 'was', 'he', 'it', 'that', 'for', 'on', 'with', 'said'][(i * 7) % 15]).join(' ');

/** Resolves when the pool next emits `event` ('enqueue' or 'dispatch') for `model`: tests order by events, not sleeps. */
export function poolEvent(server: RunningServer, event: 'enqueue' | 'dispatch', model: string): Promise<void> {
  const { events } = server.state.pool;
  return new Promise((resolve) => {
    const on = (m: string) => {
      if (m !== model) return;
      events.off(event, on);
      resolve();
    };
    events.on(event, on);
  });
}

/** Polls a condition every 10 ms until it holds; fails after `ms`. For waiting on server state, not for pacing. */
export async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`condition not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
