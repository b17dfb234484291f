// Every relative link in README.md and docs/**/*.md points at a file or folder that exists, so a moved
// or renamed page cannot leave a dead link behind. Anchors are not checked (headings are edited often).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { markdownLinks } from './markdown.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...markdownFiles(path));
    else if (entry.name.endsWith('.md')) out.push(path);
  }
  return out;
}

export const DOC_FILES = [join(ROOT, 'README.md'), ...markdownFiles(join(ROOT, 'docs'))];

describe('documentation links', () => {
  it('finds the pages and their links', () => {
    expect(DOC_FILES.length).toBeGreaterThan(10);
    expect(markdownLinks(readFileSync(join(ROOT, 'README.md'), 'utf8')).length).toBeGreaterThan(5);
  });

  it.each(DOC_FILES.map((f) => [relative(ROOT, f), f]))('%s: every relative link resolves', (_name, file) => {
    const dead: string[] = [];
    for (const target of markdownLinks(readFileSync(file, 'utf8'))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue; // http:, mailto:, same-page anchors
      const path = decodeURIComponent(target.split('#')[0]!);
      if (path.startsWith('/')) continue; // a server route (/docs/, /playground/), not a file
      if (!existsSync(join(dirname(file), path))) dead.push(target);
    }
    expect(dead).toEqual([]);
  });
});
