// The store shared by processes (lib/store/): each test is one of the behaviours a new
// user hit with a Node server and the CLI on one home (issue 10), played by real
// processes on a real home, and the planted damage `ogd check` must find and repair.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openStore } from '../lib/index.js';
import { readMountInfo } from '../lib/mountinfo.js';
import { ogd, ogdOk, libraryChild } from './helpers/ogd-cli.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { pack } from './helpers/tar-builder.js';

async function baseTar(dir: string): Promise<string> {
  const file = join(dir, 'base.tar');
  const entries = [{ name: 'etc/', type: 'directory' as const, mode: 0o755 }, ...Array.from({ length: 40 }, (_, i) => ({ name: `etc/f${i}`, content: `file ${i}\n` }))];
  await writeFile(file, await pack(entries));
  return file;
}

/** A store with an image "base" and a container "c1" on it, made through the CLI. */
async function setup(t: TestContext) {
  const dir = await tempDir(t, 'ogd-store-');
  const home = join(dir, 'home');
  await ogdOk(['--home', home, 'import', 'base', await baseTar(dir)]);
  await ogdOk(['--home', home, 'create', 'c1', '--parent', 'base', '--rw']);
  return { dir, home, cli: (...args: string[]) => ogd(['--home', home, ...args]) };
}

/** A long-lived library process that mounts `id` through the store and keeps it. */
async function server(t: TestContext, home: string, id: string) {
  const child = libraryChild(
    `const s = await ogd.openStore(process.argv[1]); const p = await s.mount(process.argv[2]); process.stdout.write(JSON.stringify({ pid: process.pid, path: p }) + '\\n'); setInterval(() => {}, 1000);`,
    [home, id],
  );
  t.after(() => void child.kill('SIGKILL'));
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const info = JSON.parse(line.toString()) as { pid: number; path: string };
  return {
    ...info,
    async kill() {
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}

test("ogd mount + unmount, and ogd cleanup, leave a server's mount and the home in place; remove names the holder", async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  const srv = await server(t, home, 'c1');
  assert.ok((await mountPoints()).includes(srv.path));

  assert.equal((await cli('mount', 'c1')).stdout.trim(), srv.path);
  const un = await cli('unmount', 'c1');
  assert.equal(un.code, 0);
  assert.match(un.stdout, /stays mounted \(1 more\)/);
  assert.ok((await mountPoints()).includes(srv.path), "the server's mount survives ogd mount + unmount");

  const again = await cli('unmount', 'c1');
  assert.match(again.stdout, new RegExp(`not held by ogd mount \\(held by pid ${srv.pid}\\)`));
  assert.ok((await mountPoints()).includes(srv.path), 'an unmount of a reference ogd does not hold releases nothing');

  const cleanup = await cli('cleanup');
  assert.equal(cleanup.code, 0);
  assert.match(cleanup.stdout, /store still in use/);
  assert.ok((await mountPoints()).includes(srv.path), "ogd cleanup leaves the server's container");
  assert.ok((await mountPoints()).includes(join(home, 'overlay')), 'and the home mount under it');

  const rm1 = await cli('remove', 'c1');
  assert.equal(rm1.code, 2, 'podman-rm\'s code for a layer in use');
  assert.match(rm1.stderr, new RegExp(`mounted by pid ${srv.pid}.*ERR_OGD_LAYER_IN_USE`));

  // The holder dies: the next operation on the layer reclaims its reference and its mount.
  await srv.kill();
  assert.equal((await cli('remove', 'c1')).code, 0);
  assert.ok(!(await mountPoints()).includes(srv.path));
  assert.equal((await cli('check')).code, 0);
  await ogdOk(['--home', home, 'cleanup']);
});

test('a container layer made with the library lists with its kind and parent, and changes shows only its changes', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  const s = await openStore(home);
  try {
    await s.create('web', { parent: 'base', kind: 'container' });
    const root = await s.mount('web');
    for (let i = 0; i < 4; i++) await writeFile(join(root, `new${i}`), 'x');
    await writeFile(join(root, 'etc/f0'), 'changed');
    await s.unmount('web');
  } finally {
    await s.cleanup();
  }
  const ls = JSON.parse((await cli('--json', 'ls')).stdout) as Array<{ id: string; kind: string; parent: string | null }>;
  assert.deepEqual(
    ls.find((l) => l.id === 'web'),
    { id: 'web', kind: 'container', parent: 'base', size: 11, mounted: false, references: 0 },
  );
  const changes = (await cli('changes', 'web')).stdout.trim().split('\n');
  assert.deepEqual(changes.sort(), ['A /new0', 'A /new1', 'A /new2', 'A /new3', 'C /etc', 'C /etc/f0'].sort());
  await ogdOk(['--home', home, 'cleanup']);
});

