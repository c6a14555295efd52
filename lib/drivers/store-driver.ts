// What the store (lib/store/) asks of a graph driver beyond the public Driver: the
// disk's own view of a layer, and mounts the store counts itself (across processes,
// per holder) instead of the driver's per-process counter. A driver that implements
// this can sit under a Store; the store never looks at a driver's layout.
import type { FileChange, PathProbe, ProbeResult } from '../native.js';
import type { Driver, GetOptions, PutOptions } from '../types.js';

export type LayerOnDisk =
  | { state: 'missing' }
  /** A directory without a usable layout (a create that never finished). */
  | { state: 'partial' }
  | { state: 'image'; path: string }
  /** A layer read through a mount; `lowerId` undefined: it stands on nothing (an overlay2 base layer). */
  | { state: 'container'; path: string; lowerId: string | undefined; lowerMissing: boolean; mounted: boolean };

/**
 * What the store hands a driver with a mount or an unmount, honoured alike by every
 * driver (the store's protocol ends here; the driver knows nothing of records):
 * - `known`: what inspect() said a moment ago under the layer's write lock (nobody
 *   mounts or unmounts it meanwhile): the driver need not read it again.
 * - `references`: the store's mount references, as a file change. A driver makes it in
 *   the mount's own native job right after the mount (the mount undone when it fails),
 *   or right before the unmount (nothing unmounted when it fails); on its own when
 *   nothing is mounted or unmounted (a layer already mounted, one that needs no mount).
 *   Measured: a pool trip less per mount and per unmount, what brought the store's
 *   cycle to 1.2x the raw driver's (bench/README.md, store).
 */
export interface MountHandoff {
  known?: LayerOnDisk;
  references?: FileChange;
}

/** Whether a container layer was mounted when `known` was read (undefined: not known, look). */
export function knownMounted(known: LayerOnDisk | undefined): boolean | undefined {
  return known?.state === 'container' ? known.mounted : undefined;
}

/**
 * inspect() split in two: the lookups it needs, which the store makes in the same pool
 * trip that takes the layer's lock (a mount or unmount then waits for one trip, not
 * three), and what their answers mean (`finish` may look further when they do not tell).
 */
export interface InspectPlan {
  readonly probes: readonly PathProbe[];
  finish(probed: readonly ProbeResult[]): Promise<LayerOnDisk>;
}

export interface StoreDriver extends Driver {
  /** True for a driver that never mounts (vfs): its home needs no private bind mount. */
  readonly mountsNothing: boolean;
  /** The disk's view of `id`; for a container its lower-id is the truth about its lower layer. */
  inspect(id: string): Promise<LayerOnDisk>;
  /** inspect() as probes and their meaning (see InspectPlan); a driver without probes finishes with inspect(). */
  planInspect(id: string): InspectPlan;
  /** Mounts the layer when it is not mounted (no counting) and returns its path; an image's path may need no mount. */
  mountLayer(id: string, opts?: GetOptions, handoff?: MountHandoff): Promise<string>;
  /** Unmounts the layer when it is mounted (no counting); `lazy` detaches a busy mount. */
  unmountLayer(id: string, opts?: PutOptions, handoff?: MountHandoff): Promise<void>;
  /** Writes a container layer's damaged link to its lower layer again from `parent` (the store's record); false when it cannot. Optional: repair sets such a layer aside without it. */
  restoreLower?(id: string, parent: string): Promise<boolean>;
  /** The ids that have a directory in the driver's home. */
  layerIds(): Promise<string[]>;
  /** Deletes a layer's directory whatever its state, unmounting anything below it first. */
  destroy(id: string): Promise<void>;
  /** Paths an interrupted operation left (staging dirs of dead processes, parts of a finished apply). */
  leftovers(): Promise<string[]>;
  removeLeftovers(): Promise<void>;
}
