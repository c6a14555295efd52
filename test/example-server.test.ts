// The example HTTP server (examples/server/) as its users run it: a child process
// (`node dist/examples/server/main.js`, importing the package by its name) on
// 127.0.0.1 and a port it picks, driven with real HTTP requests. Images come from a
// real registry (docker-registry; an OCI layout made here, pushed as the distribution
// spec says); the slow pull goes through a throttling proxy, so a client can hang up
// while a blob is on the wire. What the server leaves is checked with the library on the same store,
// in /proc/PID/fd and in the mount table.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readlink } from 'node:fs/promises';
import { request } from 'node:http';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openStore, type Change, type ImageInfo } from '../lib/index.js';
import { mountPointsUnder } from '../lib/mountinfo.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { skipWithout, startRegistry } from './helpers/registry.js';
import { buildShellLayout, pushShellImages } from './helpers/shell-image.js';
import type { ContainerInfo } from '../examples/server/containers.js';
import type { ErrorBody } from '../examples/server/http-io.js';
import type { PullLine } from '../examples/server/pull.js';
import type { RunResult } from '../examples/server/run-in-root.js';
import { startThrottleProxy, type ThrottleProxy } from './helpers/throttle-proxy.js';

const serverMain = join(dirname(fileURLToPath(import.meta.url)), '..', 'examples', 'server', 'main.js');

