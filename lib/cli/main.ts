#!/usr/bin/env node
// The `ogd` command line. This file only parses the global flags, picks the command,
// wires Ctrl-C to an AbortSignal, and turns the outcome into an exit code:
// 0 success, 1 failure (one line on stderr with the error's .code), 2 usage error,
// 130 interrupted. Stacks are printed only with OGD_DEBUG=1.
import { parseArgs } from 'node:util';
import { CliContext, DRIVER_NAMES } from './context.js';
import type { DriverName, GlobalOptions } from './context.js';
import { UsageError } from './command.js';
import type { Command, OptionSpec, OptionValues } from './command.js';
import { isCommandName, loadAllCommands, loadCommand } from './commands/index.js';
import type { CommandName } from './commands/index.js';

const globalOptions: OptionSpec = {
  home: { type: 'string' },
  driver: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};
const globalsWithValue = new Set(['--home', '--driver']);

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

async function main(argv: string[]): Promise<number> {
  const { name, commandIndex } = findCommand(argv);
  if (name === undefined) {
    const first = commandIndex >= 0 ? argv[commandIndex] : undefined;
    if (first !== undefined) throw new UsageError(`unknown command ${JSON.stringify(first)}`);
    const { values } = parseArgs({ args: argv, options: globalOptions, strict: true });
    process.stdout.write(mainHelp(await loadAllCommands()));
    return values['help'] === true ? 0 : EXIT_USAGE;
  }
  const command = await loadCommand(name);
  const args = [...argv.slice(0, commandIndex), ...argv.slice(commandIndex + 1)];
  let parsed: { values: OptionValues; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: { ...globalOptions, ...command.options }, strict: true, allowPositionals: true }) as typeof parsed;
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!, command);
  }
  const { values, positionals } = parsed;
  if (values['help'] === true) {
    process.stdout.write(commandHelp(command));
    return 0;
  }
  const [min, max] = command.positionals;
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(positionals.length < min ? 'missing argument' : `unexpected argument ${JSON.stringify(positionals[max])}`, command);
  }
  const globals = globalsFrom(values);

  const controller = new AbortController();
  let interrupts = 0;
  // First Ctrl-C: abort cleanly (the command rolls back). Second: give up at once.
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(EXIT_INTERRUPTED);
    controller.abort();
  });
  process.on('SIGTERM', () => controller.abort());

  const ctx = new CliContext(globals, controller.signal);
  return (await command.run(ctx, positionals, values)) ?? 0;
}

function findCommand(argv: string[]): { name: CommandName | undefined; commandIndex: number } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (globalsWithValue.has(arg)) {
      i++;
      continue;
    }
    if (arg.startsWith('-')) continue;
    return { name: isCommandName(arg) ? arg : undefined, commandIndex: i };
  }
  return { name: undefined, commandIndex: -1 };
}

function globalsFrom(values: OptionValues): GlobalOptions {
  const driver = typeof values['driver'] === 'string' ? values['driver'] : 'overlay';
  if (!(DRIVER_NAMES as readonly string[]).includes(driver)) {
    throw new UsageError(`unknown driver ${JSON.stringify(driver)} (available: ${DRIVER_NAMES.join(', ')})`);
  }
  const home = typeof values['home'] === 'string' ? values['home'] : process.env['OGD_HOME'] || './.ogd';
  if (home === '') throw new UsageError('--home must not be empty');
  return { home, driverName: driver as DriverName, json: values['json'] === true };
}

function mainHelp(commands: Command[]): string {
  const width = Math.max(...commands.map((c) => c.usage.length));
  return [
    'ogd — container layers on Linux overlayfs (overlay-graphdriver)',
    '',
    'usage: ogd [--home DIR] [--driver overlay] [--json] COMMAND [ARGS]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`),
    '',
    'global flags:',
    '  --home DIR        the store (default: $OGD_HOME, else ./.ogd)',
    '  --driver NAME     graph driver (default: overlay)',
    '  --json            print results as JSON',
    '  -h, --help        help; "ogd COMMAND --help" for one command',
    '',
    'exit codes: 0 ok, 1 failure (one line on stderr), 2 usage error, 130 interrupted',
    '',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [`usage: ogd [--home DIR] [--json] ${c.usage}`, '', `  ${c.summary}`, '', 'example:', `  ${c.example}`, ''].join('\n');
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  let message = err.message.replace(/\s*\n[\s\S]*$/, '');
  if (code === 'EPERM' && (err as { syscall?: unknown }).syscall === 'mount') message += ' (mounting layers needs root, or CAP_SYS_ADMIN)';
  if (code === 'ERR_OGD_INCOMPATIBLE_FS') message += '; put the store on ext4, xfs or tmpfs with --home or OGD_HOME';
  return typeof code === 'string' && !message.includes(code) ? `${message} [${code}]` : message;
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && ((err as { code?: unknown }).code === 'ABORT_ERR' || err.name === 'AbortError');
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const name = findCommand(argv).name;
    const prefix = name === undefined ? 'ogd' : `ogd ${name}`;
    if (err instanceof UsageError) {
      process.stderr.write(`${prefix}: ${err.message}\n`);
      process.stderr.write(err.command ? `usage: ogd ${err.command.usage}\n` : 'run "ogd --help" for the commands\n');
      process.exitCode = EXIT_USAGE;
      return;
    }
    if (process.env['OGD_DEBUG'] === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
    if (isAbort(err)) {
      process.stderr.write(`${prefix}: interrupted; nothing was changed [ABORT_ERR]\n`);
      process.exitCode = EXIT_INTERRUPTED;
      return;
    }
    process.stderr.write(`${prefix}: ${describe(err)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