test('apply-diff into a layer that has children is refused, and the children keep what they show', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { dir, home, cli } = await setup(t);
  const extra = join(dir, 'extra.tar');
  await writeFile(extra, await pack([{ name: 'etc/f1', content: 'replaced\n' }]));
  const r = await cli('apply-diff', 'base', extra);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /layer "base" is in use: layer "c1" stands on it.*ERR_OGD_LAYER_IN_USE/);
  const path = (await cli('mount', 'c1')).stdout.trim();
  const { readFile } = await import('node:fs/promises');
  assert.equal(await readFile(join(path, 'etc/f1'), 'utf8'), 'file 1\n');
  await ogdOk(['--home', home, 'unmount', 'c1']);
  await ogdOk(['--home', home, 'cleanup']);
});

test('read-only commands on a home without a store create nothing', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, 'ogd-store-');
  const results = [];
  for (const args of [['ls'], ['status'], ['check'], ['exists', 'x'], ['metadata', 'x'], ['changes', 'x'], ['diff-size', 'x'], ['cleanup']]) {
    results.push({ args, r: await ogd(args, { cwd: dir }) });
  }
  assert.deepEqual(await readdir(dir), [], 'no ./.ogd made');
  assert.ok(!(await mountPoints()).some((m) => m.startsWith(dir)), 'no mount left');
  assert.match(results[0]!.r.stdout, /no store at/);
  assert.equal(results[3]!.r.code, 1, 'exists says no');
  assert.match(results[4]!.r.stderr, /ERR_OGD_LAYER_NOT_FOUND/);
});

test('ogd mount IMAGE and ogd unmount IMAGE are a symmetric pair (the image is counted)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  const path = (await cli('mount', 'base')).stdout.trim();
  assert.equal(path, join(home, 'overlay/base/root'));
  const rm1 = await cli('remove', 'base');
  assert.match(rm1.stderr, /ERR_OGD_LAYER_IN_USE/);
  const un = await cli('unmount', 'base');
  assert.equal(un.code, 0);
  assert.doesNotMatch(un.stdout, /was not mounted/);
  assert.match((await cli('unmount', 'base')).stdout, /was not mounted/);
  await ogdOk(['--home', home, 'cleanup']);
});

function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

test('ogd check finds planted damage and --repair fixes each', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { dir, home, cli } = await setup(t);
  const tarFile = await baseTar(dir);
  await ogdOk(['--home', home, 'import', 'img2', tarFile]);
  await ogdOk(['--home', home, 'import', 'lower', tarFile]);
  await ogdOk(['--home', home, 'create', 'orphan', '--parent', 'lower', '--rw']);
  await ogdOk(['--home', home, 'mount', 'c1']);
  assert.equal((await cli('check')).code, 0);

  // A deleted layer directory; a container whose lower was removed behind the store's back; a dead holder's reference.
  await rm(join(home, 'overlay/img2'), { recursive: true });
  await rm(join(home, 'overlay/lower'), { recursive: true });
  await writeFile(join(home, 'run/mounts/c1'), JSON.stringify([{ pid: deadPid(), start: '1', owner: 'planted', count: 1 }]));

  const found = await cli('--json', 'check');
  assert.equal(found.code, 1);
  const kinds = (JSON.parse(found.stdout) as { problems: Array<{ kind: string; id?: string }> }).problems.map((p) => `${p.kind} ${p.id}`).sort();
  assert.deepEqual(kinds, ['lower-missing orphan', 'record-without-layer img2', 'record-without-layer lower', 'stale-reference c1']);

  const repaired = await cli('check', '--repair');
  assert.equal(repaired.code, 0, repaired.stdout + repaired.stderr);
  assert.equal((repaired.stdout.match(/^repaired:/gm) ?? []).length, 4);
  // The container that can never be mounted again is kept in lost+found, not deleted.
  const lost = await readdir(join(home, 'lost+found'));
  assert.ok(lost.some((n) => n.endsWith('-layer-orphan')), lost.join(', '));
  assert.match(repaired.stdout, /"orphan" stands on "lower", which is gone.*moved to .*lost\+found/);
  assert.equal((await cli('check')).code, 0);
  assert.ok(!(await mountPoints()).includes(join(home, 'overlay/c1/merged')), "the dead holder's mount is gone");
  const ls = JSON.parse((await cli('--json', 'ls')).stdout) as Array<{ id: string }>;
  assert.deepEqual(ls.map((l) => l.id), ['base', 'c1']);
  await ogdOk(['--home', home, 'cleanup']);
});

