/**
 * A GitHub-flavoured Markdown table. Every row must have one cell per header: a report whose
 * header and rows drift apart does not render as a table at all, so that is an error here.
 */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  for (const [i, row] of rows.entries()) {
    if (row.length !== header.length) throw new RangeError(`markdownTable: row ${i} has ${row.length} cells, the header ${header.length}`);
  }
  const line = (cells: readonly string[]) => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)];
}
