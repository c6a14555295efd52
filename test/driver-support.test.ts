// The driver's support modules on their own: id validation, id maps, mount labels,
// filesystem names and the refcounted mount counter (with real tmpfs mounts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_ID_BYTES, parseStoredId, validateId, validateParent } from '../lib/ids.js';
import { rootPair, toContainer, toHost, validateIdMaps } from '../lib/idmap.js';
import { formatMountLabel, goQuote } from '../lib/mount-label.js';
import { FsMagic, fsMagic, fsName, incompatibleBackingFs } from '../lib/fs-magic.js';
import { KeyedLock } from '../lib/keyed-lock.js';
import { MountCounter } from '../lib/mount-counter.js';
import * as native from '../lib/native.js';
import { TEMP_PREFIX, assertMountinfoRestoredAtEnd, mountsUnder } from './helpers/driver-suite.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';

assertMountinfoRestoredAtEnd();

test('ids: one safe path component of at most 255 bytes, else InvalidId', () => {
  for (const ok of ['a', 'sha256-0123', '.hidden', '...', 'a b,c:d\\e', 'é'.repeat(127), 'x'.repeat(MAX_ID_BYTES)]) validateId(ok);
  const bad: unknown[] = ['', '.', '..', 'a/b', '/', 'a\0', 'x'.repeat(256), 'é'.repeat(128), 'lone\udc00', undefined, null, 42];
  for (const id of bad) assert.throws(() => validateId(id), { code: 'ERR_OGD_INVALID_ID' }, String(id));
  assert.equal(validateParent(undefined), undefined);
  assert.equal(validateParent(''), undefined);
  assert.equal(validateParent('p'), 'p');
  assert.throws(() => validateParent('..'), { code: 'ERR_OGD_INVALID_ID' });
});

test('ids: a stored lower-id is validated like a caller id, bytes exactly', () => {
  assert.equal(parseStoredId(Buffer.from('img')), 'img');
  assert.throws(() => parseStoredId(Buffer.from('../../etc')), { code: 'ERR_OGD_INVALID_ID' });
  assert.equal(parseStoredId(Buffer.from('img\n')), 'img\n', 'not trimmed: "img\\n" would name another layer');
  assert.throws(() => parseStoredId(Buffer.from('')), { code: 'ERR_OGD_INVALID_ID' });
  assert.throws(() => parseStoredId(Buffer.from([0x61, 0xff])), { code: 'ERR_OGD_INVALID_ID' }, 'not UTF-8');
  assert.throws(() => parseStoredId(Buffer.from('a\0b')), { code: 'ERR_OGD_INVALID_ID' });
});

test('idmap: container ids to host ids and back, root pair, validation', () => {
  const maps = [
    { containerId: 0, hostId: 100000, size: 1000 },
    { containerId: 1000, hostId: 5000, size: 1 },
  ];
  assert.equal(toHost(maps, 0), 100000);
  assert.equal(toHost(maps, 999), 100999);
  assert.equal(toHost(maps, 1000), 5000);
  assert.equal(toHost(maps, 1001), undefined);
  assert.equal(toContainer(maps, 100500), 500);
  assert.equal(toContainer(maps, 5000), 1000);
  assert.equal(toContainer(maps, 4999), undefined);
  assert.equal(toHost([], 1234), 1234);
  assert.equal(toContainer([], 1234), 1234);
  assert.deepEqual(rootPair(maps, [{ containerId: 0, hostId: 200000, size: 10 }]), { uid: 100000, gid: 200000 });
  assert.deepEqual(rootPair([], []), { uid: process.geteuid!(), gid: process.getegid!() });
  assert.throws(() => rootPair([{ containerId: 1, hostId: 1, size: 5 }], []), { code: 'ERR_OGD_INVALID_OPTION' });
  assert.deepEqual(validateIdMaps(undefined, 'uidMaps'), []);
  const invalid = [
    [{ containerId: 0, hostId: 0, size: 0 }],
    [{ containerId: -1, hostId: 0, size: 1 }],
    [{ containerId: 0, hostId: 1.5, size: 1 }],
    [{ containerId: 0, hostId: 0xfffffff0, size: 100 }],
    [
      { containerId: 0, hostId: 0, size: 10 },
      { containerId: 5, hostId: 100, size: 10 },
    ],
    [
      { containerId: 0, hostId: 0, size: 10 },
      { containerId: 50, hostId: 9, size: 10 },
    ],
  ];
  for (const m of invalid) assert.throws(() => validateIdMaps(m, 'uidMaps'), { code: 'ERR_OGD_INVALID_OPTION' }, JSON.stringify(m));
});

