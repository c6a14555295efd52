// Interop with real peers: GNU tar extracts our plain exports; containers-storage
// (vfs store) and umoci apply our diffs with whiteouts; and the diffs those peers
// make are applied by our applyTar to the same tree they have themselves.
// Each peer is skipped, with the reason, when it is not installed (.ci/run installs them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as native from '../lib/native.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges } from '../lib/archive/export.js';
import { applyTar } from '../lib/archive/apply.js';
import { tempDir, skipUnlessRoot, mountPoints, removeTree } from './helpers/sandbox.js';
import { manifest, compareManifests, type CompareOptions, type Manifest } from './helpers/tree.js';
import { randomTree, mutateTree } from './helpers/random-layers.js';
import { subManifest } from './helpers/changes-oracle.js';
import { have } from './helpers/peer-tars.js';

const run = promisify(execFile);
const nonDirMtimes: CompareOptions = { mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo'], rootFields: ['mode', 'uid', 'gid', 'xattrs', 'mtime'] };

function skipWithout(t: { skip(msg: string): void }, tool: string): boolean {
  if (have(tool)) return false;
  t.skip(`${tool} is not installed (.ci/run installs it)`);
  return true;
}

async function exportTo(file: string, newDir: string, oldDir?: string): Promise<void> {
  await pipeline(exportChanges(await changesDirs(newDir, oldDir)), createWriteStream(file));
}

/**
 * Peers' tars carry whole seconds: containers-storage truncates, umoci (Go's
 * archive/tar) rounds. Compare mtimes at that precision.
 */
function wholeSeconds(m: Manifest, how: 'truncate' | 'round'): Manifest {
  const half = how === 'round' ? 500_000_000n : 0n;
  return new Map([...m].map(([k, e]) => [k, { ...e, mtime: String((BigInt(e.mtime) + half) / 1_000_000_000n) }]));
}

function withoutEmptyXattrs(m: Manifest): Manifest {
  return new Map([...m].map(([k, e]) => [k, { ...e, xattrs: Object.fromEntries(Object.entries(e.xattrs).filter(([, v]) => v !== '')) }]));
}

/** B = a hardlink copy of A with additions and rewrites only (nothing a plain tar cannot say). */
async function addOnlyPair(dir: string, seed: number): Promise<[string, string]> {
  const a = join(dir, 'A');
  const b = join(dir, 'B');
  await mkdir(a);
  await randomTree(a, seed, 16);
  await native.copyTree(a, b, { mode: 'hardlink' });
  await mkdir(join(b, 'added'));
  await randomTree(join(b, 'added'), seed + 1, 10);
  await writeFile(join(b, 'extra'), 'extra content');
  return [a, b];
}

test('GNU tar extracts a full-layer export to the same tree', async (t) => {
  if (skipUnlessRoot(t) || skipWithout(t, 'tar')) return;
  const dir = await tempDir(t);
  const failures: string[] = [];
  for (const seed of [5, 6]) {
    const src = join(dir, `src${seed}`);
    const out = join(dir, `out${seed}`);
    await mkdir(src);
    await mkdir(out);
    await randomTree(src, seed, 25);
    await exportTo(join(dir, `${seed}.tar`), src);
    await run('tar', ['-x', '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', join(dir, `${seed}.tar`), '-C', out]);
  }
  const all = await manifest(dir);
  for (const seed of [5, 6]) {
    const diffs = compareManifests(subManifest(all, `out${seed}`), subManifest(all, `src${seed}`), nonDirMtimes);
    if (diffs.length > 0) failures.push(`seed ${seed}: ${diffs.slice(0, 5).join('; ')}`);
  }
  assert.deepEqual(failures, []);
});

test('GNU tar applies a diff without whiteouts onto a copy of the parent', async (t) => {
  if (skipUnlessRoot(t) || skipWithout(t, 'tar')) return;
  const dir = await tempDir(t);
  const [a, b] = await addOnlyPair(dir, 31);
  await exportTo(join(dir, 'd.tar'), b, a);
  const c = join(dir, 'C');
  await native.copyTree(a, c, { mode: 'content' });
  await run('tar', ['-x', '-p', '--same-owner', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', join(dir, 'd.tar'), '-C', c]);
  const all = await manifest(dir);
  assert.deepEqual(compareManifests(subManifest(all, 'C'), subManifest(all, 'B'), { ...nonDirMtimes, hardlinkGroups: false }), []);
});

// Trees A<seed> and B<seed> (B = a hardlink copy of A, then changed) and our exports
// a<seed>.tar (all of A) and b<seed>.tar (B against A), for a peer to apply.
async function exportedPair(dir: string, seed: number): Promise<void> {
  const a = join(dir, `A${seed}`);
  const b = join(dir, `B${seed}`);
  await mkdir(a);
  await randomTree(a, seed, 20);
  await native.copyTree(a, b, { mode: 'hardlink' });
  await mutateTree(b, seed, 8);
  await exportTo(join(dir, `a${seed}.tar`), a);
  await exportTo(join(dir, `b${seed}.tar`), b, a);
}

async function csStore(dir: string) {
  const base = ['--graph', join(dir, 'cs-graph'), '--run', join(dir, 'cs-run'), '--storage-driver', 'vfs'];
  const cs = async (...args: string[]) => (await run('containers-storage', [...base, ...args], { maxBuffer: 1 << 26 })).stdout.trim();
  return cs;
}

test('containers-storage applies our diffs with whiteouts, and we apply its diff to the tree it has', async (t) => {
  if (skipUnlessRoot(t) || skipWithout(t, 'containers-storage')) return;
  const dir = await tempDir(t);
  const cs = await csStore(dir);
  t.after(async () => {
    // shutdown writes lock files again, so its dirs go after it (tempDir's own
    // removal may already have run: after-hooks run in registration order).
    await cs('shutdown', '--force').catch(() => undefined);
    await removeTree(dir);
  });
  const failures: string[] = [];
  const theirs = new Map<number, string>();
  for (const seed of [12, 13]) {
    await exportedPair(dir, seed);
    await cs('import-layer', '-f', join(dir, `a${seed}.tar`), '--id', `la${seed}`);
    await cs('import-layer', '-f', join(dir, `b${seed}.tar`), '--id', `lb${seed}`, `la${seed}`);
    theirs.set(seed, await cs('mount', `lb${seed}`));
  }
  const all = await manifest(dir);
  for (const [seed, path] of theirs) {
    const diffs = compareManifests(subManifest(all, relative(dir, path)), subManifest(all, `B${seed}`), nonDirMtimes);
    if (diffs.length > 0) failures.push(`seed ${seed}, containers-storage applied our diff: ${diffs.slice(0, 5).join('; ')}`);
    await cs('unmount', `lb${seed}`);
  }
  assert.deepEqual(failures, []);

  // Their diff of a layer with deletions, a recreated dir and additions, applied by us.
  const a = join(dir, 'PA');
  await mkdir(join(a, 'etc/old'), { recursive: true });
  await writeFile(join(a, 'etc/old/x'), 'x');
  await writeFile(join(a, 'etc/keep'), 'keep');
  await writeFile(join(a, 'gone'), 'gone');
  await symlink('etc/keep', join(a, 'link'));
  await exportTo(join(dir, 'pa.tar'), a);
  await cs('import-layer', '-f', join(dir, 'pa.tar'), '--id', 'pa');
  await cs('create-layer', '--id', 'pb', 'pa');
  const pb = await cs('mount', 'pb');
  await rm(join(pb, 'gone'));
  await rm(join(pb, 'etc/old'), { recursive: true });
  await mkdir(join(pb, 'etc/old'));
  await writeFile(join(pb, 'etc/old/y'), 'y');
  await writeFile(join(pb, 'etc/new'), 'a longer new file');
  await chmod(join(pb, 'etc/keep'), 0o600);
  await unlink(join(pb, 'link'));
  await symlink('etc/new', join(pb, 'link'));
  await cs('diff', '-u', '-f', join(dir, 'theirs.tar'), 'pb', 'pa');
  const c = join(dir, 'PC');
  await native.copyTree(a, c, { mode: 'hardlink' });
  await applyTar(c, createReadStream(join(dir, 'theirs.tar')));
  assert.deepEqual(compareManifests(wholeSeconds(await manifest(c), 'truncate'), wholeSeconds(await manifest(pb), 'truncate'), nonDirMtimes), []);
  await cs('unmount', 'pb');
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), []);
});

test('umoci unpacks an image made of our layers, and we apply the layer umoci repacks', async (t) => {
  if (skipUnlessRoot(t) || skipWithout(t, 'umoci')) return;
  const dir = await tempDir(t);
  const layout = join(dir, 'oci');
  const failures: string[] = [];
  await run('umoci', ['init', '--layout', layout]);
  for (const seed of [21, 22]) {
    await exportedPair(dir, seed);
    const image = `${layout}:s${seed}`;
    await run('umoci', ['new', '--image', image]);
    await run('umoci', ['raw', 'add-layer', '--image', image, join(dir, `a${seed}.tar`)]);
    await run('umoci', ['raw', 'add-layer', '--image', image, join(dir, `b${seed}.tar`)]);
    const rootfs = join(dir, `rootfs${seed}`);
    await run('umoci', ['raw', 'unpack', '--image', image, rootfs]);
  }
  const all = await manifest(dir);
  for (const seed of [21, 22]) {
    // umoci drops xattrs whose value is empty; the rest must match.
    const diffs = compareManifests(withoutEmptyXattrs(subManifest(all, `rootfs${seed}`)), withoutEmptyXattrs(subManifest(all, `B${seed}`)), nonDirMtimes);
    if (diffs.length > 0) failures.push(`seed ${seed}, umoci unpacked our layers: ${diffs.slice(0, 5).join('; ')}`);
  }
  assert.deepEqual(failures, []);

  // umoci's own diff (repack of a changed bundle) applied by us.
  const bundle = join(dir, 'bundle');
  await run('umoci', ['unpack', '--image', `${layout}:s21`, bundle]);
  const before = join(dir, 'before');
  await native.copyTree(join(bundle, 'rootfs'), before, { mode: 'content' });
  const rootfs = join(bundle, 'rootfs');
  await mutateTree(rootfs, 99, 6);
  await writeFile(join(rootfs, 'from-umoci'), 'added by the repack');
  await run('umoci', ['repack', '--image', `${layout}:s21r`, bundle]);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const ref = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 's21r')!;
  const blob = (digest: string) => join(layout, 'blobs', ...digest.split(':'));
  const mf = JSON.parse(await readFile(blob(ref.digest), 'utf8')) as { layers: Array<{ digest: string; mediaType: string }> };
  const last = mf.layers.at(-1)!;
  const source = createReadStream(blob(last.digest));
  await applyTar(before, last.mediaType.endsWith('gzip') ? source.pipe(createGunzip()) : source);
  const after = await manifest(dir);
  assert.deepEqual(
    compareManifests(wholeSeconds(subManifest(after, 'before'), 'round'), wholeSeconds(subManifest(after, 'bundle/rootfs'), 'round'), { ...nonDirMtimes, hardlinkGroups: false }),
    [],
  );
});
