// Layer apply against trees built independently: GNU tar's own extraction of the same
// archive, trees laid out by hand with node:fs, and values written in the test. Covers
// every entry type, long and non-UTF-8 names, xattr policy, id maps, whiteouts and
// opaque directories in either order, replacement rules, parent directories, symlinked
// parents, the parent image staying untouched, progress, abort and the byte count.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, link, lstat, lutimes, mkdir, readFile, readdir, readlink, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { applyTar } from '../lib/archive/apply.js';
import * as native from '../lib/native.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, chunked, pack } from './helpers/tar-builder.js';
import { compareManifests, manifest, showPath } from './helpers/tree.js';

const run = promisify(execFile);
const T = 1_600_000_000;
const hex = (p: string | Buffer): string => Buffer.from(p).toString('hex');

async function gnuExtract(tar: Buffer, dir: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', '-', '-C', dir], (err) => (err ? reject(err) : resolve()));
    child.stdin!.end(tar);
  });
}

async function apply(root: string, tar: Buffer, opts: Parameters<typeof applyTar>[2] = {}, chunk = 65536): Promise<number> {
  return applyTar(root, chunked(tar, chunk), opts);
}

test('every entry type, long and non-UTF-8 names: the same tree as GNU tar extracts', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const big = Buffer.alloc(600 * 1024, 0x5a); // above the one-call small-file path: streamed
  const nonUtf8 = Buffer.from([0x6e, 0xff, 0xfe, 0x2e, 0x74]);
  const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
  const tar = new TarBuilder()
    .dir('d/', { mode: 0o2755, uid: 10, gid: 20, mtime: T + 1 })
    .dir('d/tmp/', { mode: 0o1777, mtime: T + 2 })
    .file('d/suid', '#!/bin/sh\n', { mode: 0o4755, uid: 1000, gid: 1000, mtime: T + 3 })
    .file('d/empty', '', { mode: 0o600, mtime: T + 4 })
    .file('d/big', big, { mode: 0o640, mtime: T + 5 })
    .file('d/caps', 'ping', { mode: 0o755, xattrs: { 'security.capability': cap, 'user.bin': Buffer.from([0, 1, 0xff]) } })
    .hardlink('d/caps-link', 'd/caps', { mode: 0o755 }) // writers repeat the file's metadata on its hardlinks
    .symlink('d/rel', '../d/suid', { mtime: T + 6 })
    .symlink('d/abs', '/etc/passwd', { uid: 7, gid: 8 })
    .device('d/null', 'char', 1, 3, { mode: 0o666 })
    .device('d/loop9', 'block', 7, 9, { mode: 0o660, gid: 6 })
    .fifo('d/fifo', { mode: 0o620 })
    .file('d/' + 'p'.repeat(150), 'pax long name', { mtime: T + 7 })
    .file('d/' + 'g'.repeat(150), 'gnu long name', { longNames: 'gnu' })
    .symlink('d/long-link', 'x/'.repeat(80) + 'target', { longNames: 'gnu' })
    .file(Buffer.concat([Buffer.from('d/'), nonUtf8]), 'bytes', { mode: 0o644 })
    .file('d/ns', 'ns', { pax: { mtime: `${T}.123456789`, atime: `${T}.5` } })
    .end();

  await mkdir(join(dir, 'ours'));
  await mkdir(join(dir, 'gnu'));
  const bytes = await apply(join(dir, 'ours'), tar, {}, 1000);
  await gnuExtract(tar, join(dir, 'gnu'));
  const [ours, gnu] = await Promise.all([manifest(join(dir, 'ours')), manifest(join(dir, 'gnu'))]);
  assert.deepEqual(compareManifests(gnu, ours, { rootFields: ['mtime', 'mode'] }), []);

  // Values written here, not taken from either extractor.
  assert.equal(bytes, 10 + 0 + big.length + 4 + 13 + 13 + 5 + 2);
  const e = (p: string | Buffer) => ours.get(hex(p))!;
  assert.equal(e('d/suid').mode & 0o7777, 0o4755);
  assert.equal(e('d/suid').uid, 1000);
  assert.equal(e('d').mode & 0o7777, 0o2755);
  assert.equal(e('d/tmp').mode & 0o7777, 0o1777);
  assert.equal(e('d/caps').xattrs['security.capability'], cap.toString('hex'));
  assert.equal(e('d/caps').xattrs['user.bin'], '0001ff');
  assert.equal(e('d/caps').ino, e('d/caps-link').ino);
  assert.deepEqual(e('d/null').rdev, [1, 3]);
  assert.equal(e('d/loop9').type, 'block');
  assert.equal(e('d/fifo').type, 'fifo');
  assert.equal(e('d/ns').mtime, `${T}123456789`);
  assert.equal(e('d').mtime, `${T + 1}000000000`, 'directory times are set after their children');
  assert.ok(ours.has(hex(Buffer.concat([Buffer.from('d/'), nonUtf8]))), 'non-UTF-8 name kept byte for byte');
  assert.equal(e('d/long-link').target, hex('x/'.repeat(80) + 'target'));
});

