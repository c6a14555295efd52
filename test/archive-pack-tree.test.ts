// The whole-tree export packed natively (native/pack_tree.cc via writeTree and
// driver.writeDiff with no parent) held byte for byte to the JS packer
// (exportChanges of changesDirs(root, undefined)) on the fixture tree with every
// entry type, deep paths and id maps; to a file, an O_APPEND file and a non-blocking
// pipe; and its failures said as the JS packer says them.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chown, lstat, mkdir, open, writeFile } from 'node:fs/promises';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as native from '../lib/native.js';
import { createDriver } from '../lib/index.js';
import type { IDMap } from '../lib/types.js';
import { applyTar } from '../lib/archive/apply.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges, writeTree, type ExportOptions } from '../lib/archive/export.js';
import { toRaw } from '../lib/archive/raw-path.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { makeFixtureTree, removeDeepTrees } from './helpers/fixture-tree.js';
import { throughPipe, toFile } from './helpers/fd-sinks.js';

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The JS packer's tar of the whole tree: what the native one must equal. */
async function jsTar(root: string, opts: ExportOptions = {}): Promise<Buffer> {
  return bytesOf(exportChanges(await changesDirs(root, undefined), opts));
}

/** A fresh fixture tree (privileged, deeper than PATH_MAX), removed after `body`. */
async function withFixture(t: TestContext, body: (root: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir(t);
  const root = join(dir, 'tree');
  await mkdir(root);
  try {
    await makeFixtureTree(root, { privileged: true, deep: true });
    await body(root, dir);
  } finally {
    await removeDeepTrees(root);
  }
}

test('packTree writes the bytes of the JS packer: every entry type, deep paths, id maps; to a file, an O_APPEND file and a non-blocking pipe', async (t) => {
  if (skipUnlessRoot(t)) return;
  await withFixture(t, async (root, dir) => {
    const expected = await jsTar(root);
    const progress: Array<{ entries: number; bytes: number }> = [];
    const [plain, written] = await toFile(join(dir, 'plain.tar'), 'w', async (fd) => {
      const r = await native.packTree(root, fd, { onProgress: (p) => progress.push(p) });
      return r.written;
    });
    assert.equal(written, expected.length);
    assert.ok(plain.equals(expected), 'native and JS packers write the same bytes');
    const entries = (await native.scanTree(root)).filter((e) => (Number(e.mode) & 0o170000) !== 0o140000).length;
    assert.deepEqual(progress.at(-1)?.entries, entries, 'the last progress report counts every entry (sockets are not exported)');

    // Owners mapped host 0..65535 → container 2097000..: some ids fit ustar's 7 octal digits, some need PAX records.
    const maps: IDMap[] = [{ containerId: 2_097_000, hostId: 0, size: 65536 }];
    const gidMaps: IDMap[] = [{ containerId: 100_000, hostId: 0, size: 65536 }];
    const mapped = await jsTar(root, { uidMaps: maps, gidMaps });
    assert.ok(!mapped.equals(expected));
    assert.ok(mapped.includes(Buffer.from(' uid=2098000\n')), 'a mapped uid past ustar range goes in a PAX record');
    const opts = { uidMaps: maps, gidMaps };
    const [appended, n1] = await toFile(join(dir, 'appended.tar'), 'a', (fd) => writeTree(toRaw(root), fd, opts));
    assert.equal(n1, mapped.length);
    assert.ok(appended.equals(mapped), 'with id maps, to a file opened for appending (no sendfile)');
    const [piped, n2] = await throughPipe((fd) => writeTree(toRaw(root), fd, opts));
    assert.equal(n2, mapped.length);
    assert.ok(piped.equals(mapped), 'with id maps, through a non-blocking pipe');

    // GNU tar reads every entry, through to the end-of-archive blocks.
    const list = execFileSync('tar', ['--numeric-owner', '-tvf', '-'], { input: plain, maxBuffer: 64 << 20 }).toString('latin1');
    assert.equal(list.trimEnd().split('\n').length, entries);
    assert.match(list, /usr\/bin\/busybox link to etc\/busybox-too/);
    assert.match(list, /deepest\.txt/);
  });
});

test('packTree fails as the JS packer does: unmapped owner, shrunk file, missing root; and stops on abort', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const root = join(dir, 'tree');
  await mkdir(join(root, 'd'), { recursive: true });
  await writeFile(join(root, 'd', 'owned'), 'x');
  await chown(join(root, 'd', 'owned'), 1234, 0);
  const devNull = await open('/dev/null', 'w');
  try {
    // An owner the maps do not hold: InvalidOptionError, the JS packer's message.
    const maps = { uidMaps: [{ containerId: 0, hostId: 0, size: 1000 }] };
    const jsError = await jsTar(root, maps).then(
      () => assert.fail('the JS packer exported an unmapped owner'),
      (e: unknown) => e as Error,
    );
    await assert.rejects(writeTree(toRaw(root), devNull.fd, maps), { code: 'ERR_OGD_INVALID_OPTION', name: 'InvalidOptionError', message: jsError.message });

    // A missing root: a Node-style ENOENT naming it.
    const missing = join(dir, 'absent');
    await assert.rejects(writeTree(toRaw(missing), devNull.fd), { code: 'ENOENT', syscall: 'open', path: missing });

    // An aborted signal, before the start and while blocked on a full non-blocking pipe.
    await assert.rejects(writeTree(toRaw(root), devNull.fd, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
    await writeFile(join(root, 'big'), Buffer.alloc(4 << 20, 0x61));
    const sleeper = spawn('sleep', ['30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      const fd = (sleeper.stdin as unknown as { _handle: { fd: number } })._handle.fd;
      const ac = new AbortController();
      const stuck = writeTree(toRaw(root), fd, { signal: ac.signal });
      setTimeout(() => ac.abort(), 200);
      await assert.rejects(stuck, { code: 'ABORT_ERR' });
    } finally {
      sleeper.kill();
    }

    // A file that ends before its size (a sysfs attribute says 4096 bytes): the JS packer's message.
    const short = join(root, 'short');
    await writeFile(short, '');
    execFileSync('mount', ['--bind', '/sys/kernel/uevent_seqnum', short]);
    try {
      const jsShrank = await jsTar(root).then(
        () => assert.fail('the JS packer exported a file that shrank'),
        (e: unknown) => e as Error,
      );
      assert.match(jsShrank.message, /short shrank while being exported$/);
      await assert.rejects(writeTree(toRaw(root), devNull.fd), { message: jsShrank.message });
    } finally {
      execFileSync('umount', [short]);
    }
  } finally {
    await devNull.close();
  }
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), []);
});

test('driver.writeDiff with no parent packs natively what driver.diff streams: an image layer and a read-write layer (its mount released)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await createDriver('overlay', join(dir, 'home'));
  const { RootDir: root } = await (async () => {
    await d.create('img');
    return d.getMetadata('img');
  })();
  try {
    await makeFixtureTree(root!, { privileged: true, deep: false });
    const check = async (id: string) => {
      const streamed = await bytesOf(await d.diff(id));
      const [written, n] = await toFile(join(dir, `${id}.tar`), 'w', (fd) => d.writeDiff(id, undefined, fd));
      assert.equal(n, streamed.length);
      assert.ok(written.equals(streamed), `${id}: writeDiff writes what diff streams`);
      return streamed;
    };
    const img = await check('img');
    await d.createReadWrite('ctr', 'img');
    const { MergedDir: merged } = await d.getMetadata('ctr');
    await d.get('ctr');
    await writeFile(join(merged!, 'etc', 'added'), 'in the upper layer\n');
    await d.put('ctr');
    const ctr = await check('ctr');
    assert.ok(ctr.length > img.length && ctr.includes(Buffer.from('in the upper layer\n')));
    assert.ok(!(await mountPoints()).includes(merged!), 'the mount writeDiff took is released');
  } finally {
    await d.cleanup();
  }
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), []);
});

