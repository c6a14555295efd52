// The addon's single-syscall functions, on real files and real mounts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, symlink, lstat, readFile, readdir } from 'node:fs/promises';
import { closeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as native from '../lib/native.js';
import { isMountPoint, makePrivateMount, readMountInfo } from '../lib/mountinfo.js';
import { fsMagic } from '../lib/fs-magic.js';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';

test('mount of a missing target rejects with a Node-style ENOENT', async (t) => {
  const dir = await tempDir(t);
  const err = await native.mount('tmpfs', join(dir, 'missing'), 'tmpfs', 0).then(
    () => assert.fail('mount succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof Error);
  const e = err as NodeJS.ErrnoException & { dest?: string };
  assert.equal(e.code, 'ENOENT');
  assert.equal(e.syscall, 'mount');
  assert.equal(e.errno, -2);
  assert.equal(e.dest, join(dir, 'missing'));
  assert.match(e.message, /^ENOENT: no such file or directory, mount 'tmpfs' -> '/);
  assert.match(e.stack ?? '', /native-sys\.test/, 'the error carries the caller stack');
});

test('mount and unmount a tmpfs; unmount of a non-mount is EINVAL', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const target = join(dir, 'mnt');
  await mkdir(target);
  await native.mount('tmpfs', target, 'tmpfs', native.constants.MS_NODEV, 'size=1m,mode=0711');
  assert.ok((await mountPoints()).includes(target));
  assert.equal((await lstat(target)).mode & 0o7777, 0o711);
  assert.ok(await isMountPoint(target));
  await native.unmount(target);
  assert.ok(!(await mountPoints()).includes(target));
  await assert.rejects(native.unmount(target), { code: 'EINVAL', syscall: 'umount2' });
});

test('makePrivateMount binds a dir onto itself once, however often it is called', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const home = join(dir, 'home');
  await mkdir(home);
  await makePrivateMount(home);
  await makePrivateMount(home);
  const count = (await mountPoints()).filter((m) => m === home).length;
  assert.equal(count, 1);
  const entry = (await readMountInfo()).find((m) => m.mountPoint === home);
  assert.ok(entry !== undefined && !entry.shared, `home is private: ${JSON.stringify(entry)}`);
  await native.unmount(home);
});

test('fsMagic reads the statfs type', async (t) => {
  const dir = await tempDir(t);
  assert.equal(await fsMagic('/proc'), 0x9fa0);
  assert.equal(typeof (await fsMagic(dir)), 'number');
});

test('mknod makes fifos and device nodes', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  await native.mknod(join(dir, 'fifo'), 0o010644);
  await native.mknod(join(dir, 'null'), 0o020666, 1, 3);
  await native.mknod(join(dir, 'blk'), 0o060600, 7, 200);
  assert.ok((await lstat(join(dir, 'fifo'))).isFIFO());
  const c = await lstat(join(dir, 'null'));
  assert.ok(c.isCharacterDevice());
  assert.equal(c.rdev, (1 << 8) | 3);
  assert.ok((await lstat(join(dir, 'blk'))).isBlockDevice());
  await assert.rejects(native.mknod(join(dir, 'fifo'), 0o010644), { code: 'EEXIST', syscall: 'mknod', path: join(dir, 'fifo') });
});

test('xattrs: set, get, list, remove, on a symlink itself and not its target', async (t) => {
  const dir = await tempDir(t);
  const f = join(dir, 'f');
  await writeFile(f, 'x');
  await native.setXattr(f, 'user.a', Buffer.from('one'));
  await native.setXattr(f, 'user.b', Buffer.from([0, 1, 2]));
  assert.deepEqual((await native.listXattr(f)).sort(), ['user.a', 'user.b']);
  assert.deepEqual(await native.getXattr(f, 'user.b'), Buffer.from([0, 1, 2]));
  await native.removeXattr(f, 'user.a');
  await assert.rejects(native.getXattr(f, 'user.a'), { code: 'ENODATA', syscall: 'lgetxattr' });
  await assert.rejects(native.setXattr(f, 'user.b', Buffer.from('x'), native.constants.XATTR_CREATE), { code: 'EEXIST' });
  await symlink('f', join(dir, 'l'));
  assert.deepEqual(await native.listXattr(join(dir, 'l')), []);
  if (process.getuid?.() === 0) {
    await native.setXattr(join(dir, 'l'), 'trusted.x', Buffer.from('on-link'));
    assert.deepEqual(await native.getXattr(join(dir, 'l'), 'trusted.x'), Buffer.from('on-link'));
    await assert.rejects(native.getXattr(f, 'trusted.x'), { code: 'ENODATA' });
  }
});

test('resolveInRoot keeps symlinks, .. and absolute links inside the root', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'root');
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await symlink('usr/bin', join(root, 'bin'));
  await symlink('/', join(root, 'slash'));
  await symlink('../../../../..', join(root, 'up'));
  await symlink('/etc', join(root, 'etc'));
  await symlink('/nowhere', join(root, 'dangling'));
  assert.equal(await native.resolveInRoot(root, 'bin', true), join(root, 'usr', 'bin'));
  assert.equal(await native.resolveInRoot(root, 'bin', false), join(root, 'bin'));
  assert.equal(await native.resolveInRoot(root, 'slash/usr', true), join(root, 'usr'));
  assert.equal(await native.resolveInRoot(root, 'up/usr/bin', true), join(root, 'usr', 'bin'));
  assert.equal(await native.resolveInRoot(root, '../../..', true), root);
  await assert.rejects(native.resolveInRoot(root, 'dangling/passwd', true), { code: 'ENOENT', syscall: 'openat2' });
  // /etc inside the root is the link itself: a loop, never the host's /etc.
  await assert.rejects(native.resolveInRoot(root, 'etc/passwd', true), { code: 'ELOOP', syscall: 'openat2' });
  const asBuffer = await native.resolveInRoot(Buffer.from(root), Buffer.from('bin/\xff', 'latin1'), false).catch((e: NodeJS.ErrnoException) => e.code);
  assert.equal(asBuffer, 'ENOENT');
  await mkdir(Buffer.from(join(root, 'usr', 'bin', '\xff'), 'latin1'));
  const found = await native.resolveInRoot(Buffer.from(root), Buffer.from('bin/\xff', 'latin1'), false);
  assert.ok(Buffer.isBuffer(found));
  assert.deepEqual(found, Buffer.from(join(root, 'usr', 'bin', '\xff'), 'latin1'));
});