test('xattr policy: capabilities and user.* applied; trusted.* only on request; overlay xattrs never', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const xattrs = { 'user.a': '1', 'trusted.b': '2', 'trusted.overlay.opaque': 'y', 'user.overlay.redirect': '/x' };
  const tar = new TarBuilder().file('f', 'x', { xattrs }).dir('d/', { xattrs }).end();
  for (const allowPrivilegedXattrs of [false, true]) {
    const root = join(dir, String(allowPrivilegedXattrs));
    await mkdir(root);
    await apply(root, tar, { allowPrivilegedXattrs });
    for (const name of ['f', 'd']) {
      const got = (await native.listXattr(join(root, name))).filter((x) => !x.startsWith('security.')).sort();
      assert.deepEqual(got, allowPrivilegedXattrs ? ['trusted.b', 'user.a'] : ['user.a'], `${name} allow=${allowPrivilegedXattrs}`);
    }
  }
});

test('tar-stream packed layer (an independent writer) applies as GNU tar extracts it', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const tar = await pack([
    { name: 'a', type: 'directory', mode: 0o750, uid: 3, gid: 4 },
    { name: 'a/file', content: 'hello', mode: 0o604 },
    { name: 'a/link', type: 'symlink', linkname: 'file' },
    { name: 'a/hard', type: 'link', linkname: 'a/file', mode: 0o604 },
    { name: 'a/' + 'n'.repeat(200), content: 'long' },
  ]);
  await mkdir(join(dir, 'ours'));
  await mkdir(join(dir, 'gnu'));
  await apply(join(dir, 'ours'), tar);
  await gnuExtract(tar, join(dir, 'gnu'));
  const [gnu, ours] = await Promise.all([manifest(join(dir, 'gnu')), manifest(join(dir, 'ours'))]);
  assert.deepEqual(compareManifests(gnu, ours, { rootFields: ['mtime', 'mode'] }), []);
});

/** A lower layer laid out with node:fs: what a parent image's root would hold. */
async function makeLower(root: string): Promise<void> {
  await mkdir(join(root, 'a/y/deep'), { recursive: true });
  await writeFile(join(root, 'a/x'), 'x');
  await writeFile(join(root, 'a/y/deep/z'), 'z');
  await writeFile(join(root, 'b'), 'b');
  await mkdir(join(root, 'c/sub'), { recursive: true });
  await writeFile(join(root, 'c/old'), 'old');
  await writeFile(join(root, 'c/sub/old2'), 'old2');
  await mkdir(join(root, 'd/keep'), { recursive: true });
  await writeFile(join(root, 'd/keep/lower'), 'lower');
  await writeFile(join(root, 'd/gone'), 'gone');
  await writeFile(join(root, 'keep'), 'keep');
  await mkdir(join(root, 'usr/bin'), { recursive: true });
  await symlink('usr/bin', join(root, 'bin'));
  await symlink('/usr/lib', join(root, 'lib'));
}

