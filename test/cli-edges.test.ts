// The ogd binary at its edges (issue 9): --version and usage errors, errors as JSON,
// a closed stdout, damaged compressed layers, empty input, refused inits that must
// leave nothing behind, busy and labelled mounts, and SIGINT/SIGTERM on commands that
// run long or are stuck. Each runs the real CLI as a child process.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import { release, tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';
import { TarBuilder } from './helpers/tar-builder.js';
import { createDriver } from '../lib/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const main = join(root, 'dist', 'lib', 'cli', 'main.js');

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Started {
  child: ReturnType<typeof spawn>;
  output: Promise<Outcome>;
}

function start(args: string[], opts: { input?: Buffer | string; uid?: number; gid?: number; stdin?: 'pipe' } = {}): Started {
  const child = spawn(process.execPath, [main, ...args], {
    env: { ...process.env, OGD_DEBUG: '' },
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin!.on('error', () => {});
  if (opts.stdin !== 'pipe') child.stdin!.end(opts.input ?? '');
  const output = once(child, 'close').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null, stdout, stderr }));
  return { child, output };
}

const ogd = (args: string[], opts?: Parameters<typeof start>[1]): Promise<Outcome> => start(args, opts).output;

async function ok(args: string[], opts?: Parameters<typeof start>[1]): Promise<string> {
  const r = await ogd(args, opts);
  assert.equal(r.code, 0, `ogd ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** A failure: the exit code and exactly one line on stderr (plus the usage line for a usage mistake). */
async function fails(args: string[], code: number, pattern: RegExp, opts?: Parameters<typeof start>[1]): Promise<Outcome> {
  const r = await ogd(args, opts);
  assert.equal(r.code, code, `ogd ${args.join(' ')} exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  if (!/^usage: |^run "ogd --help"/m.test(r.stderr)) assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
  return r;
}

/** A tar made by GNU tar (the independent producer) of `files` written here. */
async function gnuTar(dir: string, files: Record<string, string | Buffer>): Promise<Buffer> {
  for (const [name, body] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), body);
  }
  return execFileSync('tar', ['-C', dir, '--numeric-owner', '-cf', '-', '.'], { maxBuffer: 1 << 28 });
}

const listing = async (home: string): Promise<unknown> => JSON.parse(await ok(['--home', home, '--json', 'ls'])) as unknown;

const NAME = `ogd-cli-edges-${process.pid}-`;
const PREFIX = join(tmpdir(), NAME);
after(async () => {
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(PREFIX)), [], 'the tests leave the mount table as they found it');
});

test('--version answers with the package, Node, N-API, addon and kernel overlay versions', async () => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string };
  const text = await ok(['--version']);
  assert.match(text, new RegExp(`^ogd ${pkg.version.replace(/\./g, '\\.')} \\(overlay-graphdriver\\)$`, 'm'));
  assert.match(text, new RegExp(`N-API ${process.versions.napi}\\b`));
  assert.ok(text.includes(`kernel ${release()}`), text);
  const json = JSON.parse(await ok(['--version', '--json'])) as { ogd: string; napi: { node: number; addon: number }; abi: string; addon: string; overlay: { parameters: Record<string, string> } };
  assert.equal(json.ogd, pkg.version);
  assert.equal(json.abi, process.versions.modules);
  assert.equal(json.napi.addon, Number(/NAPI_VERSION=(\d+)/.exec(await readFile(join(root, 'binding.gyp'), 'utf8'))![1]));
  assert.ok(existsSync(join(root, json.addon)), `the addon named exists: ${json.addon}`);
  const params = '/sys/module/overlay/parameters';
  if (existsSync(params)) {
    assert.deepEqual(Object.keys(json.overlay.parameters), (await readdir(params)).sort());
    for (const [name, value] of Object.entries(json.overlay.parameters)) assert.equal(value, (await readFile(join(params, name), 'utf8')).trim());
  }
  assert.equal((await ogd(['-V'])).code, 0);
});

