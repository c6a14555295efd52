// changes and diffSize: a hand-made pair with the expected list written out; a file
// shared with the parent is not read; and the overlay fast path (upper/ only) gives
// the same changes, the same DiffSize and a byte-identical tar as the naive path
// (the merged mount walked against the parent's root), on random container changes
// made through a real overlay mount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, rm, symlink, unlink, utimes, writeFile, lstat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import * as native from '../lib/native.js';
import { createDriver } from '../lib/index.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges } from '../lib/archive/export.js';
import { changesSize } from '../lib/archive/size.js';
import { toPublicChanges } from '../lib/archive/change-set.js';
import { applyTar } from '../lib/archive/apply.js';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';
import { manifest, compareManifests } from './helpers/tree.js';
import { randomTree, mutateTree } from './helpers/random-layers.js';
import { subManifest, expectedChanges, expectedSize, changeLines } from './helpers/changes-oracle.js';
import { toFile } from './helpers/fd-sinks.js';

/** Cleans the driver up and checks that nothing under `dir` is still mounted. */
async function closeDriver(d: { cleanup(): Promise<void> }, dir: string): Promise<void> {
  await d.cleanup();
  const left = (await mountPoints()).filter((m) => m.startsWith(dir + '/'));
  assert.deepEqual(left, [], 'no mount is left behind');
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Entry names of a tar, read by tar(1), not by our code. */
async function tarNames(tar: Buffer, dir: string): Promise<string[]> {
  const { execFileSync } = await import('node:child_process');
  const file = join(dir, `list-${Date.now()}.tar`);
  await writeFile(file, tar);
  return execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).split('\n').filter((l) => l !== '');
}

test('changes of a hand-made pair: every rule, in order, and DiffSize', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const a = join(dir, 'A');
  const b = join(dir, 'B');
  await mkdir(join(a, 'etc'), { recursive: true });
  await mkdir(join(a, 'usr/bin'), { recursive: true });
  await mkdir(join(a, 'var/log'), { recursive: true });
  await mkdir(join(a, 'data'));
  await writeFile(join(a, 'etc/passwd'), 'root:x:0:0\n');
  await writeFile(join(a, 'etc/hosts'), '127.0.0.1 localhost\n');
  await writeFile(join(a, 'usr/bin/sh'), 'shell');
  await writeFile(join(a, 'var/log/a'), 'a');
  await writeFile(join(a, 'var/log/b'), 'b');
  await writeFile(join(a, 'data/x'), 'x');
  await symlink('etc', join(a, 'lnk'));
  const old = new Date('2001-01-01T00:00:00Z');
  await utimes(join(a, 'etc/passwd'), old, old);
  await utimes(join(a, 'usr/bin/sh'), old, old);
  await utimes(join(a, 'etc/hosts'), old, old);
  await native.copyTree(a, b, { mode: 'hardlink' });

  // Same size, same mtime, one byte different, new inode: a change only content shows.
  await unlink(join(b, 'etc/passwd'));
  await writeFile(join(b, 'etc/passwd'), 'root:x:0:1\n');
  await utimes(join(b, 'etc/passwd'), old, old);
  // Same bytes and metadata in a new inode: not a change.
  await unlink(join(b, 'usr/bin/sh'));
  await writeFile(join(b, 'usr/bin/sh'), 'shell');
  await utimes(join(b, 'usr/bin/sh'), old, old);
  // A directory emptied; a file become a directory; a new tree; a symlink retargeted.
  await rm(join(b, 'var/log/a'));
  await rm(join(b, 'var/log/b'));
  await rm(join(b, 'data/x'));
  await mkdir(join(b, 'data/x'));
  await writeFile(join(b, 'data/x/y'), 'yy');
  await mkdir(join(b, 'new'));
  await writeFile(join(b, 'new/f'), 'fff');
  await unlink(join(b, 'lnk'));
  await symlink('usr', join(b, 'lnk'));
  await chmod(join(b, 'etc'), 0o750);

  const hostsAtime = (await lstat(join(a, 'etc/hosts'))).atimeMs;
  const set = await changesDirs(b, a);
  assert.deepEqual(
    toPublicChanges(set).map((c) => `${c.kind} ${c.path}`),
    ['C /data', 'C /data/x', 'A /data/x/y', 'C /etc', 'C /etc/passwd', 'C /lnk', 'A /new', 'A /new/f', 'C /var', 'C /var/log', 'D /var/log/a', 'D /var/log/b'],
  );
  // passwd (11) + y (2) + f (3) + the symlink's target length (3), as ChangesSize counts.
  assert.equal(changesSize(set), 11 + 2 + 3 + 3);
  // The shared file was not even opened (relatime would have moved its 2001 atime).
  assert.equal((await lstat(join(a, 'etc/hosts'))).atimeMs, hostsAtime);
  const names = await tarNames(await bytesOf(exportChanges(set)), dir);
  assert.deepEqual(names, ['data/', 'data/x/', 'data/x/y', 'etc/', 'etc/passwd', 'lnk', 'new/', 'new/f', 'var/', 'var/log/', 'var/log/.wh..wh..opq']);
});