test('whiteouts and opaque directories (opaque marker before or after the layer own entries)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await mkdir(root);
  await makeLower(root);
  const tar = new TarBuilder()
    .whiteout('b')
    .whiteout('a/y')
    .whiteout('absent') // harmless
    .whiteout('nodir/absent')
    .opaque('c') // before this layer's content of c
    .file('c/new', 'new')
    .dir('c/sub/')
    .file('c/sub/new2', 'new2')
    .dir('d/keep/') // this layer's d/keep: merged, then d is made opaque after it
    .file('d/keep/mine', 'mine')
    .opaque('d')
    .file('.wh..wh.aufs', '')
    .dir('.wh..wh.plnk/')
    .file('.wh..wh.plnk/123.456', 'aufs')
    .file('mine', 'mine')
    .whiteout('mine') // a whiteout never hides this layer's own entry
    .end();
  await apply(root, tar);

  // The expected tree, by hand.
  const want = join(dir, 'want');
  await mkdir(want);
  await makeLower(want);
  const { rm } = await import('node:fs/promises');
  await rm(join(want, 'b'));
  await rm(join(want, 'a/y'), { recursive: true });
  await rm(join(want, 'c'), { recursive: true });
  await mkdir(join(want, 'c/sub'), { recursive: true });
  await writeFile(join(want, 'c/new'), 'new');
  await writeFile(join(want, 'c/sub/new2'), 'new2');
  await rm(join(want, 'd'), { recursive: true });
  await mkdir(join(want, 'd/keep'), { recursive: true });
  await writeFile(join(want, 'd/keep/mine'), 'mine');
  await writeFile(join(want, 'mine'), 'mine');
  const [wanted, got] = await Promise.all([manifest(want), manifest(root)]);
  const diffs = compareManifests(wanted, got, { fields: ['type', 'size', 'sha256', 'target'] });
  assert.deepEqual(diffs, []);
});

test('an entry replaces what is there; a directory over a directory merges and takes its metadata', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  await makeLower(root);
  await writeFile(join(root, 'file-to-dir'), 'f');
  await writeFile(join(root, 'file-to-link'), 'f');
  const tar = new TarBuilder()
    .file('a', 'a is a file now', { mode: 0o600 }) // file over a whole tree
    .dir('file-to-dir/', { mode: 0o700 })
    .symlink('file-to-link', 'keep')
    .dir('c/', { mode: 0o711, uid: 42, gid: 43, mtime: T }) // merge: c/old stays
    .file('keep', 'replaced')
    .end();
  await apply(root, tar);
  assert.equal(await readFile(join(root, 'a'), 'utf8'), 'a is a file now');
  assert.ok((await lstat(join(root, 'file-to-dir'))).isDirectory());
  assert.equal(await readlink(join(root, 'file-to-link')), 'keep');
  const c = await lstat(join(root, 'c'));
  assert.deepEqual([c.mode & 0o7777, c.uid, c.gid, c.mtimeMs], [0o711, 42, 43, T * 1000]);
  assert.deepEqual((await readdir(join(root, 'c'))).sort(), ['old', 'sub']);
  assert.equal(await readFile(join(root, 'keep'), 'utf8'), 'replaced');
});

test('missing parents are made 0755 root; existing parents keep their metadata and times', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  await mkdir(join(root, 'a'));
  await chmod(join(root, 'a'), 0o700);
  await chown(join(root, 'a'), 5, 6);
  await utimes(join(root, 'a'), T, T);
  await apply(root, new TarBuilder().file('a/b/c/f', 'x').end());
  const a = await lstat(join(root, 'a'));
  assert.deepEqual([a.mode & 0o7777, a.uid, a.gid, a.mtimeMs], [0o700, 5, 6, T * 1000]);
  for (const d of ['a/b', 'a/b/c']) {
    const st = await lstat(join(root, d));
    assert.deepEqual([st.isDirectory(), st.mode & 0o7777, st.uid, st.gid], [true, 0o755, 0, 0], d);
  }
});

