// Export of the overlay driver: changes, diff and diffSize of a layer against a
// parent (containers/storage's NaiveDiffDriver, with a native fast path).
// - A read-write layer against its own lower image: read upper/ directly
//   (lib/archive/changes-overlay.ts), no mount and no walk of the lower tree.
// - An image against an image: compare the two root/ trees, which share inodes
//   wherever nothing changed (lib/archive/changes.ts).
// - No parent: the whole layer. Anything else: mount both and compare.
// A mount taken for diff() is held until its stream closes (end, error or destroy);
// writeDiff() writes the same tar to a file descriptor, its content moved natively,
// and with no parent packs the whole tree natively without a change set.
import type { Readable } from 'node:stream';
import type { Change, LongOperationOptions } from '../../types.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { toPublicChanges } from '../../archive/change-set.js';
import { changesDirs } from '../../archive/changes.js';
import { overlayChanges } from '../../archive/changes-overlay.js';
import { exportChanges, writeChanges, writeTree } from '../../archive/export.js';
import { toRaw } from '../../archive/raw-path.js';
import { changesSize } from '../../archive/size.js';
import type { LayerPaths, OverlayInternals } from './internals.js';

interface OpenedChanges {
  set: ChangeSet;
  /** Puts the mount of `id` this computation took, if any. */
  release(): Promise<void>;
}

interface OpenedTree {
  /** The directory holding the layer's whole tree. */
  dir: string;
  /** Puts the mount this took, if any. */
  release(): Promise<void>;
}

const noRelease = async (): Promise<void> => {};

/** The whole tree of a layer: an image's root/, or a read-write layer's merged dir, mounted until release(). */
async function openTree(d: OverlayInternals, id: string, paths: LayerPaths): Promise<OpenedTree> {
  if (paths.root !== undefined) return { dir: paths.root, release: noRelease };
  return { dir: await d.get(id), release: () => d.put(id) };
}

async function openChanges(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions): Promise<OpenedChanges> {
  const paths = await d.layerPaths(id);
  const parentPaths = parent === undefined ? undefined : await d.layerPaths(parent);

  if (parentPaths !== undefined && paths.upper !== undefined && paths.lowerRoot !== undefined && paths.lowerId === parent) {
    return { set: await overlayChanges(paths.upper, paths.lowerRoot, opts), release: noRelease };
  }
  if (parentPaths?.root !== undefined && paths.root !== undefined) {
    return { set: await changesDirs(paths.root, parentPaths.root, opts), release: noRelease };
  }

  // No parent: the whole tree. Else the naive path: compare the mounted trees.
  const tree = await openTree(d, id, paths);
  try {
    if (parent === undefined || parentPaths === undefined) return { set: await changesDirs(tree.dir, undefined, opts), release: tree.release };
    const old = await openTree(d, parent, parentPaths);
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

export async function changes(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Change[]> {
  const { set, release } = await openChanges(d, id, parent, opts);
  await release();
  return toPublicChanges(set);
}

export async function diff(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Readable> {
  const { set, release } = await openChanges(d, id, parent, opts);
  const stream = exportChanges(set, { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps });
  stream.once('close', () => {
    release().catch((err: unknown) => process.emitWarning(`overlay diff of ${id}: could not release its mount: ${String(err)}`));
  });
  return stream;
}

export async function writeDiff(d: OverlayInternals, id: string, parent: string | undefined, fd: number, opts: LongOperationOptions = {}): Promise<number> {
  const exportOpts = { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps };
  if (parent === undefined) {
    // The whole layer: packed natively as it is walked, no change set first.
    const tree = await openTree(d, id, await d.layerPaths(id));
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

export async function diffSize(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<number> {
  const { set, release } = await openChanges(d, id, parent, opts);
  await release();
  return changesSize(set);
}
