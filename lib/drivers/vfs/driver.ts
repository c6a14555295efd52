// The vfs graph driver (containers/storage drivers/vfs): every layer is a full copy of
// its parent's tree, and nothing is ever mounted. It costs a copy per layer, and in
// exchange works on any filesystem and where mount(2) is not allowed. The copy is the
// copy engine's content mode (copy_file_range, which the filesystem may turn into a
// reflink clone: nearly free on XFS and btrfs).
//
// Layout under home/<id>/:
//   root/      the layer's whole tree (get() returns it)
//   parent     the id of the layer it was copied from (absent for a base layer): the
//              rule that a layer another one was made on is not removed is ours, as in
//              the overlay driver, so that a parent's diff stays computable
// A layer without root/ was never finished (a create killed midway).
//
// changes/diff compare the tree with the parent's tree: the naive diff
// (lib/drivers/naive-diff.ts) on get/put, which here are the roots themselves.
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../../native.js';
import { applyTar } from '../../archive/apply.js';
import { AbortError, InvalidOptionError, LayerInUseError, LayerNotFoundError } from '../../errors.js';
import { validateId } from '../../ids.js';
import type { ApplyDiffOptions, CreateOptions, DiffSource, DriverOptions, GetOptions, PutOptions } from '../../types.js';
import { DriverBase, initDriver, refuseOptions, type DriverSetup } from '../driver-base.js';
import { checkVfsHome } from '../home.js';
import { isDirectory } from '../lstat.js';
import type { LayerTrees } from '../naive-diff.js';
import { copyInto, staleStaging } from '../staging.js';
import type { LayerOnDisk, MountHandoff, StoreDriver } from '../store-driver.js';

interface VfsDirs {
  dir: string;
  root: string;
  parentFile: string;
}

function dirsOf(home: string, id: string): VfsDirs {
  const dir = join(home, id);
  return { dir, root: join(dir, 'root'), parentFile: join(dir, 'parent') };
}

export function initVfs(home: string, opts: DriverOptions): Promise<VfsDriver> {
  refuseOptions('vfs', opts);
  return initDriver(home, opts, checkVfsHome, async (setup) => {
    const driver = new VfsDriver(setup);
    await driver.removeLeftovers();
    return driver;
  });
}

export class VfsDriver extends DriverBase implements StoreDriver {
  readonly name = 'vfs';
  override readonly mountsNothing = true;

  constructor(setup: DriverSetup) {
    super(setup);
  }

  status(): Array<[string, string]> {
    return [['Backing Filesystem', this.backingFs], ['Copies', 'full content copy per layer (copy_file_range: reflinks where the filesystem has them)']];
  }

  /** The layer's root; LayerNotFound when it does not exist or was never finished. */
  async #root(id: string): Promise<string> {
    validateId(id);
    const d = dirsOf(this.home, id);
    if (!(await isDirectory(d.root))) throw new LayerNotFoundError(id);
    return d.root;
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    return { RootDir: await this.#root(id) };
  }

  async exists(id: string): Promise<boolean> {
    validateId(id);
    return this.hasLayerDir(id);
  }

  createReadWrite(id: string, parent?: string, opts?: CreateOptions): Promise<void> {
    return this.create(id, parent, opts);
  }