test('parents through symlinks stay inside the root, as real images need (bin -> usr/bin, lib -> /usr/lib)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  await makeLower(root);
  await apply(root, new TarBuilder().file('bin/ls', 'ls').file('lib/x.so', 'so').file('/usr/bin/abs', 'abs').end());
  assert.equal(await readFile(join(root, 'usr/bin/ls'), 'utf8'), 'ls');
  assert.equal(await readFile(join(root, 'usr/lib/x.so'), 'utf8'), 'so', 'dangling symlink parent: its target is made inside the root');
  assert.equal(await readFile(join(root, 'usr/bin/abs'), 'utf8'), 'abs');
  assert.ok((await lstat(join(root, 'bin'))).isSymbolicLink());
});

test('the parent image stays byte- and metadata-identical when a child layer is applied to its hardlink copy', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const parent = join(dir, 'parent');
  const child = join(dir, 'child');
  await mkdir(parent);
  await makeLower(parent);
  await writeFile(join(parent, 'suid'), 'suid');
  await chmod(join(parent, 'suid'), 0o4755);
  await writeFile(join(parent, 'capped'), 'cap');
  await native.setXattr(join(parent, 'capped'), 'user.k', Buffer.from('v'));
  await link(join(parent, 'a/x'), join(parent, 'a/x-link'));
  await utimes(join(parent, 'a/x'), T, T);
  await run('cp', ['-al', parent, child]);
  const before = await manifest(parent);

  const tar = new TarBuilder()
    .hardlink('new-link', 'suid', { mode: 0o700, uid: 9, gid: 9, mtime: T + 9 }) // metadata on a shared lower inode
    .hardlink('capped-link', 'capped', { xattrs: { 'user.k': 'changed' } })
    .hardlink('a/x', 'a/x', { mode: 0o600 }) // a link to itself, with other metadata
    .file('keep', 'rewritten')
    .dir('a/', { mode: 0o700 })
    .whiteout('b')
    .opaque('c')
    .end();
  await apply(child, tar);

  const after = await manifest(parent);
  assert.deepEqual(
    // Not atime: the oracle itself reads every file, and relatime moves atime on a read after a link count (ctime) change.
    compareManifests(before, after, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'mtime'] }),
    [],
  );
  for (const [p, e] of before) assert.equal(after.get(p)!.ino, e.ino, `${showPath(p)} inode`);
  // And the child did change.
  const st = await lstat(join(child, 'new-link'));
  assert.deepEqual([st.mode & 0o7777, st.uid, st.ino === (await lstat(join(child, 'suid'))).ino], [0o700, 9, true]);
  assert.notEqual(st.ino, (await lstat(join(parent, 'suid'))).ino);
  assert.equal((await native.getXattr(join(child, 'capped'), 'user.k')).toString(), 'changed');
  assert.equal((await lstat(join(child, 'a/x'))).mode & 0o7777, 0o600);
  assert.equal(await readFile(join(child, 'keep'), 'utf8'), 'rewritten');
});

