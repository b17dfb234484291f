import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { DeqError, quote } from '../errors.js';

/** Where the build puts the playground (web/playground compiled, with its page and style sheet). */
export const PLAYGROUND_DIR = fileURLToPath(new URL('../playground/', import.meta.url));

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
};

// The page loads its own files only and talks only to this server.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/**
 * GET /playground/: the page, its scripts and its style sheet, read once at
 * startup into memory. Only the files the build put there are served, by exact
 * name; nothing is looked up on disk per request. The API key rules apply as on
 * any route, and the page calls the API with the browser's own credentials.
 */
export async function servePlayground(app: FastifyInstance, dir = PLAYGROUND_DIR): Promise<void> {
  if (!existsSync(`${dir}index.html`)) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --playground: its files are not built (${dir}index.html is missing; run npm run build, or turn off --playground)`, { setting: '--playground' });
  }
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of readdirSync(dir)) {
    const ext = /^[a-z0-9-]+\.(html|css|js)$/.exec(name)?.[1];
    if (ext) files.set(name, { body: readFileSync(`${dir}${name}`), type: TYPES[ext] });
  }
  const send = (name: string) => async (_req: unknown, reply: import('fastify').FastifyReply) => {
    const f = files.get(name)!;
    return reply.header('content-security-policy', CSP).header('cache-control', 'no-cache').type(f.type).send(f.body);
  };
  const hidden = { schema: { hide: true } };
  app.get('/playground', hidden, async (_req, reply) => reply.redirect('/playground/', 302));
  app.get('/playground/', hidden, send('index.html'));
  app.get<{ Params: { file: string } }>('/playground/:file', hidden, async (req, reply) => {
    if (!files.has(req.params.file)) throw new DeqError('DEQ_ERR_NOT_FOUND', `no playground file ${quote(req.params.file)}`);
    return send(req.params.file)(req, reply);
  });
}
