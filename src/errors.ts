/**
 * The one error catalogue. Every error deq-serve raises on purpose carries a
 * stable code from this table; the HTTP layer maps it to a status and a
 * `{ error, code }` body. Codes are never reused once retired.
 */
export const ERROR_CATALOGUE = Object.freeze({
  DEQ_ERR_CONFIG_INVALID: { status: 500, summary: 'invalid configuration' },
  DEQ_ERR_BUNDLE_INVALID: { status: 500, summary: 'invalid model bundle' },
  DEQ_ERR_BUNDLE_FILE_MISSING: { status: 500, summary: 'a file named by the bundle is missing' },
  DEQ_ERR_BUNDLE_CHECKSUM: { status: 500, summary: 'a bundle file does not match its checksum' },
  DEQ_ERR_PROVIDER_UNAVAILABLE: { status: 500, summary: 'execution provider could not be loaded' },
  DEQ_ERR_ONNX_RUN: { status: 500, summary: 'ONNX Runtime failed to run a graph' },
  DEQ_ERR_MODEL_NOT_FOUND: { status: 404, summary: 'no such model' },
  DEQ_ERR_MODEL_NOT_READY: { status: 503, summary: 'model is not ready' },
  DEQ_ERR_WRONG_TASK: { status: 400, summary: 'the model does not serve this task' },
  DEQ_ERR_INVALID_INPUT: { status: 400, summary: 'invalid input' },
  DEQ_ERR_INVALID_SOLVER_OPTION: { status: 400, summary: 'solver option out of range' },
  DEQ_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'unsupported content type or image format' },
  DEQ_ERR_IMAGE_DECODE: { status: 400, summary: 'image could not be decoded' },
  DEQ_ERR_PAYLOAD_TOO_LARGE: { status: 413, summary: 'request body or image too large' },
  DEQ_ERR_TEXT_INVALID: { status: 400, summary: 'text is empty or not valid UTF-8' },
  DEQ_ERR_TEXT_TOO_LONG: { status: 413, summary: 'text is longer than the configured limit' },
  DEQ_ERR_QUEUE_FULL: { status: 503, summary: 'model queue is full' },
  DEQ_ERR_DEADLINE_EXCEEDED: { status: 504, summary: 'request deadline exceeded' },
  DEQ_ERR_NOT_CONVERGED: { status: 422, summary: 'solver did not converge' },
  DEQ_ERR_DIVERGED: { status: 422, summary: 'solver diverged' },
  DEQ_ERR_UNAUTHORIZED: { status: 401, summary: 'missing or invalid API key' },
  DEQ_ERR_NOT_FOUND: { status: 404, summary: 'no such route' },
  DEQ_ERR_SHUTTING_DOWN: { status: 503, summary: 'server is shutting down' },
  DEQ_ERR_INTERNAL: { status: 500, summary: 'internal error' },
  DEQ_ERR_OUTPUT_TOO_LARGE: { status: 413, summary: 'the requested outputs would exceed the response size limit' },
  DEQ_ERR_TOO_COSTLY: { status: 413, summary: 'the request would cost more solver work than one request may' },
  DEQ_ERR_URI_TOO_LONG: { status: 414, summary: 'request URL or path segment too long' },
  DEQ_ERR_HEADERS_TOO_LARGE: { status: 431, summary: 'request headers too large' },
  DEQ_ERR_EXPECTATION_FAILED: { status: 417, summary: 'unsupported Expect header' },
  DEQ_ERR_REQUEST_TIMEOUT: { status: 408, summary: 'the request was not received in time' },
  DEQ_ERR_BAD_REQUEST: { status: 400, summary: 'malformed HTTP request' },
  DEQ_ERR_WORKER_FAILED: { status: 500, summary: 'the solver worker failed while running the request' },
  DEQ_ERR_OVERLOADED: { status: 503, summary: 'the server holds as many request bodies or connections as it may; retry later' },
  DEQ_ERR_MODEL_LOAD_FAILED: { status: 400, summary: 'the repository could not load the bundle; the version before it (if any) keeps serving' },
  DEQ_ERR_CANCELLED: { status: 499, summary: 'the client went away; the solver rows of its request were freed' },
} as const);

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error with a stable catalogue code. `details` must never hold request bodies or secrets. */
export class DeqError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DeqError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  /** HTTP status for this error's code. */
  get statusCode(): number {
    return ERROR_CATALOGUE[this.code].status;
  }
}

/**
 * Client input quoted in an error message: JSON-quoted, cut to `max` characters,
 * and with <, > and & escaped, so a reflected model name, field name or id can
 * never read as markup, whatever a client does with the body.
 */
export function quote(value: string, max = 64): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(cut).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A short excerpt of a client value for an error message: never more than `max`
 * characters, and never a walk over more of the value than that (a 1 MiB array
 * or a 5,000-deep one costs what its first few items cost).
 */
export function excerpt(value: unknown, max = 40): string {
  let out = '';
  const put = (s: string) => { out += s; return out.length < max; };
  const walk = (v: unknown, depth: number): boolean => {
    if (v === null || typeof v !== 'object') {
      const s = typeof v === 'string' ? JSON.stringify(v.length > max ? v.slice(0, max) : v) : typeof v === 'bigint' ? `${v}` : String(JSON.stringify(v) ?? v);
      return put(s);
    }
    if (depth >= 4) return put(Array.isArray(v) ? '[…]' : '{…}');
    if (Array.isArray(v)) {
      if (!put('[')) return false;
      for (let i = 0; i < v.length; i++) if ((i > 0 && !put(',')) || !walk(v[i], depth + 1)) return false;
      return put(']');
    }
    if (!put('{')) return false;
    let first = true;
    for (const k in v) {
      if (!Object.hasOwn(v, k)) continue;
      if ((!first && !put(',')) || !put(`${JSON.stringify(k.slice(0, max))}:`) || !walk((v as Record<string, unknown>)[k], depth + 1)) return false;
      first = false;
    }
    return put('}');
  };
  const whole = walk(value, 0);
  const cut = out.length > max ? `${out.slice(0, max)}…` : whole ? out : `${out}…`;
  return cut.replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** True for a DeqError, also one rebuilt from a worker message (where `instanceof` fails). */
export function isDeqError(err: unknown): err is DeqError {
  return err instanceof DeqError ||
    (typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' &&
      Object.hasOwn(ERROR_CATALOGUE, (err as { code: string }).code));
}