test('shared symlinks, fifos and devices: the parent image stays identical whatever the child layer does to them', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const parent = join(dir, 'parent');
  const child = join(dir, 'child');
  await mkdir(parent);
  const links = ['redeclared', 'redeclared-x', 'linked', 'chain', 'twice', 'xattr', 'gone', 'kept'];
  for (const n of links) await symlink(`target-of-${n}`, join(parent, n));
  await writeFile(join(parent, 'file'), 'file');
  await run('mkfifo', ['-m', '0644', join(parent, 'fifo')]);
  await native.mknod(join(parent, 'null'), 0o20644, 1, 3);
  await native.mknod(join(parent, 'whiteout-dev'), 0o20644, 0, 0);
  await native.setXattr(join(parent, 'xattr'), 'trusted.k', Buffer.from('v'));
  for (const n of [...links, 'file', 'fifo', 'null', 'whiteout-dev']) await lutimes(join(parent, n), T, T);
  // A hardlink copy: every non-directory of the child is the parent's inode (the driver's copyTree makes the same).
  await run('cp', ['-al', parent, child]);
  assert.equal((await lstat(join(child, 'linked'))).ino, (await lstat(join(parent, 'linked'))).ino, 'the child shares the symlink');
  const before = await manifest(parent);

  const tar = new TarBuilder()
    .symlink('redeclared', 'elsewhere', { uid: 5, gid: 6, mtime: T + 5 }) // an existing symlink declared again
    .symlink('redeclared-x', 'target-of-redeclared-x', { xattrs: { 'trusted.k': 'new' } })
    .hardlink('linked-new', 'linked', { uid: 7, mtime: T + 7 }) // a tar hardlink that changes a shared symlink
    .hardlink('chain-a', 'chain') // the same metadata: a second name of the shared inode, no copy…
    .hardlink('chain-b', 'chain-a', { uid: 8 }) // …until a later link through that name changes it
    .hardlink('file-a', 'file') // the same chain for a regular file
    .hardlink('file-b', 'file-a', { mode: 0o600 })
    .hardlink('twice-a', 'twice', { uid: 3 }) // given its own inode once…
    .hardlink('twice-b', 'twice', { uid: 4 }) // …and changed again: all three names stay one inode
    .hardlink('xattr-link', 'xattr', { xattrs: { 'trusted.k': 'changed' } })
    .hardlink('fifo-link', 'fifo', { mode: 0o600, uid: 9 })
    .hardlink('null-link', 'null', { mode: 0o600, mtime: T + 1 })
    .hardlink('whiteout-dev-link', 'whiteout-dev', { mode: 0o600, gid: 9 })
    .whiteout('gone')
    .end();
  await apply(child, tar, { allowPrivilegedXattrs: true });

  const after = await manifest(parent);
  assert.deepEqual(
    compareManifests(before, after, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'mtime'] }),
    [],
  );
  for (const [p, e] of before) assert.equal(after.get(p)!.ino, e.ino, `${showPath(p)} inode`);

  // And the child got what the tar says.
  const st = (n: string) => lstat(join(child, n));
  const ino = async (...names: string[]) => new Set(await Promise.all(names.map(async (n) => (await st(n)).ino))).size;
  assert.deepEqual([await readlink(join(child, 'redeclared')), (await st('redeclared')).uid], ['elsewhere', 5]);
  assert.equal((await native.getXattr(join(child, 'redeclared-x'), 'trusted.k')).toString(), 'new');
  assert.deepEqual([(await st('linked-new')).uid, await ino('linked', 'linked-new'), await readlink(join(child, 'linked-new'))], [7, 1, 'target-of-linked']);
  // The name the changing link goes through gets the private copy; the child's other names of the parent's inode keep sharing it.
  assert.deepEqual([(await st('chain-a')).uid, (await st('chain-b')).uid, await ino('chain-a', 'chain-b')], [8, 8, 1]);
  assert.equal((await st('chain')).ino, (await lstat(join(parent, 'chain'))).ino);
  assert.equal((await st('file-b')).mode & 0o7777, 0o600);
  assert.equal(await ino('file-a', 'file-b'), 1);
  assert.deepEqual([(await st('twice-a')).uid, await ino('twice', 'twice-a', 'twice-b')], [4, 1]);
  assert.equal((await native.getXattr(join(child, 'xattr-link'), 'trusted.k')).toString(), 'changed');
  assert.deepEqual([(await st('fifo-link')).isFIFO(), (await st('fifo-link')).uid, (await st('fifo')).mode & 0o7777], [true, 9, 0o600]);
  assert.equal((await st('null-link')).rdev, (await st('null')).rdev);
  assert.equal((await st('whiteout-dev-link')).gid, 9);
  await assert.rejects(st('gone'), { code: 'ENOENT' });
  assert.equal((await st('kept')).ino, (await lstat(join(parent, 'kept'))).ino, 'what the layer does not touch stays shared');
});

