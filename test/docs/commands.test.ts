// Every shell block in README.md and docs/ parses, names only npm scripts that exist and only deq-serve
// flags that the command's --help lists. Running the blocks is `npm run test:docs` (test/docs/run.docs.ts).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { invocations, NEEDS_MARK, npmScripts, shellBlocks } from './doc-commands.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const blocks = shellBlocks(ROOT);
const scripts = Object.keys((JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);

const helps = new Map<string, Promise<string>>();
function help(command: string[]): Promise<string> {
  const key = command.join(' ');
  if (!helps.has(key)) helps.set(key, runCli([...command, '--help']).then((r) => r.stdout + r.stderr));
  return helps.get(key)!;
}

describe('docs: the shell blocks', () => {
  it('are found, and a dozen or more run in the docs check', () => {
    expect(blocks.length).toBeGreaterThan(15);
    expect(blocks.filter((b) => !b.skip).length).toBeGreaterThan(12);
  });

  it('reads flags and commands the way the check needs', () => {
    expect(invocations("node dist/cli/main.js bench http --compare --modes on,off --traffic 'a?tol=1' | jq .")).toEqual([
      { command: ['bench', 'http'], flags: ['--compare', '--modes', '--traffic'] },
    ]);
    expect(invocations('deq-serve serve --ep cuda,cpu # --not-a-flag')).toEqual([{ command: ['serve'], flags: ['--ep'] }]);
    expect(NEEDS_MARK.test('docker run --rm deq-serve')).toBe(true);
    expect(NEEDS_MARK.test('node dist/cli/main.js serve --port 8081 &')).toBe(true);
    expect(NEEDS_MARK.test('curl -s http://127.0.0.1:8080/v1/models')).toBe(false);
  });

  it.each(blocks.map((b) => [b.where, b]))('%s parses, and its deq-serve flags and npm scripts exist', async (_where, block) => {
    execFileSync('bash', ['-n'], { input: block.code }); // throws on a syntax error
    for (const line of block.lines) {
      for (const s of npmScripts(line)) expect(scripts, `${line}: npm run ${s}`).toContain(s);
      for (const inv of invocations(line)) {
        const text = await help(inv.command);
        expect(text, `deq-serve ${inv.command.join(' ')} --help`).not.toMatch(/unknown command/i);
        for (const flag of inv.flags) {
          if (flag === '--help' || flag === '--verbose') continue;
          expect(text.includes(flag), `${block.where}: deq-serve ${inv.command.join(' ')} has no ${flag}`).toBe(true);
        }
      }
    }
    if (!block.skip) {
      const needs = block.lines.find((l) => NEEDS_MARK.test(l));
      expect(needs, `${block.where}: "${needs}" cannot run in CI; mark the block "# not run by the docs check: <why>"`).toBeUndefined();
    }
  });
});
