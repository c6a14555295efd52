// Export of the overlay driver: changes, diff and diffSize of a layer against a
// parent (containers/storage's NaiveDiffDriver, with a native fast path).
// - A read-write layer against its own lower image: read upper/ directly
//   (lib/archive/changes-overlay.ts), no mount and no walk of the lower tree.
// - An image against an image: compare the two root/ trees, which share inodes
//   wherever nothing changed (lib/archive/changes.ts).
// - No parent: the whole layer. Anything else: mount both and compare.
// A mount taken for diff() is held until its stream closes (end, error or destroy);
// writeDiff() writes the same tar to a file descriptor, its content moved natively.
import type { Readable } from 'node:stream';
import type { Change, LongOperationOptions } from '../../types.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { toPublicChanges } from '../../archive/change-set.js';
import { changesDirs } from '../../archive/changes.js';
import { overlayChanges } from '../../archive/changes-overlay.js';
import { exportChanges, writeChanges } from '../../archive/export.js';
import { changesSize } from '../../archive/size.js';
import type { OverlayInternals } from './internals.js';

interface OpenedChanges {
  set: ChangeSet;
  /** Puts the mount of `id` this computation took, if any. */
  release(): Promise<void>;
}

async function openChanges(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions): Promise<OpenedChanges> {
  const paths = await d.layerPaths(id);
  const parentPaths = parent === undefined ? undefined : await d.layerPaths(parent);
  const noRelease = async () => {};

  if (parentPaths === undefined && paths.root !== undefined) {
    return { set: await changesDirs(paths.root, undefined, opts), release: noRelease };
  }
  if (parentPaths !== undefined && paths.upper !== undefined && paths.lowerRoot !== undefined && paths.lowerId === parent) {
    return { set: await overlayChanges(paths.upper, paths.lowerRoot, opts), release: noRelease };
  }
  if (parentPaths?.root !== undefined && paths.root !== undefined) {
    return { set: await changesDirs(paths.root, parentPaths.root, opts), release: noRelease };
  }

  // The naive path: compare the mounted trees.
  const newDir = paths.root ?? (await d.get(id));
  const release = paths.root === undefined ? () => d.put(id) : noRelease;
  try {
    if (parent === undefined || parentPaths === undefined) return { set: await changesDirs(newDir, undefined, opts), release };
    const oldDir = parentPaths.root ?? (await d.get(parent));
    try {
      return { set: await changesDirs(newDir, oldDir, opts), release };
    } finally {
      if (parentPaths.root === undefined) await d.put(parent);
    }
  } catch (err) {
    await release();
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
  const { set, release } = await openChanges(d, id, parent, opts);
  try {
    return await writeChanges(set, fd, { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps });
  } finally {
    await release();
  }
}

export async function diffSize(d: OverlayInternals, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<number> {
  const { set, release } = await openChanges(d, id, parent, opts);
  await release();
  return changesSize(set);
}