test('rename2 refuses to replace with RENAME_NOREPLACE and swaps with RENAME_EXCHANGE', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a'), 'A');
  await mkdir(join(dir, 'b'));
  await assert.rejects(native.rename2(join(dir, 'a'), join(dir, 'b'), native.constants.RENAME_NOREPLACE), { code: 'EEXIST', syscall: 'renameat2' });
  await native.rename2(join(dir, 'a'), join(dir, 'b'), native.constants.RENAME_EXCHANGE);
  assert.ok((await lstat(join(dir, 'a'))).isDirectory());
  assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'A');
});

test('arguments are checked before they reach C++', async () => {
  assert.throws(() => native.mount('', '/x', 'tmpfs', 0), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => native.unmount('/x\0y'), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => native.mknod('/x', -1), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => native.getXattr('/x', ''), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('readSmallFile reads a whole file in one call, undefined when missing, refuses a symlink', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'rec');
  const big = Buffer.alloc(40_000, 'x'); // more than one read's buffer
  await writeFile(file, big);
  assert.deepEqual(await native.readSmallFile(file), big);
  await writeFile(file, '');
  assert.deepEqual(await native.readSmallFile(file), Buffer.alloc(0));
  assert.equal(await native.readSmallFile(join(dir, 'missing')), undefined);
  await symlink(file, join(dir, 'link'));
  await assert.rejects(native.readSmallFile(join(dir, 'link')), { code: 'ELOOP', syscall: 'open', path: join(dir, 'link') });
  // A fifo where a record belongs is refused at once, not waited on (nobody ever writes to it).
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  await assert.rejects(native.readSmallFile(join(dir, 'fifo')), { code: 'EINVAL', syscall: 'read', path: join(dir, 'fifo') });
  await assert.rejects(native.readSmallFile(dir), { code: 'EISDIR' });
  const exact = Buffer.alloc(16384, 'y'); // exactly one read's buffer: the end is found by a second read
  await writeFile(file, exact);
  assert.deepEqual(await native.readSmallFile(file), exact);
});

test('writeNewFile creates a new 0600 file with the data, never replaces one, and leaves nothing when it fails', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'tmp1');
  await native.writeNewFile(file, Buffer.from('{"a":1}\n'), true);
  assert.equal(await readFile(file, 'utf8'), '{"a":1}\n');
  assert.equal((await lstat(file)).mode & 0o7777, 0o600);
  await assert.rejects(native.writeNewFile(file, Buffer.from('other'), false), { code: 'EEXIST', syscall: 'open' });
  assert.equal(await readFile(file, 'utf8'), '{"a":1}\n', 'the existing file is untouched');
  await assert.rejects(native.writeNewFile(join(dir, 'no', 'such'), Buffer.from('x'), false), { code: 'ENOENT' });
});

