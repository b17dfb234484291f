// What the docs check needs from the pages: their shell blocks, the commands in them, and which
// blocks say they cannot run in CI. A block opts out with a visible first line
//   # not run by the docs check: <why>
// and is then only parsed (bash -n) and checked for flags the CLI does not have.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { codeBlocks } from './markdown.js';

export const SKIP_MARK = /^#\s*not run by the docs check:\s*(\S.*)$/m;

/** A shell block of a page: where it is, its logical lines (continuations joined) and why it is skipped, if it is. */
export interface ShellBlock {
  where: string;
  code: string;
  lines: string[];
  skip?: string;
}

function pages(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'results' ? [] : pages(path); // generated reports quote, not instruct
    return e.name.endsWith('.md') ? [path] : [];
  });
}

/** Every `sh`/`bash`/`shell` block of README.md and docs/ (docs/results/ excepted). */
export function shellBlocks(root: string): ShellBlock[] {
  const out: ShellBlock[] = [];
  for (const file of [join(root, 'README.md'), ...pages(join(root, 'docs'))]) {
    for (const b of codeBlocks(readFileSync(file, 'utf8'))) {
      if (!/^(sh|bash|shell)\b/.test(b.info)) continue;
      const lines = b.code.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.replace(/\s+#\s.*$/, '').trim()).filter((l) => l !== '' && !l.startsWith('#'));
      const skip = SKIP_MARK.exec(b.code)?.[1];
      out.push({ where: `${relative(root, file)}:${b.line}`, code: b.code, lines, ...(skip ? { skip } : {}) });
    }
  }
  return out;
}

/** A `deq-serve` invocation in a line: its command words (`bench http`) and the flags it passes. */
export interface Invocation {
  command: string[];
  flags: string[];
}

const CLI_RE = /(?:node\s+dist\/cli\/main\.js|(?:^|[\s;&|(])deq-serve)\s+([a-z]+)(?:\s+(solve|compare|http)\b)?([^|;&#]*)/g;

/** The deq-serve invocations in one logical line. */
export function invocations(line: string): Invocation[] {
  const out: Invocation[] = [];
  for (const m of line.matchAll(CLI_RE)) {
    const rest = m[3] ?? '';
    const flags = [...rest.replace(/'[^']*'|"[^"]*"/g, '').matchAll(/(?:^|\s)(--[a-z][a-z0-9-]*)/g)].map((f) => f[1]!);
    out.push({ command: m[2] ? [m[1]!, m[2]] : [m[1]!], flags });
  }
  return out;
}

/** `npm run <script>` names in one logical line. */
export function npmScripts(line: string): string[] {
  return [...line.matchAll(/npm run ([a-z][a-z0-9:-]*)/g)].map((m) => m[1]!);
}

/** Commands a CI run cannot do on its own, so a block holding one must say it is not run. */
export const NEEDS_MARK = /(^|[\s;&|(])(npm (ci|install|link)|apt-get|docker|podman|kubectl|nginx|sudo)\b|\.gpu-kit|&\s*$/;

/** True when the line starts a server (`serve` without --help), which the check runs, waits for and stops. */
export function isServe(line: string): boolean {
  return /^(node\s+dist\/cli\/main\.js|deq-serve)\s+serve\b/.test(line) && !/--help\b/.test(line);
}
