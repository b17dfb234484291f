/**
 * Joins argv words into a command line a POSIX shell splits back into the same words, for the
 * "Reproduce:" line of a report: an empty word or one with a space, quote or other shell
 * character is single-quoted (a single quote inside becomes '\'').
 */
export function shellJoin(words: readonly string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(' ');
}
