// The diff of a layer against a parent (its changes, the tar, the tar's content size),
// written once for every driver against the least a driver can offer, as
// containers/storage's drivers/fsdiff.go NaiveDiffDriver is (driver-base.ts offers it
// as every driver's diff, writeDiff, changes and diffSize): get(id) gives the
// layer's whole tree (mounting it when the driver must), put(id) gives it back. A
// driver that knows a faster way to a layer's changes (overlay: read upper/ against
// its own lower; two image roots sharing inodes) offers quickChanges(); the rest is
// the same for every driver:
// - no parent: the whole tree (get(id)); writeDiff packs it natively without a change set;
// - else quickChanges, or both trees (get(id), get(parent)) compared.
// A tree taken for diff() is held until its stream closes (end, error or destroy).
import type { Readable } from 'node:stream';
import type { Change, IDMap, LongOperationOptions } from '../types.js';
import type { ChangeSet } from '../archive/change-set.js';
import { toPublicChanges } from '../archive/change-set.js';
import { changesDirs } from '../archive/changes.js';
import { exportChanges, writeChanges, writeTree } from '../archive/export.js';
import { toRaw } from '../archive/raw-path.js';
import { changesSize } from '../archive/size.js';

/** What the naive diff needs of a driver: its layers' whole trees (c/s's ProtoDriver Get/Put). */
export interface LayerTrees {
  readonly uidMaps: readonly IDMap[];
  readonly gidMaps: readonly IDMap[];
  /** The layer's whole tree (mounted when the driver must); rejects with LayerNotFound when there is no such layer. */
  get(id: string): Promise<string>;
  /** Gives back what get(id) took. */
  put(id: string): Promise<void>;
  /** The changes of `id` against `parent` without comparing both whole trees, when the driver knows how; undefined otherwise. */
  quickChanges?(id: string, parent: string, opts: LongOperationOptions): Promise<ChangeSet | undefined>;
}

interface Opened<T> {
  value: T;
  /** Puts what opening took. */
  release(): Promise<void>;
}

async function openTree(d: LayerTrees, id: string): Promise<Opened<string>> {
  return { value: await d.get(id), release: () => d.put(id) };
}

async function openChanges(d: LayerTrees, id: string, parent: string | undefined, opts: LongOperationOptions): Promise<Opened<ChangeSet>> {
  if (parent !== undefined) {
    const quick = await d.quickChanges?.(id, parent, opts);
    if (quick !== undefined) return { value: quick, release: async () => {} };
  }
  const tree = await openTree(d, id);
  try {
    if (parent === undefined) return { value: await changesDirs(tree.value, undefined, opts), release: tree.release };
    const old = await openTree(d, parent);
    try {
      return { value: await changesDirs(tree.value, old.value, opts), release: tree.release };
    } finally {
      await old.release();
    }
  } catch (err) {
    await tree.release();
    throw err;
  }
}

export async function changes(d: LayerTrees, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Change[]> {
  const { value, release } = await openChanges(d, id, parent, opts);
  await release();
  return toPublicChanges(value);
}

export async function diff(d: LayerTrees, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<Readable> {
  const { value, release } = await openChanges(d, id, parent, opts);
  const stream = exportChanges(value, { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps });
  stream.once('close', () => {
    release().catch((err: unknown) => process.emitWarning(`diff of ${id}: could not release its mount: ${String(err)}`));
  });
  return stream;
}

export async function writeDiff(d: LayerTrees, id: string, parent: string | undefined, fd: number, opts: LongOperationOptions = {}): Promise<number> {
  const exportOpts = { ...opts, uidMaps: d.uidMaps, gidMaps: d.gidMaps };
  if (parent === undefined) {
    // The whole layer: packed natively as it is walked, no change set first.
    const tree = await openTree(d, id);
    try {
      return await writeTree(toRaw(tree.value), fd, exportOpts);
    } finally {
      await tree.release();
    }
  }
  const { value, release } = await openChanges(d, id, parent, opts);
  try {
    return await writeChanges(value, fd, exportOpts);
  } finally {
    await release();
  }
}

export async function diffSize(d: LayerTrees, id: string, parent: string | undefined, opts: LongOperationOptions = {}): Promise<number> {
  const { value, release } = await openChanges(d, id, parent, opts);
  await release();
  return changesSize(value);
}
