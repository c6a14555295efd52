// The overlay driver on real overlay mounts: the conformance suite, then what only
// overlay has (upper/ and whiteouts, mount options, backing filesystems, the home bind
// mount, id maps, labels, long mount data, the seed's third create case, leftovers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { lstat, lutimes, mkdir, readFile, readdir, rename, stat, symlink, truncate, unlink, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stats } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createDriver } from '../lib/index.js';
import * as native from '../lib/native.js';
import { readMountInfo } from '../lib/mountinfo.js';
import { FsMagic, fsMagic } from '../lib/fs-magic.js';
import type { DriverOptions } from '../lib/types.js';
import { TEMP_PREFIX, assertMountinfoRestoredAtEnd, driverSuite, failingSource, listTree, mountsUnder, openStore, tarBytes, tarStream, type TarEntry } from './helpers/driver-suite.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, chunked } from './helpers/tar-builder.js';
import { compareManifests, manifest } from './helpers/tree.js';

const run = promisify(execFile);
const factory = (home: string, opts?: DriverOptions) => createDriver('overlay', home, opts);
const indexJs = fileURLToPath(new URL('../lib/index.js', import.meta.url));

assertMountinfoRestoredAtEnd();

driverSuite('overlay', factory);

const imageEntries: TarEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/hostname', content: 'img\n' },
  { name: 'etc/passwd', content: 'root:x:0:0\n' },
  { name: 'bin/', type: 'directory' },
  { name: 'bin/sh', content: 'shell', mode: 0o755 },
];

/** Runs a small ESM script in a fresh node process that imports the package as `ogd`. */
async function inChild(code: string): Promise<string> {
  const script = `import * as ogd from ${JSON.stringify(indexJs)};\n${code}`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 });
  return stdout.trim();
}

test('overlay: writes through a mounted container land in upper/, a deleted lower file becomes a 0/0 whiteout', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.applyDiff('img', undefined, await tarStream(imageEntries));
  await d.create('ctr', 'img');
  const meta = await d.getMetadata('ctr');
  assert.deepEqual(meta, {
    LowerDir: join(s.home, 'img', 'root'),
    UpperDir: join(s.home, 'ctr', 'upper'),
    WorkDir: join(s.home, 'ctr', 'work'),
    MergedDir: join(s.home, 'ctr', 'merged'),
  });
  assert.deepEqual(await d.getMetadata('img'), { RootDir: join(s.home, 'img', 'root') });
  const merged = await d.get('ctr');
  assert.equal(merged, meta['MergedDir']);
  await writeFile(join(merged, 'new'), 'written');
  await writeFile(join(merged, 'etc/hostname'), 'ctr\n');
  await unlink(join(merged, 'etc/passwd'));
  const upper = meta['UpperDir']!;
  assert.equal(await readFile(join(upper, 'new'), 'utf8'), 'written');
  assert.equal(await readFile(join(upper, 'etc/hostname'), 'utf8'), 'ctr\n');
  const whiteout = await lstat(join(upper, 'etc/passwd'));
  assert.ok(whiteout.isCharacterDevice(), 'a whiteout is a character device');
  assert.equal(whiteout.rdev, 0, 'with device number 0/0');
  assert.equal(await readFile(join(s.home, 'img/root/etc/passwd'), 'utf8'), 'root:x:0:0\n', 'the image keeps its file');
  assert.deepEqual(await readdir(join(upper)), ['etc', 'new'].sort());

  // metacopy=off: a metadata change copies the data up too, so upper/ holds the whole file.
  await chmod(join(merged, 'bin/sh'), 0o700);
  assert.equal(await readFile(join(upper, 'bin/sh'), 'utf8'), 'shell');
  // redirect_dir=off: renaming a directory that comes from the lower layer is refused (EXDEV), not recorded as a redirect.
  await assert.rejects(rename(join(merged, 'bin'), join(merged, 'bin2')), { code: 'EXDEV' });
  await d.put('ctr');
  await s.done();
});

