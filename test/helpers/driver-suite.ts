// A conformance suite for graph drivers, in the spirit of containers/storage's
// drivers/graphtest: it takes a factory and checks, through the Driver API and the real
// filesystem only, what every driver must do. Driver-specific checks (overlay's upper/
// and whiteouts, backing filesystems) live in that driver's own test file.
import { after, before, test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import tar from 'tar-stream';
import type { Driver, DriverOptions } from '../../lib/types.js';
import { NotSupportedError } from '../../lib/errors.js';
import { mountPoints, skipUnlessRoot, tempDir } from './sandbox.js';

/** Prefix of every temp dir the driver tests make, so their mounts can be told from those of other processes. */
export const TEMP_PREFIX = 'ogd-driver-';

/**
 * Asserts, after the file's last test, that /proc/self/mountinfo is as the file found
 * it. Left out of the comparison: mounts in other tests' and benchmarks' scratch areas
 * (temp dirs not named TEMP_PREFIX…, /var/cache/ogd), which other processes running
 * at the same time may add or remove; every mount below this file's temp dirs counts.
 */
export function assertMountinfoRestoredAtEnd(): void {
  const ours = join(tmpdir(), TEMP_PREFIX);
  const othersScratch = (m: string): boolean => (m.startsWith(tmpdir() + '/') && !m.startsWith(ours)) || m.startsWith('/var/cache/ogd/');
  const relevant = async (): Promise<string[]> => (await mountPoints()).filter((m) => !othersScratch(m));
  let atStart: string[] = [];
  before(async () => {
    atStart = await relevant();
  });
  after(async () => {
    assert.deepEqual(await relevant(), atStart, 'this file leaves /proc/self/mountinfo as it found it');
  });
}

export type DriverFactory = (home: string, opts?: DriverOptions) => Promise<Driver>;

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink';
  content?: string;
  mode?: number;
  linkname?: string;
  uid?: number;
  gid?: number;
}

/** An uncompressed tar of `entries`, as bytes. */
export async function tarBytes(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: new Date(1_700_000_000_000),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
    };
    if (type === 'file') pack.entry(header, e.content ?? '');
    else pack.entry(header);
  }
  pack.finalize();
  return buffer(pack);
}

export async function tarStream(entries: readonly TarEntry[]): Promise<Readable> {
  return Readable.from([await tarBytes(entries)]);
}

/** A source that yields the first `cut` bytes of `bytes` and then fails, like a dropped download. */
export async function* failingSource(bytes: Buffer, cut: number): AsyncGenerator<Uint8Array> {
  yield bytes.subarray(0, cut);
  throw new Error('source failed mid-stream');
}

export interface Store {
  dir: string;
  home: string;
  driver: Driver;
  /** Cleans the driver up and asserts that nothing stays mounted below the test's temp dir. */
  done(): Promise<void>;
}

/** A driver on a fresh home in a temp dir; undefined after t.skip() when not root or not supported. */
export async function openStore(t: TestContext, factory: DriverFactory, opts?: DriverOptions): Promise<Store | undefined> {
  if (skipUnlessRoot(t)) return undefined;
  const dir = await tempDir(t, TEMP_PREFIX);
  const home = join(dir, 'home');
  let driver: Driver;
  try {
    driver = await factory(home, opts);
  } catch (err) {
    if (err instanceof NotSupportedError) {
      t.skip(`driver not supported here: ${err.message}`);
      return undefined;
    }
    throw err;
  }
  return {
    dir,
    home,
    driver,
    async done() {
      await driver.cleanup();
      assert.deepEqual(await mountsUnder(dir), [], 'no mount left below the test dir after cleanup');
    },
  };
}

export async function mountsUnder(dir: string): Promise<string[]> {
  return (await mountPoints()).filter((m) => m === dir || m.startsWith(dir + '/'));
}

/** Everything below `root` as "path type [content|target]" lines, sorted. */
export async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(root, r));
      if (st.isDirectory()) {
        out.push(`${r}/`);
        await walk(r);
      } else if (st.isSymbolicLink()) out.push(`${r} -> ${await readlink(join(root, r))}`);
      else if (st.isFile()) out.push(`${r} = ${await readFile(join(root, r), 'utf8')}`);
      else out.push(`${r} (special)`);
    }
  };
  await walk('');
  return out;
}

