// How a failed command is told: one line on stderr ("ogd CMD: what went wrong [CODE]",
// with a hint where the fix is known), and with --json also one document on stdout,
// {"error":{"code","message","command"}}, so a script can parse every outcome.
import { UsageError } from './command.js';

export interface FailureReport {
  code: string;
  message: string;
  command: string | null;
}

/** The error's code: its own `.code`, else USAGE for a usage error, else ERROR. */
export function codeOf(err: unknown): string {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string') return code;
  return err instanceof UsageError ? 'ERR_OGD_USAGE' : 'ERROR';
}

/** The message, first line only, with what to do about it where that is known. */
export function describe(err: unknown, command: string | undefined): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const syscall = (err as { syscall?: unknown }).syscall;
  let message = err.message.replace(/\s*\n[\s\S]*$/, '');
  if (code === 'EPERM' && syscall === 'mount') message += ' (mounting layers needs root, or CAP_SYS_ADMIN)';
  if (code === 'ERR_OGD_INCOMPATIBLE_FS') message += '; put the store on ext4, xfs or tmpfs with --home or OGD_HOME';
  if (code === 'EBUSY' && syscall === 'umount2' && command === 'unmount') {
    message += ': something still uses the mount (a process whose cwd is in it, or a file open below it); find it with "fuser -vm PATH", or detach the mount now with --lazy';
  }
  return message;
}

export function report(err: unknown, command: string | undefined): FailureReport {
  return { code: codeOf(err), message: describe(err, command), command: command ?? null };
}

/** The stderr line: the message, and its code in brackets unless the message already shows it. */
export function failureLine(r: FailureReport, prefix: string): string {
  const showCode = r.code !== 'ERR_OGD_USAGE' && r.code !== 'ERROR' && !r.message.includes(r.code);
  return `${prefix}: ${r.message}${showCode ? ` [${r.code}]` : ''}\n`;
}

export function failureJson(r: FailureReport): string {
  return JSON.stringify({ error: r }, null, 2) + '\n';
}
