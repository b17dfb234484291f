import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { DeqError } from '../errors.js';
import { modelInputs, modelOutputs, stateOutputs, type Manifest, type TensorSpec } from './manifest.js';
import { MANIFEST_SCHEMA } from './manifest-schema.js';

const GRAPH_ROLES = ['inject', 'cell', 'head'] as const;
export type GraphRole = (typeof GRAPH_ROLES)[number];

/** A bundle whose manifest is valid and whose files all match their checksums. */
export interface Bundle {
  dir: string;
  manifest: Manifest;
  /** The verified bytes of each graph the bundle has, handed to ONNX Runtime without a second read. */
  graphs: Partial<Record<GraphRole, Uint8Array>> & { cell: Uint8Array };
  /** Language models: token strings, index = id. */
  vocab?: string[];
  /** Parity cases, when the bundle ships them. */
  parity?: ParityFile;
}

export interface ParityTensor {
  dtype: 'float32' | 'int64';
  shape: number[];
  data: number[];
}

export interface ParityCase {
  /** Every model input by name (exporter since issue #13). */
  inputs?: Record<string, ParityTensor>;
  /** Older bundles: the single inject input, plus the head's extra inputs. */
  input?: ParityTensor;
  extra_inputs?: Record<string, ParityTensor>;
  /** The exporter's reference solve; a case whose reference did not converge cannot pass. */
  reference?: { method?: string; converged: boolean; nstep?: number; residual?: number };
  /** Older bundles: the reference solve's final relative residual. */
  solver_rel_residual?: number;
  z_star_norm?: number;
  z_star?: number[];
  outputs: Record<string, number[]>;
}

export interface ParityFile {
  solver: {
    method: Manifest['solver']['method']; tol: number; stop_mode: 'abs' | 'rel'; max_iter: number; history?: number;
    anderson_lambda?: number; anderson_beta?: number; damping?: number;
  };
  cases: ParityCase[];
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validateManifest = ajv.compile<Manifest>(MANIFEST_SCHEMA);

/**
 * Reads and verifies a bundle folder: schema, cross-field consistency, then the
 * sha256 of every file it names. Every error names the bundle, the file and the field.
 */
export async function loadBundle(dir: string): Promise<Bundle> {
  try {
    return await readBundle(dir);
  } catch (err) {
    // A server loads many bundles: say which one, once.
    if (err instanceof DeqError && !err.message.startsWith(dir)) throw new DeqError(err.code, `${dir}: ${err.message}`, err.details);
    throw err;
  }
}

async function readBundle(dir: string): Promise<Bundle> {
  const manifest = await readManifest(dir);
  checkConsistency(manifest);
  const graphs = {} as Bundle['graphs'];
  for (const role of GRAPH_ROLES) {
    const spec = manifest.graphs[role];
    if (spec) graphs[role] = await readVerified(dir, spec.file, spec.sha256, `graphs.${role}.sha256`);
  }
  const bundle: Bundle = { dir, manifest, graphs };
  if (manifest.tokenizer) {
    const t = manifest.tokenizer;
    const bytes = await readVerified(dir, t.vocab_file, t.sha256, 'tokenizer.sha256');
    bundle.vocab = parseVocab(t.vocab_file, bytes, [t.unk, t.bos, t.eos]);
  }
  if (manifest.parity) {
    const p = manifest.parity;
    const bytes = await readVerified(dir, p.file, p.sha256, 'parity.sha256');
    bundle.parity = parseJson(p.file, bytes) as ParityFile;
    if (!Array.isArray(bundle.parity.cases) || typeof bundle.parity.solver !== 'object') {
      throw invalid(`${p.file}: expected { solver, cases: [...] }`);
    }
  }
  return bundle;
}

async function readManifest(dir: string): Promise<Manifest> {
  const bytes = await readFileNamed(dir, 'manifest.json');
  const json = parseJson('manifest.json', bytes);
  if (!validateManifest(json)) {
    const problems = (validateManifest.errors ?? []).slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})` : ''}`);
    throw invalid(`manifest.json: ${problems.join('; ')}`, { dir });
  }
  return json;
}