interface Server {
  url: string;
  pid: number;
  child: ChildProcess;
  /** stdout so far, one entry per line. */
  lines: string[];
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startServer(t: TestContext, home: string, insecure: string[]): Promise<Server> {
  const args = [serverMain, '--home', home, '--port', '0', ...insecure.flatMap((h) => ['--insecure-registry', h])];
  // setpriv --pdeathsig: the server dies with this test process even if its cleanup never runs.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const lines: string[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    const parts = (partial + s).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const waitForLine = (pattern: RegExp, timeoutMs = 5000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = lines.find((l) => pattern.test(l));
        if (line === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no line ${pattern} from the server in ${timeoutMs} ms; stdout:\n${lines.join('\n')}\nstderr:\n${stderr}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const listening = await Promise.race([
    waitForLine(/^listening on http:\/\/127\.0\.0\.1:\d+$/),
    exited.then(({ code }) => Promise.reject(new Error(`the server exited (${code}) before listening: ${stderr}`))),
  ]);
  return { url: listening.slice('listening on '.length), pid: child.pid!, child, lines, waitForLine, exited };
}

/** A JSON answer, as the caller expects it to be (an error's body is ErrorBody). */
interface Answer<T> {
  status: number;
  body: T;
}

async function api<T = ErrorBody>(server: Server, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Answer<T>> {
  const res = await fetch(server.url + path, {
    method,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': contentType } } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
}

/** A pull to its end: the JSON lines it streamed. */
async function pull(server: Server, ref: string): Promise<PullLine[]> {
  const res = await fetch(`${server.url}/images/pull`, { method: 'POST', body: JSON.stringify({ ref }), headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 200, `pull ${ref}: ${res.status}`);
  assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
  return (await res.text())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as PullLine);
}

/**
 * Starts a pull over a raw connection and destroys the connection once `layer` has
 * reported downloaded bytes; resolves to the lines read until then.
 */
function pullAndHangUp(server: Server, ref: string, layer: number): Promise<PullLine[]> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/images/pull`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const seen: PullLine[] = [];
      let partial = '';
      res.setEncoding('utf8').on('data', (s: string) => {
        const parts = (partial + s).split('\n');
        partial = parts.pop()!;
        for (const p of parts) {
          const line = JSON.parse(p) as PullLine;
          seen.push(line);
          if (line.type !== 'progress') return reject(new Error(`the pull ended before the hang-up: ${p}`));
          if (line.layer === layer && line.phase === 'downloading' && line.bytes > 0) {
            req.destroy();
            return resolve(seen);
          }
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end(JSON.stringify({ ref }));
  });
}

/** The server's open files under `dir`, from /proc/PID/fd. */
async function openFilesUnder(pid: number, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target === dir || target.startsWith(dir + '/')) out.push(target);
  }
  return out.sort();
}

/** The store as another process sees it: layers, images and check(); released after. */
async function storeState(home: string) {
  const store = await openStore(home);
  try {
    const layers = (await store.list()).map((l) => ({ id: l.id, kind: l.kind, mountCount: l.mountCount })).sort((a, b) => a.id.localeCompare(b.id));
    const images = (await store.images()).map((i) => i.names.join(',')).sort();
    return { layers, images, check: await store.check() };
  } finally {
    await store.cleanup();
  }
}

/** Mounts below the driver's home (not the home's own bind mount). */
async function layerMounts(home: string): Promise<string[]> {
  const driverHome = join(home, 'overlay');
  return (await mountPointsUnder(driverHome)).filter((m) => m !== driverHome);
}

/** The promise's value, or a failure once `ms` have passed (the timer cleared either way: it must not keep the test alive). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the example server: pull, create + mount, run, changes, commit, delete; concurrency; a hang-up mid-pull; SIGTERM', async (t) => {
  if (skipUnlessRoot(t) || skipWithout(t, 'docker-registry', 'chroot', 'ldd', 'setpriv')) return;
  const dir = await tempDir(t, 'ogd-example-');
  // 4 MiB at 512 KiB/s: a pull that is not aborted takes 8 s more and ends with "done".
  const layout = await buildShellLayout(join(dir, 'layout'), dir, { bigBytes: 4 << 20 });
  const registry = await startRegistry(t);
  await pushShellImages(layout, registry.host, 'test/shell');
  const proxy: ThrottleProxy = await startThrottleProxy(t, registry.host, 512 << 10);
  const home = join(dir, 'store');
  const server = await startServer(t, home, [registry.host, proxy.host]);
  const shellRef = `docker://${registry.host}/test/shell:shell`;

  await t.test('a pull streams its progress as JSON lines and ends with the image', async () => {
    const lines = await pull(server, shellRef);
    const last = lines.at(-1)!;
    assert.equal(last.type, 'done', JSON.stringify(last));
    assert.deepEqual(last.image.names, [`${registry.host}/test/shell:shell`]);
    assert.equal(last.image.layers.length, 1);
    const phases = lines.filter((l) => l.type === 'progress').map((l) => l.phase);
    assert.ok(phases.includes('downloading') && phases.includes('applying') && phases.at(-1) === 'done', phases.join(' '));
    const images = await api<ImageInfo[]>(server, 'GET', '/images');
    assert.deepEqual(
      images.body.map((i) => i.names),
      [[`${registry.host}/test/shell:shell`]],
    );
  });

  await t.test('input from requests: refused with 400 and the error code, the store unchanged', async () => {
    const before = await storeState(home);
    const shellTop = (await api<ImageInfo[]>(server, 'GET', '/images')).body[0]!.topLayer!;
    const cases: Array<[string, string, unknown, number, string]> = [
      ['POST', '/images/pull', { ref: 'docker://127.0.0.1/UPPER/case' }, 400, 'ERR_OGD_INVALID_REFERENCE'],
      ['POST', '/images/pull', { ref: 'oci:/etc' }, 400, 'ERR_REQUEST_TRANSPORT'],
      ['POST', '/images/pull', { ref: 42 }, 400, 'ERR_REQUEST_INVALID'],
      ['POST', '/images/pull', '{"ref": ', 400, 'ERR_REQUEST_INVALID'],
      ['GET', `/containers/${encodeURIComponent('../../etc')}/changes`, undefined, 400, 'ERR_OGD_INVALID_ID'],
      ['DELETE', `/containers/${encodeURIComponent('a/b')}`, undefined, 400, 'ERR_OGD_INVALID_ID'],
      ['GET', '/containers/%ZZ/changes', undefined, 400, 'ERR_REQUEST_INVALID'],
      // An image's layer is no container: a run in it would change every container on it.
      ['POST', `/containers/${shellTop}/run`, { argv: ['sh', '-c', 'echo x > /poison'] }, 404, 'ERR_NOT_A_CONTAINER'],
      ['DELETE', `/containers/${shellTop}`, undefined, 404, 'ERR_NOT_A_CONTAINER'],
      ['POST', '/containers', { image: 'no/such:image' }, 404, 'ERR_OGD_IMAGE_NOT_FOUND'],
      ['POST', '/containers/0123/run', { argv: [] }, 400, 'ERR_REQUEST_INVALID'],
      ['POST', '/containers/0123/run', { argv: ['sh'], timeoutMs: -1 }, 400, 'ERR_REQUEST_INVALID'],
      ['POST', '/containers/0123/commit', { name: 'x' }, 404, 'ERR_OGD_LAYER_NOT_FOUND'],
      ['DELETE', '/images/no%2Fsuch', undefined, 404, 'ERR_OGD_IMAGE_NOT_FOUND'],
      ['PUT', '/images', undefined, 404, 'ERR_REQUEST_ROUTE'],
    ];
    for (const [method, path, body, status, code] of cases) {
      const res = await api(server, method, path, body);
      assert.deepEqual([res.status, res.body?.code], [status, code], `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      assert.equal(typeof res.body.message, 'string');
    }
    const plain = await api(server, 'POST', '/containers', 'image=x', 'text/plain');
    assert.deepEqual([plain.status, plain.body.code], [415, 'ERR_REQUEST_MEDIA_TYPE']);
    assert.deepEqual(await storeState(home), before);
  });

  await t.test('create + mount, sh -c writes a file in the root, changes show it, commit, a container on the commit reads it, delete', async () => {
    const created = await api<ContainerInfo>(server, 'POST', '/containers', { image: 'test/shell:shell' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    assert.match(id, /^[0-9a-f]{64}$/);
    const wrote = await api<RunResult>(server, 'POST', `/containers/${id}/run`, { argv: ['sh', '-c', 'echo "hello from $(echo inside)" > /hello.txt && echo written; echo oops >&2; exit 3'] });
    assert.equal(wrote.status, 200);
    assert.deepEqual(
      { exitCode: wrote.body.exitCode, stdout: wrote.body.stdout, stderr: wrote.body.stderr, timedOut: wrote.body.timedOut },
      { exitCode: 3, stdout: 'written\n', stderr: 'oops\n', timedOut: false },
    );
    const changes = await api<Change[]>(server, 'GET', `/containers/${id}/changes`);
    assert.deepEqual(changes.body, [{ path: '/hello.txt', kind: 'A' }]);
    // The store holds the server's mount reference.
    assert.deepEqual(
      (await storeState(home)).layers.filter((l) => l.id === id),
      [{ id, kind: 'container', mountCount: 1 }],
    );

    const committed = await api<ImageInfo>(server, 'POST', `/containers/${id}/commit`, { name: 'test/committed:1' });
    assert.equal(committed.status, 201, JSON.stringify(committed.body));
    assert.equal(committed.body.layers.length, 2);
    const second = (await api<ContainerInfo>(server, 'POST', '/containers', { image: 'test/committed:1' })).body.id;
    const read = await api<RunResult>(server, 'POST', `/containers/${second}/run`, { argv: ['sh', '-c', 'read line < /hello.txt; echo "$line"'] });
    assert.deepEqual([read.body.exitCode, read.body.stdout], [0, 'hello from inside\n']);
    const timedOut = await api<RunResult>(server, 'POST', `/containers/${second}/run`, { argv: ['sh', '-c', 'while :; do :; done'], timeoutMs: 200 });
    assert.deepEqual([timedOut.body.timedOut, timedOut.body.exitCode, timedOut.body.signal], [true, null, 'SIGKILL']);

    for (const c of [id, second]) assert.equal((await api(server, 'DELETE', `/containers/${c}`)).status, 204);
    const gone = await api(server, 'GET', `/containers/${id}/changes`);
    assert.deepEqual([gone.status, gone.body.code], [404, 'ERR_OGD_LAYER_NOT_FOUND']);
    assert.deepEqual(await layerMounts(home), []);
    assert.equal((await api(server, 'DELETE', `/images/${encodeURIComponent('test/committed:1')}`)).status, 204);
  });

  await t.test('concurrent requests: four containers created, run in and removed at once, beside listings', async () => {
    const ids = await Promise.all(
      [0, 1, 2, 3].map(async () => {
        const res = await api<ContainerInfo>(server, 'POST', '/containers', { image: 'test/shell:shell' });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        return res.body.id;
      }),
    );
    assert.equal(new Set(ids).size, 4);
    const [runs] = await Promise.all([
      Promise.all(ids.map((id, n) => api<RunResult>(server, 'POST', `/containers/${id}/run`, { argv: ['sh', '-c', `echo ${n} > /n; read v < /n; echo "$v"`] }))),
      Promise.all([api(server, 'GET', '/images'), api(server, 'GET', '/containers')]),
    ]);
    assert.deepEqual(
      runs.map((r) => r.body.stdout),
      ['0\n', '1\n', '2\n', '3\n'],
    );
    const changes = await Promise.all(ids.map((id) => api<Change[]>(server, 'GET', `/containers/${id}/changes`)));
    for (const c of changes) assert.deepEqual(c.body, [{ path: '/n', kind: 'A' }]);
    const listed = (await api<ContainerInfo[]>(server, 'GET', '/containers')).body;
    assert.deepEqual(listed.map((c) => c.id).sort(), [...ids].sort());
    const removed = await Promise.all(ids.map((id) => api(server, 'DELETE', `/containers/${id}`)));
    assert.deepEqual(
      removed.map((r) => r.status),
      [204, 204, 204, 204],
    );
  });

  await t.test('a client that hangs up mid-pull aborts it: no layer, no open file, no mount, no connection left', async () => {
    const before = await storeState(home);
    const filesBefore = await openFilesUnder(server.pid, home);
    const mountsBefore = await mountPointsUnder(home);
    const ref = `docker://${proxy.host}/test/shell:big`;
    const seen = await pullAndHangUp(server, ref, 1);
    assert.ok(seen.some((l) => l.type === 'progress' && l.layer === 0 && l.phase === 'exists'), 'the shell layer was there already');
    await server.waitForLine(new RegExp(`^pull ${ref}: aborted \\(the client went away\\)$`));
    const bigBlob = layout.bigBlob!;
    const big = proxy.transfers.find((tr) => tr.path.endsWith(bigBlob.digest));
    assert.ok(big !== undefined, `the big blob went through the proxy: ${JSON.stringify(proxy.transfers)}`);
    await until('the blob download to end', () => big.over);
    assert.ok(big.cutShort && big.bytesSent < bigBlob.size, `sent ${big.bytesSent} of ${bigBlob.size}`);
    assert.deepEqual(await openFilesUnder(server.pid, home), filesBefore);
    assert.deepEqual(await mountPointsUnder(home), mountsBefore);
    const after = await storeState(home);
    assert.deepEqual(after, before);
    assert.equal(after.check.ok, true, JSON.stringify(after.check.problems));
    // And the server goes on serving.
    assert.equal((await api(server, 'GET', '/images')).status, 200);
  });

  await t.test('SIGTERM: a pull in progress aborted, held containers unmounted, the store closed, exit 0', async () => {
    const id = (await api<ContainerInfo>(server, 'POST', '/containers', { image: 'test/shell:shell' })).body.id;
    assert.equal((await layerMounts(home)).length, 1);
    const res = await fetch(`${server.url}/images/pull`, {
      method: 'POST',
      body: JSON.stringify({ ref: `docker://${proxy.host}/test/shell:big` }),
      headers: { 'content-type': 'application/json' },
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    while (!/"layer":1,[^\n]*"phase":"downloading"/.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the pull ended early: ${text}`);
      text += value;
    }
    server.child.kill('SIGTERM');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const last = JSON.parse(text.trim().split('\n').at(-1)!) as Record<string, unknown>;
    assert.deepEqual([last.type, last.code], ['error', 'ABORT_ERR']);
    assert.deepEqual(await within(server.exited, 5000, 'the server to exit'), { code: 0, signal: null });
    assert.ok(server.lines.includes('stopped'), server.lines.join('\n'));
    assert.deepEqual(await mountPointsUnder(home), [], 'no mount left under the store');
    const after = await storeState(home);
    assert.equal(after.check.ok, true, JSON.stringify(after.check.problems));
    // The container stays in the store, unmounted; the aborted image is not there.
    assert.deepEqual(
      after.layers.filter((l) => l.kind === 'container'),
      [{ id, kind: 'container', mountCount: 0 }],
    );
    assert.deepEqual(after.images, [`${registry.host}/test/shell:shell`]);
  });
});
