// What a layer takes on disk, as `du -sx` counts it: every driver keeps a layer in
// one directory, home/<id>, so one walk fits them all. A layer owns the inodes it
// made; what it shares with its parent by hardlinks (the overlay driver's child
// images are hardlink copies of their parent's root) is its parent's, so the sizes of
// a chain add up to what the chain takes, each inode once.
import { join } from 'node:path';
import { diskUsage, type DiskUsage } from '../native.js';

export interface LayerToMeasure {
  id: string;
  /** The layer it may share inodes with (its parent). */
  parent?: string | undefined;
}

/** The bytes and inodes each layer owns under `driverHome` (one pool job for all). */
export function layerDiskUsage(driverHome: string, layers: readonly LayerToMeasure[]): Promise<DiskUsage[]> {
  return diskUsage(
    layers.map((l) => join(driverHome, l.id)),
    layers.map((l) => (l.parent !== undefined ? join(driverHome, l.parent) : undefined)),
  );
}

/**
 * The same over whole chains, counting each inode under the first layer that holds it:
 * `layers` parents first, as `df --exact` walks them.
 */
export function chainDiskUsage(driverHome: string, layerIds: readonly string[]): Promise<DiskUsage[]> {
  return diskUsage(layerIds.map((id) => join(driverHome, id)));
}