test('usage errors exit 125 (podman\'s) in our words; with --json every failure is also a JSON document on stdout', async (t) => {
  await fails(['--home'], 125, /^ogd: --home needs a value\n/);
  await fails(['status', '--home'], 125, /^ogd status: --home needs a value\nusage: ogd status\n$/);
  const bogus = await fails(['exists', '--bogusflag'], 125, /^ogd exists: unknown option --bogusflag \(an argument that starts with "-" goes after "--": -- --bogusflag\)\nusage: ogd exists ID\n$/);
  assert.doesNotMatch(bogus.stderr, /'-- "/, 'no stray quote');
  await fails([], 125, /^ogd: no command given\n/);

  const usage = await ogd(['--json', 'mount']);
  assert.equal(usage.code, 125);
  assert.deepEqual(JSON.parse(usage.stdout), { error: { code: 'ERR_OGD_USAGE', message: 'missing argument', command: 'mount' } });
  assert.match(usage.stderr, /^ogd mount: missing argument\n/, 'the stderr line stays');
  const parse = await ogd(['--json', '--home']);
  assert.deepEqual(JSON.parse(parse.stdout), { error: { code: 'ERR_OGD_USAGE', message: '--home needs a value', command: null } });

  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const failed = await ogd(['--json', '--home', join(dir, 'store'), 'mount', 'missing']);
  assert.equal(failed.code, 125);
  assert.deepEqual(JSON.parse(failed.stdout), { error: { code: 'ERR_OGD_LAYER_NOT_FOUND', message: 'layer "missing" does not exist', command: 'mount' } });
  assert.equal(failed.stderr, 'ogd mount: layer "missing" does not exist [ERR_OGD_LAYER_NOT_FOUND]\n');
  await ok(['--home', join(dir, 'store'), 'cleanup']);
});

test('a reader closing stdout early (ogd diff X | head -c100) ends ogd quietly with 141', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const g = ['--home', join(dir, 'store')];
  await ok([...g, 'import', 'big', '-'], { input: await gnuTar(join(dir, 'src'), { 'a/blob': randomBytes(8 << 20) }) });
  const { child, output } = start([...g, 'diff', 'big']);
  let got = 0;
  child.stdout!.removeAllListeners('data');
  child.stdout!.on('data', (chunk: Buffer) => {
    got += chunk.length;
    if (got >= 100) child.stdout!.destroy(); // as head -c100 does: read a little, then close
  });
  const r = await output;
  assert.equal(r.code, 141, `exit code (stderr: ${r.stderr})`);
  assert.equal(r.stderr, '', 'nothing on stderr');
  await ok([...g, 'cleanup']);
});

test('a truncated or corrupt gzip or zstd layer is named as such (ERR_OGD_INVALID_ARCHIVE), and the store is left as it was', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const home = join(dir, 'store');
  const g = ['--home', home];
  // Many small incompressible files: gzip stores them, so flipped bytes reach the tar
  // reader as a bad header long before gzip's CRC at the end notices.
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 800; i++) files[`d/f${i}`] = randomBytes(1000);
  const plain = await gnuTar(join(dir, 'src'), files);
  const gz = execFileSync('gzip', ['-c'], { input: plain, maxBuffer: 1 << 26 });
  const zst = execFileSync('zstd', ['-q', '-c'], { input: plain, maxBuffer: 1 << 26 });
  const flipped = (b: Buffer): Buffer => {
    const c = Buffer.from(b);
    const mid = c.length >> 1;
    for (let i = mid; i < mid + 2048; i++) c[i]! ^= 0x5a;
    return c;
  };
  await ok([...g, 'import', 'base', '-'], { input: plain });
  const before = await listing(home);
  const cases: Array<[string, Buffer, RegExp]> = [
    ['truncated gzip', gz.subarray(0, gz.length >> 1), /^ogd import: the gzip stream ends early: the layer file is truncated \[ERR_OGD_INVALID_ARCHIVE\]\n$/],
    ['corrupt gzip', flipped(gz), /^ogd import: the gzip stream is corrupt \(.+\): the layer file is damaged \[ERR_OGD_INVALID_ARCHIVE\]\n$/],
    ['truncated zstd', zst.subarray(0, zst.length >> 1), /^ogd import: the zstd stream ends early: the layer file is truncated \[ERR_OGD_INVALID_ARCHIVE\]\n$/],
    ['corrupt zstd', flipped(zst), /^ogd import: the zstd stream is corrupt \(.+\): the layer file is damaged \[ERR_OGD_INVALID_ARCHIVE\]\n$/],
  ];
  for (const [what, input, pattern] of cases) {
    await writeFile(join(dir, 'layer'), input);
    await t.test(what, async () => {
      await fails([...g, 'import', 'child', '--parent', 'base', join(dir, 'layer')], 125, pattern);
      assert.deepEqual(await listing(home), before, 'the index is unchanged');
      assert.deepEqual((await readdir(join(home, 'overlay'))).sort(), ['base'], 'no layer directory is left');
    });
  }
  await ok([...g, 'cleanup']);
});

