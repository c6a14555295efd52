// Round trip: for seeded random layer pairs (A, B = A changed) and for pairs made
// from a real Debian rootfs, the export of B against A applied onto a hardlink copy
// of A gives B entry by entry. The same pass checks the change list and DiffSize
// against an oracle computed from manifests. To stay fast, all cases live under one
// temp dir and manifest.py runs once over all of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile, unlink, chmod, link, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../lib/native.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges } from '../lib/archive/export.js';
import { changesSize } from '../lib/archive/size.js';
import { applyTar } from '../lib/archive/apply.js';
import { tempDir, skipUnlessRoot } from './helpers/sandbox.js';
import { manifest, compareManifests, type CompareOptions } from './helpers/tree.js';
import { randomTree, mutateTree } from './helpers/random-layers.js';
import { subManifest, expectedChanges, expectedSize, changeLines } from './helpers/changes-oracle.js';
import { debianRootfs } from './helpers/rootfs.js';

// 100 by default (the suite's time budget); OGD_STRESS=1 runs 1,000.
const CASES = process.env.OGD_STRESS === '1' ? 1000 : 100;
// Directory mtimes follow whatever was created in them last; the tar sets those of the directories it carries.
const treeCompare: CompareOptions = { mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo', 'socket'], rootFields: ['mode', 'uid', 'gid', 'xattrs'] };

async function changesOf(a: string, b: string) {
  const set = await changesDirs(b, a);
  return { set, changes: changeLines(set.changes), size: changesSize(set) };
}

async function applyCopy(a: string, c: string, set: Awaited<ReturnType<typeof changesOf>>['set']): Promise<void> {
  await native.copyTree(a, c, { mode: 'hardlink' });
  await applyTar(c, exportChanges(set));
}

test(`round trip of ${CASES} seeded random layer pairs: diff(B, A) applied to a copy of A is B`, async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const results: Array<Awaited<ReturnType<typeof changesOf>>> = [];
  for (let seed = 1; seed <= CASES; seed++) {
    const base = join(dir, String(seed));
    await mkdir(join(base, 'A'), { recursive: true });
    await randomTree(join(base, 'A'), seed, 4 + (seed % 12));
    await native.copyTree(join(base, 'A'), join(base, 'B'), { mode: 'hardlink' });
    await mutateTree(join(base, 'B'), seed, 1 + (seed % 8));
    results.push(await changesOf(join(base, 'A'), join(base, 'B')));
  }
  // The oracle's view of A and B as the walker saw them (before C adds names to A's inodes).
  const before = await manifest(dir);
  for (let seed = 1; seed <= CASES; seed++) {
    const base = join(dir, String(seed));
    await applyCopy(join(base, 'A'), join(base, 'C'), results[seed - 1]!.set);
  }
  const after = await manifest(dir);
  const failures: string[] = [];
  let kinds = '';
  for (let seed = 1; seed <= CASES; seed++) {
    const [ma, mb] = ['A', 'B'].map((x) => subManifest(before, `${seed}/${x}`)) as [typeof before, typeof before];
    const mc = subManifest(after, `${seed}/C`);
    const got = results[seed - 1]!;
    const diffs = compareManifests(mc, mb, treeCompare);
    if (diffs.length > 0) failures.push(`seed ${seed}: applied tree differs from B:\n  ${diffs.slice(0, 8).join('\n  ')}`);
    const want = expectedChanges(ma, mb);
    if (JSON.stringify(got.changes) !== JSON.stringify(want)) failures.push(`seed ${seed}: changes ${JSON.stringify(got.changes)} != expected ${JSON.stringify(want)}`);
    const wantSize = expectedSize(ma, mb);
    if (got.size !== wantSize) failures.push(`seed ${seed}: diffSize ${got.size} != ${wantSize}`);
    kinds += got.changes.map((l) => l[0]).join('');
  }
  assert.deepEqual(failures, []);
  // The generator reaches every kind of change.
  for (const k of ['A', 'C', 'D']) assert.ok(kinds.includes(k), `some case has a ${k} change`);
});

test('round trip of real layers made from a Debian rootfs', async (t) => {
  if (skipUnlessRoot(t)) return;
  const rootfs = await debianRootfs(t);
  if (rootfs === undefined) return;
  const dir = await tempDir(t);
  const [a, b, c] = ['A', 'B', 'C'].map((x) => join(dir, x)) as [string, string, string];
  await native.copyTree(rootfs, a, { mode: 'hardlink' });
  // B: what a package upgrade and a cleanup do to a rootfs.
  await native.copyTree(a, b, { mode: 'hardlink' });
  await rm(join(b, 'usr/share/doc'), { recursive: true, force: true });
  await rm(join(b, 'usr/share/man'), { recursive: true, force: true });
  await mkdir(join(b, 'usr/share/man'));
  await unlink(join(b, 'etc/passwd'));
  await writeFile(join(b, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\napp:x:1000:1000::/home/app:/bin/sh\n');
  await chmod(join(b, 'etc/passwd'), 0o644);
  await mkdir(join(b, 'opt/app/bin'), { recursive: true });
  await writeFile(join(b, 'opt/app/bin/run'), '#!/bin/sh\nexec true\n', { mode: 0o755 });
  await link(join(b, 'opt/app/bin/run'), join(b, 'opt/app/bin/run2'));
  const libs = (await readdir(join(b, 'usr/lib/x86_64-linux-gnu')).catch(() => [])).filter((n) => n.endsWith('.so.6')).slice(0, 3);
  for (const n of libs) await rm(join(b, 'usr/lib/x86_64-linux-gnu', n), { force: true });
  const got = await changesOf(a, b);
  const [ma, mb] = await Promise.all([manifest(a), manifest(b)]);
  await applyCopy(a, c, got.set);
  const mc = await manifest(c);
  assert.deepEqual(compareManifests(mc, mb, treeCompare), []);
  assert.deepEqual(got.changes, expectedChanges(ma, mb));
  assert.equal(got.size, expectedSize(ma, mb));
  assert.ok(got.changes.some((l) => l.startsWith('D')) && got.changes.some((l) => l.startsWith('A')));
});
