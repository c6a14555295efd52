// Every layer between any two drivers: a chain of random layers (files, dirs,
// symlinks, hardlinks, devices, xattrs, deletions) is imported into each driver; each
// layer is exported from it (diff against its parent) and applied into every driver
// (itself included); every layer's tree there must equal the plain source tree it was
// made from, entry by entry (the manifest oracle, test/helpers/manifest.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { Readable } from 'node:stream';
import * as native from '../lib/native.js';
import { createDriver } from '../lib/index.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges } from '../lib/archive/export.js';
import type { Driver } from '../lib/types.js';
import { DRIVER_NAMES } from '../lib/drivers/create-driver.js';
import { tempDir, skipUnlessRoot } from './helpers/sandbox.js';
import { assertMountinfoRestoredAtEnd, TEMP_PREFIX } from './helpers/driver-suite.js';
import { compareManifests, manifest, type CompareOptions } from './helpers/tree.js';
import { mutateTree, randomTree } from './helpers/random-layers.js';

assertMountinfoRestoredAtEnd();

const STRESS = process.env['OGD_STRESS'] === '1';
// The manifest oracle is a python walk per tree (about a second each on a loaded
// 2-core machine): by default 3 layers, the top one of each driver pair compared
// (a wrong lower layer shows through it unless a later one replaces it);
// OGD_STRESS=1: 4 layers, every one compared.
const LAYERS = STRESS ? 4 : 3;
// Directory mtimes follow whatever was created in them last; the root is made by the driver.
const treeCompare: CompareOptions = { mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo', 'socket'], rootFields: ['mode', 'uid', 'gid', 'xattrs', 'mtime'] };

test('round trip: each layer exported from any driver and applied by any driver gives the same tree', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, TEMP_PREFIX);
  // The source trees: T0 random, each next one a mutation of a content copy of the last.
  const trees: string[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const tree = join(dir, `tree${i}`);
    await mkdir(tree);
    if (i === 0) await randomTree(tree, 11, 30);
    else {
      await native.copyTree(trees[i - 1]!, tree, { mode: 'content' });
      await mutateTree(tree, 100 + i, 10);
    }
    trees.push(tree);
  }
  const tars: Buffer[] = [];
  for (let i = 0; i < LAYERS; i++) tars.push(await buffer(exportChanges(await changesDirs(trees[i]!, i === 0 ? undefined : trees[i - 1]))));
  const expected = await Promise.all(trees.map((tr) => manifest(tr)));

  const drivers = new Map<string, Driver>();
  try {
    for (const name of DRIVER_NAMES) drivers.set(name, await createDriver(name, join(dir, `home-${name}`)));
    const id = (from: string, i: number) => `${from}-${i}`;
    // Checked at the end, two manifests at a time (the machine has two cores).
    const checks: Array<{ d: Driver; layer: string; i: number; what: string }> = [];
    const check = async (d: Driver, layer: string, i: number, what: string) => void checks.push({ d, layer, i, what });
    // Import the chain into each driver from the source tars (checked through its exports below).
    for (const d of drivers.values()) {
      for (let i = 0; i < LAYERS; i++) {
        await d.create(id('src', i), i === 0 ? undefined : id('src', i - 1));
        await d.applyDiff(id('src', i), i === 0 ? undefined : id('src', i - 1), Readable.from([tars[i]!]));
      }
    }
    // Export each layer from X, apply into Y.
    for (const [from, x] of drivers) {
      for (const [to, y] of drivers) {
        for (let i = 0; i < LAYERS; i++) {
          const parent = i === 0 ? undefined : id('src', i - 1);
          const bytes = await buffer(await x.diff(id('src', i), parent));
          const layer = id(from, i);
          const yParent = i === 0 ? undefined : id(from, i - 1);
          await y.create(layer, yParent);
          await y.applyDiff(layer, yParent, Readable.from([bytes]));
          if (STRESS || i === LAYERS - 1) await check(y, layer, i, `layer ${i} exported by ${from}, applied by ${to}`);
        }
      }
    }
    const failures: string[] = [];
    for (let k = 0; k < checks.length; k += 2) {
      await Promise.all(
        checks.slice(k, k + 2).map(async (c) => {
          const root = await c.d.get(c.layer);
          try {
            failures.push(...compareManifests(expected[c.i]!, await manifest(root), treeCompare).map((l) => `${c.what}: ${l}`));
          } finally {
            await c.d.put(c.layer);
          }
        }),
      );
    }
    assert.deepEqual(failures, []);
  } finally {
    for (const d of drivers.values()) await d.cleanup();
  }
});