test('an empty input is not a layer: refused (store unchanged) unless --allow-empty; applyDiff refuses it unless allowEmpty', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const home = join(dir, 'store');
  const g = ['--home', home];
  await fails([...g, 'import', 'x', '/dev/null'], 125, /^ogd import: the layer "\/dev\/null" is empty \(0 bytes\), not a tar; --allow-empty applies it as an empty layer \[ERR_OGD_INVALID_ARCHIVE\]\n$/);
  await fails([...g, 'import', 'x', '-'], 125, /the layer on stdin is empty/);
  assert.deepEqual(await listing(home), []);
  assert.deepEqual(await readdir(join(home, 'overlay')), [], 'the refused layer is removed');
  assert.match(await ok([...g, 'import', 'x', '--allow-empty', '/dev/null']), /^imported x \(0 B of content\)/);

  const driver = await createDriver('overlay', join(dir, 'lib'));
  try {
    await driver.create('e');
    await assert.rejects(driver.applyDiff('e', undefined, Readable.from([])), { code: 'ERR_OGD_INVALID_ARCHIVE', message: /empty \(0 bytes\)/ });
    assert.equal(await driver.applyDiff('e', undefined, Readable.from([]), { allowEmpty: true }), 0);
  } finally {
    await driver.cleanup();
  }
  await ok([...g, 'cleanup']);
});