test('overlay: home on ext4 and on tmpfs is accepted and named by status()', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  if ((await fsMagic(dir)) === FsMagic.extfs) {
    const d = await createDriver('overlay', join(dir, 'ext4-home'));
    assert.deepEqual(d.status(), [['Backing Filesystem', 'extfs']]);
    await d.cleanup();
  } else {
    t.diagnostic(`temp dir is not on ext4 (magic 0x${(await fsMagic(dir)).toString(16)}); ext4 case not run`);
  }
  const tmpfs = join(dir, 'tmpfs');
  await mkdir(tmpfs);
  await native.mount('tmpfs', tmpfs, 'tmpfs', 0, 'size=16m');
  try {
    const d = await createDriver('overlay', join(tmpfs, 'home'));
    assert.deepEqual(d.status(), [['Backing Filesystem', 'tmpfs']]);
    await d.create('img');
    await d.create('ctr', 'img');
    await writeFile(join(await d.get('ctr'), 'f'), 'on tmpfs');
    await d.put('ctr');
    await d.cleanup();
    assert.deepEqual(await mountsUnder(tmpfs), [tmpfs]);
  } finally {
    await native.unmount(tmpfs);
  }
});

test('overlay: a home inside an overlay mount is refused with IncompatibleFs, nothing created', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  for (const sub of ['l', 'u', 'w', 'm']) await mkdir(join(dir, sub));
  await native.mount('overlay', join(dir, 'm'), 'overlay', 0, `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w`);
  try {
    await assert.rejects(createDriver('overlay', join(dir, 'm', 'home')), (err: unknown) => {
      assert.equal((err as { code?: string }).code, 'ERR_OGD_INCOMPATIBLE_FS');
      assert.equal((err as { filesystem?: string }).filesystem, 'overlayfs');
      assert.match((err as Error).message, /overlay is not supported over overlayfs/);
      return true;
    });
    assert.deepEqual(await readdir(join(dir, 'm')), []);
  } finally {
    await native.unmount(join(dir, 'm'));
  }
});

test('overlay: a home on btrfs (a loop device) is refused with IncompatibleFs', async (t) => {
  if (skipUnlessRoot(t)) return;
  try {
    await run('mkfs.btrfs', ['--version']);
  } catch {
    t.skip('mkfs.btrfs is not installed');
    return;
  }
  const dir = await tempDir(t, TEMP_PREFIX);
  const image = join(dir, 'btrfs.img');
  await writeFile(image, '');
  await truncate(image, 128 << 20); // sparse; btrfs wants at least ~109 MiB
  await run('mkfs.btrfs', ['-q', image]);
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  try {
    await run('mount', ['-o', 'loop', image, mnt]);
  } catch (err) {
    t.skip(`cannot mount a btrfs loop device here: ${(err as Error).message.split('\n')[0]}`);
    return;
  }
  try {
    await assert.rejects(createDriver('overlay', join(mnt, 'home')), { code: 'ERR_OGD_INCOMPATIBLE_FS', filesystem: 'btrfs' });
    assert.deepEqual(await readdir(mnt), []);
  } finally {
    await run('umount', [mnt]); // the loop device is autocleared
  }
});

test('overlay: home is made 0700 and bind-mounted privately once, across drivers and processes', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  const home = join(dir, 'a', 'home');
  const count = async () => (await mountPoints()).filter((m) => m === home).length;
  const d1 = await createDriver('overlay', home);
  const st = await stat(home);
  assert.equal(st.mode & 0o7777, 0o700);
  assert.equal(st.uid, 0);
  const entry = (await readMountInfo()).find((m) => m.mountPoint === home);
  assert.ok(entry !== undefined && !entry.shared, `home is a private mount: ${JSON.stringify(entry)}`);
  const d2 = await createDriver('overlay', home);
  await inChild(`await ogd.createDriver('overlay', ${JSON.stringify(home)});`); // exits without cleanup
  assert.equal(await count(), 1, 'one bind mount, not a stack');
  await d1.cleanup();
  assert.equal(await count(), 1, 'the other driver still uses it');
  await d2.cleanup();
  assert.equal(await count(), 0, 'the last cleanup unmounts it');
});

