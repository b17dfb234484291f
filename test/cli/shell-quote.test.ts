import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { shellJoin } from '../../src/cli/shell-quote.js';

/** What sh makes of a command line: its words, NUL-separated by printf. */
const shWords = (line: string): string[] =>
  execFileSync('sh', ['-c', `printf '%s\\0' ${line}`], { encoding: 'utf8' }).split('\0').slice(0, -1);

describe('shellJoin', () => {
  it('leaves plain words bare', () => {
    expect(shellJoin(['models/fashion-mnist-jr', '--max-iter', '1', '--out', 'docs/results/a.md'])).toBe(
      'models/fashion-mnist-jr --max-iter 1 --out docs/results/a.md');
  });

  it('gives back the same words through sh, empty ones and quotes included', () => {
    const words = ['--rss-max-iters', '', 'a b', "it's", '$HOME', '*', 'x"y', 'back\\slash', 'tab\there', 'fashion-mnist-jr?tol=0.1'];
    const line = shellJoin(words);
    expect(line).toContain("--rss-max-iters ''");
    expect(shWords(line)).toEqual(words);
  });
});