const baseEntries: TarEntry[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/hostname', content: 'base\n' },
  { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n', mode: 0o600 },
  { name: 'bin/', type: 'directory', mode: 0o711 },
  { name: 'bin/sh', content: '#!fake shell\n', mode: 0o755 },
  { name: 'bin/ash', type: 'symlink', linkname: 'sh' },
];
const baseTree = ['bin/', 'bin/ash -> sh', 'bin/sh = #!fake shell\n', 'etc/', 'etc/hostname = base\n', 'etc/passwd = root:x:0:0::/root:/bin/sh\n'];

/** Where drivers differ by design, and the suite with them. */
export interface DriverTraits {
  /** A child image shares its parent's unchanged files by inode (overlay's hardlinks, overlay2's lowers); vfs copies. */
  sharesInodes: boolean;
  /** get() of an image mounts an overlay (overlay2: diff/ as upper, writable as c/s's) instead of returning a plain dir. */
  imageGetMounts: boolean;
  /** get() of a container layer is an overlay mount (not vfs: a plain dir). */
  containerGetMounts: boolean;
  /** Names the driver keeps in its home beside the layers' dirs (overlay2: 'l', the short links). */
  homeEntries: readonly string[];
}

const overlayTraits: DriverTraits = { sharesInodes: true, imageGetMounts: false, containerGetMounts: true, homeEntries: [] };

/** Registers the conformance tests for the driver made by `factory`. */
export function driverSuite(name: string, factory: DriverFactory, traits: DriverTraits = overlayTraits): void {
  const layerDirs = async (home: string): Promise<string[]> => (await readdir(home)).filter((n) => !traits.homeEntries.includes(n));
  const it = (title: string, fn: (t: TestContext) => Promise<void>) => test(`${name}: ${title}`, fn);

  it('create empty: an image with an empty root that get() returns and remove() deletes', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    assert.equal(await d.exists('empty'), false);
    await d.create('empty');
    assert.equal(await d.exists('empty'), true);
    const path = await d.get('empty');
    assert.deepEqual(await readdir(path), []);
    assert.equal((await lstat(path)).mode & 0o7777, 0o755);
    await d.put('empty');
    await d.remove('empty');
    assert.equal(await d.exists('empty'), false);
    await s.done();
  });

  it('create base: applyDiff lays a base layer down and returns the content bytes', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('base');
    const bytes = await d.applyDiff('base', undefined, await tarStream(baseEntries));
    assert.equal(bytes, 'base\n'.length + 'root:x:0:0::/root:/bin/sh\n'.length + '#!fake shell\n'.length);
    const root = await d.get('base');
    assert.deepEqual(await listTree(root), baseTree);
    assert.equal((await lstat(join(root, 'etc/passwd'))).mode & 0o7777, 0o600);
    assert.equal((await lstat(join(root, 'bin'))).mode & 0o7777, 0o711);
    await d.put('base');
    await s.done();
  });

  it('create snapshot: an image on the base shares unchanged files by inode and leaves the base untouched', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('base');
    await d.applyDiff('base', '', await tarStream(baseEntries));
    await d.create('snap', 'base');
    await d.applyDiff('snap', 'base', await tarStream([{ name: 'etc/hostname', content: 'snap\n' }, { name: 'etc/motd', content: 'hello\n' }]));
    const base = await d.get('base');
    const snap = await d.get('snap');
    assert.notEqual(base, snap);
    assert.deepEqual(await listTree(snap), ['bin/', 'bin/ash -> sh', 'bin/sh = #!fake shell\n', 'etc/', 'etc/hostname = snap\n', 'etc/motd = hello\n', 'etc/passwd = root:x:0:0::/root:/bin/sh\n']);
    assert.deepEqual(await listTree(base), baseTree, 'the base did not change');
    if (traits.sharesInodes) assert.equal((await lstat(join(snap, 'bin/sh'))).ino, (await lstat(join(base, 'bin/sh'))).ino, 'unchanged files are shared');
    else assert.notEqual((await lstat(join(snap, 'bin/sh'))).ino, (await lstat(join(base, 'bin/sh'))).ino, 'a full copy');
    // Through a mount overlayfs reports a copied-up directory's inode as its origin's
    // (constant st_ino), so only trees read without a mount show the directories apart.
    if (!traits.imageGetMounts) assert.notEqual((await lstat(join(snap, 'etc'))).ino, (await lstat(join(base, 'etc'))).ino, 'directories are not');
    await d.put('snap');
    await d.put('base');
    await s.done();
  });

  it('a container layer over an image sees its files, and writes to it stay out of the image', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('base');
    await d.applyDiff('base', undefined, await tarStream(baseEntries));
    await d.createReadWrite('ctr', 'base');
    const merged = await d.get('ctr');
    assert.deepEqual(await listTree(merged), baseTree);
    await writeFile(join(merged, 'etc/hostname'), 'ctr\n');
    await writeFile(join(merged, 'new'), 'n');
    assert.equal(await readFile(join(merged, 'etc/hostname'), 'utf8'), 'ctr\n');
    assert.deepEqual(await listTree(await d.get('base')), baseTree);
    await d.put('base');
    await d.put('ctr');
    // The writes persist across mounts.
    const again = await d.get('ctr');
    assert.equal(await readFile(join(again, 'new'), 'utf8'), 'n');
    await d.put('ctr');
    await s.done();
  });

  it('a chain of 50 image layers reads back through a mounted container layer', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    let parent: string | undefined;
    for (let i = 0; i < 50; i++) {
      const id = `layer-${i}`;
      await d.create(id, parent);
      const entries: TarEntry[] = [{ name: `f${i}`, content: `layer ${i}\n` }, { name: 'top', content: `${i}\n` }];
      await d.applyDiff(id, parent, await tarStream(entries));
      parent = id;
    }
    await d.createReadWrite('ctr', parent);
    const merged = await d.get('ctr');
    const names = (await readdir(merged)).sort();
    assert.deepEqual(names, [...Array.from({ length: 50 }, (_, i) => `f${i}`), 'top'].sort());
    for (let i = 0; i < 50; i++) assert.equal(await readFile(join(merged, `f${i}`), 'utf8'), `layer ${i}\n`);
    assert.equal(await readFile(join(merged, 'top'), 'utf8'), '49\n');
    await d.put('ctr');
    await s.done();
  });

  it('invalid ids are refused with InvalidId before anything is touched', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('ok');
    const before = await listTree(s.home);
    const bad = ['', '.', '..', 'a/b', '../escape', '/abs', 'nul\0byte', 'x'.repeat(256), 'é'.repeat(128), 'lone\ud800'];
    const code = { code: 'ERR_OGD_INVALID_ID' };
    for (const id of bad) {
      await assert.rejects(d.create(id), code, JSON.stringify(id));
      await assert.rejects(d.create('child', id === '' ? '..' : id), code);
      await assert.rejects(d.get(id), code);
      await assert.rejects(d.put(id), code);
      await assert.rejects(d.remove(id), code);
      await assert.rejects(d.exists(id), code);
      await assert.rejects(d.getMetadata(id), code);
      await assert.rejects(d.applyDiff(id, undefined, await tarStream([{ name: 'x' }])), code);
      if (id !== '') await assert.rejects(d.applyDiff('ok', id, await tarStream([{ name: 'x' }])), code);
    }
    assert.deepEqual(await listTree(s.home), before, 'the store is exactly as it was');
    // 255 bytes is the longest name a directory entry can have, so it is accepted.
    await d.create('y'.repeat(255));
    assert.equal(await d.exists('y'.repeat(255)), true);
    await s.done();
  });

  it('missing layers are LayerNotFound, existing ids LayerExists, and a missing parent creates nothing', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    const notFound = { code: 'ERR_OGD_LAYER_NOT_FOUND' };
    await assert.rejects(d.get('nope'), notFound);
    await assert.rejects(d.put('nope'), notFound);
    await assert.rejects(d.remove('nope'), notFound);
    await assert.rejects(d.getMetadata('nope'), notFound);
    await assert.rejects(d.applyDiff('nope', undefined, await tarStream([])), notFound);
    await assert.rejects(d.create('child', 'nope'), notFound);
    assert.equal(await d.exists('child'), false);
    await d.create('a');
    await assert.rejects(d.create('a'), { code: 'ERR_OGD_LAYER_EXISTS' });
    await assert.rejects(d.createReadWrite('a', 'a'), { code: 'ERR_OGD_LAYER_EXISTS' });
    await assert.rejects(d.create('b', undefined, { storageOpt: { size: '10G' } }), { code: 'ERR_OGD_INVALID_OPTION' });
    assert.equal(await d.exists('b'), false);
    assert.deepEqual(await layerDirs(s.home), ['a']);
    await s.done();
  });

  it('remove (and applyDiff) refuse a mounted layer and an image under another layer, changing nothing', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('img');
    await d.applyDiff('img', undefined, await tarStream(baseEntries));
    await d.createReadWrite('ctr', 'img');
    const merged = await d.get('ctr');
    await writeFile(join(merged, 'kept'), 'k');
    await assert.rejects(d.remove('ctr'), { code: 'ERR_OGD_LAYER_IN_USE' });
    await assert.rejects(d.remove('img'), { code: 'ERR_OGD_LAYER_IN_USE' });
    assert.equal(await readFile(join(merged, 'kept'), 'utf8'), 'k');
    await d.put('ctr');
    await assert.rejects(d.remove('img'), { code: 'ERR_OGD_LAYER_IN_USE' }, 'still the lower of ctr');
    await assert.rejects(d.applyDiff('img', undefined, await tarStream([{ name: 'late', content: 'x' }])), { code: 'ERR_OGD_LAYER_IN_USE' }, 'an image under a layer is not changed');
    assert.deepEqual(await listTree(await d.get('img')), baseTree);
    await d.put('img');
    await d.remove('ctr');
    await d.remove('img');
    assert.deepEqual(await layerDirs(s.home), []);
    await s.done();
  });

  it(`put of a layer that is not mounted is harmless; get of an image ${traits.imageGetMounts ? 'mounts it' : 'mounts nothing'}`, async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('img');
    await d.create('ctr', 'img');
    await d.put('ctr');
    await d.put('ctr');
    await d.put('img');
    const before = await mountsUnder(s.dir);
    if (traits.imageGetMounts) {
      const path = await d.get('img');
      assert.equal(path, (await d.getMetadata('img'))['MergedDir']);
      assert.ok((await mountsUnder(s.dir)).includes(path));
      await d.put('img');
    } else {
      assert.equal(await d.get('img'), (await d.getMetadata('img'))['RootDir']);
    }
    assert.deepEqual(await mountsUnder(s.dir), before);
    const merged = await d.get('ctr');
    await d.put('ctr');
    await d.put('ctr');
    assert.ok(!(await mountsUnder(s.dir)).includes(merged));
    await s.done();
  });

  // containers/storage's graphtest writes its layers through Get of layers made by
  // Create (DiffApply, Changes, DeepLayerRead): every driver's get() of an image is writable.
  it('layers made by create and written through get() diff, apply and read back deep (graphtest DiffApply, Changes, DeepLayerRead)', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    const write = async (id: string, fn: (root: string) => Promise<void>) => {
      const root = await d.get(id);
      try {
        await fn(root);
      } finally {
        await d.put(id);
      }
    };
    await d.create('l0');
    await write('l0', async (root) => {
      await writeFile(join(root, 'hostname'), 'l0\n');
      await writeFile(join(root, 'keep'), 'keep\n');
      await writeFile(join(root, 'gone'), 'gone\n');
      await mkdir(join(root, 'etc'), { mode: 0o755 });
      await writeFile(join(root, 'etc/motd'), 'hi\n');
    });
    await d.create('l1', 'l0');
    await write('l1', async (root) => {
      assert.equal(await readFile(join(root, 'keep'), 'utf8'), 'keep\n', 'l1 sees l0');
      await writeFile(join(root, 'hostname'), 'l1\n');
      await writeFile(join(root, 'new'), 'new\n');
      await rm(join(root, 'gone'));
    });
    // Changes: exactly what was written, the parent's untouched files not listed.
    const changes = (await d.changes('l1', 'l0')).sort((a, b) => (a.path < b.path ? -1 : 1));
    assert.deepEqual(changes, [
      { path: '/gone', kind: 'D' },
      { path: '/hostname', kind: 'C' },
      { path: '/new', kind: 'A' },
    ]);
    assert.equal(await d.diffSize('l1', 'l0'), 'l1\n'.length + 'new\n'.length);
    // DiffApply: l1's diff applied on a fresh layer over l0 reads back as l1.
    const tar = await buffer(await d.diff('l1', 'l0'));
    await d.create('l1-copy', 'l0');
    await d.applyDiff('l1-copy', 'l0', Readable.from([tar]));
    const l1Tree = ['etc/', 'etc/motd = hi\n', 'hostname = l1\n', 'keep = keep\n', 'new = new\n'];
    await write('l1', async (root) => assert.deepEqual(await listTree(root), l1Tree));
    await write('l1-copy', async (root) => assert.deepEqual(await listTree(root), l1Tree));
    // The base's own diff (no parent) is its whole tree, as written through get().
    await d.create('l0-copy');
    await d.applyDiff('l0-copy', undefined, await d.diff('l0'));
    await write('l0-copy', async (root) => assert.deepEqual(await listTree(root), ['etc/', 'etc/motd = hi\n', 'gone = gone\n', 'hostname = l0\n', 'keep = keep\n']));
    // DeepLayerRead: a chain written layer by layer through get(), read from the top.
    let parent = 'l1';
    for (let i = 2; i <= 6; i++) {
      await d.create(`l${i}`, parent);
      await write(`l${i}`, async (root) => {
        await writeFile(join(root, `f${i}`), `${i}\n`);
        await writeFile(join(root, 'etc/motd'), `motd ${i}\n`);
      });
      parent = `l${i}`;
    }
    await write('l6', async (root) => {
      assert.deepEqual(await listTree(root), ['etc/', 'etc/motd = motd 6\n', 'f2 = 2\n', 'f3 = 3\n', 'f4 = 4\n', 'f5 = 5\n', 'f6 = 6\n', 'hostname = l1\n', 'keep = keep\n', 'new = new\n']);
    });
    await write('l0', async (root) => assert.deepEqual(await listTree(root), ['etc/', 'etc/motd = hi\n', 'gone = gone\n', 'hostname = l0\n', 'keep = keep\n'], 'the base is as written'));
    await s.done();
  });

  it('100 concurrent get/put of one layer share one mount, gone at the end', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    await d.create('img');
    await d.create('ctr', 'img');
    const paths = await Promise.all(Array.from({ length: 100 }, () => d.get('ctr')));
    assert.equal(new Set(paths).size, 1);
    const merged = paths[0]!;
    const mountsOf = async (): Promise<number> => (await mountsUnder(s.dir)).filter((m) => m === merged).length;
    assert.equal(await mountsOf(), traits.containerGetMounts ? 1 : 0, 'one mount, not a stack');
    await Promise.all(paths.slice(1).map(() => d.put('ctr')));
    assert.equal(await mountsOf(), traits.containerGetMounts ? 1 : 0, 'still mounted: one reference left');
    await d.put('ctr');
    assert.ok(!(await mountsUnder(s.dir)).includes(merged));
    // Interleaved: each caller mounts, checks, unmounts.
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const p = await d.get('ctr');
        assert.ok((await readdir(p)) !== undefined);
        await d.put('ctr');
      }),
    );
    assert.ok(!(await mountsUnder(s.dir)).includes(merged));
    await s.done();
  });

  it('overlapping create/remove calls: one create of an id wins; a child never outlives its removed parent', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => d.create('same')));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'ERR_OGD_LAYER_EXISTS');
    for (let round = 0; round < 10; round++) {
      await d.create(`img${round}`);
      const [removed, created] = await Promise.allSettled([d.remove(`img${round}`), d.create(`child${round}`, `img${round}`)]);
      // Either the remove ran first (no parent left: the child is refused) or the child did (the image is in use).
      if (removed.status === 'fulfilled') {
        assert.equal(created.status, 'rejected');
        assert.equal(await d.exists(`child${round}`), false);
      } else {
        assert.equal((removed.reason as { code?: string }).code, 'ERR_OGD_LAYER_IN_USE');
        assert.equal(created.status, 'fulfilled');
        assert.equal(await d.exists(`img${round}`), true);
      }
    }
    await s.done();
  });

  it('a failed or aborted applyDiff leaves the layer exactly as it was', async (t) => {
    const s = await openStore(t, factory);
    if (!s) return;
    const d = s.driver;
    const big = await tarBytes([...baseEntries, { name: 'etc/big', content: 'z'.repeat(100_000) }]);
    await d.create('base');
    const baseBefore = await listTree(s.home);
    await assert.rejects(d.applyDiff('base', undefined, failingSource(big, 3000)));
    assert.deepEqual(await listTree(s.home), baseBefore, 'base layer unchanged (staged, not applied in place)');
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(d.applyDiff('base', undefined, await tarStream(baseEntries), { signal: ac.signal }), { code: 'ABORT_ERR' });
    assert.deepEqual(await listTree(s.home), baseBefore);

    await d.applyDiff('base', undefined, await tarStream(baseEntries));
    await d.create('child', 'base');
    const childBefore = await listTree(s.home);
    await assert.rejects(d.applyDiff('child', 'base', failingSource(big, 3000)));
    assert.deepEqual(await listTree(s.home), childBefore, 'child unchanged');
    await d.applyDiff('child', 'base', await tarStream([{ name: 'c', content: 'c' }]));
    assert.deepEqual(await readdir(join(await d.get('child'))), ['bin', 'c', 'etc']);
    await d.put('child');
    await s.done();
  });
}