  async create(id: string, parent?: string, opts: CreateOptions = {}): Promise<void> {
    validateId(id);
    const parentId = this.checkParent(parent);
    if (opts.storageOpt !== undefined && Object.keys(opts.storageOpt).length > 0) throw new InvalidOptionError('--storage-opt is not supported for vfs');
    await this.withLayerLocks(id, parentId, async () => {
      const parentRoot = parentId === undefined ? undefined : await this.#root(parentId).catch(() => {
        throw new LayerNotFoundError(parentId);
      });
      const d = dirsOf(this.home, id);
      await this.makeLayerDir(id);
      try {
        if (parentId !== undefined) await writeFile(d.parentFile, parentId, { mode: 0o644, flag: 'wx' });
        const staging = await this.newStaging(id);
        try {
          if (parentRoot === undefined) {
            await chmod(staging, 0o755);
          } else {
            await copyInto(parentRoot, staging, 'content');
          }
          // Last: a layer without root/ was never finished.
          await native.rename2(staging, d.root, native.constants.RENAME_NOREPLACE);
        } finally {
          await this.dropStaging(staging);
        }
      } catch (err) {
        await native.removeTree(d.dir).catch(() => undefined);
        throw err;
      }
    });
  }

  protected layersOn(id: string): Promise<string[]> {
    const wanted = Buffer.from(id);
    return this.layersWith(id, 'parent', (content) => content.equals(wanted));
  }

  /** Nothing is mounted: a layer is held while a get() of its root is not put(). */
  protected override async whileUnheld<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const root = this.heldPath(id);
    if ((this.state.trees.get(root) ?? 0) > 0) throw new LayerInUseError(id, `in use (get) at ${root}`);
    return fn();
  }

  async get(id: string, _opts: GetOptions = {}): Promise<string> {
    const root = await this.#root(id);
    this.state.trees.set(root, (this.state.trees.get(root) ?? 0) + 1);
    this.hold(root);
    return root;
  }

  protected override heldPath(id: string): string {
    return dirsOf(this.home, id).root;
  }

  protected override async dropHold(root: string): Promise<boolean> {
    const n = this.state.trees.get(root) ?? 0;
    if (n === 0) return false;
    if (n > 1) this.state.trees.set(root, n - 1);
    else this.state.trees.delete(root);
    return true;
  }

  async applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<number> {
    validateId(id);
    const parentId = this.checkParent(parent);
    return this.withLayerLocks(id, parentId, async () => {
      if (!(await this.hasLayerDir(id))) throw new LayerNotFoundError(id);
      if (parentId !== undefined && !(await this.hasLayerDir(parentId))) throw new LayerNotFoundError(parentId);
      const root = await this.#root(id);
      return this.whileUnheld(id, async () => {
        await this.refuseStoodOn(id);
        if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
        // Staged on a hardlink copy of the layer's own root (applying never writes into an
        // existing inode), then swapped in with one rename: all or nothing.
        const staging = await this.newStaging(id);
        try {
          await copyInto(root, staging, 'hardlink', opts.signal);
          const bytes = await applyTar(staging, diff, { ...opts, uidMaps: this.uidMaps, gidMaps: this.gidMaps });
          await native.rename2(staging, root, native.constants.RENAME_EXCHANGE);
          return bytes;
        } finally {
          await this.dropStaging(staging);
        }
      });
    });
  }

  /** The naive diff gets the roots themselves. */
  protected async layerTrees(): Promise<LayerTrees> {
    return { uidMaps: this.uidMaps, gidMaps: this.gidMaps, get: (id) => this.get(id), put: (id) => this.put(id) };
  }

  // --- What a store asks (lib/drivers/store-driver.ts). Every vfs layer is a plain
  // tree, so the store sees each as an image: its path needs no mount.

  async inspect(id: string): Promise<LayerOnDisk> {
    validateId(id);
    const d = dirsOf(this.home, id);
    if (!(await this.hasLayerDir(id))) return { state: 'missing' };
    if (!(await isDirectory(d.root))) return { state: 'partial' };
    return { state: 'image', path: d.root };
  }

  // Nothing is mounted: the store's references are made on their own.
  async mountLayer(id: string, _opts?: GetOptions, { references }: MountHandoff = {}): Promise<string> {
    const root = await this.#root(id);
    if (references !== undefined) await native.applyFileChange(references);
    return root;
  }

  async unmountLayer(id: string, _opts?: PutOptions, { references }: MountHandoff = {}): Promise<void> {
    validateId(id);
    if (references !== undefined) await native.applyFileChange(references);
  }

  /** Staging dirs of processes that are gone. */
  leftovers(): Promise<string[]> {
    return staleStaging(this.home, this.state.staging);
  }

  async removeLeftovers(): Promise<void> {
    for (const path of await this.leftovers()) await native.removeTree(path).catch(() => rm(path, { recursive: true, force: true }));
  }
}
