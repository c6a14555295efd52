// The ogd binary as a user runs it: a child process per command, against a real store
// on a real overlay mount. Checks exit codes, --json output, the one-line errors, and
// that what the CLI reports matches what GNU tar and the kernel's mount table say.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';
import { formatCount } from '../lib/cli/progress.js';

const main = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'cli', 'main.js');

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function ogd(args: string[], opts: { input?: Buffer | string; env?: Record<string, string>; cwd?: string } = {}): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, OGD_DEBUG: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

async function ok(args: string[], opts?: Parameters<typeof ogd>[1]): Promise<string> {
  const r = await ogd(args, opts);
  assert.equal(r.code, 0, `ogd ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

async function okJson<T>(args: string[], opts?: Parameters<typeof ogd>[1]): Promise<T> {
  return JSON.parse(await ok(['--json', ...args], opts)) as T;
}

/** A failure: the exit code, and exactly one line on stderr, without a stack trace. */
async function fails(args: string[], code: number, pattern: RegExp, opts?: Parameters<typeof ogd>[1]): Promise<Outcome> {
  const r = await ogd(args, opts);
  assert.equal(r.code, code, `ogd ${args.join(' ')} exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace without OGD_DEBUG=1');
  if (!/^usage: |^run "ogd --help"/m.test(r.stderr)) assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
  return r;
}

/** A layer tar made by GNU tar from a directory we write here (the independent producer). */
async function gnuTar(dir: string, files: Record<string, string>, flags: string[] = []): Promise<Buffer> {
  for (const [name, body] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), body);
  }
  return execFileSync('tar', ['-C', dir, '--numeric-owner', ...flags, '-cf', '-', '.'], { maxBuffer: 1 << 26 });
}

async function tarOf(entries: Array<{ name: string; body?: string; type?: 'file' | 'directory' | 'symlink'; linkname?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    if ((e.type ?? 'file') === 'file') pack.entry({ name: e.name, mode: 0o644 }, e.body ?? '');
    else pack.entry({ name: e.name, type: e.type!, mode: 0o755, ...(e.linkname ? { linkname: e.linkname } : {}) });
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Listed {
  id: string;
  kind: string;
  parent: string | null;
  size: number | null;
  mounted: boolean;
}

// Only this process's temp dirs are checked: other test runs may mount things meanwhile.
const PREFIX = join(tmpdir(), `ogd-cli-${process.pid}-`);
/** What the CLI mounted under `dir` must be gone once the test ran `ogd cleanup`/`unmount`. */
async function assertNoMountsUnder(dir: string): Promise<void> {
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), [], `no mount left under ${dir}`);
}

after(async () => {
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(PREFIX)), [], 'the CLI tests leave the mount table as they found it');
});

test('usage errors exit 125 (podman\'s) with the usage line; --help exits 0 and documents every command', async () => {
  const help = await ok(['--help']);
  for (const command of ['status', 'ls', 'exists', 'metadata', 'create', 'import', 'apply-diff', 'mount', 'unmount', 'diff', 'changes', 'diff-size', 'remove', 'cleanup', 'copy', 'demo']) {
    assert.match(help, new RegExp(`^  ${command}\\b`, 'm'), `--help lists ${command}`);
  }
  assert.match(await ok(['import', '--help']), /example:\n  ogd import /);
  await fails(['status', '--bogus'], 125, /^ogd status: unknown option --bogus\nusage: ogd status\n$/);
  await fails(['frobnicate'], 125, /unknown command "frobnicate"/);
  await fails(['mount'], 125, /ogd mount: missing argument\nusage: ogd mount ID/);
  await fails(['exists', 'a', 'b'], 125, /unexpected argument "b"/);
  await fails(['--driver', 'zfs', 'ls'], 125, /unknown driver "zfs"/);
  assert.equal((await ogd([])).code, 125, 'no command is a usage error');
});