test('overlay: an idmapped store (0 → 100000, 65536) owns what it creates as 100000', async (t) => {
  const maps = [{ containerId: 0, hostId: 100000, size: 65536 }];
  const s = await openStore(t, factory, { uidMaps: maps, gidMaps: maps });
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.create('ctr', 'img');
  await d.get('ctr');
  const owned = [s.home, 'img', 'img/root', 'ctr', 'ctr/upper', 'ctr/work', 'ctr/merged', 'ctr/lower-id', 'ctr/work/work'];
  for (const p of owned) {
    const path: string = p === s.home ? p : join(s.home, p);
    const { uid, gid } = await lstat(path);
    assert.deepEqual([uid, gid], [100000, 100000], p);
  }
  assert.equal((await lstat(s.home)).mode & 0o7777, 0o700);
  assert.equal((await lstat(join(s.home, 'img'))).mode & 0o7777, 0o700);
  assert.equal((await lstat(join(s.home, 'img/root'))).mode & 0o7777, 0o755);
  await d.put('ctr');
  // Applied files get the maps too: container 0 → 100000, 1000 → 101000.
  await d.create('applied');
  await d.applyDiff('applied', undefined, await tarStream([{ name: 'root-file', uid: 0, gid: 0 }, { name: 'user-file', uid: 1000, gid: 1000 }]));
  for (const [name, host] of [['root-file', 100000], ['user-file', 101000]] as const) {
    const st: Stats = await lstat(join(s.home, 'applied/root', name));
    assert.deepEqual([st.uid, st.gid], [host, host], name);
  }
  await s.done();

  const dir = await tempDir(t, TEMP_PREFIX);
  await assert.rejects(createDriver('overlay', join(dir, 'h1'), { uidMaps: [{ containerId: 1, hostId: 1000, size: 10 }] }), { code: 'ERR_OGD_INVALID_OPTION' });
  await assert.rejects(createDriver('overlay', join(dir, 'h2'), { uidMaps: [{ containerId: 0, hostId: 1000, size: 0 }] }), { code: 'ERR_OGD_INVALID_OPTION' });
  await assert.rejects(createDriver('overlay', join(dir, 'h3'), { options: ['overlay.mountopt=nodev'] }), { code: 'ERR_OGD_INVALID_OPTION' });
  assert.deepEqual(await readdir(dir), [], 'bad options create no home');
});

test('overlay: a mount label is passed as context="…"; a refused mount leaves no reference', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.create('ctr', 'img');
  const merged = join(s.home, 'ctr', 'merged');
  const label = 'system_u:object_r:container_file_t:s0:c1,c2';
  let labelled = false;
  try {
    await d.get('ctr', { mountLabel: label });
    labelled = true;
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'EINVAL', 'a kernel without SELinux refuses the context option');
    assert.ok(!(await mountsUnder(s.dir)).includes(merged), 'not mounted');
  }
  if (labelled) {
    const entry = (await readMountInfo()).find((m) => m.mountPoint === merged);
    assert.match(entry?.superOptions ?? '', /context=/);
    await d.put('ctr');
  }
  // No reference was left by the failure: one get and one put mount and unmount.
  await d.get('ctr');
  await d.put('ctr');
  assert.ok(!(await mountsUnder(s.dir)).includes(merged));
  await s.done();
});

test('overlay: mount data longer than a page falls back to /proc/self/fd paths; odd characters are escaped', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  let home = dir;
  for (let i = 0; i < 8; i++) home = join(home, String(i).repeat(200));
  home = join(home, 'home');
  const d = await createDriver('overlay', home);
  const img = 'i'.repeat(255);
  const ctr = 'c'.repeat(255);
  await d.create(img);
  await writeFile(join(home, img, 'root', 'f'), 'deep');
  await d.create(ctr, img);
  const merged = await d.get(ctr);
  assert.equal(await readFile(join(merged, 'f'), 'utf8'), 'deep');
  const entry = (await readMountInfo()).find((m) => m.fsType === 'overlay' && m.mountPoint === merged);
  assert.match(entry?.superOptions ?? '', /lowerdir=\/proc\/self\/fd\/\d+\//);
  await d.put(ctr);

  const odd = 'a,b:c\\d=e f';
  await d.create(odd, img);
  const oddMerged = await d.get(odd);
  assert.equal(await readFile(join(oddMerged, 'f'), 'utf8'), 'deep');
  await writeFile(join(oddMerged, 'g'), 'up');
  assert.equal(await readFile(join(home, odd, 'upper', 'g'), 'utf8'), 'up');
  await d.put(odd);
  await d.cleanup();
  assert.deepEqual(await mountsUnder(dir), []);
});

