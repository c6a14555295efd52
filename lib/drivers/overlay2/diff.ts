// Export of the overlay2 driver, reading diff/ as c/s's overlay driver does:
// - a layer against its own parent: its diff/ is the change (whiteouts: deletions,
//   opaque dirs), walked by lib/archive/changes-overlay.ts; the parent's stack is
//   looked up name by name through a read-only view mount, only where diff/ has
//   something. Nothing proportional to the parent's size.
// - no parent: the layer's whole tree (its diff/ alone for a base layer, else a view).
// - any other parent: both views mounted and compared (the naive diff).
// Views are read-only overlays mounted in a staging dir of the layer, unmounted when
// the change set is computed, or when the export stream closes if content is read from it.
import type { Readable } from 'node:stream';
import { join } from 'node:path';
import type { Change, LongOperationOptions } from '../../types.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { toPublicChanges } from '../../archive/change-set.js';
import { changesDirs } from '../../archive/changes.js';
import { overlayChanges } from '../../archive/changes-overlay.js';
import { exportChanges, writeChanges, writeTree } from '../../archive/export.js';
import { toRaw } from '../../archive/raw-path.js';
import { changesSize } from '../../archive/size.js';
import type { Overlay2Driver } from './driver.js';
import { mkdir } from 'node:fs/promises';

interface Opened {
  set: ChangeSet;
  release(): Promise<void>;
}

const noRelease = async (): Promise<void> => {};

/** A read-only mount of the layer's whole tree, and how to drop it; a base layer's diff/ needs none. */
async function openTree(d: Overlay2Driver, id: string): Promise<{ dir: string; release(): Promise<void> }> {
  const l = await d.layer(id);
  if (l.lowers.length === 0 && !l.container) return { dir: l.diff, release: noRelease };
  const staging = await d.newStaging(id);
  try {
    const view = join(staging, 'view');
    await mkdir(view, { mode: 0o700 });
    await d.mountView(l, view);
    return { dir: view, release: () => d.dropStaging(staging) };
  } catch (err) {
    await d.dropStaging(staging);
    throw err;
  }
}

async function openChanges(d: Overlay2Driver, id: string, parent: string | undefined, opts: LongOperationOptions): Promise<Opened> {
  const l = await d.layer(id);
  if (parent !== undefined) await d.layer(parent);
  if (parent !== undefined && l.parent === parent) {
    const lower = await openTree(d, parent);
    try {
      return { set: await overlayChanges(l.diff, lower.dir, opts), release: noRelease };
    } finally {
      await lower.release();
    }
  }
  const tree = await openTree(d, id);
  try {
    if (parent === undefined) return { set: await changesDirs(tree.dir, undefined, opts), release: tree.release };
    const old = await openTree(d, parent);
    try {
      return { set: await changesDirs(tree.dir, old.dir, opts), release: tree.release };
    } finally {
      await old.release();
    }
  } catch (err) {
    await tree.release();
    throw err;
  }
}

export async function changes(d: Overlay2Driver, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Change[]> {
  const { set, release } = await openChanges(d, id, parent, opts);
  await release();
  return toPublicChanges(set);
}

export async function diff(d: Overlay2Driver, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Readable> {
  const { set, release } = await openChanges(d, id, parent, opts);
  const stream = exportChanges(set, { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps });
  stream.once('close', () => {
    release().catch((err: unknown) => process.emitWarning(`overlay2 diff of ${id}: could not release its view: ${String(err)}`));
  });
  return stream;
}

export async function writeDiff(d: Overlay2Driver, id: string, parent: string | undefined, fd: number, opts: LongOperationOptions = {}): Promise<number> {
  const exportOpts = { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps };
  if (parent === undefined) {
    const tree = await openTree(d, id);
    try {
      return await writeTree(toRaw(tree.dir), fd, exportOpts);
    } finally {
      await tree.release();
    }
  }
  const { set, release } = await openChanges(d, id, parent, opts);
  try {
    return await writeChanges(set, fd, exportOpts);
  } finally {
    await release();
  }
}

export async function diffSize(d: Overlay2Driver, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<number> {
  const { set, release } = await openChanges(d, id, parent, opts);
  await release();
  return changesSize(set);
}
