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

/** The driver's plan for inspecting `id`, or one that just calls inspect() for a driver without plans. */
export function inspectPlan(driver: StoreDriver, id: string): InspectPlan {
  return driver.planInspect?.(id) ?? { probes: [], finish: () => driver.inspect(id) };
}

export interface StoreDriver extends Driver {
  /** True for a driver that never mounts (vfs): its home needs no private bind mount. */
  readonly mountsNothing?: boolean;
  /** The disk's view of `id`; for a container its lower-id is the truth about its lower layer. */
  inspect(id: string): Promise<LayerOnDisk>;
  /** inspect() as probes and their meaning (see InspectPlan); optional. */
  planInspect?(id: string): InspectPlan;
  /**
   * Mounts the layer when it is not mounted (no counting) and returns its path; an
   * image's path needs no mount. `known`: what inspect() said a moment ago under the
   * layer's lock, which saves the driver reading it again. `record`: a file change (the
   * store's mount references) made right after the mount, in its native job where the
   * driver can, with the mount undone when it fails; made on its own when nothing needs
   * mounting.
   */
  mountLayer(id: string, opts?: GetOptions, known?: LayerOnDisk, record?: FileChange): Promise<string>;
  /**
   * Unmounts the layer when it is mounted (no counting); `lazy` detaches a busy mount.
   * `known` as for mountLayer; `record` is made right before the unmount (in its native
   * job where the driver can), and when it fails nothing is unmounted.
   */
  unmountLayer(id: string, opts?: PutOptions, known?: LayerOnDisk, record?: FileChange): Promise<void>;
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