test('writeNewFile with renameTo replaces the target in the same trip, and a failed rename leaves no temp file', async (t) => {
  const dir = await tempDir(t);
  const target = join(dir, 'refs');
  await writeFile(target, 'old');
  await native.writeNewFile(join(dir, 'tmp1'), Buffer.from('new'), false, target);
  assert.equal(await readFile(target, 'utf8'), 'new');
  assert.deepEqual((await readdir(dir)).sort(), ['refs'], 'the temp name is gone');
  await assert.rejects(native.writeNewFile(join(dir, 'tmp2'), Buffer.from('x'), false, join(dir, 'no', 'such')), {
    code: 'ENOENT',
    syscall: 'rename',
    path: join(dir, 'tmp2'),
  });
  assert.deepEqual((await readdir(dir)).sort(), ['refs'], 'nothing left by the failed rename');
  assert.equal(await readFile(target, 'utf8'), 'new');
});

test('ofdTryLockPath locks the file at the path, or hands back an unlocked fd when a peer holds it', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'lock');
  const first = await native.ofdTryLockPath(path, 'write');
  assert.equal(first.locked, true);
  assert.equal((await lstat(path)).mode & 0o7777, 0o600, 'created 0600');
  const second = await native.ofdTryLockPath(path, 'read');
  assert.equal(second.locked, false, 'a write lock excludes a reader (one file description each)');
  closeSync(second.fd);
  closeSync(first.fd);
  const third = await native.ofdTryLockPath(path, 'read');
  assert.equal(third.locked, true);
  closeSync(third.fd);
});

test('probePaths answers each probe in order: st_mode, f_type, content, undefined when missing, an fs-shaped error otherwise', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'rec');
  await writeFile(file, 'content');
  await symlink(file, join(dir, 'link'));
  const [dirMode, fileMode, fsType, data, missing, underFile, link, linkMode] = await native.probePaths([
    ['lstat', dir],
    ['lstat', file],
    ['statfs', '/proc'],
    ['read', file],
    ['read', join(dir, 'missing')],
    ['lstat', join(file, 'below')], // ENOTDIR counts as missing
    ['read', join(dir, 'link')],
    ['lstat', join(dir, 'link')],
  ]);
  assert.equal(dirMode, (await lstat(dir)).mode);
  assert.equal(fileMode, (await lstat(file)).mode);
  assert.equal(fsType, await fsMagic('/proc'));
  assert.deepEqual(data, Buffer.from('content'));
  assert.equal(missing, undefined);
  assert.equal(underFile, undefined);
  assert.ok(link instanceof Error);
  assert.equal((link as NodeJS.ErrnoException).code, 'ELOOP');
  assert.equal((link as NodeJS.ErrnoException).path, join(dir, 'link'));
  assert.equal(linkMode, (await lstat(join(dir, 'link'))).mode, 'lstat does not follow');
  assert.throws(() => native.probedNumber(link), { code: 'ELOOP' });
  assert.equal(native.probedData(missing), undefined);
  assert.deepEqual(await native.probePaths([]), []);
  assert.throws(() => native.probePaths([['lstat', 'a\0b']]), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('ofdTryLockPath makes its probes only once it holds the lock', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'lock');
  await writeFile(join(dir, 'rec'), 'r');
  const first = await native.ofdTryLockPath(path, 'write', [['read', join(dir, 'rec')]]);
  assert.equal(first.locked, true);
  assert.deepEqual(first.probed, [Buffer.from('r')]);
  const second = await native.ofdTryLockPath(path, 'write', [['read', join(dir, 'rec')]]);
  assert.equal(second.locked, false);
  assert.equal(second.probed, undefined, 'nothing probed without the lock');
  closeSync(second.fd);
  closeSync(first.fd);
});