test('mount label: context="…" appended as go-selinux FormatMountLabel does (expected strings from Go 1.19 %q)', () => {
  assert.equal(formatMountLabel('lowerdir=x', undefined), 'lowerdir=x');
  assert.equal(formatMountLabel('lowerdir=x', ''), 'lowerdir=x');
  assert.equal(formatMountLabel('', 'l'), 'context="l"');
  // Produced by fmt.Sprintf("lowerdir=x,context=%q", s) with go1.19.
  assert.equal(formatMountLabel('lowerdir=x', 'system_u:object_r:container_file_t:s0:c1,c2'), 'lowerdir=x,context="system_u:object_r:container_file_t:s0:c1,c2"');
  assert.equal(formatMountLabel('lowerdir=x', 'a"b\\c\n\t\x01é☺\u00a0\x7f'), 'lowerdir=x,context="a\\"b\\\\c\\n\\t\\x01é☺\\u00a0\\x7f"');
  assert.equal(formatMountLabel('lowerdir=x', 'emoji 😀 and \u200b zero-width'), 'lowerdir=x,context="emoji 😀 and \\u200b zero-width"');
  assert.equal(goQuote('\u0301combining'), '"\u0301combining"');
});

test("fs-magic: names for every filesystem of containers/storage's FsNames, refusals as the seed's", () => {
  // From drivers/driver_linux.go FsNames.
  const seed: Array<[number, string]> = [
    [0x61756673, 'aufs'], [0x9123683e, 'btrfs'], [0x28cd3d45, 'cramfs'], [0xf15f, 'ecryptfs'], [0xef53, 'extfs'],
    [0xf2f52010, 'f2fs'], [0x47504653, 'gpfs'], [0x72b6, 'jffs2'], [0x3153464a, 'jfs'], [0x6969, 'nfs'],
    [0x794c7630, 'overlayfs'], [0x858458f6, 'ramfs'], [0x52654973, 'reiserfs'], [0x517b, 'smb'], [0x73717368, 'squashfs'],
    [0x01021994, 'tmpfs'], [0, 'unsupported'], [0xa501fcf5, 'vxfs'], [0x58465342, 'xfs'], [0x2fc12fc1, 'zfs'],
  ];
  for (const [magic, name] of seed) assert.equal(fsName(magic), name, `0x${magic.toString(16)}`);
  assert.equal(fsName(0x12345678), '<unknown> (0x12345678)');
  assert.equal(fsName(0x9123683e | 0), 'btrfs', 'a magic that arrived as a negative long');
  assert.deepEqual([...incompatibleBackingFs].map(fsName).sort(), ['aufs', 'btrfs', 'ecryptfs', 'overlayfs', 'zfs']);
  assert.equal(FsMagic.extfs, 0xef53);
});

test('fs-magic: the statfs magic of real mounts is named', async (t) => {
  assert.equal(fsName(await fsMagic('/proc')), 'proc');
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  await native.mount('tmpfs', dir, 'tmpfs', 0, 'size=1m');
  try {
    assert.equal(fsName(await fsMagic(dir)), 'tmpfs');
  } finally {
    await native.unmount(dir);
  }
});

test('KeyedLock: one holder per key at a time, in call order; runAll takes several without deadlock', async () => {
  const lock = new KeyedLock();
  const order: string[] = [];
  let inside = 0;
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      lock.run('k', async () => {
        inside++;
        assert.equal(inside, 1);
        order.push(String(i));
        await new Promise((r) => setImmediate(r));
        inside--;
      }),
    ),
  );
  assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => String(i)));
  const done: string[] = [];
  await Promise.all([lock.runAll(['a', 'b'], async () => void done.push('ab')), lock.runAll(['b', 'a'], async () => void done.push('ba'))]);
  assert.deepEqual(done.sort(), ['ab', 'ba']);
});

