// What every graph driver shares, written once: containers/storage's drivers keep the
// same in drivers/driver.go, drivers/fsdiff.go (NewNaiveDiffDriver: diff, changes and
// diffSize from get/put) and drivers/counter.go. A driver (overlay, overlay2, vfs)
// extends DriverBase with its layout: create, remove, get, applyDiff, how a layer is
// held (a mount or a tree), and what the store asks (store-driver.ts).
//
// - init (initDriver): the home checked, created owned by the mapped root, and the
//   driver's state of it in this process (home-state.ts), undone when a step fails;
// - the per-layer locks of create/remove/applyDiff, the owner of what it makes;
// - holds: the get() references this driver object took and has not put(), which
//   cleanup() gives back;
// - the export, as NewNaiveDiffDriver: diff, writeDiff, changes and diffSize on the
//   driver's layerTrees() (naive-diff.ts), each loaded on first use, so a process that
//   only mounts does not load the exporter.
import { chmod, chown, mkdir, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import * as native from '../native.js';
import { InvalidOptionError, LayerExistsError, LayerInUseError, LayerNotFoundError, isSystemError } from '../errors.js';
import { validateId, validateParent } from '../ids.js';
import { rootPair, validateIdMaps, type IdPair } from '../idmap.js';
import { mountPointsUnder } from '../mountinfo.js';
import type { Change, DriverOptions, IDMap, LongOperationOptions, PutOptions } from '../types.js';
import { canonicalHome, mkdirAllAs, removeCreated } from './home.js';
import { acquireHomeMount, releaseHomeMount } from './home.js';
import { homeState, type HomeState } from './home-state.js';
import { isDirectory } from './lstat.js';
import type { LayerTrees } from './naive-diff.js';
import type { InspectPlan, LayerOnDisk } from './store-driver.js';
import { dropStaging, newStaging } from './staging.js';

/** What a driver is made of, found by initDriver. */
export interface DriverSetup {
  state: HomeState;
  uidMaps: readonly IDMap[];
  gidMaps: readonly IDMap[];
  owner: IdPair;
  /** The backing filesystem's name, for status(). */
  backingFs: string;
}

/**
 * Creates a driver on `home` (containers/storage's Init): `check` refuses a home the
 * driver cannot use before anything is made, and resolves to its filesystem's name;
 * `open` makes the driver once the home exists. What init created goes again when a
 * step fails.
 */
export async function initDriver<D>(home: string, opts: DriverOptions, check: (home: string) => Promise<string>, open: (setup: DriverSetup) => Promise<D>): Promise<D> {
  if (typeof home !== 'string' || home === '' || home.includes('\0')) throw new InvalidOptionError('home must be a non-empty path');
  const uidMaps = validateIdMaps(opts.uidMaps, 'uidMaps');
  const gidMaps = validateIdMaps(opts.gidMaps, 'gidMaps');
  const owner = rootPair(uidMaps, gidMaps);
  const absolute = resolve(home);
  const backingFs = await check(absolute);
  const created = await mkdirAllAs(absolute, 0o700, owner);
  try {
    return await open({ state: homeState(await canonicalHome(absolute)), uidMaps, gidMaps, owner, backingFs });
  } catch (err) {
    await removeCreated(created);
    throw err;
  }
}

/** Refuses driver options for a driver that takes none. */
export function refuseOptions(driver: string, opts: DriverOptions): void {
  const given = opts.options ?? [];
  if (given.length > 0) throw new InvalidOptionError(`the ${driver} driver takes no options (got ${given.map((o) => JSON.stringify(o)).join(', ')})`);
}

const exporting = () => import('./naive-diff.js');

export abstract class DriverBase {
  abstract readonly name: string;
  readonly home: string;
  readonly uidMaps: readonly IDMap[];
  readonly gidMaps: readonly IDMap[];
  /** What this process knows of the home, shared with every driver on it. */
  protected readonly state: HomeState;
  /** The mapped root: the owner of every dir the driver makes. */
  protected readonly owner: IdPair;
  protected readonly backingFs: string;
  /** True for a driver that never mounts (vfs): its home needs no private bind mount. */
  readonly mountsNothing: boolean = false;
  /** Holds this driver took with get() and has not put(), per held path: what cleanup() gives back. */
  readonly #held = new Map<string, number>();
  /** Whether this driver still uses the home's bind mount (a driver that mounts). */
  #bound = false;

  constructor(setup: DriverSetup) {
    this.state = setup.state;
    this.home = setup.state.path;
    this.uidMaps = setup.uidMaps;
    this.gidMaps = setup.gidMaps;
    this.owner = setup.owner;
    this.backingFs = setup.backingFs;
  }

  // --- what each driver says

  /** The layer's whole tree for the naive diff: get/put (and a quicker way to changes, where the driver has one). */
  protected abstract layerTrees(): Promise<LayerTrees>;
  /** The layers that stand on `id` (made on it, or reading it as their lower): what remove and applyDiff refuse. */
  protected abstract layersOn(id: string): Promise<string[]>;
  abstract exists(id: string): Promise<boolean>;

  /** validateId; a driver adds the names its home reserves. */
  protected checkId(id: unknown): asserts id is string {
    validateId(id);
  }

  protected checkParent(parent: unknown): string | undefined {
    const id = validateParent(parent);
    if (id !== undefined) this.checkId(id);
    return id;
  }

  /** Entries of the home that are not layers. */
  protected reserved(_name: string): boolean {
    return false;
  }

  /** home/<id>: every driver keeps a layer in a dir named after it. */
  protected layerDir(id: string): string {
    return join(this.home, id);
  }

  // --- making layers

  /** Runs `fn` holding the locks of `id` and its parent (create, remove, applyDiff of one layer never overlap). */
  protected withLayerLocks<T>(id: string, parentId: string | undefined, fn: () => Promise<T>): Promise<T> {
    const keys = [id, ...(parentId === undefined ? [] : [parentId])].map((i) => this.layerDir(i));
    return this.state.layerLocks.runAll(keys, fn);
  }

  /** Makes home/<id> (LayerExists when it is there), owned by the mapped root. */
  protected async makeLayerDir(id: string): Promise<string> {
    const dir = this.layerDir(id);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (isSystemError(err, 'EEXIST')) throw new LayerExistsError(id);
      throw err;
    }
    await this.chown(dir);
    return dir;
  }

  protected async mkdirAs(path: string, mode: number): Promise<void> {
    await mkdir(path);
    await chmod(path, mode); // not subject to the umask, unlike mkdir's mode
    await this.chown(path);
  }

  protected chown(path: string): Promise<void> {
    return chown(path, this.owner.uid, this.owner.gid);
  }

  /** True when home/<id> is a directory. */
  protected hasLayerDir(id: string): Promise<boolean> {
    return isDirectory(this.layerDir(id));
  }

  /** A staging dir in the layer's dir (staging.ts). */
  newStaging(id: string): Promise<string> {
    return newStaging(this.state, this.layerDir(id), this.owner);
  }

  dropStaging(staging: string): Promise<void> {
    return dropStaging(this.state, staging);
  }

  /** Takes this driver's use of the home's private bind mount (a driver that mounts), given back by cleanup(). */
  async bindHome(): Promise<void> {
    await acquireHomeMount(this.state);
    this.#bound = true;
  }

  /** The layers of home whose file `name` passes `test` (their dir's), `id`'s own left out. */
  protected async layersWith(id: string, name: string, test: (content: Buffer) => boolean): Promise<string[]> {
    const names = await readdir(this.home);
    const found = await Promise.all(
      names.map(async (n) => {
        if (n === id || this.reserved(n)) return undefined;
        // Non-blocking, regular, bounded: a fifo planted there is no wait.
        const content = await native.readSmallFile(join(this.home, n, name)).catch(() => undefined);
        return content !== undefined && test(content) ? n : undefined;
      }),
    );
    return found.filter((n): n is string => n !== undefined);
  }

  /** Refuses (LayerInUse) a layer another one stands on. */
  protected async refuseStoodOn(id: string): Promise<void> {
    const users = await this.layersOn(id);
    if (users.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(users[0])} stands on it`);
  }

  /**
   * Runs `fn` while nothing holds `id` in this process and no get() can take it:
   * refuses (LayerInUse) a layer that is mounted, or has a mount below its dir. A
   * driver that mounts nothing counts its trees instead.
   */
  protected whileUnheld<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const merged = this.heldPath(id);
    return this.state.mounts.withLock(merged, async (references) => {
      if (references > 0) throw new LayerInUseError(id, `mounted at ${merged}`);
      const below = await mountPointsUnder(this.layerDir(id));
      if (below.length > 0) throw new LayerInUseError(id, `${below[0]} is a mount point`);
      return fn();
    });
  }

  /** remove() of every driver: under the layer's lock, refused while held or stood on. */
  async remove(id: string): Promise<void> {
    this.checkId(id);
    await this.withLayerLocks(id, undefined, async () => {
      if (!(await this.hasLayerDir(id))) throw new LayerNotFoundError(id);
      await this.whileUnheld(id, async () => {
        await this.refuseStoodOn(id);
        await this.removeLayerDir(id);
      });
    });
  }

  /** Deletes the unused layer `id` (remove's last step): natively, in bounded memory, a layer can hold millions of entries. */
  protected async removeLayerDir(id: string): Promise<void> {
    await native.removeTree(this.layerDir(id));
  }

  // --- holds

  /** The path a get() of `id` holds: its mount point (a tree, for a driver that mounts nothing). */
  protected heldPath(id: string): string {
    return join(this.layerDir(id), 'merged');
  }

  /** Gives back one hold of `path`, unmounting on the last one; false when none was taken. */
  protected async dropHold(path: string, lazy: boolean): Promise<boolean> {
    const left = await this.state.mounts.release(path, () => native.unmount(path, lazy ? native.constants.MNT_DETACH : 0));
    return left !== undefined;
  }

  /** Notes a get() of `path` by this driver. */
  protected hold(path: string): void {
    this.#held.set(path, (this.#held.get(path) ?? 0) + 1);
  }

  async #release(path: string, lazy: boolean): Promise<boolean> {
    const released = await this.dropHold(path, lazy);
    const held = this.#held.get(path) ?? 0;
    if (held > 1) this.#held.set(path, held - 1);
    else this.#held.delete(path);
    return released;
  }

  async put(id: string, opts: PutOptions = {}): Promise<void> {
    this.checkId(id);
    // No layout read first: a layer with nothing held has nothing to release.
    const released = await this.#release(this.heldPath(id), opts.lazy === true);
    if (!released && !(await this.exists(id))) throw new LayerNotFoundError(id);
  }

  /** Gives back every hold this driver took, then its use of the home's bind mount. */
  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const [path, count] of [...this.#held]) {
      for (let i = 0; i < count; i++) await this.#release(path, false).catch((err: unknown) => errors.push(err));
    }
    await this.#releaseHome().catch((err: unknown) => errors.push(err));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${this.name} cleanup: some mounts could not be released`);
  }

  /** What cleanup() releases once the holds are given back: this driver's use of the home's bind mount. */
  async #releaseHome(): Promise<void> {
    if (!this.#bound) return;
    this.#bound = false;
    await releaseHomeMount(this.state);
  }

  // --- what a store asks of every driver alike (store-driver.ts)

  abstract inspect(id: string): Promise<LayerOnDisk>;

  /** inspect() with no probes of its own; a driver that knows its lookups says them (overlay). */
  planInspect(id: string): InspectPlan {
    return { probes: [], finish: () => this.inspect(id) };
  }

  /** The ids that have a directory in the driver's home. */
  async layerIds(): Promise<string[]> {
    const entries = await readdir(this.home, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && !this.reserved(e.name)).map((e) => e.name);
  }

  /** Deletes a layer's directory whatever its state, unmounting anything below it first. */
  async destroy(id: string): Promise<void> {
    this.checkId(id);
    const dir = this.layerDir(id);
    for (const m of (await mountPointsUnder(dir)).reverse()) await native.unmount(m, native.constants.MNT_DETACH).catch(() => undefined);
    // Natively, a directory buffer at a time: a layer of a million entries, off the JS thread.
    await native.removeTree(dir).catch((err: unknown) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
  }

  // --- the export (NewNaiveDiffDriver)

  #exporting() {
    return Promise.all([exporting(), this.layerTrees()]);
  }

  diff(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<Readable> {
    this.checkId(id);
    const parentId = this.checkParent(parent);
    return this.#exporting().then(([m, trees]) => m.diff(trees, id, parentId, opts));
  }

  writeDiff(id: string, parent: string | undefined, fd: number, opts: LongOperationOptions = {}): Promise<number> {
    this.checkId(id);
    if (!Number.isInteger(fd) || fd < 0) throw new InvalidOptionError(`writeDiff needs an open file descriptor, not ${String(fd)}`);
    const parentId = this.checkParent(parent);
    return this.#exporting().then(([m, trees]) => m.writeDiff(trees, id, parentId, fd, opts));
  }

  changes(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<Change[]> {
    this.checkId(id);
    const parentId = this.checkParent(parent);
    return this.#exporting().then(([m, trees]) => m.changes(trees, id, parentId, opts));
  }

  diffSize(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<number> {
    this.checkId(id);
    const parentId = this.checkParent(parent);
    return this.#exporting().then(([m, trees]) => m.diffSize(trees, id, parentId, opts));
  }
}
