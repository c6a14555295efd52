// What every ogd command is made of: its usage line, an example for --help, the flags
// it takes (node:util parseArgs syntax) and a run function. Keeping this shape in one
// place lets main.ts parse, validate and document every command the same way.
import type { ParseArgsConfig } from 'node:util';
import type { CliContext } from './context.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | undefined>;

export interface Command {
  name: string;
  /** e.g. "import ID [--parent P] [FILE|-]" */
  usage: string;
  summary: string;
  example: string;
  options: OptionSpec;
  /** Positional arguments accepted: [min, max]. */
  positionals: [number, number];
  /** Resolves to the exit code when it is not 0 (e.g. `exists` of a missing layer). */
  run(ctx: CliContext, positionals: string[], values: OptionValues): Promise<void | number>;
}

/** A mistake in how the command was called: printed with the usage line, exit code 2. */
export class UsageError extends Error {
  readonly command: Command | undefined;
  constructor(message: string, command?: Command) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** The --parent flag: absent → undefined (use what the index remembers); "" → explicitly none. */
export const parentOption: OptionSpec = { parent: { type: 'string' } };

/** The reader of stdout closed it (EPIPE): `ogd diff X | head -c100`. Not reported; exit 141 as after SIGPIPE. */
export class OutputClosedError extends Error {
  constructor(options?: ErrorOptions) {
    super('stdout was closed by its reader', options);
    this.name = 'OutputClosedError';
  }
}