test('the layer lifecycle through the CLI: import (tar, gzip from stdin, zstd), create, mount, write, changes, diff, unmount, remove', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, `ogd-cli-${process.pid}-`);
  const home = join(dir, 'store');
  const g = ['--home', home];
  const base = await gnuTar(join(dir, 'base'), { 'etc/os-release': 'VERSION=1\n', 'bin/tool': 'tool v1\n', 'doc/README': 'read me\n' });
  const child = await gnuTar(join(dir, 'child'), { 'etc/os-release': 'VERSION=2\n', 'etc/app.conf': 'port=1\n' }, ['-z']);
  const grand = await gnuTar(join(dir, 'grand'), { 'opt/new': 'new\n' }, ['--zstd']);
  await writeFile(join(dir, 'base.tar'), base);
  await writeFile(join(dir, 'grand.tar.zst'), grand);

  const imported = await okJson<{ id: string; format: string; bytes: number }>([...g, 'import', 'base', join(dir, 'base.tar')]);
  assert.deepEqual([imported.id, imported.format, imported.bytes], ['base', 'tar', 'VERSION=1\ntool v1\nread me\n'.length]);
  assert.match(await ok([...g, 'import', 'child', '--parent', 'base', '-'], { input: child }), /^imported child on base \(gzip, /);
  assert.equal((await okJson<{ format: string }>([...g, 'import', 'grand', '--parent', 'child', join(dir, 'grand.tar.zst')])).format, 'zstd');
  assert.match(await ok([...g, 'create', 'web', '--parent', 'grand', '--rw']), /created container layer web on grand/);

  const status = await okJson<{ driver: string; status: Record<string, string> }>([...g, 'status']);
  assert.equal(status.driver, 'overlay');
  assert.equal(status.status['Backing Filesystem'], 'extfs');

  let listed = await okJson<Listed[]>([...g, 'ls']);
  assert.deepEqual(
    listed.map((l) => [l.id, l.kind, l.parent, l.mounted]),
    [
      ['base', 'image', null, false],
      ['child', 'image', 'base', false],
      ['grand', 'image', 'child', false],
      ['web', 'container', 'grand', false],
    ],
  );

  const path = (await ok([...g, 'mount', 'web'])).trim();
  assert.ok((await mountPoints()).includes(path), `${path} is a mount point after ogd exited`);
  assert.equal(await readFile(join(path, 'etc/os-release'), 'utf8'), 'VERSION=2\n');
  assert.equal(await readFile(join(path, 'opt/new'), 'utf8'), 'new\n');
  await writeFile(join(path, 'etc/app.conf'), 'port=2\n');
  await writeFile(join(path, 'added'), 'added through the mount\n');
  execFileSync('rm', [join(path, 'bin/tool')]);
  listed = await okJson<Listed[]>([...g, 'ls']);
  assert.equal(listed.find((l) => l.id === 'web')!.mounted, true);
  assert.match(await ok([...g, 'ls']), /^web\s+container\s+grand\s+\S+ B\s+yes$/m);

  // --parent omitted: the CLI remembers web's parent.
  const changes = await okJson<Array<{ path: string; kind: string }>>([...g, 'changes', 'web']);
  const byPath = new Map(changes.map((c) => [c.path, c.kind]));
  assert.equal(byPath.get('/added'), 'A');
  assert.equal(byPath.get('/etc/app.conf'), 'C');
  assert.equal(byPath.get('/bin/tool'), 'D');
  assert.match(await ok([...g, 'changes', 'web']), /^A \/added$/m);
  assert.equal((await ok([...g, 'diff-size', 'web'])).trim(), String('port=2\n'.length + 'added through the mount\n'.length));

  const out = join(dir, 'web.tar');
  const wrote = await okJson<{ output: string; bytes: number }>([...g, 'diff', 'web', '-o', out]);
  assert.equal(wrote.output, out);
  const names = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n');
  assert.ok(names.some((n) => /(^|\/)added$/.test(n)), `the diff holds /added: ${names.join(' ')}`);
  assert.ok(names.some((n) => /(^|\/)etc\/app\.conf$/.test(n)), 'the diff holds /etc/app.conf');
  // -o onto a device writes through it, never replaces it (a null device of our own, not /dev/null).
  const devNull = join(dir, 'null');
  execFileSync('mknod', ['-m', '666', devNull, 'c', '1', '3']);
  await ok([...g, 'diff', 'web', '-o', devNull]);
  assert.ok((await lstat(devNull)).isCharacterDevice(), '-o DEVICE leaves the device in place');
  const piped = await ogd([...g, 'diff', 'web']);
  assert.equal(piped.code, 0);
  assert.equal(Buffer.byteLength(piped.stdout, 'latin1') > 0, true);

  const meta = await okJson<{ metadata: Record<string, string>; parent: string }>([...g, 'metadata', 'web']);
  assert.equal(meta.metadata['MergedDir'], path);
  assert.equal(meta.parent, 'grand');
  assert.equal((await ogd([...g, 'exists', 'web'])).code, 0);
  assert.equal((await ogd([...g, 'exists', 'nope'])).stdout.trim(), 'false');
  assert.equal((await ogd([...g, 'exists', 'nope'])).code, 1);

  await fails([...g, 'remove', 'web'], 2, /ogd remove: layer "web" is in use: it is mounted .* \[ERR_OGD_LAYER_IN_USE\]/);
  await fails([...g, 'remove', 'grand'], 2, /layer "grand" is in use: it is the parent of web \[ERR_OGD_LAYER_IN_USE\]/);
  assert.match(await ok([...g, 'unmount', 'web']), /unmounted web/);
  assert.ok(!(await mountPoints()).includes(path), 'unmount took the overlay down');
  await ok([...g, 'remove', 'web']);
  assert.deepEqual((await okJson<Listed[]>([...g, 'ls'])).map((l) => l.id), ['base', 'child', 'grand']);
  await ok([...g, 'cleanup']);
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir)), [], 'cleanup released the store');
});