test('overlay fast path equals the naive path: changes, DiffSize and tar bytes, on random container changes', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await createDriver('overlay', join(dir, 'home'));
  const seeds = [3, 7, 11, 19, 23, 42, 77, 101];
  const mounted: string[] = [];
  try {
    for (const seed of seeds) {
      const img = `img${seed}`;
      const ctr = `ctr${seed}`;
      const src = join(dir, `src${seed}`);
      await mkdir(src);
      await randomTree(src, seed, 14);
      await d.create(img);
      const { RootDir: root } = await d.getMetadata(img);
      await native.copyTree(src, root!, { mode: 'content' });
      await d.createReadWrite(ctr, img);
      const merged = await d.get(ctr);
      mounted.push(ctr);
      await mutateTree(merged, seed, 8);
      const fast = await d.changes(ctr, img);
      const fastSize = await d.diffSize(ctr, img);
      const fastTar = await bytesOf(await d.diff(ctr, img));
      const [written, count] = await toFile(join(dir, `${ctr}.tar`), 'w', (fd) => d.writeDiff(ctr, img, fd));
      assert.equal(count, fastTar.length, `seed ${seed}: writeDiff's byte count`);
      assert.ok(written.equals(fastTar), `seed ${seed}: writeDiff writes what diff streams`);
      const naive = await changesDirs(merged, root!);
      assert.deepEqual(fast, toPublicChanges(naive), `seed ${seed}: changes`);
      assert.equal(fastSize, changesSize(naive), `seed ${seed}: diffSize`);
      const naiveTar = await bytesOf(exportChanges(naive));
      assert.equal(createHash('sha256').update(fastTar).digest('hex'), createHash('sha256').update(naiveTar).digest('hex'), `seed ${seed}: tar bytes`);
      // And the diff rebuilds the container's tree on a copy of the image.
      const copy = join(dir, `copy${seed}`);
      await native.copyTree(root!, copy, { mode: 'content' });
      await applyTar(copy, (async function* () { yield fastTar; })());
    }
    // One manifest.py run over everything (copies and the still-mounted merged dirs).
    const all = await manifest(dir);
    for (const seed of seeds) {
      const diffs = compareManifests(subManifest(all, `copy${seed}`), subManifest(all, `home/ctr${seed}/merged`), {
        mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo'],
        rootFields: ['mode', 'uid', 'gid', 'xattrs', 'mtime'],
        hardlinkGroups: false,
      });
      assert.deepEqual(diffs, [], `seed ${seed}: applied diff equals the merged tree`);
    }
  } finally {
    for (const ctr of mounted) await d.put(ctr);
    await closeDriver(d, dir);
  }
});

