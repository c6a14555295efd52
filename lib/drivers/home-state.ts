// What this process knows of one driver home, in one object (moby's overlay2 keeps
// the same in its Driver value): the mount references, the per-layer locks, the home's
// own bind mount, the staging dirs in use and the get() holds of a driver that mounts
// nothing. Every driver object on a home shares it, as it shares the disk and the
// mounts: a layer mounted through one driver object is counted, locked and swept alike
// through another.
import { isMissing } from '../errors.js';
import { FsMagic, fsMagic } from '../fs-magic.js';
import { KeyedLock } from '../keyed-lock.js';
import { MountCounter } from '../mount-counter.js';

/** True when an overlay is mounted on `path`. */
export async function isOverlayMounted(path: string): Promise<boolean> {
  try {
    return (await fsMagic(path)) === FsMagic.overlayfs;
  } catch (err) {
    if (isMissing(err)) return false;
    throw err;
  }
}

export class HomeState {
  /** The canonical (realpath) home. */
  readonly path: string;
  /** This process's references per mount path (lib/mount-counter.ts). */
  readonly mounts = new MountCounter(isOverlayMounted);
  /** create/remove/applyDiff of one layer (and of the parent they read) never overlap; keyed by the layer's dir. */
  readonly layerLocks = new KeyedLock();
  /** Staging dirs this process is applying into, so a sweep by another driver on the home leaves them. */
  readonly staging = new Set<string>();
  /** The drivers using the home's private bind mount, and whether the last one unmounts it (home.ts). */
  bind: { users: number; unmountAtEnd: boolean } | undefined;
  /** Serialises taking and dropping the bind mount. */
  readonly bindLock = new KeyedLock();
  /** get() references per layer root of a driver that mounts nothing (vfs): what remove and applyDiff refuse while held. */
  readonly trees = new Map<string, number>();

  constructor(path: string) {
    this.path = path;
  }
}

// Module-level on purpose: the state of a home must be one per process whoever opens a
// driver on it (two Stores on one home share their mounts and locks). An entry lives as
// long as the process; it holds counters and sets, emptied as the drivers release.
const homes = new Map<string, HomeState>();

/** The one object for the canonical home `path` in this process. */
export function homeState(path: string): HomeState {
  let home = homes.get(path);
  if (home === undefined) {
    home = new HomeState(path);
    homes.set(path, home);
  }
  return home;
}