test('an import raced by a remove of the same id either fails or leaves the whole layer', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { dir, home, cli } = await setup(t);
  const big = join(dir, 'big.tar');
  await writeFile(big, await pack(Array.from({ length: 1500 }, (_, i) => ({ name: `f${i}`, content: `${i}\n` }))));
  for (let round = 0; round < 2; round++) {
    const imp = cli('import', 'k', big);
    await new Promise((r) => setTimeout(r, 150 + round * 100));
    const rem = await cli('remove', 'k');
    const i = await imp;
    assert.ok(rem.code === 0 || /ERR_OGD_LAYER_NOT_FOUND/.test(rem.stderr), `remove: ${rem.stderr}`);
    if (i.code === 0 && (await cli('exists', 'k')).code === 0) {
      assert.equal((await readdir(join(home, 'overlay/k/root'))).length, 1500, 'a layer that lists is whole');
    }
    await cli('remove', 'k');
  }
  assert.equal((await cli('check')).code, 0);
  await ogdOk(['--home', home, 'cleanup']);
});

test('three ogd processes mounting, writing and unmounting one container never lose a mount or leak one', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  const { FsMagic, fsMagic } = await import('../lib/fs-magic.js');
  const problems: string[] = [];
  const loop = async (who: number) => {
    for (let i = 0; i < 3; i++) {
      const m = await cli('mount', 'c1');
      if (m.code !== 0) {
        problems.push(`mount: ${m.stderr}`);
        continue;
      }
      const path = m.stdout.trim();
      if ((await fsMagic(path)) !== FsMagic.overlayfs) problems.push(`${who}/${i}: mount returned an unmounted path`);
      await writeFile(join(path, `w${who}-${i}`), 'x');
      const u = await cli('unmount', 'c1');
      if (u.code !== 0 || /was not mounted/.test(u.stdout)) problems.push(`${who}/${i}: unmount said ${u.stdout}${u.stderr}`);
    }
  };
  await Promise.all([loop(1), loop(2), loop(3)]);
  assert.deepEqual(problems, []);
  assert.ok(!(await mountPoints()).includes(join(home, 'overlay/c1/merged')), 'no mount leaked');
  const changes = (await cli('changes', 'c1')).stdout.trim().split('\n');
  assert.equal(changes.length, 9, 'every write went into the container layer');
  await ogdOk(['--home', home, 'cleanup']);
});

test('a mount whose reference cannot be written is undone', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  // The references' tmpfs made read-only: writing the reference fails beside the mount.
  execFileSync('mount', ['-o', 'remount,ro', join(home, 'run')]);
  const r = await cli('mount', 'c1');
  assert.equal(r.code, 125);
  assert.match(r.stderr, /EROFS/);
  assert.ok(!(await mountPoints()).includes(join(home, 'overlay/c1/merged')), 'not left mounted');
  execFileSync('mount', ['-o', 'remount,rw', join(home, 'run')]);
  await ogdOk(['--home', home, 'cleanup']);
});

test("the mount references live on the store's own tmpfs: mounted once for every process, gone with the home at cleanup", async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home } = await setup(t);
  const run = join(home, 'run');
  const runMounts = async () => (await readMountInfo()).filter((m) => m.mountPoint === run);
  assert.equal((await runMounts()).length, 1, 'the CLI left one');
  assert.equal((await runMounts())[0]!.fsType, 'tmpfs');
  const [a, b] = await Promise.all([openStore(home), openStore(home)]);
  assert.equal((await runMounts()).length, 1, 'two more opens stack nothing');
  await a.mount('c1');
  assert.deepEqual(await readdir(join(run, 'mounts')), ['c1']);
  assert.equal((await a.cleanup()).homeReleased, false, 'b still has the store open');
  assert.equal((await runMounts()).length, 1);
  const last = await b.cleanup();
  assert.equal(last.homeReleased, true);
  assert.deepEqual(await runMounts(), []);
});

