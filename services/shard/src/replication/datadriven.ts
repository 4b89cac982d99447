import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Scripted tests in etcd-raft's datadriven style: a file of commands, each followed by `----` and
 * the output it must produce, up to a blank line. `REWRITE=1` writes the actual outputs back into
 * the file instead of comparing (then review the diff: it is the test's golden output).
 *
 *   # a comment
 *   write id=1 a=1
 *   ----
 *   (output lines)
 */
export interface Command {
  line: number;
  name: string;
  /** `k=v` arguments; a bare word is `word=true`. */
  args: Map<string, string>;
  /** Positional words after the name that are not k=v. */
  words: string[];
  text: string;
}

interface Block {
  cmd: Command;
  expected: string;
}

function parseCommand(text: string, line: number): Command {
  const [name, ...rest] = text.trim().split(/\s+/);
  const args = new Map<string, string>();
  const words: string[] = [];
  for (const part of rest) {
    const eq = part.indexOf('=');
    if (eq > 0) args.set(part.slice(0, eq), part.slice(eq + 1));
    else words.push(part);
  }
  return { line, name: name!, args, words, text: text.trim() };
}

function parseFile(content: string): Block[] {
  const lines = content.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i += 1) {
    const l = lines[i]!.trim();
    if (l === '' || l.startsWith('#')) continue;
    if (lines[i + 1]?.trim() !== '----') throw new Error(`line ${i + 1}: a command must be followed by ----`);
    const out: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j]!.trim() !== ''; j += 1) out.push(lines[j]!);
    blocks.push({ cmd: parseCommand(l, i + 1), expected: out.join('\n') });
    i = j;
  }
  return blocks;
}

/** Runs every command of `path` through `run` in order, comparing (or, with REWRITE=1, rewriting) outputs. */
export function runScript(path: string, run: (cmd: Command) => string): void {
  const content = readFileSync(path, 'utf8');
  const blocks = parseFile(content);
  const rewrite = process.env['REWRITE'] === '1';
  let rewritten = '';
  const header = content.split('\n');
  let lineIdx = 0;
  for (const b of blocks) {
    const actual = run(b.cmd).trimEnd();
    if (rewrite) {
      // Keep the comments and blank lines before the command as they are.
      while (lineIdx < b.cmd.line - 1) rewritten += `${header[lineIdx++]}\n`;
      rewritten += `${b.cmd.text}\n----\n${actual}\n`;
      lineIdx = b.cmd.line + 1 + (b.expected === '' ? 0 : b.expected.split('\n').length);
      continue;
    }
    if (actual !== b.expected) {
      throw new Error(`${path}:${b.cmd.line}: ${b.cmd.text}\n--- expected\n${b.expected}\n--- actual\n${actual}`);
    }
  }
  if (rewrite) {
    while (lineIdx < header.length) rewritten += `${header[lineIdx++]}${lineIdx < header.length ? '\n' : ''}`;
    writeFileSync(path, rewritten);
  }
}
