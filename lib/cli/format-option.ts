// --format, as podman's listings and inspect take it: "json" for a JSON array,
// anything else a Go template rendered once per item, one line each (template.ts).
import { stringOption } from './command.js';
import type { OptionDoc, OptionValues } from './command.js';
import type { CliContext } from './context.js';
import { compileTemplate } from './template.js';

export function formatOption(fields: string): OptionDoc {
  return { type: 'string', value: 'FMT', help: `"json", or a Go template per item, e.g. '${fields}'`, byDefault: 'a table' };
}

/**
 * Prints `items` as --format asks and returns true; false when no --format was
 * given (or "table"), so the caller prints its table. The template is checked on
 * the first item before anything is printed.
 */
export function printFormatted(ctx: CliContext, values: OptionValues, items: unknown[]): boolean {
  const format = stringOption(values, 'format');
  if (format === undefined || format === 'table' || ctx.json) return false;
  if (format === 'json') {
    process.stdout.write(JSON.stringify(items, null, 2) + '\n');
    return true;
  }
  const render = compileTemplate(format);
  const lines = items.map((i) => render(i));
  process.stdout.write(lines.map((l) => (l.endsWith('\n') ? l : `${l}\n`)).join(''));
  return true;
}
