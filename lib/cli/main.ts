#!/usr/bin/env node
// The `ogd` command line. This file only parses the global flags, picks the command,
// wires SIGINT/SIGTERM to an AbortSignal (signals.ts), and turns the outcome into an
// exit code (exit-codes.ts, podman's): 0 success, 1 the answer is "no", 125 failure
// or usage mistake (one line on stderr with the error's .code, and with --json an
// {"error":…} document on stdout), 130/143 stopped by SIGINT/SIGTERM, 141 stdout
// closed by its reader. Stacks only with OGD_DEBUG=1.
import { parseArgs } from 'node:util';
import type { DriverName } from '../index.js';
import { CliContext, globalOptions } from './context.js';
import type { GlobalOptions } from './context.js';
import { OutputClosedError, UsageError, parseSpec } from './command.js';
import type { Command, OptionSpec, OptionValues } from './command.js';
import { commandNames, isCommandName, loadAllCommands, loadCommand } from './commands/index.js';
import type { CommandName } from './commands/index.js';
import { EXIT_FAILURE, EXIT_OUTPUT_CLOSED } from './exit-codes.js';
import { commandHelp, mainHelp, usageLines } from './help.js';
import { failureJson, failureLine, report } from './report.js';
import { exitCodeFor, installSignalHandlers, stoppedBy } from './signals.js';
import { didYouMean } from './suggest.js';

const globalsWithValue = new Set(Object.entries(globalOptions).flatMap(([name, o]) => (o.type === 'string' ? [`--${name}`, ...(o.short ? [`-${o.short}`] : [])] : [])));

async function main(argv: string[]): Promise<number> {
  const { name, commandIndex } = findCommand(argv);
  if (name === undefined) {
    const first = commandIndex >= 0 ? argv[commandIndex] : undefined;
    if (first !== undefined) throw new UsageError(`unknown command ${JSON.stringify(first)}${didYouMean(first, commandNames())}`);
    const { values } = parse(argv, globalOptions, false);
    if (values['version'] === true) return printVersion(values['json'] === true);
    if (values['help'] !== true) throw new UsageError('no command given');
    process.stdout.write(mainHelp(await loadAllCommands(), globalOptions));
    return 0;
  }
  const command = await loadCommand(name);
  const args = [...argv.slice(0, commandIndex), ...argv.slice(commandIndex + 1)];
  const { values, positionals } = parse(args, { ...globalOptions, ...command.options }, true, command);
  if (values['version'] === true) return printVersion(values['json'] === true);
  if (values['help'] === true) {
    process.stdout.write(commandHelp(command, globalOptions));
    return 0;
  }
  const [min, max] = command.positionals;
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(positionals.length < min ? 'missing argument' : `unexpected argument ${JSON.stringify(positionals[max])}`, command);
  }
  const globals = await globalsFrom(values);

  const controller = new AbortController();
  installSignalHandlers(controller, (line) => process.stderr.write(`ogd ${name}: ${line}\n`));
  const ctx = new CliContext(globals, controller.signal, name);
  return (await command.run(ctx, positionals, values)) ?? 0;
}

async function printVersion(json: boolean): Promise<number> {
  const { formatVersion, versionInfo } = await import('./version.js');
  const info = await versionInfo();
  process.stdout.write(json ? JSON.stringify(info, null, 2) + '\n' : formatVersion(info));
  return 0;
}

/** parseArgs, with its errors turned into usage errors in our words (exit 2, with the usage line). */
function parse(args: string[], options: OptionSpec, allowPositionals: boolean, command?: Command): { values: OptionValues; positionals: string[] } {
  try {
    return parseArgs({ args, options: parseSpec(options), strict: true, allowPositionals }) as { values: OptionValues; positionals: string[] };
  } catch (err) {
    throw new UsageError(parseErrorMessage(err, options, (command?.positionals[1] ?? 0) > 0), command);
  }
}

