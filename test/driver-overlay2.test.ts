// The overlay2 driver (containers/storage's overlay layout): the conformance suite,
// then what only it has: the c/s layout on disk, O(1) child images, whiteouts written
// into diff/ by the kernel, read back as deletions, and deep stacks (the new mount API,
// a nested base beyond overlayfs's 500 lowers).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDriver } from '../lib/index.js';
import * as native from '../lib/native.js';
import type { DriverOptions } from '../lib/types.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TEMP_PREFIX, assertMountinfoRestoredAtEnd, driverSuite, listTree, mountsUnder, openStore, tarStream, type TarEntry } from './helpers/driver-suite.js';

const factory = (home: string, opts?: DriverOptions) => createDriver('overlay2', home, opts);

assertMountinfoRestoredAtEnd();

driverSuite('overlay2', factory, { sharesInodes: true, imageGetMounts: true, containerGetMounts: true, homeEntries: ['l'] });

const base: TarEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/hostname', content: 'base\n' },
  { name: 'etc/passwd', content: 'root\n' },
  { name: 'opt/', type: 'directory' },
  { name: 'opt/a', content: 'a' },
  { name: 'opt/b', content: 'b' },
];

test('overlay2: the containers/storage layout: diff, link, lower, l/<short> -> ../<id>/diff', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('base');
  await d.create('mid', 'base');
  await d.createReadWrite('ctr', 'mid');
  const link = async (id: string) => readFile(join(s.home, id, 'link'), 'utf8');
  for (const id of ['base', 'mid', 'ctr']) {
    const short = await link(id);
    assert.match(short, /^[A-Z0-9]{26}$/);
    assert.equal(await readlink(join(s.home, 'l', short)), `../${id}/diff`);
    for (const dir of ['diff', 'work', 'merged']) assert.ok((await lstat(join(s.home, id, dir))).isDirectory(), `${id}/${dir}`);
  }
  assert.ok((await lstat(join(s.home, 'base', 'empty'))).isDirectory(), 'a base layer has empty/ and no lower file');
  await assert.rejects(readFile(join(s.home, 'base', 'lower')), { code: 'ENOENT' });
  assert.equal(await readFile(join(s.home, 'mid', 'lower'), 'utf8'), `l/${await link('base')}`);
  assert.equal(await readFile(join(s.home, 'ctr', 'lower'), 'utf8'), `l/${await link('mid')}:l/${await link('base')}`);
  assert.deepEqual(Object.fromEntries(d.status())['Mount Method']?.split(' ')[0], 'fsconfig');
  await assert.rejects(d.create('l'), { code: 'ERR_OGD_INVALID_ID' }, 'the short-link dir is not a layer id');
  assert.equal(await d.exists('l').catch(() => 'refused'), 'refused');
  await d.remove('ctr');
  assert.equal((await readdir(join(s.home, 'l'))).length, 2, 'remove takes the short link too');
  await s.done();
});

test('overlay2: a child image holds only its changes; deletions are overlay whiteouts in diff/, read back as D', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('base');
  await d.applyDiff('base', undefined, await tarStream(base));
  await d.create('child', 'base');
  await d.applyDiff('child', 'base', await tarStream([
    { name: 'etc/.wh.passwd' },
    { name: 'opt/.wh..wh..opq' },
    { name: 'opt/c', content: 'c' },
    { name: 'etc/hostname', content: 'child\n' },
  ]));
  const diff = join(s.home, 'child', 'diff');
  // An opaque dir applied through the mount becomes one whiteout per entry below it (the
  // kernel's own way), not trusted.overlay.opaque: the same tree, read back the same.
  assert.deepEqual((await listTree(diff)).filter((l) => !l.endsWith('/')), ['etc/hostname = child\n', 'etc/passwd (special)', 'opt/a (special)', 'opt/b (special)', 'opt/c = c']);
  const wh = await lstat(join(diff, 'etc/passwd'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'etc/passwd is a whiteout (char 0/0)');
  assert.equal((await readdir(diff)).sort().join(','), 'etc,opt', 'nothing of the parent copied');
  const merged = await d.get('child');
  assert.deepEqual(await listTree(merged), ['etc/', 'etc/hostname = child\n', 'opt/', 'opt/c = c']);
  await d.put('child');
  assert.deepEqual(await d.changes('child', 'base'), [
    { path: '/etc', kind: 'C' },
    { path: '/etc/hostname', kind: 'C' },
    { path: '/etc/passwd', kind: 'D' },
    { path: '/opt', kind: 'C' },
    { path: '/opt/a', kind: 'D' },
    { path: '/opt/b', kind: 'D' },
    { path: '/opt/c', kind: 'A' },
  ]);
  assert.deepEqual(await mountsUnder(s.home), [s.home], 'changes leave no view mounted');
  await s.done();
});

