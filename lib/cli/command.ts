// What every ogd command is made of: its usage line, an example for --help, the flags
// it takes (each with what it does and its default, for --help) and a run function.
// Keeping this shape in one place lets main.ts parse, validate and document every
// command the same way.
import type { ParseArgsConfig } from 'node:util';
import type { CliContext } from './context.js';

/** One flag: node:util parseArgs' fields, plus what --help says about it. */
export interface OptionDoc {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** What the flag does, one short sentence for --help. */
  help: string;
  /** The value's placeholder in --help ("FILE"); string flags only. */
  value?: string;
  /** What applies when the flag is not given, for --help ("gzip", "this machine's"). */
  byDefault?: string;
}

export type OptionSpec = Record<string, OptionDoc>;
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface Command {
  name: string;
  /** Other names that run this command (`rm` for remove, as podman has it). */
  aliases?: string[];
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

/** The parseArgs view of our flags (its own fields only). */
export function parseSpec(options: OptionSpec): NonNullable<ParseArgsConfig['options']> {
  const spec: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, o] of Object.entries(options)) {
    spec[name] = { type: o.type, ...(o.short !== undefined ? { short: o.short } : {}), ...(o.multiple === true ? { multiple: true } : {}) };
  }
  return spec;
}

/** A mistake in how the command was called: printed with the usage line (exit 125, as podman's). */
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

/** A flag given several times (`--change A --change B`); [] when absent. */
export function listOption(values: OptionValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** The --parent flag: absent → undefined (use what the index remembers); "" → explicitly none. */
export const parentOption: OptionSpec = {
  parent: { type: 'string', value: 'P', help: 'the parent: a layer id, short id or image name ("" for none)', byDefault: 'the one the layer was made on' },
};

/** The reader of stdout closed it (EPIPE): `ogd diff X | head -c100`. Not reported; exit 141 as after SIGPIPE. */
export class OutputClosedError extends Error {
  constructor(options?: ErrorOptions) {
    super('stdout was closed by its reader', options);
    this.name = 'OutputClosedError';
  }
}
