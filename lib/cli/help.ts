// --help texts: `ogd --help` (every command, one line each) and `ogd COMMAND --help`
// (usage, what it does, every flag with what it does and its default, an example).
// Every line fits 80 columns: long texts are wrapped, long examples continued with
// a backslash, as one would type them in a shell.
import type { Command, OptionDoc, OptionSpec } from './command.js';
import { EXIT_FAILURE, EXIT_IN_USE, EXIT_NO, EXIT_OUTPUT_CLOSED } from './exit-codes.js';

export const WIDTH = 80;

/** `text` in lines of at most `width` columns, the first starting after `first`, the others after `indent` spaces. */
export function wrap(text: string, first: string, indent: number, width = WIDTH): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = ' '.repeat(indent);
      empty = true;
    }
    line += (empty ? '' : ' ') + word;
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** A shell command over several lines: broken at spaces, each line but the last ending in " \". */
function shellLines(command: string, indent: number): string[] {
  const lines: string[] = [];
  let line = ' '.repeat(indent);
  for (const word of command.split(' ')) {
    if (line.trim() !== '' && line.length + 1 + word.length + 2 > WIDTH) {
      lines.push(line + ' \\');
      line = ' '.repeat(indent + 4);
    }
    line += (line.trim() === '' ? '' : ' ') + word;
  }
  lines.push(line);
  return lines;
}

function flagName(name: string, o: OptionDoc): string {
  const long = `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
  return o.short !== undefined ? `-${o.short}, ${long}` : `    ${long}`;
}

/** One entry per flag: the flag, then what it does and its default, wrapped beside it. */
export function flagLines(options: OptionSpec): string[] {
  const entries = Object.entries(options).sort(([a], [b]) => a.localeCompare(b));
  const names = entries.map(([name, o]) => flagName(name, o));
  const column = Math.min(Math.max(0, ...names.map((n) => n.length)) + 4, 30);
  const out: string[] = [];
  entries.forEach(([, o], i) => {
    const text = o.help + (o.byDefault !== undefined ? ` (default: ${o.byDefault})` : '') + (o.multiple === true ? '; may be repeated' : '');
    const head = `  ${names[i]}`;
    if (head.length + 2 > column) {
      out.push(head);
      out.push(...wrap(text, ' '.repeat(column), column));
    } else {
      out.push(...wrap(text, head.padEnd(column), column));
    }
  });
  return out;
}

export function mainHelp(commands: Command[], globals: OptionSpec): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 4;
  const lines = [
    'ogd — container layers on Linux overlayfs (overlay-graphdriver)',
    '',
    ...wrap('ogd [--home DIR] [--driver NAME] [--json] COMMAND [ARGS]', 'usage: ', 7),
    '',
    'commands:',
  ];
  for (const c of commands) {
    const aliases = c.aliases !== undefined && c.aliases.length > 0 ? ` (also ${c.aliases.join(', ')})` : '';
    lines.push(...wrap(c.summary + aliases, `  ${c.name}`.padEnd(width), width));
  }
  lines.push('', 'global flags:', ...flagLines(globals), '');
  lines.push(...wrap('"ogd COMMAND --help" shows its usage, flags and an example.', '', 0), '');
  lines.push('exit codes:', ...exitCodeLines(), '');
  return lines.join('\n');
}

function exitCodeLines(): string[] {
  return [
    ['0', 'success'],
    [String(EXIT_NO), 'the answer is no: exists finds nothing, check finds problems, rm an id that does not exist'],
    [String(EXIT_IN_USE), 'rm: a layer is mounted or has children (and nothing failed otherwise)'],
    [String(EXIT_FAILURE), 'an error of ogd itself, a usage mistake included (one line on stderr)'],
    ['130/143', 'stopped by SIGINT/SIGTERM, after rolling back'],
    [String(EXIT_OUTPUT_CLOSED), 'stdout closed by its reader'],
  ].flatMap(([code, text]) => wrap(text!, `  ${code!.padEnd(9)}`, 11));
}

/** The usage line(s) of a command, as printed after a usage error too. */
export function usageLines(c: Command): string[] {
  return wrap(`ogd ${c.usage}`, 'usage: ', 11);
}

export function commandHelp(c: Command, globals: OptionSpec): string {
  const lines = [...usageLines(c)];
  if (c.aliases !== undefined && c.aliases.length > 0) lines.push(`also: ${c.aliases.map((a) => `ogd ${a}`).join(', ')}`);
  lines.push('', ...wrap(c.summary, '  ', 2), '');
  if (Object.keys(c.options).length > 0) lines.push('flags:', ...flagLines(c.options), '');
  lines.push('global flags:', ...flagLines(globals), '');
  lines.push('example:', ...shellLines(c.example, 2), '');
  return lines.join('\n');
}
