/** The deq-serve API as the playground uses it: the same routes and bodies any client sends. */

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

/** An answer other than 2xx: the server's message, its catalogue code (v1) and HTTP status. */
export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly code: string | undefined) {
    super(message);
  }
}

async function call<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) throw new ApiError(body?.error ?? (text.slice(0, 200) || res.statusText), res.status, body?.code);
  return body as T;
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  return q.size ? `?${q}` : '';
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export const api = {
  models: () => call<{ models: ModelInfo[] }>('/v1/models').then((r) => r.models),

  /** The image goes as multipart field "image", as a browser form would send it. */
  classify(model: string, image: Blob, solver: SolverParams, opts: { topK?: number; preprocessed?: boolean } = {}): Promise<Classification> {
    const form = new FormData();
    form.append('image', image, image instanceof File ? image.name : 'drawing.png');
    const q = query({ ...solver, top_k: opts.topK, preprocessed: opts.preprocessed || undefined });
    return call<Classification>(`/v1/models/${encodeURIComponent(model)}/classify${q}`, { method: 'POST', body: form });
  },

  score: (model: string, text: string, solver: SolverParams) =>
    call<Scoring>(`/v1/models/${encodeURIComponent(model)}/score`, json({ text, ...solver })),

  predict: (model: string, inputs: unknown, solver: SolverParams) =>
    call<{ outputs: Record<string, unknown>; shapes: Record<string, number[]>; solver: SolverSummary }>(
      `/v1/models/${encodeURIComponent(model)}/predict`, json({ inputs, parameters: solver })),

  v2Metadata: (model: string) =>
    call<{ inputs: { name: string; datatype: string; shape: number[] }[] }>(`/v2/models/${encodeURIComponent(model)}`),
};
