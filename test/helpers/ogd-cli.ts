// Runs the ogd binary as a user does: a child process per command.
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ogdMain = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'lib', 'cli', 'main.js');
export const indexJs = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'lib', 'index.js');

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: Buffer | string;
  env?: Record<string, string>;
  cwd?: string;
  /** Sends SIGKILL after this many ms (a kill at a random point). */
  killAfterMs?: number;
}

export function ogd(args: string[], opts: RunOptions = {}): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [ogdMain, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, OGD_DEBUG: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    const timer = opts.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

export async function ogdOk(args: string[], opts?: RunOptions): Promise<string> {
  const r = await ogd(args, opts);
  if (r.code !== 0) throw new Error(`ogd ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `script` (an ES module body with `ogd` bound to the library) in a child process; resolves to its stdout. */
export function libraryChild(script: string, args: string[] = [], opts: { env?: Record<string, string> } = {}) {
  const body = `import * as ogd from ${JSON.stringify(indexJs)};\n${script}`;
  return spawn(process.execPath, ['--input-type=module', '-e', body, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
}
