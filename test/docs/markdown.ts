// Small Markdown readers for the docs tests: links outside code, and fenced code blocks with their info string.

/** A fenced code block: its info string (e.g. `sh docs-check: skip gpu`), its text and the line it starts on. */
export interface CodeBlock {
  info: string;
  code: string;
  line: number;
}

/** Fenced code blocks (``` or ~~~), in order. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[2]!;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !lines[j]!.trimStart().startsWith(fence); j++) body.push(lines[j]!);
    blocks.push({ info: open[3]!.trim(), code: body.join('\n'), line: i + 1 });
    i = j;
  }
  return blocks;
}

/** Targets of inline links and images, `[text](target)`, outside fenced code and inline code spans. */
export function markdownLinks(markdown: string): string[] {
  const prose = markdown
    .replace(/^(\s*)(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\s*\2[^\n]*$/gm, '')
    .replace(/`[^`\n]*`/g, '``');
  const targets: string[] = [];
  for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  return targets;
}
