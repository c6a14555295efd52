// At scale (issue 9): changes, diff and diffSize of a child image, and remove, must
// not cost the JS thread anything per entry of the layer. Before, the compare of two
// roots issued an lstat (and a readdir per directory) from JS for every entry of both
// trees, queued all at once, and remove went through fs.rm's per-entry Promises: a
// 1M-entry layer took minutes and gigabytes. Counted here structurally (the libuv fs
// requests JS made while the operation ran), not timed, so a loaded machine cannot
// make it flaky; bench/scale.ts measures the time and memory at 100k-1M entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import * as native from '../lib/native.js';
import { createDriver } from '../lib/index.js';
import { pack } from './helpers/tar-builder.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';

/** The fs requests (Promise or callback, each a libuv pool trip) JS starts while `op` runs. */
async function fsRequestsDuring<T>(op: () => Promise<T>): Promise<{ result: T; requests: number }> {
  let requests = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === 'FSREQPROMISE' || type === 'FSREQCALLBACK') requests++;
    },
  });
  hook.enable();
  try {
    const result = await op();
    return { result, requests };
  } finally {
    hook.disable();
  }
}

async function drain(stream: Readable): Promise<number> {
  let bytes = 0;
  for await (const c of stream) bytes += (c as Buffer).length;
  return bytes;
}

const dirs = 40;
const filesPerDir = 100;

/** A parent image of dirs × filesPerDir empty files, and a child changing a handful of them. */
async function childImage(home: string) {
  const d = await createDriver('overlay', home);
  await d.create('parent');
  const root = (await d.getMetadata('parent')).RootDir!;
  for (let i = 0; i < dirs; i++) {
    const dir = join(root, `d${String(i).padStart(3, '0')}`);
    await mkdir(dir);
    await Promise.all(Array.from({ length: filesPerDir }, (_, k) => writeFile(join(dir, `f${String(k).padStart(3, '0')}`), '')));
  }
  await symlink('d000', join(root, 'link'));
  await d.create('child', 'parent');
  const layer = await pack([
    { name: 'd005/f010', content: 'changed\n' },
    { name: 'd005/new', content: 'added\n' },
    { name: 'd017/.wh.f003', content: '' },
    { name: 'd039/', type: 'directory', mode: 0o700 },
    { name: 'zz/', type: 'directory', mode: 0o755 },
    { name: 'zz/a', content: 'a' },
  ]);
  await d.applyDiff('child', 'parent', (async function* () {
    yield layer;
  })());
  return d;
}

test('changes, diffSize and diff of a child image: no fs call per entry from the JS thread', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await childImage(join(dir, 'home'));
  try {
    const entries = dirs * (filesPerDir + 1);
    const changes = await fsRequestsDuring(() => d.changes('child', 'parent'));
    assert.deepEqual(
      changes.result.map((c) => `${c.kind} ${c.path}`),
      ['C /d005', 'C /d005/f010', 'A /d005/new', 'C /d017', 'D /d017/f003', 'C /d039', 'A /zz', 'A /zz/a'],
    );
    const size = await fsRequestsDuring(() => d.diffSize('child', 'parent'));
    assert.equal(size.result, 'changed\n'.length + 'added\n'.length + 1);
    const diff = await fsRequestsDuring(async () => drain(await d.diff('child', 'parent')));
    assert.ok(diff.result > 0);
    // What is left is per layer and per change (metadata files, the export's reads), not per entry.
    for (const [what, n] of [['changes', changes.requests], ['diffSize', size.requests], ['diff', diff.requests]] as const) {
      assert.ok(n < 50, `${what}: ${n} fs requests from JS for a layer of ${entries} entries`);
    }
    // remove: one native job, not an fs call per entry either.
    const removed = await fsRequestsDuring(() => d.remove('child'));
    assert.ok(removed.requests < 50, `remove: ${removed.requests} fs requests from JS for ${entries} entries`);
    assert.equal(await d.exists('child'), false);
  } finally {
    await d.cleanup();
  }
});

test('removeTree: every kind of entry, deep and wide, nothing followed; a missing path is fine', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const outside = join(dir, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'keep'), 'keep');
  const tree = join(dir, 'tree');
  let deep = tree;
  for (let i = 0; i < 30; i++) deep = join(deep, `level-${i}-${'x'.repeat(100)}`);
  await mkdir(deep, { recursive: true });
  await writeFile(join(deep, 'bottom'), 'b');
  await mkdir(join(tree, 'wide'));
  for (let i = 0; i < 3000; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, k) => writeFile(join(tree, 'wide', `a-rather-long-name-to-fill-getdents-buffers-${i + k}`), '')));
  }
  await mkdir(join(tree, 'wide', 'sub'));
  await writeFile(join(tree, 'wide', 'sub', 'f'), 'f');
  await symlink(outside, join(tree, 'to-outside'));
  await symlink(join(outside, 'keep'), join(tree, 'to-keep'));
  await native.mknod(join(tree, 'fifo'), 0o010644);
  await native.mknod(join(tree, 'chr'), 0o020644, 1, 3);
  await mkdir(join(tree, 'locked'), { mode: 0o000 });
  await writeFile(join(tree, 'plain'), 'p');
  const removed = await native.removeTree(tree);
  assert.equal(removed, 30 + 2 + 3000 + 2 + 2 + 2 + 1 + 1);
  await assert.rejects(lstat(tree), { code: 'ENOENT' });
  assert.deepEqual(await readdir(outside), ['keep'], 'symlinks were removed, not followed');
  assert.equal(await native.removeTree(tree), 0, 'a missing path is not an error');
  await writeFile(join(dir, 'file'), 'f');
  assert.equal(await native.removeTree(join(dir, 'file')), 0);
  await assert.rejects(lstat(join(dir, 'file')), { code: 'ENOENT' });
});

test('removeTree: a mount point below is not entered (EBUSY), what is mounted there stays', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  const mnt = join(tree, 'a', 'mnt');
  await mkdir(mnt, { recursive: true });
  await writeFile(join(tree, 'a', 'before'), '');
  const bindSource = join(dir, 'source');
  await mkdir(bindSource);
  await writeFile(join(bindSource, 'precious'), 'p');
  // A bind mount of the same filesystem: same device, another mount.
  execFileSync('mount', ['--bind', bindSource, mnt]);
  try {
    await assert.rejects(native.removeTree(tree), { code: 'EBUSY', syscall: 'rmdir', path: mnt });
    assert.deepEqual(await readdir(bindSource), ['precious']);
  } finally {
    execFileSync('umount', [mnt]);
  }
  await native.removeTree(tree);
  await assert.rejects(lstat(tree), { code: 'ENOENT' });
});

test('compareTrees: an abort stops the compare with AbortError; progress counts the entries visited', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const a = join(dir, 'a');
  await mkdir(join(a, 'd'), { recursive: true });
  await Promise.all(Array.from({ length: 300 }, (_, k) => writeFile(join(a, 'd', `f${k}`), '')));
  const b = join(dir, 'b');
  await native.copyTree(a, b, { mode: 'hardlink' });
  await writeFile(join(b, 'new'), 'n');
  await assert.rejects(native.compareTrees(b, a, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
  const found = await native.compareTrees(b, a);
  assert.deepEqual(found.changes.map((c) => `${c.kind} ${c.path}`), ['A new']);
  assert.equal(found.entries, 302);
  await assert.rejects(native.compareTrees(join(dir, 'missing'), a), { code: 'ENOENT', syscall: 'open' });
});