test('a refused init leaves nothing behind: a home on overlay, under /proc, or without privileges', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  // A home inside an overlay mount (overlay cannot be the upper layer of another).
  for (const d of ['lower', 'upper', 'work', 'merged']) await mkdir(join(dir, d));
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${dir}/lower,upperdir=${dir}/upper,workdir=${dir}/work`, join(dir, 'merged')]);
  await fails(['--home', join(dir, 'merged', 'store'), 'status'], 125, /^ogd status: overlay is not supported over overlayfs .*\[ERR_OGD_INCOMPATIBLE_FS\]\n$/);
  assert.deepEqual(await readdir(join(dir, 'merged')), [], 'the refused home was not created');
  execFileSync('umount', [join(dir, 'merged')]);

  // Node's recursive mkdir spins forever on /proc/x; the check comes first.
  const spin = start(['--home', '/proc/ogd-test-home', 'status']);
  const timer = setTimeout(() => spin.child.kill('SIGKILL'), 10_000);
  const r = await spin.output;
  clearTimeout(timer);
  assert.equal(r.code, 125, `exits (not killed after 10 s): ${r.stderr}`);
  assert.match(r.stderr, /^ogd status: overlay is not supported over proc .*\[ERR_OGD_INCOMPATIBLE_FS\]\n$/);

  // Without root: say what is missing, create nothing, on a new home and on root's store.
  await ok(['--home', join(dir, 'rootstore'), 'create', 'probe']);
  execFileSync('chmod', ['755', dir]);
  const nobody = { uid: 65534, gid: 65534 };
  for (const home of [join(dir, 'new', 'store'), join(dir, 'rootstore')]) {
    await fails(['--home', home, 'status'], 125, /^ogd status: the overlay driver needs root, or CAP_SYS_ADMIN to mount .* this process \(uid 65534\) lacks CAP_SYS_ADMIN.*\[ERR_OGD_NOT_SUPPORTED\]\n$/, nobody);
  }
  await assert.rejects(access(join(dir, 'new')), { code: 'ENOENT' }, 'nothing created for the unprivileged user');
  await ok(['--home', join(dir, 'rootstore'), 'cleanup']);
});

test('unmount of a busy mount says why and points to --lazy, which detaches it', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const g = ['--home', join(dir, 'store')];
  await ok([...g, 'import', 'base', '-'], { input: await gnuTar(join(dir, 'src'), { f: 'x' }) });
  await ok([...g, 'create', 'c', '--parent', 'base', '--rw']);
  const path = (await ok([...g, 'mount', 'c'])).trim();
  const user = spawn('sleep', ['30'], { cwd: path, stdio: 'ignore' }); // its cwd keeps the mount busy
  t.after(() => user.kill('SIGKILL'));
  await fails([...g, 'unmount', 'c'], 125, /^ogd unmount: EBUSY: .*umount2 .*something still uses the mount \(a process whose cwd is in it, or a file open below it\).*--lazy/);
  assert.ok((await mountPoints()).includes(path), 'still mounted after the refusal');
  assert.match(await ok([...g, 'unmount', '--lazy', 'c']), /unmounted c/);
  assert.ok(!(await mountPoints()).includes(path), 'detached from the mount table');
  user.kill('SIGKILL');
  await once(user, 'close');
  await ok([...g, 'cleanup']);
});

test('a mount label the kernel refuses: the system error keeps its code and names the options', async (t) => {
  if (skipUnlessRoot(t)) return;
  if (existsSync('/sys/fs/selinux/enforce')) return t.skip('SELinux is enabled here: the label would be accepted');
  const dir = await tempDir(t, NAME);
  const g = ['--home', join(dir, 'store')];
  await ok([...g, 'import', 'base', '-'], { input: await gnuTar(join(dir, 'src'), { f: 'x' }) });
  await ok([...g, 'create', 'c', '--parent', 'base', '--rw']);
  await fails([...g, 'mount', 'c', '--label', 'system_u:object_r:container_file_t:s0'], 125, /^ogd mount: EINVAL: invalid argument, mount .*: the kernel refused the overlay mount options 'lowerdir=.*,context="system_u:object_r:container_file_t:s0"' \(is SELinux enabled\? .*\)\n$/);
  await ok([...g, 'cleanup']);
});

test('SIGTERM rolls an import back like Ctrl-C, and exits 143', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const home = join(dir, 'store');
  await ok(['--home', home, 'import', 'base', '-'], { input: await gnuTar(join(dir, 'src'), { f: 'x' }) });
  const before = await listing(home);
  // A slow download: a tar header, some data, then a quiet pipe.
  const { child, output } = start(['--home', home, 'import', 'child', '--parent', 'base', '-'], { stdin: 'pipe' });
  const header = (await gnuTar(join(dir, 'one'), { big: Buffer.alloc(64 << 20) })).subarray(0, 1 << 20);
  child.stdin!.write(header);
  for (let i = 0; i < 400 && !existsSync(join(home, 'overlay', 'child')); i++) await sleep(25);
  await sleep(300);
  child.kill('SIGTERM');
  const r = await output;
  child.stdin!.destroy();
  assert.equal(r.code, 143, `exit code (stderr: ${r.stderr})`);
  assert.equal(r.stderr, 'ogd import: terminated; nothing was changed [ABORT_ERR]\n');
  assert.deepEqual(await listing(home), before);
  assert.deepEqual(await readdir(join(home, 'overlay')), ['base'], 'the half-imported layer is gone');
  await ok(['--home', home, 'cleanup']);
});

test('SIGTERM ends a stuck command within the grace period; a second signal ends it at once', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const g = ['--home', join(dir, 'store')];
  await ok([...g, 'import', 'base', '-'], { input: await gnuTar(join(dir, 'src'), { f: 'x' }) });
  // -o onto a fifo nobody reads: open(2) blocks in the thread pool and no AbortSignal reaches it.
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const stuck = async (): Promise<Started> => {
    const s = start([...g, 'diff', 'base', '-o', fifo]);
    await sleep(1500); // well into the blocked open
    return s;
  };

  let s = await stuck();
  let t0 = Date.now();
  s.child.kill('SIGTERM');
  let r = await s.output;
  const waited = Date.now() - t0;
  assert.equal(r.signal, 'SIGTERM', `ended by SIGTERM (code ${r.code}, stderr: ${r.stderr})`);
  assert.ok(waited < 9000, `ended ${waited} ms after SIGTERM`);
  assert.match(r.stderr, /rollback did not finish within 5 s of SIGTERM; exiting now/);

  s = await stuck();
  s.child.kill('SIGINT');
  await sleep(300);
  t0 = Date.now();
  s.child.kill('SIGINT');
  r = await s.output;
  assert.equal(r.signal, 'SIGINT', `the second Ctrl-C ends it (code ${r.code}, stderr: ${r.stderr})`);
  assert.ok(Date.now() - t0 < 1000, `at once: ${Date.now() - t0} ms`);
  await ok([...g, 'cleanup']);
});

test('SIGTERM during diff -o FILE: FILE never appears, no temp file is left', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, NAME);
  const g = ['--home', join(dir, 'store')];
  // 20k entries, enough for the diff to be running when the signal lands; built in memory (no source tree to write).
  const wide = new TarBuilder();
  for (let i = 0; i < 20000; i++) wide.file(`d${i % 50}/f${i}`, `file ${i}\n`);
  await ok([...g, 'import', 'wide', '-'], { input: wide.end() });
  const out = join(dir, 'out.tar');
  const { child, output } = start([...g, 'diff', 'wide', '-o', out]);
  const tmp = `${out}.ogd-${child.pid}.tmp`;
  for (let i = 0; i < 2000 && !existsSync(tmp); i++) await sleep(2);
  child.kill('SIGTERM');
  const r = await output;
  if (r.code === 0) return t.skip('the diff finished before SIGTERM arrived');
  assert.equal(r.code, 143, `exit code (stderr: ${r.stderr})`);
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('out.tar')), [], 'neither FILE nor its temp file');
  await ok([...g, 'cleanup']);
});
