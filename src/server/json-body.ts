import type { FastifyRequest } from 'fastify';
import { DeqError } from '../errors.js';

type Done = (err: Error | null, body?: unknown) => void;
type StringParser = (req: FastifyRequest, body: string, done: Done) => void;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * True when JSON text nests arrays and objects deeper than `max`. One pass over
 * the bytes, no allocation, stopping at the first level past `max`: it runs
 * before JSON.parse, so a depth bomb costs a scan, never a parse or a recursion
 * (ajv's checks and error messages recurse over the parsed value). Brackets
 * inside strings do not count; UTF-8 continuation bytes are never ASCII, so
 * bytes are enough.
 */
export function nestsDeeperThan(bytes: Uint8Array, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) {
      inString = true;
    } else if (b === OPEN_ARRAY || b === OPEN_OBJECT) {
      if (++depth > max) return true;
    } else if (b === CLOSE_ARRAY || b === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

/**
 * Parses a JSON request body (or the JSON part of a v2 binary request) with
 * fastify's own parser, which refuses prototype poisoning, after the depth check.
 * Errors are the catalogue's and say which part was at fault (`what`), never
 * the Content-Type the framework assumed.
 */
export function parseJsonBody(req: FastifyRequest, bytes: Buffer, done: Done, opts: { maxDepth: number; parser: StringParser; what?: string }): void {
  const what = opts.what ?? 'the JSON body';
  if (bytes.length === 0) {
    done(new DeqError('DEQ_ERR_INVALID_INPUT', `${what} is empty`));
    return;
  }
  if (nestsDeeperThan(bytes, opts.maxDepth)) {
    done(new DeqError('DEQ_ERR_INVALID_INPUT', `${what} nests arrays and objects deeper than ${opts.maxDepth} levels (--max-json-depth)`));
    return;
  }
  opts.parser(req, bytes.toString('utf8'), (err, body) => {
    // fastify's parser reports syntax errors and __proto__ / constructor.prototype keys alike
    if (err) done(new DeqError('DEQ_ERR_INVALID_INPUT', `malformed JSON: ${what} is not valid JSON, or sets __proto__ or constructor.prototype`));
    else done(null, body);
  });
}
