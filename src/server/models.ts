import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DeqError, quote } from '../errors.js';
import { loadBundle, solverDefaults, type Manifest } from '../runtime/index.js';
import type { ResolvedSolverOptions } from '../solver/index.js';
import { taskRoute as routeOfTask } from '../pipelines/tasks.js';
import type { ServerConfig } from './config.js';

/** Model names as the bundle format allows them; anything else is never looked up. */
export const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** What the HTTP thread keeps of a bundle: no graph bytes, no sessions. */
export interface ServedModel {
  name: string;
  dir: string;
  manifest: Manifest;
  vocab?: string[];
  /** The solver defaults a request starts from: the manifest's, clamped to the server caps. */
  solver: ResolvedSolverOptions;
  /** Manifest defaults that the caps changed, as `setting: manifest → effective` (logged at startup). */
  clamped: string[];
}

/** The server caps a model's solver defaults are clamped to. */
export type SolverCaps = Pick<ServerConfig, 'maxIterCap' | 'tolMin' | 'tolMax'>;

/**
 * A manifest's solver defaults under the server caps. A bundle asking for 1000
 * iterations on a server capped at 500 gets 500, as a request asking for 1000 would
 * be refused; the change is reported so startup can warn about it.
 */
export function effectiveSolver(m: Manifest, caps: SolverCaps): { solver: ResolvedSolverOptions; clamped: string[] } {
  const base = solverDefaults(m);
  const solver = { ...base };
  const clamped: string[] = [];
  if (solver.maxIter > caps.maxIterCap) {
    solver.maxIter = caps.maxIterCap;
    clamped.push(`max_iter: ${base.maxIter} → ${solver.maxIter}`);
  }
  const tol = Math.min(Math.max(solver.tol, caps.tolMin), caps.tolMax);
  if (tol !== solver.tol) {
    solver.tol = tol;
    clamped.push(`tol: ${base.tol} → ${tol}`);
  }
  return { solver: Object.freeze(solver), clamped };
}

/**
 * Finds every subfolder of `modelsDir` that holds a manifest.json and verifies
 * it (schema, checksums); a `modelsDir` that is itself a bundle is served alone.
 * Fails on a bad bundle or a duplicate name: a server that silently drops a model
 * is worse than one that does not start.
 */
export async function discoverModels(modelsDir: string, caps: SolverCaps): Promise<Map<string, ServedModel>> {
  const root = resolve(modelsDir);
  let entries: string[];
  try {
    entries = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (err) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --models-dir: cannot read ${root} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { setting: 'modelsDir' });
  }
  const isBundle = (dir: string) => stat(join(dir, 'manifest.json')).then((s) => s.isFile(), () => false);
  const dirs = (await isBundle(root)) ? [root] : entries.map((entry) => join(root, entry));
  const models = new Map<string, ServedModel>();
  for (const dir of dirs) {
    if (!(await isBundle(dir))) continue;
    const m = await loadServedModel(dir, caps);
    const other = models.get(m.name);
    if (other) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `model name ${m.name} is used by both ${other.dir} and ${dir}`);
    models.set(m.name, m);
  }
  if (models.size === 0) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --models-dir: no bundle (subfolder with a manifest.json) in ${root}`, { setting: 'modelsDir' });
  return models;
}

/** One bundle folder, verified (schema, checksums), as the HTTP thread keeps it. */
export async function loadServedModel(dir: string, caps: SolverCaps): Promise<ServedModel> {
  const bundle = await loadBundle(dir);
  const { name } = bundle.manifest;
  if (!MODEL_NAME.test(name)) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${dir}/manifest.json: name ${JSON.stringify(name)} is not a valid model name`);
  return { name, dir, manifest: bundle.manifest, vocab: bundle.vocab, ...effectiveSolver(bundle.manifest, caps) };
}

/** Looks a request's model name up in the loaded set; the name never reaches the file system. */
export function findModel(models: ReadonlyMap<string, ServedModel>, name: string): ServedModel {
  const m = MODEL_NAME.test(name) ? models.get(name) : undefined;
  if (!m) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${quote(name)} (loaded: ${[...models.keys()].join(', ')})`);
  return m;
}

/** The route that serves a model's task, for wrong-task errors. */
export function taskRoute(m: ServedModel): string {
  return routeOfTask(m.name, m.manifest);
}