function checkConsistency(m: Manifest): void {
  const { inject, cell, head } = m.graphs;
  const state = m.state.shape;
  if (cell.inputs.length < 2) throw invalid(`manifest.json: graphs.cell.inputs must list the state, then at least one input (has ${cell.inputs.length})`);
  if (cell.outputs.length !== 1) throw invalid('manifest.json: graphs.cell.outputs must list exactly one tensor');
  const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  const stateChecks: [TensorSpec, string][] = [
    [cell.inputs[0], 'graphs.cell.inputs[0]'],
    [cell.outputs[0], 'graphs.cell.outputs[0]'],
  ];
  if (head) stateChecks.push([head.inputs[0], 'graphs.head.inputs[0]']);
  for (const [spec, field] of stateChecks) {
    if (!sameShape(spec.shape, state)) throw invalid(`manifest.json: ${field}.shape [${spec.shape}] differs from state.shape [${state}]`);
    if (spec.dtype !== 'float32') throw invalid(`manifest.json: ${field}.dtype must be float32`);
  }
  // The cell's inputs after z come from inject's outputs (by name), or are the raw inputs.
  if (inject) {
    for (const [i, spec] of cell.inputs.slice(1).entries()) {
      const from = inject.outputs.find((o) => o.name === spec.name);
      if (!from) throw invalid(`manifest.json: graphs.cell.inputs[${i + 1}] "${spec.name}" is not an output of graphs.inject (${inject.outputs.map((o) => o.name).join(', ')})`);
      if (!sameShape(from.shape, spec.shape) || from.dtype !== spec.dtype) throw invalid(`manifest.json: graphs.cell.inputs[${i + 1}] "${spec.name}" differs from the inject output of that name`);
    }
  }
  if (m.state.pad) {
    // Padding extends axis 0 only: it must be the one symbolic axis of the state, and of every
    // cell input that has one (those are padded with it; inputs without one are passed as they are).
    const axis0Only = (shape: number[]) => shape[0] === -1 && shape.indexOf(-1, 1) < 0;
    if (!axis0Only(state)) throw invalid(`manifest.json: state.pad "${m.state.pad}" needs the sequence axis first in state.shape and no other symbolic dim ([-1, …], got [${state}])`);
    for (const [i, spec] of cell.inputs.slice(1).entries()) {
      if (spec.shape.includes(-1) && !axis0Only(spec.shape)) {
        throw invalid(`manifest.json: graphs.cell.inputs[${i + 1}] "${spec.name}" has a symbolic dim other than the first; state.pad pads axis 0 only`);
      }
    }
  }
  const inputNames = modelInputs(m).map((t) => t.name);
  const dup = inputNames.find((n, i) => inputNames.indexOf(n) !== i);
  if (dup) throw invalid(`manifest.json: input name "${dup}" is declared twice`);
  if (!head) {
    const n = state.includes(-1) ? -1 : state.reduce((a, b) => a * b, 1);
    const slices = stateOutputs(m);
    for (const [i, s] of slices.entries()) {
      if (s.shape.includes(-1) || n === -1) {
        if (s.offset !== 0 || !sameShape(s.shape, state)) throw invalid(`manifest.json: state_outputs[${i}]: a state with a symbolic dim is served whole (offset 0, shape [${state}])`);
        continue;
      }
      const size = s.shape.reduce((a, b) => a * b, 1);
      if (s.offset + size > n) throw invalid(`manifest.json: state_outputs[${i}] "${s.name}" (offset ${s.offset}, ${size} values) runs past the state's ${n} values`);
    }
  }
  const outputNames = new Set(modelOutputs(m).map((o) => o.name));
  for (const [role, name] of Object.entries(m.outputs)) {
    if (!outputNames.has(name)) throw invalid(`manifest.json: outputs.${role} names "${name}", which ${head ? 'graphs.head.outputs' : 'state_outputs'} does not declare`);
  }
  if (m.task === 'image-classification') {
    const logits = m.outputs.logits;
    if (!logits) throw invalid('manifest.json: outputs.logits is required for image-classification');
    const spec = head!.outputs.find((o) => o.name === logits)!;
    const classes = spec.shape[spec.shape.length - 1];
    if (m.labels!.length !== classes) throw invalid(`manifest.json: labels has ${m.labels!.length} entries but the logits output has ${classes}`);
    const p = m.preprocess!;
    if (p.mean.length !== p.channels || p.std.length !== p.channels) throw invalid(`manifest.json: preprocess.mean and preprocess.std need ${p.channels} entries (one per channel)`);
    const input = inject!.inputs[0].shape;
    if (inject!.inputs.length !== 1 || input.length !== 3 || input[0] !== p.channels || input[1] !== p.height || input[2] !== p.width) {
      throw invalid(`manifest.json: graphs.inject.inputs must be one image tensor matching preprocess [${p.channels}, ${p.height}, ${p.width}] (got [${input}])`);
    }
  } else if (m.task === 'language-model') {
    if (!m.outputs.target_logprobs) throw invalid('manifest.json: outputs.target_logprobs is required for language-model');
    if (head!.inputs.length < 2) throw invalid('manifest.json: graphs.head.inputs must list [state, targets] for language-model');
  }
}

function parseVocab(file: string, bytes: Uint8Array, required: string[]): string[] {
  const vocab = parseJson(file, bytes);
  if (!Array.isArray(vocab) || !vocab.every((v) => typeof v === 'string')) throw invalid(`${file}: expected a JSON array of strings`);
  for (const sym of required) if (!vocab.includes(sym)) throw invalid(`${file}: vocabulary lacks "${sym}" (manifest.tokenizer)`);
  return vocab as string[];
}

async function readFileNamed(dir: string, file: string): Promise<Uint8Array> {
  try {
    return await readFile(join(dir, file));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DeqError('DEQ_ERR_BUNDLE_FILE_MISSING', `${file}: not found in bundle ${dir}`, { dir, file });
    throw invalid(`${file}: cannot be read (${code ?? String(err)})`, { dir, file });
  }
}

async function readVerified(dir: string, file: string, expected: string, field: string): Promise<Uint8Array> {
  const bytes = await readFileNamed(dir, file);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== expected) {
    throw new DeqError('DEQ_ERR_BUNDLE_CHECKSUM', `${file}: sha256 mismatch (manifest.${field} is ${expected.slice(0, 12)}…, file is ${actual.slice(0, 12)}…)`, { dir, file, field });
  }
  return bytes;
}

function parseJson(file: string, bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalid(`${file}: not valid JSON (${(err as Error).message})`);
  }
}

function invalid(message: string, details?: Record<string, unknown>): DeqError {
  return new DeqError('DEQ_ERR_BUNDLE_INVALID', message, details);
}