async function tmpfsCounter(t: import('node:test').TestContext) {
  const dir = await tempDir(t, TEMP_PREFIX);
  const target = join(dir, 'mnt');
  await mkdir(target);
  const calls = { mount: 0, unmount: 0 };
  const isMounted = async (p: string) => (await fsMagic(p)) === FsMagic.tmpfs;
  const counter = new MountCounter(isMounted);
  const mount = async () => {
    calls.mount++;
    await native.mount('tmpfs', target, 'tmpfs', 0, 'size=1m');
  };
  const unmount = async () => {
    calls.unmount++;
    await native.unmount(target);
  };
  return { dir, target, calls, counter, mount, unmount };
}

test('MountCounter: 100 concurrent acquires mount once, 100 releases unmount once', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { dir, target, calls, counter, mount, unmount } = await tmpfsCounter(t);
  const counts = await Promise.all(Array.from({ length: 100 }, () => counter.acquire(target, mount)));
  assert.deepEqual(counts.sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
  assert.deepEqual(calls, { mount: 1, unmount: 0 });
  assert.deepEqual(await mountsUnder(dir), [target]);
  await Promise.all(Array.from({ length: 100 }, () => counter.release(target, unmount)));
  assert.deepEqual(calls, { mount: 1, unmount: 1 });
  assert.deepEqual(await mountsUnder(dir), []);
  assert.equal(await counter.release(target, unmount), undefined, 'a release without a reference does nothing');
  assert.equal(calls.unmount, 1);
});

test('MountCounter: a failed mount takes no reference; a failed unmount keeps it', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { target, calls, counter, mount, unmount } = await tmpfsCounter(t);
  await assert.rejects(counter.acquire(target, async () => Promise.reject(Object.assign(new Error('no'), { code: 'EINVAL' }))), /no/);
  assert.equal(await counter.withLock(target, async (n) => n), 0);
  await counter.acquire(target, mount);
  assert.equal(calls.mount, 1, 'the next acquire mounts');
  await assert.rejects(counter.release(target, async () => Promise.reject(new Error('busy'))), /busy/);
  assert.equal(await counter.withLock(target, async (n) => n), 1, 'still mounted, still referenced');
  await counter.release(target, unmount);
  assert.equal(await counter.withLock(target, async (n) => n), 0);
});

test('MountCounter: withLock takes the caller\'s mounted state without looking, unless this process holds references there', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { dir, target, mount, unmount } = await tmpfsCounter(t);
  const looks: string[] = [];
  const watched = new MountCounter(async (p) => {
    looks.push(p);
    return (await fsMagic(p)) === FsMagic.tmpfs;
  });
  assert.equal(await watched.withLock(target, async (n) => n, false), 0);
  assert.equal(await watched.withLock(target, async (n) => n, true), 1, 'mounted by someone else: one foreign reference');
  assert.deepEqual(looks, [], 'told, not looked');
  assert.equal(await watched.withLock(target, async (n) => n), 0, 'not told: it looks');
  assert.equal(looks.length, 1);
  // Its own references (a get() that ran first) win over what the caller saw before.
  await watched.acquire(target, mount);
  assert.equal(await watched.withLock(target, async (n) => n, false), 1, 'the mount this process made is counted');
  await watched.release(target, unmount);
  assert.deepEqual(await mountsUnder(dir), []);
});

test('MountCounter: a mount found in place is foreign: counted, never unmounted; one removed behind its back is forgotten', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { target, calls, counter, mount, unmount } = await tmpfsCounter(t);
  await native.mount('tmpfs', target, 'tmpfs', 0, 'size=1m'); // someone else's
  assert.equal(await counter.withLock(target, async (n) => n), 1, 'the foreign mount counts as one');
  assert.equal(await counter.release(target, unmount), undefined, 'a put without a get releases nothing');
  assert.equal(calls.unmount, 0);
  assert.equal(await counter.acquire(target, mount), 1);
  assert.equal(calls.mount, 0, 'not mounted again');
  assert.equal(await counter.withLock(target, async (n) => n), 2);
  assert.equal(await counter.release(target, unmount), 0);
  assert.equal(calls.unmount, 0, 'our last put leaves the foreign mount in place');
  assert.equal(await counter.withLock(target, async (n) => n), 1);
  await native.unmount(target);

  await counter.acquire(target, mount);
  await counter.acquire(target, mount);
  await native.unmount(target); // behind the counter's back
  assert.equal(await counter.withLock(target, async (n) => n), 0);
  assert.equal(await counter.acquire(target, mount), 1);
  assert.equal(calls.mount, 2, 'mounted again');
  await counter.release(target, unmount);
});
