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
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import * as native from '../../native.js';
import type { FileChange } from '../../native.js';
import { applyTar } from '../../archive/apply.js';
import { AbortError, InvalidOptionError, LayerExistsError, LayerInUseError, LayerNotFoundError, isSystemError } from '../../errors.js';
import { validateId, validateParent, parseStoredId } from '../../ids.js';
import { rootPair, validateIdMaps, type IdPair } from '../../idmap.js';
import { checkBackingFs, mkdirAllAs, removeCreated, canonicalHome } from '../overlay/home.js';
import { STAGING_PREFIX, lstatOrUndefined, stagingInUse } from '../overlay/layout.js';
import { driverHome, type DriverHome } from '../driver-home.js';
import type { LayerOnDisk, StoreDriver } from '../store-driver.js';
import type { ApplyDiffOptions, Change, CreateOptions, DiffSource, DriverOptions, GetOptions, IDMap, LongOperationOptions, PutOptions } from '../../types.js';

const exporting = () => import('../naive-diff.js');

interface VfsDirs {
  dir: string;
  root: string;
  parentFile: string;
}

function dirsOf(home: string, id: string): VfsDirs {
  const dir = join(home, id);
  return { dir, root: join(dir, 'root'), parentFile: join(dir, 'parent') };
}

/** Whether a vfs driver can live at `home`: any real filesystem (not /proc or /sys); creates nothing. */
export async function checkVfsHome(home: string): Promise<string> {
  const name = await checkBackingFs(resolve(home)).catch((err: unknown) => {
    // Only pseudo filesystems are refused: vfs needs no overlay, so btrfs, zfs or an overlay are fine.
    if ((err as { code?: string }).code === 'ERR_OGD_INCOMPATIBLE_FS' && !['proc', 'sysfs'].includes((err as { filesystem?: string }).filesystem ?? '')) {
      return (err as { filesystem: string }).filesystem;
    }
    throw err;
  });
  return name;
}

export async function initVfs(home: string, opts: DriverOptions): Promise<VfsDriver> {
  if (typeof home !== 'string' || home === '' || home.includes('\0')) throw new InvalidOptionError('home must be a non-empty path');
  const unknown = opts.options ?? [];
  if (unknown.length > 0) throw new InvalidOptionError(`the vfs driver takes no options (got ${unknown.map((o) => JSON.stringify(o)).join(', ')})`);
  const uidMaps = validateIdMaps(opts.uidMaps, 'uidMaps');
  const gidMaps = validateIdMaps(opts.gidMaps, 'gidMaps');
  const owner = rootPair(uidMaps, gidMaps);
  const absolute = resolve(home);
  const backingFs = await checkVfsHome(absolute);
  const created = await mkdirAllAs(absolute, 0o700, owner);
  try {
    const real = await canonicalHome(absolute);
    const driver = new VfsDriver(driverHome(real), uidMaps, gidMaps, owner, backingFs);
    await driver.removeLeftovers();
    return driver;
  } catch (err) {
    await removeCreated(created);
    throw err;
  }
}

export class VfsDriver implements StoreDriver {
  readonly name = 'vfs';
  readonly mountsNothing = true;
  readonly home: string;
  readonly uidMaps: readonly IDMap[];
  readonly gidMaps: readonly IDMap[];
  // create/remove/applyDiff of one layer (and of the parent they read) never overlap,
  // and get() references hold a root (there is no mount to count): the home's, shared
  // by every vfs driver on it in this process.
  readonly #state: DriverHome;
  readonly #owner: IdPair;
  readonly #backingFs: string;
  readonly #held = new Map<string, number>();

  constructor(state: DriverHome, uidMaps: readonly IDMap[], gidMaps: readonly IDMap[], owner: IdPair, backingFs: string) {
    this.#state = state;
    this.home = state.path;
    this.uidMaps = uidMaps;
    this.gidMaps = gidMaps;
    this.#owner = owner;
    this.#backingFs = backingFs;
  }

