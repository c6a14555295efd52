// The addon's compound calls for layer export (native/scan_tree.cc): scanTree held
// to the independent manifest oracle (test/helpers/manifest.py) on the fixture tree
// with every entry type, non-UTF-8 names and a path deeper than PATH_MAX (xattrs
// read both ways native/tree_walk.cc reads them), and readFiles held to the
// contents the oracle hashes.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../lib/native.js';
import { tempDir } from './helpers/sandbox.js';
import { makeFixtureTree, removeDeepTrees, type FixtureTree } from './helpers/fixture-tree.js';
import { manifest, showPath, type ManifestEntry } from './helpers/tree.js';

const typeNames: Record<number, ManifestEntry['type']> = {
  0o100000: 'file',
  0o040000: 'dir',
  0o120000: 'symlink',
  0o020000: 'char',
  0o060000: 'block',
  0o010000: 'fifo',
  0o140000: 'socket',
};

/** Runs `body` on a fresh fixture tree, removed afterwards (fs.rm cannot: it is deeper than PATH_MAX). */
async function withFixture(t: TestContext, body: (root: string, fixture: FixtureTree) => Promise<void>): Promise<void> {
  const root = join(await tempDir(t), 'tree');
  await mkdir(root);
  try {
    await body(root, await makeFixtureTree(root));
  } finally {
    await removeDeepTrees(root);
  }
}

/** Component-wise bytewise order: a directory, then its subtree, then its next sibling. */
function byComponents(a: Buffer, b: Buffer): number {
  const pa = a.toString('latin1').split('/');
  const pb = b.toString('latin1').split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i]!, 'latin1'), Buffer.from(pb[i]!, 'latin1'));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

test('scanTree reports every entry as the manifest oracle sees it, in component-wise sorted order', async (t) => {
  await withFixture(t, async (root, fixture) => {
    const [entries, oracle] = await Promise.all([native.scanTree(root), manifest(root)]);

    const expected = [...oracle.values()].filter((e) => e.path !== '');
    assert.equal(entries.length, expected.length, 'one entry per manifest entry (the root excluded)');
    const order = expected.map((e) => Buffer.from(e.path, 'hex')).sort(byComponents).map((b) => b.toString('hex'));
    assert.deepEqual(
      entries.map((e) => Buffer.from(e.path, 'latin1').toString('hex')),
      order,
      'children sorted bytewise, each directory right before its subtree',
    );

    let sawDeep = false;
    for (const e of entries) {
      const hex = Buffer.from(e.path, 'latin1').toString('hex');
      const m = oracle.get(hex);
      assert.ok(m, `${showPath(hex)} is in the manifest`);
      const where = showPath(hex);
      const mode = Number(e.mode);
      assert.equal(typeNames[mode & 0o170000], m.type, `${where}: type`);
      assert.equal(mode & 0o7777, m.mode, `${where}: mode`);
      assert.equal(Number(e.uid), m.uid, `${where}: uid`);
      assert.equal(Number(e.gid), m.gid, `${where}: gid`);
      assert.equal(String(e.mtimeNs), m.mtime, `${where}: mtime to the nanosecond`);
      assert.equal(Number(e.ino), m.ino, `${where}: inode`);
      assert.equal(Number(e.nlink), m.nlink, `${where}: link count`);
      if (m.type === 'file') assert.equal(Number(e.size), m.size, `${where}: size`);
      if (m.type === 'symlink') assert.equal(e.linkTarget?.toString('hex'), m.target, `${where}: symlink target`);
      else assert.equal(e.linkTarget, undefined, `${where}: no target`);
      if (m.rdev) {
        const rdev = e.rdev;
        const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
        const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
        assert.deepEqual([major, minor], m.rdev, `${where}: device numbers`);
      }
      const xattrs = Object.fromEntries(e.xattrs.map(([k, v]) => [k, v.toString('hex')]));
      assert.deepEqual(xattrs, m.xattrs, `${where}: xattrs`);
      const names = e.xattrs.map(([k]) => k);
      assert.deepEqual(names, [...names].sort(), `${where}: xattrs sorted by name`);
      if (e.path.length > 4096) sawDeep = true;
    }
    assert.ok(sawDeep, `a path deeper than PATH_MAX was scanned (deepest ${fixture.deepestPath} bytes)`);
    assert.ok(entries.some((e) => /[\x80-\xff]/.test(e.path)), 'non-UTF-8 names are kept as raw bytes');
    // Kernels before 6.13 (no getxattrat/listxattrat) read xattrs through /proc/self/fd: the same entries.
    assert.deepEqual(await native.scanTreeByProc(root), entries, 'xattrs read through /proc agree');
  });
});