test('overlay: a layer on a layer without root/ copies its lower-id and its upper (the seed\'s third case)', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.applyDiff('img', undefined, await tarStream(imageEntries));
  await d.create('init', 'img');
  const initMerged = await d.get('init');
  await writeFile(join(initMerged, 'etc/hostname'), 'init\n');
  await unlink(join(initMerged, 'etc/passwd'));
  await d.put('init');
  await d.create('ctr', 'init');
  assert.equal(await readFile(join(s.home, 'ctr/lower-id'), 'utf8'), 'img');
  const a = await lstat(join(s.home, 'init/upper/etc/hostname'));
  const b = await lstat(join(s.home, 'ctr/upper/etc/hostname'));
  assert.notEqual(a.ino, b.ino, 'a content copy, not hardlinks');
  assert.ok((await lstat(join(s.home, 'ctr/upper/etc/passwd'))).isCharacterDevice(), 'the whiteout is copied');
  const merged = await d.get('ctr');
  assert.deepEqual(await listTree(merged), ['bin/', 'bin/sh = shell', 'etc/', 'etc/hostname = init\n']);
  await writeFile(join(merged, 'etc/hostname'), 'ctr\n');
  assert.equal(await readFile(join(s.home, 'init/upper/etc/hostname'), 'utf8'), 'init\n', 'the parent upper is not shared');
  await d.put('ctr');
  await s.done();
});

test('overlay: applyDiff on a layer whose parent has no root/ goes through a staged mount, all or nothing', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.applyDiff('img', undefined, await tarStream(imageEntries));
  await d.create('init', 'img');
  await writeFile(join(await d.get('init'), 'etc/hostname'), 'init\n');
  await d.put('init');
  await d.create('ctr', 'init');
  const upperBefore = await listTree(join(s.home, 'ctr/upper'));
  const hostnameIno = (await lstat(join(s.home, 'ctr/upper/etc/hostname'))).ino;

  const diff: TarEntry[] = [{ name: 'etc/hostname', content: 'applied\n' }, { name: 'opt/', type: 'directory' }, { name: 'opt/tool', content: 'tool' }];
  const whole = await tarBytes(diff);
  await assert.rejects(d.applyDiff('ctr', 'init', failingSource(whole, 700)));
  assert.deepEqual(await listTree(join(s.home, 'ctr/upper')), upperBefore, 'upper unchanged after a failure');
  assert.equal((await lstat(join(s.home, 'ctr/upper/etc/hostname'))).ino, hostnameIno);
  assert.deepEqual((await readdir(join(s.home, 'ctr'))).sort(), ['lower-id', 'merged', 'upper', 'work'], 'no staging dir left');
  assert.deepEqual(await mountsUnder(s.dir), [s.home], 'no staging mount left');

  await d.get('ctr');
  await assert.rejects(d.applyDiff('ctr', 'init', await tarStream(diff)), { code: 'ERR_OGD_LAYER_IN_USE' });
  await d.put('ctr');

  await d.applyDiff('ctr', 'init', await tarStream(diff));
  assert.equal(await readFile(join(s.home, 'ctr/upper/etc/hostname'), 'utf8'), 'applied\n');
  assert.equal(await readFile(join(s.home, 'ctr/upper/opt/tool'), 'utf8'), 'tool');
  assert.equal(await readFile(join(s.home, 'init/upper/etc/hostname'), 'utf8'), 'init\n', 'the parent is untouched');
  const merged = await d.get('ctr');
  assert.deepEqual(await listTree(merged), ['bin/', 'bin/sh = shell', 'etc/', 'etc/hostname = applied\n', 'etc/passwd = root:x:0:0\n', 'opt/', 'opt/tool = tool']);
  await d.put('ctr');
  assert.deepEqual((await readdir(join(s.home, 'ctr'))).sort(), ['lower-id', 'merged', 'upper', 'work']);
  await s.done();
});