test('mount references outlive the process: two ogd mounts need two unmounts', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, `ogd-cli-${process.pid}-`);
  const g = ['--home', join(dir, 'store')];
  await ok([...g, 'import', 'base', '-'], { input: await tarOf([{ name: 'f', body: 'x' }]) });
  await ok([...g, 'create', 'c', '--parent', 'base', '--rw']);
  const path = (await ok([...g, 'mount', 'c'])).trim();
  assert.equal((await ok([...g, 'mount', 'c'])).trim(), path);
  assert.match(await ok([...g, 'unmount', 'c']), /stays mounted \(1 more\)/);
  assert.ok((await mountPoints()).includes(path));
  await ok([...g, 'unmount', 'c']);
  assert.ok(!(await mountPoints()).includes(path));
  assert.match(await ok([...g, 'unmount', 'c']), /was not mounted/);
  await ok([...g, 'cleanup']);
  await assertNoMountsUnder(dir);
});

test('failures exit 125 with one line naming the command, the reason and the code', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, `ogd-cli-${process.pid}-`);
  const home = join(dir, 'store');
  const g = ['--home', home];
  await fails([...g, 'mount', 'missing'], 125, /^ogd mount: layer "missing" does not exist \[ERR_OGD_LAYER_NOT_FOUND\]\n$/);
  await fails([...g, 'changes', 'missing'], 125, /ERR_OGD_LAYER_NOT_FOUND/);
  await fails([...g, 'create', '../evil'], 125, /^ogd create: invalid layer id "\.\.\/evil": .*\[ERR_OGD_INVALID_ID\]\n$/);
  await fails([...g, 'import', 'x', join(dir, 'no-such.tar')], 125, /^ogd import: ENOENT: no such file or directory, open '.*no-such\.tar'\n$/);

  const sentinel = join(dir, 'escaped');
  const hostile = await tarOf([{ name: 'ok', body: 'fine' }, { name: '../../escaped', body: 'pwned' }]);
  await fails([...g, 'import', 'evil', '-'], 125, /^ogd import: .*\[ERR_OGD_UNSAFE_LAYER\]\n$/, { input: hostile });
  await assert.rejects(readFile(sentinel), { code: 'ENOENT' }, 'nothing was written outside the layer');
  assert.deepEqual(await okJson<Listed[]>([...g, 'ls']), [], 'the refused layer is gone, the index untouched');
  assert.deepEqual((await readdir(join(home, 'overlay'))).filter((n) => !n.startsWith('.')), [], 'no layer directory is left behind');

  const debug = await ogd([...g, 'mount', 'missing'], { env: { OGD_DEBUG: '1' } });
  assert.equal(debug.code, 125);
  assert.match(debug.stderr, /^\s+at /m, 'OGD_DEBUG=1 shows the stack');
  await fails([...g, 'import', 'xz', '-'], 125, /xz-compressed.*\[ERR_OGD_INVALID_ARCHIVE\]/, { input: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2]) });
  await ok([...g, 'cleanup']);
  await assertNoMountsUnder(dir);
});