test('readFiles returns the files end to end, deep paths included, and reports a file that ended early', async (t) => {
  await withFixture(t, async (root) => {
    const [entries, oracle] = await Promise.all([native.scanTree(root), manifest(root)]);
    const files = entries.filter((e) => (Number(e.mode) & 0o170000) === 0o100000);
    assert.ok(files.length > 20);
    const { data, shrunk } = await native.readFiles(
      root,
      files.map((f) => f.path),
      files.map((f) => Number(f.size)),
    );
    assert.equal(shrunk, -1);
    assert.equal(data.length, files.reduce((n, f) => n + Number(f.size), 0));
    let at = 0;
    for (const f of files) {
      const hex = Buffer.from(f.path, 'latin1').toString('hex');
      const size = Number(f.size);
      const digest = createHash('sha256').update(data.subarray(at, at + size)).digest('hex');
      assert.equal(digest, oracle.get(hex)?.sha256, `${showPath(hex)}: content`);
      at += size;
    }

    // Asking for more than a file holds: reading stops there and says which one.
    const short = await native.readFiles(root, ['etc/hostname', 'etc/empty', 'etc/hostname'], [8, 1, 8]);
    assert.equal(short.shrunk, 1);
    assert.equal(short.data.subarray(0, 8).toString(), 'fixture\n');
    assert.equal((await native.readFiles(root, [], [])).data.length, 0);

    // Framed: each file behind its frame and padded to 512 bytes, the last frame after the last file.
    const some = files.slice(0, 5);
    const frameBytes = some.map((_, i) => Buffer.alloc(i * 7 + 1, 0x41 + i)).concat([Buffer.from('tail')]);
    const framed = await native.readFiles(
      root,
      some.map((f) => f.path),
      some.map((f) => Number(f.size)),
      { bytes: Buffer.concat(frameBytes), lengths: frameBytes.map((b) => b.length) },
    );
    // The expected content is the unframed read above, already checked against the oracle.
    const expected: Buffer[] = [];
    let from = 0;
    for (const [i, f] of some.entries()) {
      const content = data.subarray(from, from + Number(f.size));
      from += content.length;
      expected.push(frameBytes[i]!, content, Buffer.alloc((512 - (content.length % 512)) % 512));
    }
    expected.push(frameBytes.at(-1)!);
    assert.ok(framed.data.equals(Buffer.concat(expected)), 'framed bytes: frame, content, padding, ..., last frame');
    assert.throws(() => native.readFiles(root, ['a'], [1], { bytes: Buffer.alloc(3), lengths: [1, 1] }), { code: 'ERR_INVALID_ARG_VALUE' });
  });
});

test('readFiles does not follow a final symlink; scanTree and readFiles fail like fs on a missing path', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'real'), 'data');
  await symlink('real', join(dir, 'link'));
  const loop = await native.readFiles(dir, ['link'], [4]).then(
    () => assert.fail('read through a symlink'),
    (e: unknown) => e as NodeJS.ErrnoException,
  );
  assert.equal(loop.code, 'ELOOP');
  const missing = await native.readFiles(dir, ['nope'], [1]).then(
    () => assert.fail('read a missing file'),
    (e: unknown) => e as NodeJS.ErrnoException,
  );
  assert.equal(missing.code, 'ENOENT');
  assert.equal(missing.path, join(dir, 'nope'));
  const noRoot = await native.scanTree(join(dir, 'absent')).then(
    () => assert.fail('scanned a missing root'),
    (e: unknown) => e as NodeJS.ErrnoException,
  );
  assert.equal(noRoot.code, 'ENOENT');
  assert.match(noRoot.stack ?? '', /native-scan\.test/, 'the error carries the caller stack');
  assert.throws(() => native.readFiles(dir, ['a'], [1, 2]), { code: 'ERR_INVALID_ARG_VALUE' });
});
