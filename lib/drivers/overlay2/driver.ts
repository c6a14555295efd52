// The overlay2 graph driver: containers/storage's overlay layout (layout.ts). Each
// layer keeps only its own changes in diff/, and a mount stacks the diffs of its
// chain, so a child image costs a few directories whatever its parent's size.
//
// - get() of any layer is a read-write overlay with diff/ as upper over its lowers (a
//   base layer's: empty/), as c/s's overlay driver mounts it: a builder that writes an
//   image layer in place writes its diff/. The store mounts an image layer read-only
//   instead (mountLayer): its recorded size and digest stay true. Refcounted per
//   process (lib/mount-counter.ts).
// - applyDiff stages: a hardlink copy of diff/ becomes the upper of an overlay over the
//   layer's lowers, the tar is applied through that mount by the one apply engine
//   (lib/archive/apply.ts: the hostile-input rules, whiteouts), so the kernel itself
//   writes overlay whiteouts (char 0/0) and opaque dirs into the staged upper, which
//   then replaces diff/ with one RENAME_EXCHANGE. Cost: the tar's entries and the
//   directories they touch, never the parent's size. A base layer applies straight
//   into its staged diff.
// - changes/diff read diff/ (diff.ts), like c/s's overlay driver.
import { chown, mkdir, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../../native.js';
import type { FileChange } from '../../native.js';
import { applyTar } from '../../archive/apply.js';
import { AbortError, InvalidIdError, InvalidOptionError, LayerNotFoundError, NotSupportedError, isSystemError } from '../../errors.js';
import { validateId } from '../../ids.js';
import { mountPointsUnder } from '../../mountinfo.js';
import type { ApplyDiffOptions, CreateOptions, DiffSource, DriverOptions, GetOptions, PutOptions } from '../../types.js';
import { DriverBase, initDriver, type DriverSetup } from '../driver-base.js';
import { checkOverlayHome } from '../home.js';
import { isOverlayMounted } from '../home-state.js';
import { lstatOrUndefined } from '../lstat.js';
import type { LayerTrees } from '../naive-diff.js';
import { unmountQuietly } from '../overlayfs.js';
import { copyInto, staleStaging } from '../staging.js';
import { knownMounted, type LayerOnDisk, type MountHandoff, type StoreDriver } from '../store-driver.js';
import { LINK_DIR, dirsOf, idOfShortName, newShortName, readLowerNames, readShortName, shortPath } from './layout.js';
import { MAX_STACK, defaultMountMethod, mountStack, type MountMethod } from './mount.js';

/** validateId, and not the short-link dir's name, which shares the home with the layers. */
function checkId(id: unknown): asserts id is string {
  validateId(id);
  if (id === LINK_DIR) throw new InvalidIdError(id, `reserved by the overlay2 driver for its short links (home/${LINK_DIR})`);
}

/** A layer as a mount needs it. */
export interface Overlay2Layer {
  id: string;
  diff: string;
  merged: string;
  work: string;
  empty: string;
  container: boolean;
  /** The stack under it, top first (short-link paths), [] for a base layer. */
  lowers: string[];
  /** Its parent's id (what the first lower is), if any. */
  parent?: string;
}

function parseOptions(options: readonly string[]): MountMethod {
  let method = defaultMountMethod();
  for (const o of options) {
    const m = /^(?:overlay2\.)?mount_api=(fsconfig|mount2)$/.exec(o);
    if (m === null) throw new InvalidOptionError(`unknown overlay2 option ${JSON.stringify(o)} (known: mount_api=fsconfig|mount2)`);
    method = m[1] as MountMethod;
  }
  return method;
}

export function initOverlay2(home: string, opts: DriverOptions): Promise<Overlay2Driver> {
  const method = parseOptions(opts.options ?? []);
  return initDriver(home, opts, checkOverlayHome, async (setup) => {
    await mkdir(join(setup.state.path, LINK_DIR), { mode: 0o755 }).catch((err: unknown) => {
      if (!isSystemError(err, 'EEXIST')) throw err;
    });
    const driver = new Overlay2Driver(setup, method);
    await driver.removeLeftovers();
    await driver.bindHome();
    return driver;
  });
}

export class Overlay2Driver extends DriverBase implements StoreDriver {
  readonly name = 'overlay2';
  readonly mountMethod: MountMethod;

  constructor(setup: DriverSetup, method: MountMethod) {
    super(setup);
    this.mountMethod = method;
  }

  /** validateId, and not the short-link dir's name, which shares the home with the layers. */
  protected override checkId(id: unknown): asserts id is string {
    checkId(id);
  }

  protected override reserved(name: string): boolean {
    return name === LINK_DIR;
  }

  status(): Array<[string, string]> {
    return [
      ['Backing Filesystem', this.backingFs],
      ['Mount Method', this.mountMethod === 'fsconfig' ? 'fsconfig (new mount API, one lowerdir+ per layer)' : 'mount(2) data with short links'],
      ['Max Stack Depth', String(this.mountMethod === 'fsconfig' ? MAX_STACK : 500)],
    ];
  }

  /** Validates `id` and reads what a mount of it needs; LayerNotFound when it does not exist or is half made. */
  async layer(id: string): Promise<Overlay2Layer> {
    checkId(id);
    const d = dirsOf(this.home, id);
    const short = await readShortName(this.home, id);
    if (short === undefined) throw new LayerNotFoundError(id);
    const [names, container] = await Promise.all([readLowerNames(this.home, id), lstatOrUndefined(d.containerFile)]);
    const parent = names.length > 0 ? await idOfShortName(this.home, names[0]!) : undefined;
    return {
      id,
      diff: d.diff,
      merged: d.merged,
      work: d.work,
      empty: d.empty,
      container: container !== undefined,
      lowers: names.map((n) => shortPath(this.home, n)),
      ...(parent !== undefined ? { parent } : {}),
    };
  }

  async getMetadata(id: string): Promise<Record<string, string>> {
    const l = await this.layer(id);
    return {
      LowerDir: l.lowers.length > 0 ? l.lowers.join(':') : l.empty,
      UpperDir: l.diff,
      WorkDir: l.work,
      MergedDir: l.merged,
    };
  }

  async exists(id: string): Promise<boolean> {
    checkId(id);
    return this.hasLayerDir(id);
  }

  createReadWrite(id: string, parent?: string, opts?: CreateOptions): Promise<void> {
    return this.#create(id, parent, opts ?? {}, true);
  }

  create(id: string, parent?: string, opts?: CreateOptions): Promise<void> {
    return this.#create(id, parent, opts ?? {}, false);
  }

  async #create(id: string, parent: string | undefined, opts: CreateOptions, container: boolean): Promise<void> {
    checkId(id);
    const parentId = this.checkParent(parent);
    if (opts.storageOpt !== undefined && Object.keys(opts.storageOpt).length > 0) throw new InvalidOptionError('--storage-opt is not supported for overlay2');
    await this.withLayerLocks(id, parentId, async () => {
      let lower: string[] = [];
      let diffMode = 0o755;
      if (parentId !== undefined) {
        const p = await this.layer(parentId);
        const short = (await readShortName(this.home, parentId))!;
        lower = [short, ...p.lowers.map((l) => l.slice(this.home.length + 1 + LINK_DIR.length + 1))];
        if (lower.length + 1 > MAX_STACK) throw new NotSupportedError(`layer ${JSON.stringify(id)} would stand on ${lower.length} layers; overlay2 mounts at most ${MAX_STACK}`);
        diffMode = ((await lstatOrUndefined(p.diff))?.mode ?? 0o755) & 0o7777;
      }
      const d = dirsOf(this.home, id);
      await this.makeLayerDir(id);
      let link: string | undefined;
      try {
        await this.mkdirAs(d.diff, diffMode);
        await this.mkdirAs(d.work, 0o700);
        await this.mkdirAs(d.merged, 0o700);
        if (lower.length === 0) await this.mkdirAs(d.empty, 0o700);
        else await writeFile(d.lowerFile, lower.map((s) => `${LINK_DIR}/${s}`).join(':'), { mode: 0o644, flag: 'wx' });
        if (container) await writeFile(d.containerFile, '', { mode: 0o644, flag: 'wx' });
        for (;;) {
          const short = newShortName();
          try {
            await symlink(join('..', id, 'diff'), shortPath(this.home, short));
            link = short;
            break;
          } catch (err) {
            if (!isSystemError(err, 'EEXIST')) throw err;
          }
        }
        // Last: a layer without its link file was never finished.
        await writeFile(d.linkFile, link, { mode: 0o644, flag: 'wx' });
      } catch (err) {
        if (link !== undefined) await unlink(shortPath(this.home, link)).catch(() => undefined);
        await rm(d.dir, { recursive: true, force: true });
        throw err;
      }
    });
  }

  /** The short link first, as c/s: never two links to one layer, never a link into a half-removed one. */
  protected override async removeLayerDir(id: string): Promise<void> {
    const short = await readShortName(this.home, id).catch(() => undefined);
    if (short !== undefined) await unlink(shortPath(this.home, short)).catch(() => undefined);
    await super.removeLayerDir(id);
  }

  /** Layers whose lower file starts with `id`'s short link. */
  protected async layersOn(id: string): Promise<string[]> {
    const short = await readShortName(this.home, id).catch(() => undefined);
    if (short === undefined) return [];
    const prefix = `${LINK_DIR}/${short}`;
    return this.layersWith(id, 'lower', (content) => {
      const text = content.toString('latin1');
      return text === prefix || text.startsWith(prefix + ':');
    });
  }

  /**
   * Mounts the layer on its merged/ (no counting): read-write with diff/ as upper, or
   * (`readOnly`) its whole stack as lowers. `after`: made in the mount's native job.
   */
  async #mount(l: Overlay2Layer, mountLabel: string | undefined, readOnly: boolean, after?: FileChange): Promise<void> {
    const label = mountLabel !== undefined ? { mountLabel } : {};
    if (!readOnly) {
      await mountStack(this.mountMethod, this.home, l.merged, { lowers: l.lowers.length > 0 ? l.lowers : [l.empty], upper: l.diff, work: l.work, ...label }, after);
      try {
        await chown(join(l.work, 'work'), this.owner.uid, this.owner.gid);
      } catch (err) {
        await unmountQuietly(l.merged);
        throw err;
      }
    } else {
      await this.mountView(l, l.merged, mountLabel, after);
    }
  }

  /** A read-only overlay of the layer's whole stack on `target`. */
  mountView(l: Overlay2Layer, target: string, mountLabel?: string, after?: FileChange): Promise<void> {
    // A read-only overlay needs two lowers: a base layer adds its empty dir.
    const lowers = [l.diff, ...(l.lowers.length > 0 ? l.lowers : [l.empty])];
    return mountStack(this.mountMethod, this.home, target, { lowers, ...(mountLabel !== undefined ? { mountLabel } : {}) }, after);
  }

  async get(id: string, opts: GetOptions = {}): Promise<string> {
    const l = await this.layer(id);
    await this.state.mounts.acquire(l.merged, () => this.#mount(l, opts.mountLabel, false));
    this.hold(l.merged);
    return l.merged;
  }

  async applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<number> {
    checkId(id);
    const parentId = this.checkParent(parent);
    return this.withLayerLocks(id, parentId, async () => {
      const l = await this.layer(id);
      if (parentId !== undefined && !(await this.exists(parentId))) throw new LayerNotFoundError(parentId);
      return this.whileUnheld(id, async () => {
        await this.refuseStoodOn(id);
        if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
        return this.#applyStaged(l, diff, opts);
      });
    });
  }

  async #applyStaged(l: Overlay2Layer, diff: DiffSource, opts: ApplyDiffOptions): Promise<number> {
    const staging = await this.newStaging(l.id);
    try {
      const upper = join(staging, 'upper');
      await mkdir(upper);
      await copyInto(l.diff, upper, 'hardlink', opts.signal);
      const applyOpts = { ...opts, uidMaps: this.uidMaps, gidMaps: this.gidMaps };
      let bytes: number;
      if (l.lowers.length === 0) {
        bytes = await applyTar(upper, diff, applyOpts);
      } else {
        const work = join(staging, 'work');
        const merged = join(staging, 'merged');
        await this.mkdirAs(work, 0o700);
        await this.mkdirAs(merged, 0o700);
        await mountStack(this.mountMethod, this.home, merged, { lowers: l.lowers, upper, work });
        try {
          await chown(join(work, 'work'), this.owner.uid, this.owner.gid);
          bytes = await applyTar(merged, diff, applyOpts);
        } finally {
          await unmountQuietly(merged);
        }
      }
      await native.rename2(upper, l.diff, native.constants.RENAME_EXCHANGE);
      return bytes;
    } finally {
      await this.dropStaging(staging);
    }
  }

  /** The naive diff reads read-only views, and a layer against its own parent from diff/ (diff.ts, loaded with the exporter). */
  protected async layerTrees(): Promise<LayerTrees> {
    return (await import('./diff.js')).diffView(this);
  }

  // --- What a store asks (lib/drivers/store-driver.ts). Every overlay2 layer needs a
  // mount to be read, images included, so the store sees each as a 'container':
  // its lower layer is its parent (none for a base layer).

  async inspect(id: string): Promise<LayerOnDisk> {
    checkId(id);
    if (!(await this.exists(id))) return { state: 'missing' };
    let l: Overlay2Layer;
    try {
      l = await this.layer(id);
    } catch {
      return { state: 'partial' };
    }
    const lowerMissing = l.lowers.length > 0 && l.parent === undefined;
    return { state: 'container', path: l.merged, lowerId: l.parent, lowerMissing, mounted: await isOverlayMounted(l.merged) };
  }

  async mountLayer(id: string, opts: GetOptions = {}, { known, references }: MountHandoff = {}): Promise<string> {
    const l = await this.layer(id);
    // No references (own or foreign) means nothing mounted there: the counter has just looked, or was told.
    await this.state.mounts.withLock(
      l.merged,
      async (count) => {
        // The store's image layers are read-only: what it recorded of them stays true.
        if (count === 0) await this.#mount(l, opts.mountLabel, !l.container, references);
        else if (references !== undefined) await native.applyFileChange(references);
      },
      knownMounted(known),
    );
    return l.merged;
  }

  async unmountLayer(id: string, opts: PutOptions = {}, { known, references }: MountHandoff = {}): Promise<void> {
    checkId(id);
    const merged = dirsOf(this.home, id).merged;
    await this.state.mounts.withLock(
      merged,
      async (count) => {
        if (count > 0) await native.unmount(merged, opts.lazy === true ? native.constants.MNT_DETACH : 0, references);
        else if (references !== undefined) await native.applyFileChange(references);
      },
      knownMounted(known),
    );
  }

  override async destroy(id: string): Promise<void> {
    checkId(id);
    // Every link into it, its link file or not (a create killed before writing it).
    for (const short of await readdir(join(this.home, LINK_DIR)).catch(() => [] as string[])) {
      if ((await idOfShortName(this.home, short).catch(() => undefined)) === id) await unlink(shortPath(this.home, short)).catch(() => undefined);
    }
    await super.destroy(id);
  }

  /** Staging dirs of processes that are gone, and short links to no finished layer. */
  async leftovers(): Promise<string[]> {
    const staging = await staleStaging(this.home, this.state.staging, { skip: (name) => this.reserved(name) });
    const links = await readdir(join(this.home, LINK_DIR)).catch(() => [] as string[]);
    // A link into a layer dir that is gone (a remove or a failed create killed midway).
    // One into a dir without its link file may be a create in progress: destroy() takes it.
    const stale = await Promise.all(
      links.map(async (short) => {
        const id = await idOfShortName(this.home, short).catch(() => undefined);
        if (id !== undefined && (await this.exists(id))) return undefined;
        return join(this.home, LINK_DIR, short);
      }),
    );
    return [...staging, ...stale.filter((p): p is string => p !== undefined)];
  }

  async removeLeftovers(): Promise<void> {
    for (const path of await this.leftovers()) {
      if (path.startsWith(join(this.home, LINK_DIR) + '/')) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      for (const m of (await mountPointsUnder(path)).reverse()) await native.unmount(m, native.constants.MNT_DETACH).catch(() => undefined);
      await native.removeTree(path).catch(() => rm(path, { recursive: true, force: true }));
    }
  }
}