test('fast path: kernel whiteouts (shared inodes) are deletions, an opaque dir is one opaque whiteout', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await createDriver('overlay', join(dir, 'home'));
  try {
    await d.create('img');
    const { RootDir: root } = await d.getMetadata('img');
    for (const n of ['a', 'b', 'c']) await writeFile(join(root!, n), n);
    await mkdir(join(root!, 'dir'));
    for (const n of ['x', 'y']) await writeFile(join(root!, 'dir', n), n);
    await d.createReadWrite('ctr', 'img');
    const merged = await d.get('ctr');
  try {
      for (const n of ['a', 'b', 'c']) await unlink(join(merged, n));
      await rm(join(merged, 'dir'), { recursive: true });
      await mkdir(join(merged, 'dir'));
      await writeFile(join(merged, 'dir', 'z'), 'z');
    } finally {
      await d.put('ctr');
    }
    const { UpperDir: upper } = await d.getMetadata('ctr');
    const wa = await lstat(join(upper!, 'a'));
    assert.ok(wa.isCharacterDevice() && wa.rdev === 0, 'upper/a is a whiteout');
    t.diagnostic(`whiteout nlink: ${wa.nlink} (the kernel shares one inode among whiteouts when it can)`);
    assert.equal((await native.getXattr(join(upper!, 'dir'), 'trusted.overlay.opaque')).toString(), 'y');
    const changes = await d.changes('ctr', 'img');
    assert.deepEqual(changes.map((c) => `${c.kind} ${c.path}`), ['D /a', 'D /b', 'D /c', 'C /dir', 'D /dir/x', 'D /dir/y', 'A /dir/z']);
    const names = await tarNames(await bytesOf(await d.diff('ctr', 'img')), dir);
    assert.deepEqual(names, ['.wh.a', '.wh.b', '.wh.c', 'dir/', 'dir/.wh..wh..opq', 'dir/z']);
    assert.equal(await d.diffSize('ctr', 'img'), 1);
  } finally {
    await closeDriver(d, dir);
  }
});

test('image layers through the driver: changes, diffSize and diff of an image against its parent image', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await createDriver('overlay', join(dir, 'home'));
  const seeds = [31, 32, 33, 34];
  try {
    const got = new Map<number, { changes: string[]; size: number }>();
    for (const seed of seeds) {
      const a = join(dir, `A${seed}`);
      const b = join(dir, `B${seed}`);
      await mkdir(a);
      await randomTree(a, seed, 16);
      await native.copyTree(a, b, { mode: 'hardlink' });
      await mutateTree(b, seed, 8);
      await d.create(`a${seed}`);
      await d.applyDiff(`a${seed}`, undefined, exportChanges(await changesDirs(a, undefined)));
      await d.create(`b${seed}`, `a${seed}`);
      await d.applyDiff(`b${seed}`, `a${seed}`, exportChanges(await changesDirs(b, a)));
      const changes = (await d.changes(`b${seed}`, `a${seed}`)).map((c) => ({ ...c, path: Buffer.from(c.path).toString('latin1') }));
      got.set(seed, { changes: changeLines(changes), size: await d.diffSize(`b${seed}`, `a${seed}`) });
      // The driver's diff rebuilds B on a copy of the parent image.
      const copy = join(dir, `C${seed}`);
      await native.copyTree((await d.getMetadata(`a${seed}`)).RootDir!, copy, { mode: 'content' });
      await applyTar(copy, await d.diff(`b${seed}`, `a${seed}`));
    }
    const all = await manifest(dir);
    for (const seed of seeds) {
      const roots = await Promise.all([`a${seed}`, `b${seed}`].map(async (id) => relative(dir, (await d.getMetadata(id)).RootDir!)));
      const [ra, rb] = roots.map((p) => subManifest(all, p)) as [typeof all, typeof all];
      assert.ok(ra.size > 1 && rb.size > 1, `seed ${seed}: found the layers' roots in the manifest`);
      const cmp = { mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo'] as const, rootFields: ['mode', 'uid', 'gid', 'xattrs', 'mtime'] as const };
      assert.deepEqual(compareManifests(rb, subManifest(all, `B${seed}`), { mtimeTypes: [...cmp.mtimeTypes], rootFields: [...cmp.rootFields] }), [], `seed ${seed}: image b is B`);
      // The public Change.path is a string: a name that is not UTF-8 reaches it as U+FFFD, so the oracle's does too.
      const lossy = (line: string) => `${line.slice(0, 2)}${Buffer.from(Buffer.from(Buffer.from(line.slice(2), 'hex').toString('utf8')).toString('latin1'), 'latin1').toString('hex')}`;
      assert.deepEqual(got.get(seed)!.changes, expectedChanges(ra, rb).map(lossy).sort(), `seed ${seed}: changes`);
      assert.equal(got.get(seed)!.size, expectedSize(ra, rb), `seed ${seed}: diffSize`);
      assert.deepEqual(compareManifests(subManifest(all, `C${seed}`), rb, { mtimeTypes: [...cmp.mtimeTypes], rootFields: [...cmp.rootFields] }), [], `seed ${seed}: diff applied`);
    }
  } finally {
    await closeDriver(d, dir);
  }
});