test('times before 1970 with nanoseconds: both packers write the exact instant, and applying the tar restores it', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const root = join(dir, 'tree');
  await mkdir(root);
  // [name, mtime in ns]: before the epoch with and without a fraction, just before it, and after it.
  const times: Array<[string, bigint]> = [
    ['minus-1.5s', -1_500_000_000n],
    ['minus-0.25s', -250_000_000n],
    ['minus-2s', -2_000_000_000n],
    ['plus-1.75s', 1_750_000_000n],
  ];
  for (const [name, ns] of times) {
    await writeFile(join(root, name), name);
    const sec = Number((ns - (((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n)) / 1_000_000_000n);
    const nsec = Number(((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n);
    await native.setMeta(join(root, name), { atime: { sec, nsec }, mtime: { sec, nsec } });
    assert.equal((await lstat(join(root, name), { bigint: true })).mtimeNs, ns, `${name}: the kernel keeps the time set`);
  }
  const js = await jsTar(root);
  const [packed] = await toFile(join(dir, 'native.tar'), 'w', (fd) => writeTree(toRaw(root), fd));
  assert.ok(packed.equals(js), 'the native and the JS packer write the same bytes');
  // Applied back by this project and by GNU tar (whose listing misprints such times, but extracts them right).
  const out = join(dir, 'out');
  const gnu = join(dir, 'gnu');
  await mkdir(out);
  await mkdir(gnu);
  await applyTar(out, Readable.from([js]));
  execFileSync('tar', ['-xf', '-', '-C', gnu], { input: js, stdio: ['pipe', 'ignore', 'ignore'] });
  for (const [name, ns] of times) {
    assert.equal((await lstat(join(out, name), { bigint: true })).mtimeNs, ns, `${name}: applied back`);
    assert.equal((await lstat(join(gnu, name), { bigint: true })).mtimeNs, ns, `${name}: extracted by GNU tar`);
  }
});