test('mount and unmount make a file change in the same job: both or neither', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const target = join(dir, 'mnt');
  const refs = join(dir, 'refs');
  await mkdir(target);
  await mkdir(join(dir, 'tmp'));
  // After the mount: the file is written and renamed into place.
  await native.mount('tmpfs', target, 'tmpfs', 0, 'size=1m', { tmp: join(dir, 'tmp', 't1'), data: Buffer.from('[1]'), dest: refs });
  assert.ok((await mountPoints()).includes(target));
  assert.equal(await readFile(refs, 'utf8'), '[1]');
  // Before the unmount: a removal that fails (a directory is not unlinked) leaves the mount alone.
  await mkdir(join(dir, 'notafile'));
  await assert.rejects(native.unmount(target, 0, { remove: join(dir, 'notafile') }), { syscall: 'unlink', path: join(dir, 'notafile') });
  assert.ok((await mountPoints()).includes(target), 'still mounted');
  await native.unmount(target, 0, { remove: refs });
  assert.ok(!(await mountPoints()).includes(target));
  await assert.rejects(readFile(refs), { code: 'ENOENT' });
  // A change that fails after the mount undoes the mount.
  await assert.rejects(native.mount('tmpfs', target, 'tmpfs', 0, 'size=1m', { tmp: join(dir, 'no-such-dir', 't2'), data: Buffer.from('[2]'), dest: refs }), {
    code: 'ENOENT',
    syscall: 'open',
  });
  assert.ok(!(await mountPoints()).includes(target), 'the mount was undone');
  await assert.rejects(readFile(refs), { code: 'ENOENT' });
  // On its own, and a removal of a missing file is no failure.
  await native.applyFileChange({ tmp: join(dir, 'tmp', 't3'), data: Buffer.from('[3]'), dest: refs });
  assert.equal(await readFile(refs, 'utf8'), '[3]');
  await native.applyFileChange({ remove: refs });
  await native.applyFileChange({ remove: refs });
  assert.deepEqual(await readdir(join(dir, 'tmp')), [], 'no temp file left');
  assert.throws(() => native.mount('tmpfs', target, 'tmpfs', 0, undefined, { tmp: '', data: Buffer.alloc(0), dest: refs }), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('syncFs and fsyncPaths flush by path, and fail like node:fs naming the path', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f'), 'data');
  await mkdir(join(dir, 'd'));
  await symlink('f', join(dir, 'link'));
  await native.syncFs(dir);
  await native.syncFs(join(dir, 'f'));
  await native.fsyncPaths([join(dir, 'f'), join(dir, 'd'), dir]);
  await native.fsyncPaths([dir], { dataOnly: true });
  await native.fsyncPaths([]);
  await assert.rejects(native.syncFs(join(dir, 'missing')), { code: 'ENOENT', syscall: 'open', path: join(dir, 'missing') });
  // In order, stopping at the first failure; a symlink is not followed.
  await assert.rejects(native.fsyncPaths([dir, join(dir, 'link'), join(dir, 'missing')]), { code: 'ELOOP', syscall: 'open', path: join(dir, 'link') });
  assert.throws(() => native.fsyncPaths([dir, '']), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => native.fsyncPaths('/' as unknown as string[]), { code: 'ERR_INVALID_ARG_VALUE' });
});
