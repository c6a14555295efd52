// The overlay graph driver: the seed's layout (containers/storage's overlay driver as it
// was first written; what c/s ships as `overlay` today is this project's overlay2,
// after moby's naming). Images are
// plain trees under <id>/root, shared with their children by hardlinks; container
// layers are overlay mounts of <id>/upper over their image's root. This file holds the
// Driver methods; the pieces live next to it: layout.ts (paths), leftovers.ts (what a
// kill left), mount-data.ts (the mount), apply-diff.ts (staged apply), diff.ts (the
// quick changes). What every driver shares is at the drivers' level: ../driver-base.ts
// (init, locks, holds, the export), ../home.ts (init checks, the home mount),
// ../home-state.ts (what this process knows of a home) and ../staging.ts.
//
// Safety beyond the seed: ids are validated before a path is built; create, remove and
// applyDiff of one id never overlap in this process (per-id locks); a mounted layer,
// or an image another layer uses as its lower, is not removed (LayerInUse).
import { chown, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import * as native from '../../native.js';
import type { FileChange, PathProbe } from '../../native.js';
import { InvalidOptionError, LayerNotFoundError, isSystemError } from '../../errors.js';
import { parseStoredId, validateId } from '../../ids.js';
import type { ApplyDiffOptions, CreateOptions, DiffSource, DriverOptions, GetOptions, LongOperationOptions, PutOptions } from '../../types.js';
import { FsMagic } from '../../fs-magic.js';
import type { ChangeSet } from '../../archive/change-set.js';
import { DriverBase, initDriver, refuseOptions, type DriverSetup } from '../driver-base.js';
import { checkOverlayHome } from '../home.js';
import { lstatOrUndefined } from '../lstat.js';
import type { LayerTrees } from '../naive-diff.js';
import { unmountQuietly } from '../overlayfs.js';
import { knownMounted, type InspectPlan, type LayerOnDisk, type MountHandoff, type StoreDriver } from '../store-driver.js';
import type { LayerPaths, OverlayInternals } from './internals.js';
import { containerPaths, lastLowerId, layerDirs, layerExists, readLayerPaths, readLowerId, rememberLowerId } from './layout.js';
import { findLeftovers, removeLeftovers } from './leftovers.js';
import { mountOverlay } from './mount-data.js';

// Applying loads what it needs (the tar reader) on first use: a process that only
// mounts, or only exports, does not pay for it.
const applying = () => import('./apply-diff.js');

const isDirectoryMode = (mode: number | undefined): boolean => mode !== undefined && (mode & constants.S_IFMT) === constants.S_IFDIR;

/** Creates the overlay driver on `home` (containers/storage's overlay.Init, with the checks of DESIGN.md section 2). */
export function initOverlay(home: string, opts: DriverOptions): Promise<OverlayDriver> {
  refuseOptions('overlay', opts);
  return initDriver(home, opts, checkOverlayHome, async (setup) => {
    // Before the bind: a mount a killed process left below a home that is no longer
    // bound would be hidden under the new bind mount, and its dir impossible to remove.
    await removeLeftovers(setup.state.path, setup.state.staging);
    const driver = new OverlayDriver(setup);
    await driver.bindHome();
    return driver;
  });
}

export class OverlayDriver extends DriverBase implements StoreDriver, OverlayInternals {
  readonly name = 'overlay';

  constructor(setup: DriverSetup) {
    super(setup);
  }

  status(): Array<[string, string]> {
    return [['Backing Filesystem', this.backingFs]];
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
    this.checkId(id);
    const parentId = this.checkParent(parent);
    if (opts.storageOpt !== undefined && Object.keys(opts.storageOpt).length > 0) {
      throw new InvalidOptionError('--storage-opt is not supported for overlay');
    }
    await this.withLayerLocks(id, parentId, async () => {
      const source = parentId === undefined ? undefined : await this.#parentSource(parentId);
      const dirs = layerDirs(this.home, id);
      await this.makeLayerDir(id);
      try {
        if (source === undefined) {
          // A top-level image is just a root dir.
          await this.mkdirAs(dirs.root, 0o755);
          return;
        }
        await this.mkdirAs(dirs.upper, source.upperMode);
        await this.mkdirAs(dirs.work, 0o700);
        await this.mkdirAs(dirs.merged, 0o700);
        if (source.upperToCopy !== undefined) await native.copyTree(source.upperToCopy, dirs.upper, { mode: 'content' });
        // Written last: a layer without it (or root/) was never finished.
        await writeFile(dirs.lowerIdFile, source.lowerId, { mode: 0o644, flag: 'wx' });
        await this.chown(dirs.lowerIdFile);
      } catch (err) {
        await native.removeTree(dirs.dir).catch(() => undefined);
        throw err;
      }
    });
  }

  // What a new layer on `parentId` starts from: the parent's root as lower (the
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
    await chown(dirs.lowerIdFile, this.owner.uid, this.owner.gid);
    return true;
  }

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
    const upper = await lstatOrUndefined(parentDirs.upper);
    if (upper === undefined) throw new LayerNotFoundError(parentId);
    return { lowerId, upperMode: upper.mode & 0o7777, upperToCopy: parentDirs.upper };
  }

  // Layers whose lower-id names `id` (their overlay needs its root/). A decision of
  // ours: the seed removes such an image and leaves its users unmountable.
  protected layersOn(id: string): Promise<string[]> {
    const wanted = Buffer.from(id);
    return this.layersWith(id, 'lower-id', (content) => content.equals(wanted));
  }

  /** An image's root/ (writable: its tree itself), or a container layer's overlay, mounted on first use. */
  async get(id: string, opts: GetOptions = {}): Promise<string> {
    const p = await this.layerPaths(id);
    if (p.root !== undefined) return p.root;
    const merged = p.merged!;
    await this.state.mounts.acquire(merged, () => this.#mount(p, opts.mountLabel));
    this.hold(merged);
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
      await chown(join(p.work!, 'work'), this.owner.uid, this.owner.gid);
    } catch (err) {
      await unmountQuietly(merged);
      throw err;
    }
  }

  // --- What a store asks of its driver (lib/drivers/store-driver.ts): mounts it
  // counts itself, across processes, and the disk's own view of each layer.

  async inspect(id: string): Promise<LayerOnDisk> {
    const plan = this.planInspect(id);
    return plan.finish(await native.probePaths(plan.probes));
  }

  override planInspect(id: string): InspectPlan {
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

  async mountLayer(id: string, opts: GetOptions = {}, { known, references: record }: MountHandoff = {}): Promise<string> {
    const p = known?.state === 'container' && known.lowerId !== undefined ? containerPaths(this.home, id, known.lowerId) : await this.layerPaths(id);
    if (p.root !== undefined) {
      if (record !== undefined) await native.applyFileChange(record);
      return p.root;
    }
    // No references in this process means no overlay there (the counter has just looked).
    await this.state.mounts.withLock(
      p.merged!,
      async (references) => {
        if (references === 0) await this.#mount(p, opts.mountLabel, record);
        else if (record !== undefined) await native.applyFileChange(record);
      },
      knownMounted(known),
    );
    return p.merged!;
  }

  async unmountLayer(id: string, opts: PutOptions = {}, { known, references: record }: MountHandoff = {}): Promise<void> {
    validateId(id);
    // No layout read: an image has no merged/, which the counter finds not mounted.
    const merged = layerDirs(this.home, id).merged;
    await this.state.mounts.withLock(
      merged,
      async (references) => {
        if (references > 0) await native.unmount(merged, opts.lazy === true ? native.constants.MNT_DETACH : 0, record);
        else if (record !== undefined) await native.applyFileChange(record);
      },
      knownMounted(known),
    );
  }

  leftovers(): Promise<string[]> {
    return findLeftovers(this.home, this.state.staging);
  }

  async removeLeftovers(): Promise<void> {
    await removeLeftovers(this.home, this.state.staging);
  }

  async applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<number> {
    this.checkId(id);
    const parentId = this.checkParent(parent);
    const ctx = { home: this.home, uidMaps: this.uidMaps, gidMaps: this.gidMaps, owner: this.owner, newStaging: (i: string) => this.newStaging(i), dropStaging: (s: string) => this.dropStaging(s) };
    return this.withLayerLocks(id, parentId, async () => {
      if (!(await layerExists(this.home, id))) throw new LayerNotFoundError(id);
      return this.whileUnheld(id, async () => {
        const { applyStaged, planApply } = await applying();
        const plan = await planApply(ctx, id, parentId);
        // A layer whose root/ another one reads as its lower keeps it as it is.
        if (plan.kind === 'own-root') await this.refuseStoodOn(id);
        return applyStaged(ctx, id, plan, diff, opts);
      });
    });
  }

  /** The naive diff gets the driver itself, and its quick way to changes: upper/ against its own lower, or two image roots, without mounting. */
  protected async layerTrees(): Promise<LayerTrees> {
    return {
      uidMaps: this.uidMaps,
      gidMaps: this.gidMaps,
      get: (id) => this.get(id),
      put: (id) => this.put(id),
      quickChanges: (id, parent, opts) => this.#quickChanges(id, parent, opts),
    };
  }

  async #quickChanges(id: string, parent: string, opts: LongOperationOptions): Promise<ChangeSet | undefined> {
    return (await import('./diff.js')).quickChanges(this, id, parent, opts);
  }
}
