// The overlay driver's quick way to a layer's changes (DiffDriver.quickChanges, for
// lib/drivers/naive-diff.ts, which does the rest):
// - a read-write layer against its own lower image: read upper/ directly
//   (lib/archive/changes-overlay.ts), no mount and no walk of the lower tree;
// - an image against an image: compare the two root/ trees, which share inodes
//   wherever nothing changed (lib/archive/changes.ts).
// Anything else: undefined, and the naive diff mounts and compares both trees.
import type { LongOperationOptions } from '../../types.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { changesDirs } from '../../archive/changes.js';
import { overlayChanges } from '../../archive/changes-overlay.js';
import type { OverlayInternals } from './internals.js';

export async function quickChanges(d: OverlayInternals, id: string, parent: string, opts: LongOperationOptions): Promise<ChangeSet | undefined> {
  const [paths, parentPaths] = await Promise.all([d.layerPaths(id), d.layerPaths(parent)]);
  if (paths.upper !== undefined && paths.lowerRoot !== undefined && paths.lowerId === parent) return overlayChanges(paths.upper, paths.lowerRoot, opts);
  if (parentPaths.root !== undefined && paths.root !== undefined) return changesDirs(paths.root, parentPaths.root, opts);
  return undefined;
}