test('id maps: container ids become host ids; an unmapped id is refused', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  const maps = [{ containerId: 0, hostId: 100000, size: 65536 }];
  await apply(root, new TarBuilder().file('x/f', 'f', { uid: 1000, gid: 1001 }).symlink('x/l', 'f', { uid: 2 }).end(), { uidMaps: maps, gidMaps: maps });
  const f = await lstat(join(root, 'x/f'));
  assert.deepEqual([f.uid, f.gid], [101000, 101001]);
  assert.equal((await lstat(join(root, 'x/l'))).uid, 100002);
  assert.equal((await lstat(join(root, 'x'))).uid, 100000, 'a missing parent belongs to the mapped root');
  await assert.rejects(apply(root, new TarBuilder().file('y', 'y', { uid: 70000 }).end(), { uidMaps: maps, gidMaps: maps }), {
    code: 'ERR_OGD_UNSAFE_LAYER',
  });
});

test('progress, the byte count, and abort', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const b = new TarBuilder();
  for (let i = 0; i < 300; i++) b.file(`f${i}`, 'x'.repeat(i));
  const tar = b.end();
  const seen: number[] = [];
  await mkdir(join(dir, 'one'));
  const bytes = await apply(join(dir, 'one'), tar, { onProgress: (p) => seen.push(p.entries) });
  assert.equal(bytes, (299 * 300) / 2);
  assert.equal(seen.at(-1), 300);

  await mkdir(join(dir, 'two'));
  await assert.rejects(apply(join(dir, 'two'), tar, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
  const controller = new AbortController();
  let n = 0;
  await mkdir(join(dir, 'three'));
  await assert.rejects(
    apply(join(dir, 'three'), tar, {
      signal: controller.signal,
      onProgress: () => {
        if (++n === 1) controller.abort();
      },
    }),
    { code: 'ABORT_ERR' },
  );
  assert.ok((await readdir(join(dir, 'three'))).length < 300, 'stopped before the end');
});

test('a layer made by GNU tar from a real tree (ustar and posix formats) gives the same tree back', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const src = join(dir, 'src');
  await mkdir(src);
  await makeLower(src);
  await writeFile(Buffer.concat([Buffer.from(src + '/'), Buffer.from([0x62, 0xe9, 0x2e, 0x74])]), 'latin1 name');
  await native.mknod(join(src, 'a/null'), 0o20666, 1, 3);
  await native.mknod(join(src, 'a/fifo'), 0o10644, 0, 0);
  await link(join(src, 'keep'), join(src, 'a/keep-link'));
  await native.setXattr(join(src, 'keep'), 'user.x', Buffer.from([0xde, 0xad]));
  await chown(join(src, 'b'), 1234, 5678);
  await chmod(join(src, 'a'), 0o2770);
  await mkdir(join(src, 'deep/' + 'q'.repeat(120) + '/' + 'r'.repeat(120)), { recursive: true });
  // Whole seconds everywhere: the gnu format has no sub-second times.
  await run('find', [src, '-exec', 'touch', '-h', '-d', `@${T}`, '{}', '+']);
  // GNU tar stores xattrs only in the posix format.
  const formats = [
    ['gnu', []],
    ['posix', ['--xattrs', '--xattrs-include=*']],
  ] as const;
  for (const [format, flags] of formats) {
    const tarFile = join(dir, `${format}.tar`);
    await run('tar', [...flags, `--format=${format}`, '-cpf', tarFile, '-C', src, '.']);
    await mkdir(join(dir, format));
    await apply(join(dir, format), await readFile(tarFile));
  }
  const [srcManifest, ...applied] = await Promise.all([manifest(src), ...formats.map(([f]) => manifest(join(dir, f)))]);
  formats.forEach(([format], i) => {
    const diffs = compareManifests(srcManifest!, applied[i]!, { rootFields: ['mtime', 'mode'], ...(format === 'gnu' ? { ignoreXattrs: () => true } : {}) });
    assert.deepEqual(diffs, [], format);
  });
});