// Through the driver: 600 layers with OGD_STRESS=1 (about 15 s of creates on this
// machine); by default the same mount of 600 lowers is checked at the native level below.
const depth = 600;

test('native mountOverlayFs: 600 lowers (a nested base beyond overlayfs\'s 500), whiteouts in the base honoured, read-write on top', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  const lowers: string[] = [];
  for (let i = 0; i < depth; i++) {
    const l = join(dir, `l${i}`);
    await mkdir(l);
    await writeFile(join(l, `f${i}`), `${i}`);
    await writeFile(join(l, 'top'), `${i}`);
    if (i === 10) await native.mknod(join(l, 'f3'), 0o20000, 0, 0);
    lowers.unshift(l);
  }
  for (const d of ['upper', 'work', 'merged']) await mkdir(join(dir, d));
  const merged = join(dir, 'merged');
  await assert.rejects(native.mountOverlayFs(merged, { lowers, readOnly: true }), (err: NodeJS.ErrnoException) => err.code === 'EINVAL' && /limit is 500/.test(err.message));
  await native.mountOverlayFs(merged, { lowers: lowers.slice(0, 499), base: lowers.slice(499), upper: join(dir, 'upper'), work: join(dir, 'work'), readOnly: false });
  try {
    const names = await readdir(merged);
    assert.equal(names.length, depth);
    assert.ok(!names.includes('f3'), 'a whiteout in the nested base hides the layer below it');
    assert.equal(await readFile(join(merged, 'top'), 'utf8'), String(depth - 1));
    assert.equal(await readFile(join(merged, 'f0'), 'utf8'), '0');
    await writeFile(join(merged, 'new'), 'n');
  } finally {
    await native.unmount(merged, 0);
  }
  assert.equal(await readFile(join(dir, 'upper', 'new'), 'utf8'), 'n');
});

test(`overlay2: a ${depth}-layer stack mounts through the driver and reads every layer (OGD_STRESS=1)`, { skip: process.env['OGD_STRESS'] === '1' ? false : 'set OGD_STRESS=1 (600 layer creates, about 15 s)' }, async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  let parent: string | undefined;
  for (let i = 0; i < depth; i++) {
    const id = `l${i}`;
    await d.create(id, parent);
    // Content written straight into diff/ (what an apply would leave), to keep the test short.
    const diff = (await d.getMetadata(id))['UpperDir']!;
    await writeFile(join(diff, `f${i}`), `${i}`);
    await writeFile(join(diff, 'top'), `${i}`);
    if (i === 10) await native.mknod(join(diff, 'f3'), 0o20000, 0, 0); // layer 10 deletes f3
    parent = id;
  }
  await d.createReadWrite('ctr', parent);
  const merged = await d.get('ctr');
  const names = await readdir(merged);
  assert.equal(names.length, depth, 'f0..f(depth-1) but f3, and top');
  assert.ok(!names.includes('f3'), 'a whiteout in the nested base hides its layer below');
  assert.equal(await readFile(join(merged, 'top'), 'utf8'), String(depth - 1));
  assert.equal(await readFile(join(merged, 'f0'), 'utf8'), '0');
  assert.equal(await readFile(join(merged, 'f500'), 'utf8'), '500');
  await writeFile(join(merged, 'new'), 'n');
  await d.put('ctr');
  assert.equal(await readFile(join(s.home, 'ctr', 'diff', 'new'), 'utf8'), 'n');
  await s.done();
});

test('overlay2: mount_api=mount2 (the pre-6.8 path) mounts a stack through mount(2) data', async (t) => {
  const s = await openStore(t, factory, { options: ['mount_api=mount2'] });
  if (!s) return;
  const d = s.driver;
  await d.create('base');
  await d.applyDiff('base', undefined, await tarStream(base));
  await d.create('child', 'base');
  await d.applyDiff('child', 'base', await tarStream([{ name: 'etc/.wh.passwd' }, { name: 'x', content: 'x' }]));
  await d.createReadWrite('ctr', 'child');
  const merged = await d.get('ctr');
  assert.deepEqual(await listTree(merged), ['etc/', 'etc/hostname = base\n', 'opt/', 'opt/a = a', 'opt/b = b', 'x = x']);
  await d.put('ctr');
  await assert.rejects(createDriver('overlay2', join(s.dir, 'other'), { options: ['bogus=1'] }), { code: 'ERR_OGD_INVALID_OPTION' });
  await mkdir(join(s.dir, 'unused'));
  await s.done();
});