test('entry counts are grouped by thousands as en-US groups them', () => {
  for (const n of [0, 7, 999, 1000, 4481, 65536, 100000, 999999, 1000000, 12345678901]) {
    assert.equal(formatCount(n), n.toLocaleString('en-US'), String(n));
  }
});

test('ogd copy copies a tree and reports what it copied', async (t) => {
  const dir = await tempDir(t, `ogd-cli-${process.pid}-`);
  const src = join(dir, 'src');
  for (let i = 0; i < 20; i++) {
    await mkdir(join(src, `d${i % 4}`), { recursive: true });
    await writeFile(join(src, `d${i % 4}`, `f${i}`), `file ${i}\n`);
  }
  const stats = await okJson<{ entries: number; files: number; directories: number; hardlinks: number }>(['copy', '--hardlink', src, join(dir, 'dst')]);
  const found = execFileSync('find', [join(dir, 'dst'), '-mindepth', '1'], { encoding: 'utf8' }).trim().split('\n').length;
  assert.equal(stats.files, 20);
  assert.equal(stats.hardlinks, 20);
  assert.ok(stats.entries === found || stats.entries === found + 1, `entries ${stats.entries} vs find ${found}`);
  assert.equal(await readFile(join(dir, 'dst', 'd3', 'f7'), 'utf8'), 'file 7\n');
  assert.match(await ok(['copy', src, join(dir, 'dst2')]), /^copied \d+ entries \(\d+ B\) in /);
  await fails(['copy', src, join(dir, 'dst')], 125, /^ogd copy: .*\[?E(EXIST|NOTEMPTY)/);
  await fails(['copy', src], 125, /missing argument/);
});

test('ogd demo runs twice from nothing and leaves nothing behind', async (t) => {
  if (skipUnlessRoot(t)) return;
  const tmp = await tempDir(t, `ogd-cli-${process.pid}-demo-`);
  for (let run = 0; run < 2; run++) {
    const r = await ogd(['demo'], { env: { TMPDIR: tmp } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mount "web": sees VERSION=2, no README, \/opt\/app = \[main\.js\]/);
    assert.match(r.stdout, /changes of "web": .*D \/bin\/hello/);
    assert.match(r.stdout, /^done in /m);
    assert.deepEqual(await readdir(tmp), [], 'the demo home is removed');
  }
  const json = await okJson<{ steps: Array<{ step: string; ms: number }> }>(['demo'], { env: { TMPDIR: tmp } });
  assert.ok(json.steps.length >= 10 && json.steps.every((s) => typeof s.ms === 'number'));
});

test('progress bars draw on a terminal and never when stderr is piped', async (t) => {
  if (skipUnlessRoot(t)) return;
  let haveScript = true;
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
  } catch {
    haveScript = false;
  }
  const dir = await tempDir(t, `ogd-cli-${process.pid}-`);
  const layer = join(dir, 'layer.tar');
  const body = 'x'.repeat(2 << 20);
  await writeFile(layer, await tarOf(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, body }))));
  const piped = await ogd(['--home', join(dir, 'a'), 'import', 'a', layer]);
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stderr, '', 'nothing on a piped stderr');
  await ok(['--home', join(dir, 'a'), 'cleanup']);
  if (!haveScript) return t.skip('needs script(1) from util-linux for a pseudo-terminal');
  // script(1) gives the command a pseudo-terminal, as an interactive shell would.
  const command = [process.execPath, main, '--home', join(dir, 'b'), 'import', 'b', layer].map((a) => `'${a}'`).join(' ');
  const tty = execFileSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '120' } });
  assert.match(tty, /\[#*\.*\] \d+% import · \d+ entries · [\d.]+ [kMG]?B · [\d.]+ [kMG]?B\/s/, 'a bar with entries, bytes and rate');
  assert.match(tty, /\r\x1b\[2Kimported b \(/, 'the bar is erased before the result line');
  await ok(['--home', join(dir, 'b'), 'cleanup']);
  await assertNoMountsUnder(dir);
});