test('files created concurrently keep stream order: a later entry over an earlier one, a file over a directory being filled', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  await mkdir(join(root, 'p'));
  for (let i = 0; i < 30; i++) await writeFile(join(root, 'p', `lower${i}`), 'lower');
  const b = new TarBuilder().dir('p/');
  for (let i = 0; i < 20; i++) b.file(`p/f${i}`, `f${i}`);
  b.file('p', 'p is a file now');
  for (let i = 0; i < 5; i++) b.file('dup', `version ${i}`);
  b.dir('q/');
  for (let i = 0; i < 20; i++) b.file(`q/f${i}`, 'first').file(`q/f${i}`, 'second');
  await apply(root, b.end(), {}, 512);
  assert.equal(await readFile(join(root, 'p'), 'utf8'), 'p is a file now');
  assert.equal(await readFile(join(root, 'dup'), 'utf8'), 'version 4');
  for (let i = 0; i < 20; i++) assert.equal(await readFile(join(root, `q/f${i}`), 'utf8'), 'second');
  assert.deepEqual((await readdir(root)).sort(), ['dup', 'p', 'q']);
});

test('a hardlink to a shared lower file that needs no change keeps the file hardlinked with its other names', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const parent = join(dir, 'parent');
  const child = join(dir, 'child');
  await mkdir(parent);
  await writeFile(join(parent, 'x'), 'x', { mode: 0o640 });
  await chmod(join(parent, 'x'), 0o640);
  await link(join(parent, 'x'), join(parent, 'x-link'));
  await utimes(join(parent, 'x'), T, T);
  await run('cp', ['-al', parent, child]);
  const stamp = async (p: string) => {
    const st = await lstat(p, { bigint: true });
    return [st.ino, st.mode, st.uid, st.gid, st.mtimeNs, await readFile(p, 'utf8')];
  };
  const before = await stamp(join(parent, 'x'));
  await apply(child, new TarBuilder().hardlink('x-new', 'x', { mode: 0o640, mtime: T }).end());
  const ino = (await lstat(join(child, 'x'))).ino;
  assert.equal(ino, (await lstat(join(parent, 'x'))).ino, 'no copy was needed');
  assert.equal((await lstat(join(child, 'x-link'))).ino, ino);
  assert.equal((await lstat(join(child, 'x-new'))).ino, ino);
  assert.deepEqual(await stamp(join(parent, 'x')), before);
});

test('a whiteout waits for the files created before it, and over a directory of this layer hides only its lower part', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  await mkdir(join(root, 'd'));
  for (let i = 0; i < 50; i++) await writeFile(join(root, 'd', `lower${i}`), 'lower');
  const b = new TarBuilder().dir('d/');
  for (let i = 0; i < 50; i++) b.file(`d/f${i}`, 'mine');
  b.whiteout('d').file('after', 'after');
  await apply(root, b.end(), {}, 512);
  // The whiteout hid the lower part of d, after the layer's own files in it were all there.
  assert.deepEqual((await readdir(root)).sort(), ['after', 'd']);
  assert.deepEqual((await readdir(join(root, 'd'))).sort(), Array.from({ length: 50 }, (_, i) => `f${i}`).sort());

  // Without a directory entry, d stays lower content: the whiteout removes it whole, after the files written into it.
  const root2 = await tempDir(t);
  await mkdir(join(root2, 'e'));
  const b2 = new TarBuilder();
  for (let i = 0; i < 200; i++) b2.file(`e/f${i}`, 'x'.repeat(4000));
  await apply(root2, b2.whiteout('e').end(), {}, 512);
  assert.deepEqual(await readdir(root2), []);
});