  status(): Array<[string, string]> {
    return [['Backing Filesystem', this.#backingFs], ['Copies', 'full content copy per layer (copy_file_range: reflinks where the filesystem has them)']];
  }

  async #exists(id: string): Promise<boolean> {
    return (await lstatOrUndefined(dirsOf(this.home, id).dir))?.isDirectory() ?? false;
  }

  /** The layer's root; LayerNotFound when it does not exist or was never finished. */
  async #root(id: string): Promise<string> {
    validateId(id);
    const d = dirsOf(this.home, id);
    if (!(await lstatOrUndefined(d.root))?.isDirectory()) throw new LayerNotFoundError(id);
    return d.root;
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    return { RootDir: await this.#root(id) };
  }

  async exists(id: string): Promise<boolean> {
    validateId(id);
    return this.#exists(id);
  }

  createReadWrite(id: string, parent?: string, opts?: CreateOptions): Promise<void> {
    return this.create(id, parent, opts);
  }

  async create(id: string, parent?: string, opts: CreateOptions = {}): Promise<void> {
    validateId(id);
    const parentId = validateParent(parent);
    if (opts.storageOpt !== undefined && Object.keys(opts.storageOpt).length > 0) throw new InvalidOptionError('--storage-opt is not supported for vfs');
    await this.#state.layerLocks.runAll(this.#lockKeys(id, parentId), async () => {
      const parentRoot = parentId === undefined ? undefined : await this.#root(parentId).catch(() => {
        throw new LayerNotFoundError(parentId);
      });
      const d = dirsOf(this.home, id);
      try {
        await mkdir(d.dir, { mode: 0o700 });
      } catch (err) {
        if (isSystemError(err, 'EEXIST')) throw new LayerExistsError(id);
        throw err;
      }
      try {
        await chown(d.dir, this.#owner.uid, this.#owner.gid);
        if (parentId !== undefined) await writeFile(d.parentFile, parentId, { mode: 0o644, flag: 'wx' });
        const staging = await this.#staging(d.dir);
        try {
          if (parentRoot === undefined) {
            await chmod(staging, 0o755);
          } else {
            await copyInto(parentRoot, staging, 'content', undefined);
          }
          // Last: a layer without root/ was never finished.
          await native.rename2(staging, d.root, native.constants.RENAME_NOREPLACE);
        } finally {
          await this.#dropStaging(staging);
        }
      } catch (err) {
        await native.removeTree(d.dir).catch(() => undefined);
        throw err;
      }
    });
  }

  async remove(id: string): Promise<void> {
    validateId(id);
    await this.#state.layerLocks.runAll(this.#lockKeys(id, undefined), async () => {
      const d = dirsOf(this.home, id);
      if (!(await this.#exists(id))) throw new LayerNotFoundError(id);
      if ((this.#state.trees.get(d.root) ?? 0) > 0) throw new LayerInUseError(id, `in use (get) at ${d.root}`);
      const users = await this.#layersOn(id);
      if (users.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(users[0])} was made on it`);
      await native.removeTree(d.dir);
    });
  }

  async #layersOn(id: string): Promise<string[]> {
    const wanted = Buffer.from(id);
    const names = await readdir(this.home);
    const found = await Promise.all(
      names.map(async (name) => {
        if (name === id) return undefined;
        const content = await native.readSmallFile(join(this.home, name, 'parent')).catch(() => undefined);
        return content?.equals(wanted) === true ? name : undefined;
      }),
    );
    return found.filter((n): n is string => n !== undefined);
  }

  async get(id: string, _opts: GetOptions = {}): Promise<string> {
    const root = await this.#root(id);
    this.#state.trees.set(root, (this.#state.trees.get(root) ?? 0) + 1);
    this.#held.set(root, (this.#held.get(root) ?? 0) + 1);
    return root;
  }

  async put(id: string, _opts: PutOptions = {}): Promise<void> {
    validateId(id);
    const root = dirsOf(this.home, id).root;
    const held = this.#held.get(root) ?? 0;
    if (held === 0) {
      if (!(await this.#exists(id))) throw new LayerNotFoundError(id);
      return;
    }
    if (held > 1) this.#held.set(root, held - 1);
    else this.#held.delete(root);
    const n = this.#state.trees.get(root) ?? 0;
    if (n > 1) this.#state.trees.set(root, n - 1);
    else this.#state.trees.delete(root);
  }

  async cleanup(): Promise<void> {
    for (const [root, count] of this.#held) {
      const n = (this.#state.trees.get(root) ?? 0) - count;
      if (n > 0) this.#state.trees.set(root, n);
      else this.#state.trees.delete(root);
    }
    this.#held.clear();
  }

  async applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<number> {
    validateId(id);
    const parentId = validateParent(parent);
    return this.#state.layerLocks.runAll(this.#lockKeys(id, parentId), async () => {
      const d = dirsOf(this.home, id);
      if (!(await this.#exists(id))) throw new LayerNotFoundError(id);
      if (parentId !== undefined && !(await this.#exists(parentId))) throw new LayerNotFoundError(parentId);
      const root = await this.#root(id);
      if ((this.#state.trees.get(root) ?? 0) > 0) throw new LayerInUseError(id, `in use (get) at ${root}`);
      const users = await this.#layersOn(id);
      if (users.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(users[0])} was made on it`);
      if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
      // Staged on a hardlink copy of the layer's own root (applying never writes into an
      // existing inode), then swapped in with one rename: all or nothing.
      const staging = await this.#staging(d.dir);
      try {
        await copyInto(root, staging, 'hardlink', opts.signal);
        const bytes = await applyTar(staging, diff, { ...opts, uidMaps: this.uidMaps, gidMaps: this.gidMaps });
        await native.rename2(staging, root, native.constants.RENAME_EXCHANGE);
        return bytes;
      } finally {
        await this.#dropStaging(staging);
      }
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

  // --- What a store asks (lib/drivers/store-driver.ts). Every vfs layer is a plain
  // tree, so the store sees each as an image: its path needs no mount.

  async inspect(id: string): Promise<LayerOnDisk> {
    validateId(id);
    const d = dirsOf(this.home, id);
    if (!(await this.#exists(id))) return { state: 'missing' };
    if (!(await lstatOrUndefined(d.root))?.isDirectory()) return { state: 'partial' };
    return { state: 'image', path: d.root };
  }

  // Nothing is mounted: the store's record is made on its own.
  async mountLayer(id: string, _opts?: GetOptions, _known?: LayerOnDisk, record?: FileChange): Promise<string> {
    const root = await this.#root(id);
    if (record !== undefined) await native.applyFileChange(record);
    return root;
  }

  async unmountLayer(id: string, _opts?: PutOptions, _known?: LayerOnDisk, record?: FileChange): Promise<void> {
    validateId(id);
    if (record !== undefined) await native.applyFileChange(record);
  }

  async layerIds(): Promise<string[]> {
    const entries = await readdir(this.home, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  async destroy(id: string): Promise<void> {
    validateId(id);
    await native.removeTree(dirsOf(this.home, id).dir).catch((err: unknown) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
  }

  /** Staging dirs of processes that are gone. */
  async leftovers(): Promise<string[]> {
    const entries = await readdir(this.home, { withFileTypes: true });
    const found = await Promise.all(
      entries
        .filter((e) => e.isDirectory())
        .map(async (e) => {
          const dir = join(this.home, e.name);
          const names = await readdir(dir).catch(() => [] as string[]);
          return names.filter((n) => n.startsWith(STAGING_PREFIX) && !stagingInUse(join(dir, n), n, this.#state.staging)).map((n) => join(dir, n));
        }),
    );
    return found.flat();
  }

  async removeLeftovers(): Promise<void> {
    for (const path of await this.leftovers()) await native.removeTree(path).catch(() => rm(path, { recursive: true, force: true }));
  }

  async #staging(dir: string): Promise<string> {
    const staging = await mkdtemp(join(dir, `${STAGING_PREFIX}${process.pid}-`));
    this.#state.staging.add(staging);
    await chown(staging, this.#owner.uid, this.#owner.gid);
    return staging;
  }

  async #dropStaging(staging: string): Promise<void> {
    await native.removeTree(staging).catch((err: unknown) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
    this.#state.staging.delete(staging);
  }

  #lockKeys(id: string, parentId: string | undefined): string[] {
    return [id, ...(parentId === undefined ? [] : [parentId])].map((i) => dirsOf(this.home, i).dir);
  }
}

/** The parent recorded for `id`, if any (validated like any id read from disk). */
export async function readVfsParent(home: string, id: string): Promise<string | undefined> {
  const content = await native.readSmallFile(dirsOf(home, id).parentFile).catch(() => undefined);
  return content === undefined ? undefined : parseStoredId(content);
}

// `dst` exists (an empty dir we made); it ends up a copy of `src`, its own mode and owner included.
async function copyInto(src: string, dst: string, mode: 'content' | 'hardlink', signal: AbortSignal | undefined): Promise<void> {
  if ((await readdir(src)).length > 0) await native.copyTree(src, dst, { mode, ...(signal ? { signal } : {}) });
  const st = await lstat(src);
  await chown(dst, st.uid, st.gid);
  await chmod(dst, st.mode & 0o7777);
}
