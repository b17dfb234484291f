import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// The layers, lowest first. A module may import its own layer or a lower one, never a higher one.
// `errors.ts` and `index.ts` at the top of src/ are shared by every layer and by nobody inside.
const LAYERS = ['solver', 'runtime', 'preprocess', 'pipelines', 'eval|server', 'cli'] as const;
const SRC = resolve(import.meta.dirname, '..', '..', 'src');

function rank(layer: string): number {
  return LAYERS.findIndex((l) => l.split('|').includes(layer));
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every relative import (static or dynamic) of a file, as [importer layer, imported layer]. */
function edges(): { from: string; to: string; file: string; spec: string }[] {
  const out: { from: string; to: string; file: string; spec: string }[] = [];
  for (const file of sources(SRC)) {
    const rel = relative(SRC, file).split('/');
    if (rel.length === 1) continue; // src/index.ts, src/errors.ts
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\()\s*'(\.[^']+)'/g)) {
      const target = relative(SRC, resolve(file, '..', m[1])).split('/');
      if (target.length === 1) continue;
      out.push({ from: rel[0], to: target[0], file: relative(SRC, file), spec: m[1] });
    }
  }
  return out;
}

describe('layering', () => {
  it('knows every folder of src/ as a layer', () => {
    const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    for (const f of folders) expect(rank(f), `src/${f} is not in LAYERS`).toBeGreaterThanOrEqual(0);
  });

  it('has no import from a lower layer to a higher one, and none between server and eval', () => {
    const bad = edges().filter((e) => rank(e.to) > rank(e.from) || (rank(e.to) === rank(e.from) && e.to !== e.from));
    expect(bad.map((e) => `${e.file} imports ${e.spec}`)).toEqual([]);
  });

  it('imports onnxruntime-node in exactly one module', () => {
    const users = sources(SRC).filter((f) => /from\s+'onnxruntime-node'/.test(readFileSync(f, 'utf8')));
    expect(users.map((f) => relative(SRC, f))).toEqual(['runtime/onnx.ts']);
  });
});