function parseErrorMessage(err: unknown, options: OptionSpec, takesArguments: boolean): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown }).code;
  const option = /^(?:Unknown option|Option) '(-[^' ]*)/.exec(message)?.[1];
  if (option !== undefined && code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const known = Object.entries(options).flatMap(([name, o]) => [`--${name}`, ...(o.short !== undefined ? [`-${o.short}`] : [])]);
    const suggestion = didYouMean(option, known);
    if (suggestion !== '') return `unknown option ${option}${suggestion}`;
    return `unknown option ${option}${takesArguments ? ` (an argument that starts with "-" goes after "--": -- ${option})` : ''}`;
  }
  if (option !== undefined && / argument missing| argument is ambiguous/.test(message)) return `${option} needs a value`;
  if (option !== undefined && /does not take an argument/.test(message)) return `${option} takes no value`;
  return message.split('\n')[0]!;
}

function findCommand(argv: string[]): { name: CommandName | undefined; commandIndex: number } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (globalsWithValue.has(arg)) {
      i++;
      continue;
    }
    if (arg === '--') break;
    if (arg.startsWith('-')) continue;
    return { name: isCommandName(arg) ? arg : undefined, commandIndex: i };
  }
  return { name: undefined, commandIndex: -1 };
}

async function globalsFrom(values: OptionValues): Promise<GlobalOptions> {
  const driver = typeof values['driver'] === 'string' ? values['driver'] : undefined;
  if (driver !== undefined) {
    // Loaded only here: the library's entry loads all of it (~40 ms), which a command
    // such as `copy` never needs; one given --driver opens a store anyway.
    const { DRIVER_NAMES } = await import('../index.js');
    if (!(DRIVER_NAMES as readonly string[]).includes(driver)) {
      throw new UsageError(`unknown driver ${JSON.stringify(driver)} (available: ${DRIVER_NAMES.join(', ')})`);
    }
  }
  const home = typeof values['home'] === 'string' ? values['home'] : process.env['OGD_HOME'] || './.ogd';
  if (home === '') throw new UsageError('--home must not be empty');
  return { home, driverName: driver as DriverName | undefined, json: values['json'] === true, durable: values['no-sync'] !== true };
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && ((err as { code?: unknown }).code === 'ABORT_ERR' || err.name === 'AbortError');
}


/** Before `--`: --json asks for JSON errors even when the rest of the line does not parse. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

// The reader of our stdout went away (`ogd ls | head -1`): its choice, not a failure to report.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(EXIT_OUTPUT_CLOSED);
});

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    const signal = stoppedBy();
    process.exitCode = signal !== undefined && code !== 0 ? exitCodeFor(signal) : code;
  },
  (err: unknown) => {
    const name = findCommand(argv).name;
    const prefix = name === undefined ? 'ogd' : `ogd ${name}`;
    if (err instanceof OutputClosedError) process.exit(EXIT_OUTPUT_CLOSED);
    const signal = stoppedBy();
    const r = report(err, name);
    // After a signal, whatever the command failed with (an AbortError, a zstd killed by
    // the terminal's Ctrl-C) is the interruption: it rolled back like any failure.
    if (isAbort(err) || signal !== undefined) {
      r.code = 'ABORT_ERR';
      r.message = `${signal === 'SIGTERM' ? 'terminated' : 'interrupted'}; nothing was changed`;
    }
    if (process.env['OGD_DEBUG'] === '1' && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
    process.stderr.write(failureLine(r, prefix));
    if (err instanceof UsageError) process.stderr.write(err.command ? `${usageLines(err.command).join('\n')}\n` : 'run "ogd --help" for the commands\n');
    if (wantsJson(argv)) process.stdout.write(failureJson(r));
    const code = signal !== undefined ? exitCodeFor(signal) : isAbort(err) ? exitCodeFor('SIGINT') : EXIT_FAILURE;
    if (signal !== undefined) {
      // Stopped by a signal: the rollback is done; do not wait for stray handles (a slow stdin).
      process.stderr.write('', () => process.exit(code));
      return;
    }
    process.exitCode = code;
  },
);