test('a store closed here while another process had it open, opened again after that one released the home, binds the home again', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  const driverHome = join(home, 'overlay');
  const homeMounts = async () => (await readMountInfo()).filter((m) => m.mountPoint === driverHome);
  const srv = await server(t, home, 'c1');
  const first = await openStore(home);
  assert.equal((await first.cleanup()).homeReleased, false, 'the other process has the store open');
  await srv.kill();
  assert.equal((await cli('cleanup')).code, 0);
  assert.deepEqual(await homeMounts(), [], 'the last process released the home');

  const again = await openStore(home);
  const path = await again.mount('c1');
  assert.equal((await homeMounts()).length, 1, 'the home is a mount point again');
  assert.deepEqual((await again.check()).problems, []);
  assert.ok((await mountPoints()).includes(path));
  await again.unmount('c1');
  assert.equal((await again.cleanup()).homeReleased, true);
  assert.deepEqual(await homeMounts(), [], 'and released at the end: no stale use counted');
});

test('a mount the kernel refuses leaves no reference behind, and the layer mounts after', async (t) => {
  if (skipUnlessRoot(t)) return;
  if (existsSync('/sys/fs/selinux/enforce')) return t.skip('SELinux is enabled here: the label would be accepted');
  const { home } = await setup(t);
  const s = await openStore(home);
  try {
    // The reference is written beside the mount: a refused mount must take it back.
    await assert.rejects(s.mount('c1', { mountLabel: 'system_u:object_r:container_file_t:s0' }), { code: 'EINVAL' });
    assert.equal((await s.layer('c1')).mountCount, 0);
    assert.ok(!(await readdir(join(home, 'run/mounts'))).includes('c1'), 'no reference file left');
    const path = await s.mount('c1');
    assert.equal((await s.layer('c1')).mountCount, 1);
    assert.ok((await mountPoints()).includes(path));
    assert.deepEqual((await s.unmount('c1')).references, 0);
    assert.ok(!(await mountPoints()).includes(path));
  } finally {
    await s.cleanup({ force: true });
  }
});

test('a fifo or junk where a record or a reference belongs never hangs the store; the next open drops the junk references', { timeout: 60_000 }, async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  execFileSync('mkfifo', [join(home, 'layers', 'x')]);
  const ls = await cli('ls');
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /^c1 /m);
  await ogdOk(['--home', home, 'mount', 'c1']);
  // The reference file replaced by a fifo (nobody will ever write to it), and junk beside it.
  await rm(join(home, 'run/mounts/c1'));
  execFileSync('mkfifo', [join(home, 'run/mounts/c1')]);
  await writeFile(join(home, 'run/mounts/base'), '[{"pid":"1"}]');
  const s = await openStore(home);
  try {
    assert.deepEqual(await readdir(join(home, 'run/mounts')), [], 'the open dropped both');
    assert.ok(!(await mountPoints()).includes(join(home, 'overlay/c1/merged')), 'and unmounted what nobody held any more');
    const path = await s.mount('c1');
    assert.equal((await s.layer('c1')).mountCount, 1);
    await s.unmount('c1');
    assert.ok(!(await mountPoints()).includes(path));
  } finally {
    await s.cleanup({ force: true });
  }
  // The fifo in home/layers is no record: check says so, repair moves it aside.
  const found = await cli('check');
  assert.notEqual(found.code, 0);
  assert.match(found.stdout, /damaged-record.*layers\/x is not a layer record: it is not a regular file/);
  assert.equal((await cli('check', '--repair')).code, 0);
  assert.equal((await cli('check')).code, 0);
});

test('a store written by an older ogd (home/layers.json) is converted at its first open', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { home, cli } = await setup(t);
  // Back to the old layout: records gone, an index in their place.
  await rm(join(home, 'layers'), { recursive: true });
  await writeFile(join(home, 'layers.json'), JSON.stringify({ version: 1, layers: { base: { kind: 'image', created: '2026-01-01T00:00:00.000Z', size: 5 }, c1: { kind: 'container', parent: 'base', created: '2026-01-01T00:00:00.000Z', mounts: 2 } } }));
  const ls = JSON.parse((await cli('--json', 'ls')).stdout) as Array<{ id: string; kind: string; parent: string | null }>;
  assert.deepEqual(ls.map((l) => [l.id, l.kind, l.parent]), [['base', 'image', null], ['c1', 'container', 'base']]);
  assert.equal((await cli('check')).code, 0);
  await ogdOk(['--home', home, 'cleanup']);
});
