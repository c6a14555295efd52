// overlay2's layer trees for the naive diff (lib/drivers/naive-diff.ts), reading diff/ as c/s's
// overlay driver does:
// - a layer against its own parent (quickChanges): its diff/ is the change (whiteouts:
//   deletions, opaque dirs), walked by lib/archive/changes-overlay.ts; the parent's
//   stack is looked up name by name through a read-only view, only where diff/ has
//   something. Nothing proportional to the parent's size.
// - anything else: the naive diff compares whole trees, which this view gives as
//   read-only overlays mounted in a staging dir of the layer (a base image layer's
//   diff/ is its tree and needs none). Never the layer's merged/: a container there
//   belongs to its user, maybe in another process.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { LongOperationOptions } from '../../types.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { overlayChanges } from '../../archive/changes-overlay.js';
import type { LayerTrees } from '../naive-diff.js';
import { unmountQuietly } from '../overlayfs.js';
import type { Overlay2Driver } from './driver.js';

interface Tree {
  dir: string;
  release(): Promise<void>;
}

const noRelease = async (): Promise<void> => {};

/** A read-only mount of the layer's whole tree, and how to drop it; a base layer's diff/ needs none. */
async function openTree(d: Overlay2Driver, id: string): Promise<Tree> {
  const l = await d.layer(id);
  if (l.lowers.length === 0 && !l.container) return { dir: l.diff, release: noRelease };
  const staging = await d.newStaging(id);
  const view = join(staging, 'view');
  const release = async () => {
    await unmountQuietly(view);
    await d.dropStaging(staging);
  };
  try {
    await mkdir(view, { mode: 0o700 });
    await d.mountView(l, view);
    return { dir: view, release };
  } catch (err) {
    await release();
    throw err;
  }
}

async function quickChanges(d: Overlay2Driver, id: string, parent: string, opts: LongOperationOptions): Promise<ChangeSet | undefined> {
  const [l] = await Promise.all([d.layer(id), d.layer(parent)]);
  if (l.parent !== parent) return undefined;
  const lower = await openTree(d, parent);
  try {
    // The set's content is read from diff/ only; the view served the lookups.
    return await overlayChanges(l.diff, lower.dir, opts);
  } finally {
    await lower.release();
  }
}

/** What the naive diff gets of an overlay2 driver: views for trees, diff/ for its own parent. One per export. */
export function diffView(d: Overlay2Driver): LayerTrees {
  const open = new Map<string, Tree[]>();
  return {
    uidMaps: d.uidMaps,
    gidMaps: d.gidMaps,
    async get(id) {
      const tree = await openTree(d, id);
      open.set(id, [...(open.get(id) ?? []), tree]);
      return tree.dir;
    },
    async put(id) {
      const trees = open.get(id) ?? [];
      const tree = trees.pop();
      if (trees.length === 0) open.delete(id);
      await tree?.release();
    },
    quickChanges: (id, parent, opts) => quickChanges(d, id, parent, opts),
  };
}