test('overlay: a child image shares its parent\'s symlinks, devices and fifos; applying it (or failing to) leaves the parent identical', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  const T = 1_600_000_000;
  const base = new TarBuilder()
    .dir('usr/bin/')
    .file('usr/bin/tool', 'tool', { mode: 0o755 })
    .symlink('bin', 'usr/bin')
    .symlink('usr/bin/alias', 'tool')
    .symlink('usr/bin/chained', 'tool')
    .symlink('usr/bin/dropped', 'tool')
    .fifo('run.fifo')
    .device('null', 'char', 1, 3, { mode: 0o666 })
    .end();
  await d.create('base');
  await d.applyDiff('base', undefined, chunked(base));
  const baseRoot = join(s.home, 'base/root');
  const before = await manifest(baseRoot);
  const child = new TarBuilder()
    .symlink('bin', 'usr/local/bin', { uid: 12, mtime: T + 12 })
    .hardlink('usr/bin/alias2', 'usr/bin/alias', { uid: 7, mtime: T + 7 })
    .hardlink('usr/bin/chained-a', 'usr/bin/chained')
    .hardlink('usr/bin/chained-b', 'usr/bin/chained-a', { gid: 8 })
    .hardlink('run.fifo2', 'run.fifo', { mode: 0o600 })
    .hardlink('null2', 'null', { uid: 3, mode: 0o666 })
    .whiteout('usr/bin/dropped')
    .end();
  // A failed apply first (its last entry is refused, after all the others were applied): it is staged, and thrown away.
  await d.create('broken', 'base');
  await assert.rejects(d.applyDiff('broken', 'base', chunked(Buffer.concat([child.subarray(0, child.length - 1024), new TarBuilder().file('../escape', 'x').end()]))), {
    code: 'ERR_OGD_UNSAFE_LAYER',
  });
  await d.create('app', 'base');
  await d.applyDiff('app', 'base', chunked(child));

  const after = await manifest(baseRoot);
  assert.deepEqual(compareManifests(before, after, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'mtime'] }), []);
  for (const [p, e] of before) assert.equal(after.get(p)!.ino, e.ino, `${p} inode`);
  const appRoot = join(s.home, 'app/root');
  for (const p of ['usr/bin/tool', 'usr/bin/chained']) {
    assert.equal((await lstat(join(appRoot, p))).ino, (await lstat(join(baseRoot, p))).ino, `${p} is shared with the parent`);
  }
  for (const p of ['run.fifo', 'null']) {
    assert.notEqual((await lstat(join(appRoot, p))).ino, (await lstat(join(baseRoot, p))).ino, `${p} was changed through a tar hardlink: a private copy`);
  }
  assert.deepEqual([(await lstat(join(appRoot, 'usr/bin/alias2'))).uid, (await lstat(join(appRoot, 'usr/bin/chained-b'))).gid], [7, 8]);
  assert.equal((await lstat(join(appRoot, 'bin'))).uid, 12);
  await assert.rejects(lstat(join(appRoot, 'usr/bin/dropped')), { code: 'ENOENT' });
  await s.done();
});

test('overlay: applyDiff through a staged mount shares the upper\'s symlinks; a failed one leaves the upper identical', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.applyDiff('img', undefined, await tarStream(imageEntries));
  await d.create('init', 'img');
  await d.create('ctr', 'init');
  const merged = await d.get('ctr');
  await symlink('hostname', join(merged, 'etc/alias'));
  await symlink('passwd', join(merged, 'etc/chained'));
  await lutimes(join(merged, 'etc/chained'), 1_600_000_000, 1_600_000_000); // the tar's default: its first link changes nothing
  await unlink(join(merged, 'bin/sh')); // a whiteout in upper/
  await d.put('ctr');
  const upper = join(s.home, 'ctr/upper');
  const before = await manifest(upper);
  const diff = new TarBuilder()
    .hardlink('etc/alias2', 'etc/alias', { uid: 7 })
    .hardlink('etc/chained-a', 'etc/chained', { mode: 0o777 })
    .hardlink('etc/chained-b', 'etc/chained-a', { gid: 8 })
    .file('etc/new', 'new')
    .end();
  // Refused at its last entry, after all the others were applied through the staged mount.
  await assert.rejects(d.applyDiff('ctr', 'init', chunked(Buffer.concat([diff.subarray(0, diff.length - 1024), new TarBuilder().file('../escape', 'x').end()]))), {
    code: 'ERR_OGD_UNSAFE_LAYER',
  });
  const after = await manifest(upper);
  assert.deepEqual(compareManifests(before, after, { fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'mtime'] }), []);
  for (const [p, e] of before) assert.equal(after.get(p)!.ino, e.ino, `${p} inode`);
  await d.applyDiff('ctr', 'init', chunked(diff));
  assert.deepEqual([(await lstat(join(upper, 'etc/alias2'))).uid, (await lstat(join(upper, 'etc/chained-b'))).gid], [7, 8]);
  assert.ok((await lstat(join(upper, 'bin/sh'))).isCharacterDevice(), 'the whiteout is still there');
  await s.done();
});

