// A real registry for tests: Debian's docker-registry (the CNCF distribution
// registry) on 127.0.0.1 and a free port, with its config and storage in a temp dir,
// stopped and removed when the test ends (also on failure). Its access log (combined
// format, on stdout) is kept, so tests can count what clients fetched.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { tempDir } from './sandbox.js';

const run = promisify(execFile);

export function have(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Skips the test (true) unless every tool is installed. */
export function skipWithout(t: TestContext, ...tools: string[]): boolean {
  const missing = tools.filter((tool) => !have(tool));
  if (missing.length === 0) return false;
  t.skip(`${missing.join(', ')} not installed (.ci/run installs them)`);
  return true;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface AccessLogLine {
  method: string;
  uri: string;
  status: number;
  bytes: number;
}

export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  /** The registry's storage root (docker/registry/v2/… below it). */
  storage: string;
  /** Requests served so far. */
  log(): AccessLogLine[];
  /** The data file of a blob in the registry's storage. */
  blobData(digest: string): string;
}

/** Starts a registry for the test; `htpasswd` turns on basic auth with that one user, `token` bearer tokens from that server. */
export async function startRegistry(
  t: TestContext,
  opts: { htpasswd?: { user: string; password: string }; token?: { realm: string; service: string; issuer: string; certFile: string } } = {},
): Promise<TestRegistry> {
  const dir = await tempDir(t, 'ogd-registry-');
  const storage = join(dir, 'storage');
  await mkdir(storage);
  const port = await freePort();
  let auth = '';
  if (opts.htpasswd !== undefined) {
    const { stdout } = await run('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password]);
    await writeFile(join(dir, 'htpasswd'), stdout);
    auth = `auth:\n  htpasswd:\n    realm: ogd-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  if (opts.token !== undefined) {
    const { realm, service, issuer, certFile } = opts.token;
    auth = `auth:\n  token:\n    realm: ${realm}\n    service: ${service}\n    issuer: ${issuer}\n    rootcertbundle: ${certFile}\n`;
  }
  const config = join(dir, 'config.yml');
  await writeFile(
    config,
    `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`,
  );
  // Through setpriv --pdeathsig: the server dies with this process even when it crashes
  // before its cleanup runs (a test run killed, an addon that fails to load).
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'docker-registry', 'serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.after(async () => {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  });
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || i > 100) throw new Error(`docker-registry did not start: ${err.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    storage,
    log: () =>
      out
        .split('\n')
        .map((l) => /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d+) (\d+|-)/.exec(l))
        .filter((m) => m !== null)
        .map((m) => ({ method: m[1]!, uri: m[2]!, status: Number(m[3]), bytes: m[4] === '-' ? 0 : Number(m[4]) })),
    blobData: (digest: string) => {
      const hex = digest.split(':')[1]!;
      return join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
    },
  };
}
