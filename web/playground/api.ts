/** The deq-serve API as the playground uses it: the same routes and bodies any client sends. */
import { readSolveStream, type IterationSample } from './residual.js';

export interface SolverDefaults {
  method: string;
  tol: number;
  stop_mode: string;
  max_iter: number;
}

export interface ModelInfo {
  name: string;
  version: string;
  task: 'image-classification' | 'language-model' | 'tensor';
  description: string;
  labels?: string[];
  preprocess?: { width: number; height: number; channels: number; mean: number[]; std: number[] };
  solver_defaults: SolverDefaults;
  caps: { tol: [number, number]; max_iter: [number, number]; solver: string[]; stop_mode: string[] };
  provenance: Record<string, any>;
}

/** Solver settings a request may carry (wire names). */
export interface SolverParams {
  solver?: string;
  tol?: number;
  max_iter?: number;
  stop_mode?: string;
}

export interface SolverSummary {
  method: string;
  tol: number;
  max_iter: number;
  stop_mode: string;
  iterations: number;
  residual: number | null;
  converged: boolean;
  diverged: boolean;
}

export interface Classification {
  model: string;
  label: string;
  labels: { label: string; index: number; probability: number }[];
  input?: { shape: number[]; data: number[] };
  solver: SolverSummary;
}

export interface TokenScore {
  token: string;
  id: number;
  logprob: number;
  unk: boolean;
}

export interface Scoring {
  model: string;
  results: { tokens: TokenScore[]; token_count: number; unk_count: number; total_logprob: number; perplexity: number; windows: number; solver: SolverSummary }[];
  solver: SolverSummary;
}

export interface Prediction {
  outputs: Record<string, unknown>;
  shapes: Record<string, number[]>;
  solver: SolverSummary;
}

/** An answer other than 2xx: the server's message, its catalogue code (v1) and HTTP status. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly code: string | undefined) {
    super(message);
  }
}

/** Answers the playground asks for as server-sent events: each iteration as the solve runs. */
export type OnIteration = (samples: IterationSample[]) => void;

async function refusal(res: Response): Promise<ApiError> {
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return new ApiError(body?.error ?? (text.slice(0, 200) || res.statusText), res.status, body?.code);
}

/**
 * The same request with `Accept: text/event-stream`: `onIteration` sees each iteration as it
 * arrives, and the answer comes last. Aborting `signal` closes the connection, which
 * cancels the solve on the server.
 */
async function stream<T>(url: string, init: RequestInit, onIteration: OnIteration, signal?: AbortSignal): Promise<T> {
  const res = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), accept: 'text/event-stream' }, signal });
  if (!res.ok) throw await refusal(res);
  if (!res.body || !/^text\/event-stream/.test(res.headers.get('content-type') ?? '')) return (await res.json()) as T;
  return readSolveStream<T>(res.body, onIteration, (f) => new ApiError(f.error, f.status, f.code));
}

async function call<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, init);
  if (!res.ok) throw await refusal(res);
  const text = await res.text();
  return JSON.parse(text) as T;
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return q.size ? `?${q}` : '';
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export const api = {
  models: () => call<{ models: ModelInfo[] }>('/v1/models').then((r) => r.models),

  /** The image goes as multipart field "image", as a browser form would send it; streamed when `onIteration` is given. */
  classify(model: string, image: Blob, solver: SolverParams, opts: { topK?: number; preprocessed?: boolean } = {}, onIteration?: OnIteration, signal?: AbortSignal): Promise<Classification> {
    const form = new FormData();
    form.append('image', image, image instanceof File ? image.name : 'drawing.png');
    const q = query({ ...solver, top_k: opts.topK, preprocessed: opts.preprocessed || undefined });
    const url = `/v1/models/${encodeURIComponent(model)}/classify${q}`;
    const init = { method: 'POST', body: form };
    return onIteration ? stream<Classification>(url, init, onIteration, signal) : call<Classification>(url, init);
  },

  score: (model: string, text: string, solver: SolverParams, onIteration?: OnIteration, signal?: AbortSignal) => {
    const url = `/v1/models/${encodeURIComponent(model)}/score`;
    return onIteration ? stream<Scoring>(url, json({ text, ...solver }), onIteration, signal) : call<Scoring>(url, json({ text, ...solver }));
  },

  predict: (model: string, inputs: unknown, solver: SolverParams, onIteration?: OnIteration, signal?: AbortSignal) => {
    const url = `/v1/models/${encodeURIComponent(model)}/predict`;
    const init = json({ inputs, parameters: solver });
    return onIteration ? stream<Prediction>(url, init, onIteration, signal) : call<Prediction>(url, init);
  },

  v2Metadata: (model: string) =>
    call<{ inputs: { name: string; datatype: string; shape: number[] }[] }>(`/v2/models/${encodeURIComponent(model)}`),
};