test('overlay: a layer mounted by another process counts as one reference, which put() never releases', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.create('ctr', 'img');
  const merged = await inChild(`const d = await ogd.createDriver('overlay', ${JSON.stringify(s.home)}); console.log(await d.get('ctr'));`);
  assert.equal(merged, join(s.home, 'ctr/merged'));
  assert.equal(await d.get('ctr'), merged);
  assert.equal((await mountsUnder(s.dir)).filter((m) => m === merged).length, 1, 'not mounted again');
  await d.put('ctr');
  assert.ok((await mountsUnder(s.dir)).includes(merged), "the other process's reference keeps it mounted");
  await d.put('ctr');
  assert.ok((await mountsUnder(s.dir)).includes(merged), 'a put without a get of ours leaves the other process its mount');
  await native.unmount(merged);
  await s.done();
});

test('overlay: cleanup() releases the mounts this driver took, not those of another driver', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d1 = s.driver;
  await d1.create('img');
  await d1.create('ctr', 'img');
  const merged = await d1.get('ctr');
  await d1.get('ctr');
  const d2 = await createDriver('overlay', s.home);
  await d2.get('ctr');
  await d1.cleanup();
  assert.ok((await mountsUnder(s.dir)).includes(merged), "d2's reference keeps it mounted");
  await d2.put('ctr');
  assert.ok(!(await mountsUnder(s.dir)).includes(merged));
  await d2.cleanup();
  assert.deepEqual(await mountsUnder(s.dir), []);
});

test('overlay: the next createDriver removes staging leftovers of dead processes (and their mounts)', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('img');
  await d.create('child', 'img');
  await d.cleanup();
  const deadPid = 4194305; // above the largest pid_max (2^22), so no process has it
  const dead = join(s.home, 'child', `tmproot${deadPid}-abc123`);
  const alive = join(s.home, 'child', 'tmproot1-def456'); // pid 1 is alive: its staging dir is in use
  await mkdir(join(dead, 'merged'), { recursive: true });
  await writeFile(join(dead, 'half-written'), 'x');
  await native.mount('tmpfs', join(dead, 'merged'), 'tmpfs', 0, 'size=1m');
  await mkdir(alive);
  // An applyDiff killed after its rename: root/ is there, the overlay parts are not removed yet.
  await mkdir(join(s.home, 'img', 'upper'));
  await writeFile(join(s.home, 'img', 'lower-id'), 'gone');
  const d2 = await createDriver('overlay', s.home);
  assert.deepEqual((await readdir(join(s.home, 'child'))).sort(), ['lower-id', 'merged', 'tmproot1-def456', 'upper', 'work']);
  assert.deepEqual(await readdir(join(s.home, 'img')), ['root']);
  assert.deepEqual(await mountsUnder(s.dir), [s.home]);
  await d2.cleanup();
  assert.deepEqual(await mountsUnder(s.dir), []);
});

test('overlay: a lower-id read from disk is validated; a re-created layer gets its new lower', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('one');
  await writeFile(join(s.home, 'one/root/which'), 'one');
  await d.create('two');
  await writeFile(join(s.home, 'two/root/which'), 'two');
  await d.create('ctr', 'one');
  assert.equal(await readFile(join(await d.get('ctr'), 'which'), 'utf8'), 'one');
  await d.put('ctr');
  await d.remove('ctr');
  await d.create('ctr', 'two');
  assert.equal(await readFile(join(await d.get('ctr'), 'which'), 'utf8'), 'two', 'not a stale lower');
  await d.put('ctr');

  await d.create('evil', 'one');
  await unlink(join(s.home, 'evil/lower-id'));
  await writeFile(join(s.home, 'evil/lower-id'), '../../etc');
  await assert.rejects(d.get('evil'), { code: 'ERR_OGD_INVALID_ID' });
  await assert.rejects(d.getMetadata('evil'), { code: 'ERR_OGD_INVALID_ID' });
  await assert.rejects(d.create('evil-child', 'evil'), { code: 'ERR_OGD_INVALID_ID' });
  assert.equal(await d.exists('evil-child'), false);
  assert.deepEqual(await mountsUnder(s.dir), [s.home]);
  await s.done();
});
