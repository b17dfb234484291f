import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DeqError, quote } from '../errors.js';
import { loadBundle, type Manifest } from '../runtime/index.js';

/** Model names as the bundle format allows them; anything else is never looked up. */
export const MODEL_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** What the HTTP thread keeps of a bundle: no graph bytes, no sessions. */
export interface ServedModel {
  name: string;
  dir: string;
  manifest: Manifest;
  vocab?: string[];
}

/**
 * Finds every subfolder of `modelsDir` that holds a manifest.json and verifies
 * it (schema, checksums). Fails on a bad bundle or a duplicate name: a server
 * that silently drops a model is worse than one that does not start.
 */
export async function discoverModels(modelsDir: string): Promise<Map<string, ServedModel>> {
  const root = resolve(modelsDir);
  let entries: string[];
  try {
    entries = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (err) {
    throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --models-dir: cannot read ${root} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { setting: 'modelsDir' });
  }
  const models = new Map<string, ServedModel>();
  for (const entry of entries) {
    const dir = join(root, entry);
    if (!(await stat(join(dir, 'manifest.json')).then((s) => s.isFile(), () => false))) continue;
    const bundle = await loadBundle(dir);
    const { name } = bundle.manifest;
    if (!MODEL_NAME.test(name)) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `${dir}/manifest.json: name ${JSON.stringify(name)} is not a valid model name`);
    const other = models.get(name);
    if (other) throw new DeqError('DEQ_ERR_BUNDLE_INVALID', `model name ${name} is used by both ${other.dir} and ${dir}`);
    models.set(name, { name, dir, manifest: bundle.manifest, vocab: bundle.vocab });
  }
  if (models.size === 0) throw new DeqError('DEQ_ERR_CONFIG_INVALID', `invalid setting --models-dir: no bundle (subfolder with a manifest.json) in ${root}`, { setting: 'modelsDir' });
  return models;
}

/** Looks a request's model name up in the loaded set; the name never reaches the file system. */
export function findModel(models: ReadonlyMap<string, ServedModel>, name: string): ServedModel {
  const m = MODEL_NAME.test(name) ? models.get(name) : undefined;
  if (!m) throw new DeqError('DEQ_ERR_MODEL_NOT_FOUND', `no model named ${quote(name)}`);
  return m;
}
