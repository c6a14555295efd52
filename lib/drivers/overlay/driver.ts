// The overlay graph driver (containers/storage drivers/overlay, the seed): images are
// plain trees under <id>/root, shared with their children by hardlinks; container
// layers are overlay mounts of <id>/upper over their image's root. This file holds the
// Driver methods; the pieces live next to it: layout.ts (paths), home.ts (init checks,
// the home mount, leftovers), mount-data.ts (the mount), apply-diff.ts (staged apply),
// diff.ts (the quick changes; ../naive-diff.ts exports every driver's layers), ../driver-home.ts (what this process knows of a
// home: its refcounts, locks, bind mount, staging dirs; one object per home, shared by
// the drivers on it) and lib/mount-counter.ts (refcounts).
//
// Safety beyond the seed: ids are validated before a path is built; create, remove and
// applyDiff of one id never overlap in this process (per-id locks); a mounted layer,
// or an image another layer uses as its lower, is not removed (LayerInUse).
import { chmod, chown, lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import * as native from '../../native.js';
import { InvalidOptionError, LayerExistsError, LayerInUseError, LayerNotFoundError, isSystemError } from '../../errors.js';
import { parseStoredId, validateId, validateParent } from '../../ids.js';
import { rootPair, validateIdMaps, type IdPair } from '../../idmap.js';
import type { ApplyDiffOptions, Change, CreateOptions, DiffSource, DriverOptions, GetOptions, IDMap, LongOperationOptions, PutOptions } from '../../types.js';
import { acquireHomeMount, canonicalHome, checkBackingFs, checkMountPrivilege, findLeftovers, mkdirAllAs, releaseHomeMount, removeCreated, removeLeftovers, supportsOverlay } from './home.js';
import { knownMounted, type InspectPlan, type LayerOnDisk, type StoreDriver } from '../store-driver.js';
import type { DiffDriver } from '../naive-diff.js';
import type { ChangeSet } from '../../archive/change-set.js';
import type { LayerPaths, OverlayInternals } from './internals.js';
import { containerPaths, lastLowerId, layerDirs, layerExists, lstatOrUndefined, readLayerPaths, readLowerId, rememberLowerId } from './layout.js';
import { mountOverlay } from './mount-data.js';
import { driverHome, type DriverHome } from '../driver-home.js';
import { FsMagic } from '../../fs-magic.js';
import type { FileChange, PathProbe } from '../../native.js';
import { mountPointsUnder } from '../../mountinfo.js';

// Applying and exporting load what they need (tar reader, exporter) on first use:
// a process that only mounts, or only exports, does not pay for the other.
const applying = () => import('./apply-diff.js');
const exporting = () => import('../naive-diff.js');

const isDirectoryMode = (mode: number | undefined): boolean => mode !== undefined && (mode & constants.S_IFMT) === constants.S_IFDIR;

/**
 * Whether an overlay driver can live at `home` (which need not exist yet): overlay
 * support, the privilege to mount, the backing filesystem. Creates nothing, so a
 * refused home leaves no trace (a Store runs it before making its own directories).
 */
export async function checkOverlayHome(home: string): Promise<Awaited<ReturnType<typeof checkBackingFs>>> {
  // Checked side by side, reported in the seed's order (no overlay before a wrong
  // filesystem), missing privileges before the filesystem (whose check may itself be
  // refused EACCES without them).
  const [overlay, privilege, fs] = await Promise.allSettled([supportsOverlay(), checkMountPrivilege(), checkBackingFs(resolve(home))]);
  if (overlay.status === 'rejected') throw overlay.reason;
  if (privilege.status === 'rejected') throw privilege.reason;
  if (fs.status === 'rejected') throw fs.reason;
  return fs.value;
}

/** Creates the overlay driver on `home` (containers/storage's overlay.Init, with the checks of DESIGN.md section 2). */
export async function initOverlay(home: string, opts: DriverOptions): Promise<OverlayDriver> {
  if (typeof home !== 'string' || home === '' || home.includes('\0')) throw new InvalidOptionError('home must be a non-empty path');
  const unknown = opts.options ?? [];
  if (unknown.length > 0) throw new InvalidOptionError(`the overlay driver takes no options (got ${unknown.map((o) => JSON.stringify(o)).join(', ')})`);
  const uidMaps = validateIdMaps(opts.uidMaps, 'uidMaps');
  const gidMaps = validateIdMaps(opts.gidMaps, 'gidMaps');
  const owner = rootPair(uidMaps, gidMaps);
  const absolute = resolve(home);
  const backingFs = await checkOverlayHome(absolute);
  const created = await mkdirAllAs(absolute, 0o700, owner);
  try {
    const state = driverHome(await canonicalHome(absolute));
    // Before the bind: a mount a killed process left below a home that is no longer
    // bound would be hidden under the new bind mount, and its dir impossible to remove.
    await removeLeftovers(state.path, state.staging);
    await acquireHomeMount(state);
    return new OverlayDriver(state, uidMaps, gidMaps, owner, backingFs);
  } catch (err) {
    // A refused init leaves nothing behind: what it created goes again.
    await removeCreated(created);
    throw err;
  }
}

export class OverlayDriver implements StoreDriver, DiffDriver, OverlayInternals {
  readonly name = 'overlay';
  readonly home: string;
  readonly uidMaps: readonly IDMap[];
  readonly gidMaps: readonly IDMap[];
  readonly #owner: IdPair;
  readonly #backingFs: string;
  /** What this process knows of the home, shared with every driver on it. */
  readonly #state: DriverHome;
  /** References this driver took with get() and has not put(), per mount path: what cleanup() gives back. */
  readonly #held = new Map<string, number>();
  #cleanedUp = false;

  constructor(state: DriverHome, uidMaps: readonly IDMap[], gidMaps: readonly IDMap[], owner: IdPair, backingFs: string) {
    this.#state = state;
    this.home = state.path;
    this.uidMaps = uidMaps;
    this.gidMaps = gidMaps;
    this.#owner = owner;
    this.#backingFs = backingFs;
  }

  status(): Array<[string, string]> {
    return [['Backing Filesystem', this.#backingFs]];
  }

  layerPaths(id: string): Promise<LayerPaths> {
    return readLayerPaths(this.home, id);
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    const p = await this.layerPaths(id);
    if (p.root !== undefined) return { RootDir: p.root };
    return { LowerDir: p.lowerRoot!, UpperDir: p.upper!, WorkDir: p.work!, MergedDir: p.merged! };
  }

  async exists(id: string): Promise<boolean> {
    validateId(id);
    return layerExists(this.home, id);
  }

  createReadWrite(id: string, parent?: string, opts?: CreateOptions): Promise<void> {
    return this.create(id, parent, opts);
  }

  async create(id: string, parent?: string, opts: CreateOptions = {}): Promise<void> {
    validateId(id);
    const parentId = validateParent(parent);
    if (opts.storageOpt !== undefined && Object.keys(opts.storageOpt).length > 0) {
      throw new InvalidOptionError('--storage-opt is not supported for overlay');
    }
    await this.#state.layerLocks.runAll(this.#lockKeys(id, parentId), async () => {
      const source = parentId === undefined ? undefined : await this.#parentSource(parentId);
      const dirs = layerDirs(this.home, id);
      try {
        await mkdir(dirs.dir, { mode: 0o700 });
      } catch (err) {
        if (isSystemError(err, 'EEXIST')) throw new LayerExistsError(id);
        throw err;
      }
      try {
        await this.#chown(dirs.dir);
        if (source === undefined) {
          // A top-level image is just a root dir.
          await this.#mkdirAs(dirs.root, 0o755);
          return;
        }
        await this.#mkdirAs(dirs.upper, source.upperMode);
        await this.#mkdirAs(dirs.work, 0o700);
        await this.#mkdirAs(dirs.merged, 0o700);
        if (source.upperToCopy !== undefined) await native.copyTree(source.upperToCopy, dirs.upper, { mode: 'content' });
        // Written last: a layer without it (or root/) was never finished.
        await writeFile(dirs.lowerIdFile, source.lowerId, { mode: 0o644, flag: 'wx' });
        await this.#chown(dirs.lowerIdFile);
      } catch (err) {
        await rm(dirs.dir, { recursive: true, force: true });
        throw err;
      }
    });
  }

  // What a new layer on `parentId` starts from: the parent's root as lower (the
  // parent is an image), or the parent's lower and a copy of its upper.
  async #parentSource(parentId: string): Promise<{ lowerId: string; upperMode: number; upperToCopy?: string }> {
    const parentDirs = layerDirs(this.home, parentId);
    if (!(await layerExists(this.home, parentId))) throw new LayerNotFoundError(parentId);
    const parentRoot = await lstatOrUndefined(parentDirs.root);
    if (parentRoot?.isDirectory()) return { lowerId: parentId, upperMode: parentRoot.mode & 0o7777 };
    let lowerId: string;
    try {
      lowerId = await readLowerId(parentDirs);
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) throw new LayerNotFoundError(parentId, { cause: err });
      throw err;
    }
    if (!(await lstatOrUndefined(layerDirs(this.home, lowerId).root))?.isDirectory()) throw new LayerNotFoundError(lowerId);
    const upper = await lstat(parentDirs.upper);
    return { lowerId, upperMode: upper.mode & 0o7777, upperToCopy: parentDirs.upper };
  }

  /**
   * Writes the lower-id of container layer `id` again from `parent` (the store's record
   * of it) when it is damaged (missing, not a regular file, not an id) while upper/,
   * work/ and merged/ are there: repair's way to keep such a container. False when the
   * layer is no such container or `parent` gives it no lower.
   */
  async restoreLower(id: string, parent: string): Promise<boolean> {
    validateId(id);
    validateId(parent);
    const dirs = layerDirs(this.home, id);
    if ((await lstatOrUndefined(dirs.root)) !== undefined) return false;
    for (const d of [dirs.upper, dirs.work, dirs.merged]) if (!(await lstatOrUndefined(d))?.isDirectory()) return false;
    if (await readLowerId(dirs).then(() => true, () => false)) return false;
    const source = await this.#parentSource(parent).catch(() => undefined);
    if (source === undefined) return false;
    // Whatever is there (a fifo, a directory, a symlink: its own entry, never followed) goes first.
    await rm(dirs.lowerIdFile, { recursive: true, force: true });
    await writeFile(dirs.lowerIdFile, source.lowerId, { mode: 0o644, flag: 'wx' });
    await this.#chown(dirs.lowerIdFile);
    return true;
  }

  async remove(id: string): Promise<void> {
    validateId(id);
    await this.#state.layerLocks.runAll(this.#lockKeys(id, undefined), async () => {
      const dirs = layerDirs(this.home, id);
      if (!(await layerExists(this.home, id))) throw new LayerNotFoundError(id);
      await this.#state.mounts.withLock(dirs.merged, async (references) => {
        if (references > 0) throw new LayerInUseError(id, `mounted at ${dirs.merged}`);
        const below = await mountPointsUnder(dirs.dir);
        if (below.length > 0) throw new LayerInUseError(id, `${below[0]} is a mount point`);
        const users = await this.#layersOver(id);
        if (users.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(users[0])} uses it as its lower layer`);
        // Native and bounded in memory: a layer can hold millions of entries.
        await native.removeTree(dirs.dir);
      });
    });
  }

  // Layers whose lower-id names `id` (their overlay needs its root/). A decision of
  // ours: the seed removes such an image and leaves its users unmountable.
  async #layersOver(id: string): Promise<string[]> {
    const wanted = Buffer.from(id);
    const names = await readdir(this.home);
    const found = await Promise.all(
      names.map(async (name) => {
        if (name === id) return undefined;
        try {
          return (await native.readSmallFile(join(this.home, name, 'lower-id')))?.equals(wanted) === true ? name : undefined;
        } catch {
          return undefined;
        }
      }),
    );
    return found.filter((n): n is string => n !== undefined);
  }

  async get(id: string, opts: GetOptions = {}): Promise<string> {
    const p = await this.layerPaths(id);
    if (p.root !== undefined) return p.root;
    const merged = p.merged!;
    await this.#state.mounts.acquire(merged, () => this.#mount(p, opts.mountLabel));
    this.#held.set(merged, (this.#held.get(merged) ?? 0) + 1);
    return merged;
  }

  async #mount(p: LayerPaths, mountLabel: string | undefined, record?: FileChange): Promise<void> {
    const merged = p.merged!;
    try {
      await mountOverlay(this.home, { lower: p.lowerRoot!, upper: p.upper!, work: p.work! }, merged, mountLabel, record);
    } catch (err) {
      if (isSystemError(err, 'ENOENT') && !(await lstatOrUndefined(p.lowerRoot!))?.isDirectory()) throw new LayerNotFoundError(p.lowerId!, { cause: err });
      throw err;
    }
    try {
      // Overlay inside a user namespace needs work/work owned by its root to move a directory from lower to upper.
      await chown(join(p.work!, 'work'), this.#owner.uid, this.#owner.gid);
    } catch (err) {
      await native.unmount(merged, 0).catch(() => native.unmount(merged, native.constants.MNT_DETACH));
      throw err;
    }
  }

  // --- What a store asks of its driver (lib/drivers/store-driver.ts): mounts it
  // counts itself, across processes, and the disk's own view of each layer.

  async inspect(id: string): Promise<LayerOnDisk> {
    const plan = this.planInspect(id);
    return plan.finish(await native.probePaths(plan.probes));
  }

  planInspect(id: string): InspectPlan {
    validateId(id);
    const dirs = layerDirs(this.home, id);
    // The lower's root is looked at in the same trip when the lower-id was read before
    // (it never changes while the layer lives).
    const guess = lastLowerId(dirs.lowerIdFile);
    const probes: PathProbe[] = [['lstat', dirs.root], ['read', dirs.lowerIdFile], ['statfs', dirs.merged]];
    if (guess !== undefined) probes.push(['lstat', layerDirs(this.home, guess).root]);
    return {
      probes,
      finish: async ([root, lowerIdFile, merged, guessedLower]) => {
        if (isDirectoryMode(native.probedNumber(root))) return { state: 'image', path: dirs.root };
        let lowerId: string | undefined;
        try {
          const data = native.probedData(lowerIdFile);
          lowerId = data === undefined ? undefined : parseStoredId(data);
        } catch {
          lowerId = undefined; // unreadable: judged as a layer without a layout
        }
        if (lowerId === undefined) return (await layerExists(this.home, id)) ? { state: 'partial' } : { state: 'missing' };
        rememberLowerId(dirs.lowerIdFile, lowerId);
        const mounted = native.probedNumber(merged) === FsMagic.overlayfs;
        let lowerIsDir: boolean;
        if (lowerId === guess) {
          try {
            lowerIsDir = isDirectoryMode(native.probedNumber(guessedLower));
          } catch {
            lowerIsDir = false;
          }
        } else {
          lowerIsDir = (await lstatOrUndefined(layerDirs(this.home, lowerId).root))?.isDirectory() ?? false;
        }
        return { state: 'container', path: dirs.merged, lowerId, lowerMissing: !lowerIsDir, mounted };
      },
    };
  }

  async mountLayer(id: string, opts: GetOptions = {}, known?: LayerOnDisk, record?: FileChange): Promise<string> {
    const p = known?.state === 'container' && known.lowerId !== undefined ? containerPaths(this.home, id, known.lowerId) : await this.layerPaths(id);
    if (p.root !== undefined) {
      if (record !== undefined) await native.applyFileChange(record);
      return p.root;
    }
    // No references in this process means no overlay there (the counter has just looked).
    await this.#state.mounts.withLock(
      p.merged!,
      async (references) => {
        if (references === 0) await this.#mount(p, opts.mountLabel, record);
        else if (record !== undefined) await native.applyFileChange(record);
      },
      knownMounted(known),
    );
    return p.merged!;
  }

  async unmountLayer(id: string, opts: PutOptions = {}, known?: LayerOnDisk, record?: FileChange): Promise<void> {
    validateId(id);
    // No layout read: an image has no merged/, which the counter finds not mounted.
    const merged = layerDirs(this.home, id).merged;
    await this.#state.mounts.withLock(
      merged,
      async (references) => {
        if (references > 0) await native.unmount(merged, opts.lazy === true ? native.constants.MNT_DETACH : 0, record);
        else if (record !== undefined) await native.applyFileChange(record);
      },
      knownMounted(known),
    );
  }

  async layerIds(): Promise<string[]> {
    const entries = await readdir(this.home, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  async destroy(id: string): Promise<void> {
    validateId(id);
    const dir = layerDirs(this.home, id).dir;
    for (const m of await mountPointsUnder(dir)) await native.unmount(m, native.constants.MNT_DETACH).catch(() => undefined);
    // Natively, a directory buffer at a time: a layer of a million entries, off the JS thread.
    await native.removeTree(dir).catch((err: unknown) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
  }

  leftovers(): Promise<string[]> {
    return findLeftovers(this.home, this.#state.staging);
  }

  async removeLeftovers(): Promise<void> {
    await removeLeftovers(this.home, this.#state.staging);
  }

  async put(id: string, opts: PutOptions = {}): Promise<void> {
    validateId(id);
    // No layout read first: an image has no mount, so nothing is released for it.
    const dirs = layerDirs(this.home, id);
    const released = await this.#release(dirs.merged, opts.lazy === true);
    if (!released && !(await layerExists(this.home, id))) throw new LayerNotFoundError(id);
  }

  async #release(merged: string, lazy = false): Promise<boolean> {
    const left = await this.#state.mounts.release(merged, () => native.unmount(merged, lazy ? native.constants.MNT_DETACH : 0));
    const held = this.#held.get(merged) ?? 0;
    if (held > 1) this.#held.set(merged, held - 1);
    else this.#held.delete(merged);
    return left !== undefined;
  }

  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    for (const [merged, count] of [...this.#held]) {
      for (let i = 0; i < count; i++) await this.#release(merged).catch((err: unknown) => errors.push(err));
    }
    if (!this.#cleanedUp) {
      this.#cleanedUp = true;
      await releaseHomeMount(this.#state).catch((err: unknown) => errors.push(err));
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'overlay cleanup: some mounts could not be released');
  }

  async applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<number> {
    validateId(id);
    const parentId = validateParent(parent);
    const ctx = { home: this.home, uidMaps: this.uidMaps, gidMaps: this.gidMaps, owner: this.#owner, staging: this.#state.staging };
    return this.#state.layerLocks.runAll(this.#lockKeys(id, parentId), async () => {
      const dirs = layerDirs(this.home, id);
      if (!(await layerExists(this.home, id))) throw new LayerNotFoundError(id);
      return this.#state.mounts.withLock(dirs.merged, async (references) => {
        if (references > 0) throw new LayerInUseError(id, `mounted at ${dirs.merged}`);
        const { applyStaged, planApply } = await applying();
        const plan = await planApply(ctx, id, parentId);
        if (plan.kind === 'own-root') {
          const users = await this.#layersOver(id);
          if (users.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(users[0])} uses its root as lower layer`);
        }
        return applyStaged(ctx, id, plan, diff, opts);
      });
    });
  }

  diff(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<Readable> {
    validateId(id);
    const parentId = validateParent(parent);
    return exporting().then((m) => m.diff(this, id, parentId, opts));
  }

  writeDiff(id: string, parent: string | undefined, fd: number, opts: LongOperationOptions = {}): Promise<number> {
    validateId(id);
    if (!Number.isInteger(fd) || fd < 0) throw new InvalidOptionError(`writeDiff needs an open file descriptor, not ${String(fd)}`);
    const parentId = validateParent(parent);
    return exporting().then((m) => m.writeDiff(this, id, parentId, fd, opts));
  }

  changes(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<Change[]> {
    validateId(id);
    const parentId = validateParent(parent);
    return exporting().then((m) => m.changes(this, id, parentId, opts));
  }

  diffSize(id: string, parent?: string, opts: LongOperationOptions = {}): Promise<number> {
    validateId(id);
    const parentId = validateParent(parent);
    return exporting().then((m) => m.diffSize(this, id, parentId, opts));
  }

  /** DiffDriver.quickChanges: upper/ against its own lower, or two image roots, without mounting. */
  async quickChanges(id: string, parent: string, opts: LongOperationOptions): Promise<ChangeSet | undefined> {
    return (await import('./diff.js')).quickChanges(this, id, parent, opts);
  }

  #lockKeys(id: string, parentId: string | undefined): string[] {
    return [id, ...(parentId === undefined ? [] : [parentId])].map((i) => layerDirs(this.home, i).dir);
  }

  async #mkdirAs(path: string, mode: number): Promise<void> {
    await mkdir(path);
    await chmod(path, mode); // not subject to the umask, unlike mkdir's mode
    await this.#chown(path);
  }

  #chown(path: string): Promise<void> {
    return chown(path, this.#owner.uid, this.#owner.gid);
  }
}

