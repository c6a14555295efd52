// The layer store: one per home, shared by every process that opens it (the library's
// openStore and every `ogd` command), above a graph driver (containers/storage's
// layers.go over drivers/, with its weak spots fixed). The contract:
//
// - Records. Each layer has one JSON record (home/layers/<id>): parent, kind, names,
//   created, mount label, the size and sha256 of what was applied, and an incomplete
//   flag. A record is written atomically, before its layer's directory is made (with
//   incomplete set) and committed after; remove sets incomplete again before deleting.
//   An incomplete layer is never listed or used, and the next open removes it once its
//   writer is gone (its layer lock is free). For a container layer the driver's lower-id
//   is the truth about its lower; check() reports a record that disagrees.
// - Locks (lib/locks.ts, OFD locks the kernel drops when a holder dies): a lock per
//   layer, held for writing while the layer is created, applied to, removed, mounted or
//   unmounted, and for reading while it is exported or a child is made on it; a store
//   lock for crash recovery and repair. Nothing holds the store lock across a long
//   operation: an import of X never stops a mount of Y.
// - Mount references (home/run/mounts/<id>, on a tmpfs), one per holder: a process (pid + start time)
//   and Store object, or a detached reference (`ogd mount`). A reference whose process
//   is dead is reclaimed by the next operation on that layer; references to a layer
//   that is not mounted any more are dropped (the kernel's mount table wins). unmount()
//   releases only the caller's reference; the last live one unmounts.
// - Refusals: applyDiff into a layer with children or mounts, remove of a layer with
//   children or a live holder (named in the error), both ERR_OGD_LAYER_IN_USE.
import { mkdir, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { DamagedRecordError, InvalidOptionError, LayerExistsError, LayerInUseError, LayerNotFoundError } from '../errors.js';
import { validateId, validateParent } from '../ids.js';
import { lock, tryLock, withLock } from '../locks.js';
import type { HeldLock, PathProbe, ProbeResult } from '../locks.js';
import { applyFileChange, probedData, readSmallFile } from '../native.js';
import type { FileChange } from '../native.js';
import { readMountInfo } from '../mountinfo.js';
import { DRIVER_NAMES, checkDriverHome, createStoreDriver, type DriverName } from '../drivers/create-driver.js';
import type { LayerOnDisk, StoreDriver } from '../drivers/store-driver.js';
import { layerDiskUsage } from '../drivers/disk-usage.js';
import type { ApplyDiffOptions, Change, DiffSource } from '../types.js';
import { StoreFiles, type RecordRead } from './files.js';
import { MAX_NAME_BYTES, isLayerId, parseLayerRecord, unreadable } from './schema.js';
import { DETACHED, describeHolder, holderAlive, newOwnerToken, sameHolder, thisProcess } from './holders.js';
import type { Holder } from './holders.js';
import { killPoint } from './kill-point.js';
import { prepareRunDir, releaseRunDir } from './run-dir.js';
import type {
  CheckOptions,
  CheckReport,
  RepairOptions,
  CleanupOptions,
  ImageInfo,
  ImageRecord,
  StoreCommitOptions,
  StorePullOptions,
  StorePullResult,
  StorePushOptions,
  StorePushResult,
  CleanupResult,
  KeepBlobs,
  Layer,
  LayerKind,
  LayerRecord,
  MountHolder,
  RemoveImageOptions,
  RemoveImageResult,
  RepairReport,
  Store,
  StoreDf,
  StoreDfOptions,
  StorePruneOptions,
  StorePruneResult,
  StoreCreateOptions,
  StoreDiffOptions,
  StoreImportOptions,
  StoreMountOptions,
  StoreOptions,
  ResolvedId,
  StoreResolveOptions,
  StoreUnmountOptions,
  UnmountResult,
} from './types.js';

const KEEP_BLOBS: readonly KeepBlobs[] = ['pushable', 'all', 'none'];

/** One holder's references on a layer (home/run/mounts/<id> holds a list of them). */
export interface MountRef extends Holder {
  count: number;
}

/**
 * The references in a reference file (its content, undefined when there is none, or the
 * error reading it): undefined when the file is damaged. Nothing from the disk is
 * trusted: a holder must look like one.
 */
function parseRefs(file: Buffer | Error | number | undefined): MountRef[] | undefined {
  if (file === undefined) return [];
  if (!Buffer.isBuffer(file)) return undefined;
  try {
    const refs: unknown = JSON.parse(file.toString('utf8'));
    if (Array.isArray(refs) && refs.every(isMountRef)) return refs;
  } catch {
    // not JSON: damaged
  }
  return undefined;
}

function isMountRef(v: unknown): v is MountRef {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return Number.isSafeInteger(r['pid']) && (r['pid'] as number) >= 0 && typeof r['start'] === 'string' && typeof r['owner'] === 'string' && Number.isSafeInteger(r['count']) && (r['count'] as number) > 0;
}

/**
 * Refuses, creating nothing, a home where no store could live (the driver's checks:
 * its support in the kernel, the privilege to mount, the backing filesystem).
 */
export async function checkStoreHome(home: string, opts: Pick<StoreOptions, 'driver'> = {}): Promise<void> {
  if (typeof home !== 'string' || home === '' || home.includes('\0')) throw new InvalidOptionError('home must be a non-empty path');
  const driverName = opts.driver ?? 'overlay';
  if (!DRIVER_NAMES.includes(driverName)) throw new InvalidOptionError(`unknown graph driver ${JSON.stringify(driverName)}`);
  await checkDriverHome(driverName, join(resolve(home), driverName));
}

/** Opens (creating when needed) the store at `home`, removing what killed writers left. */
export async function openStore(home: string, opts: StoreOptions = {}): Promise<Store> {
  if (typeof home !== 'string' || home === '' || home.includes('\0')) throw new InvalidOptionError('home must be a non-empty path');
  if (opts.driver !== undefined && !DRIVER_NAMES.includes(opts.driver)) throw new InvalidOptionError(`unknown graph driver ${JSON.stringify(opts.driver)}`);
  const keepBlobs = opts.keepBlobs ?? 'pushable';
  if (!KEEP_BLOBS.includes(keepBlobs)) throw new InvalidOptionError(`keepBlobs must be one of ${KEEP_BLOBS.join(', ')}, not ${JSON.stringify(opts.keepBlobs)}`);
  if (opts.durable !== undefined && typeof opts.durable !== 'boolean') throw new InvalidOptionError('durable must be a boolean');
  const driverName = await storeDriverName(resolve(home), opts.driver);
  // A home the driver refuses gets no directory at all (and mkdir under /proc is never tried).
  await checkStoreHome(home, { driver: driverName });
  const madeHome = await mkdir(resolve(home), { recursive: true, mode: 0o700 });
  let openLock: HeldLock | undefined;
  let files: StoreFiles;
  let driver: StoreDriver;
  try {
    files = new StoreFiles(await realpath(resolve(home)), { durable: opts.durable !== false });
    await Promise.all([files.layers, join(files.locks, 'layer'), files.tmp, files.incomplete, files.images].map((d) => mkdir(d, { recursive: true, mode: 0o700 })));
    // Taken before the driver binds the home: a cleanup() elsewhere then sees this store open and leaves the home's mount.
    openLock = await lock(files.openLock(), 'read');
    driver = await createStoreDriver(driverName, join(files.home, driverName), {
      ...(opts.uidMaps ? { uidMaps: opts.uidMaps } : {}),
      ...(opts.gidMaps ? { gidMaps: opts.gidMaps } : {}),
      ...(opts.options ? { options: opts.options } : {}),
    });
    await prepareRunDir(files, driver.mountsNothing !== true);
  } catch (err) {
    await openLock?.release();
    // What this open created goes again: the first directory it made, with what it put inside.
    if (madeHome !== undefined) await rm(madeHome, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  const me = await thisProcess();
  // One syncfs flushes a layer and its record's temp file when they share a filesystem (the usual case).
  const [homeDev, driverDev] = await Promise.all([stat(files.tmp), stat(driver.home)]).then((st) => st.map((s) => s.dev));
  const contentFs = homeDev === driverDev ? [driver.home] : [driver.home, files.tmp];
  const store = new LayerStore(files, driver, driverName, { ...me, owner: newOwnerToken() }, openLock!, contentFs, opts.maxBlobSize, keepBlobs);
  await store.recover();
  return store;
}

/**
 * The driver of the store at `home`: the one whose directory is there (a store never
 * mixes drivers: asking for another is an error naming the store's), else `wanted`,
 * else 'overlay'.
 */
async function storeDriverName(home: string, wanted: DriverName | undefined): Promise<DriverName> {
  const present = (await readdir(home).catch(() => [] as string[])).filter((n): n is DriverName => (DRIVER_NAMES as readonly string[]).includes(n));
  const own = present[0];
  if (own === undefined) return wanted ?? 'overlay';
  if (wanted !== undefined && wanted !== own) {
    throw new InvalidOptionError(`the store at ${home} uses the ${own} driver, not ${wanted} (a store never mixes drivers)`);
  }
  return own;
}

export class LayerStore implements Store {
  readonly home: string;
  readonly driverName: string;
  readonly files: StoreFiles;
  readonly driver: StoreDriver;
  /** Which blobs this Store object keeps (see KeepBlobs). */
  readonly keepBlobs: KeepBlobs;
  readonly #me: Holder;
  #openLock: HeldLock | undefined;
  /** Layers this store removed (or whose import it undid) under a lock it still holds: their lock files go too. */
  readonly #gone = new Set<string>();
  /** What one flush of layer content syncs: the driver's filesystem, and the records' when it is another. */
  readonly #contentFs: string[];

  /** The store's default for a pull's maxBlobSize. */
  readonly maxBlobSize: number | undefined;

  constructor(files: StoreFiles, driver: StoreDriver, driverName: string, me: Holder, openLock: HeldLock, contentFs: string[], maxBlobSize?: number, keepBlobs: KeepBlobs = 'pushable') {
    this.maxBlobSize = maxBlobSize;
    this.home = files.home;
    this.keepBlobs = keepBlobs;
    this.files = files;
    this.driver = driver;
    this.driverName = driverName;
    this.#me = me;
    this.#openLock = openLock;
    this.#contentFs = contentFs;
  }

  status(): Array<[string, string]> {
    return this.driver.status();
  }

  // --- records

  /** The layer's record; undefined when there is none, DamagedRecordError when its file is not a record. */
  async record(id: string): Promise<LayerRecord | undefined> {
    const read = await this.readRecord(id);
    if (read.state === 'damaged') throw new DamagedRecordError(read.path, read.reason);
    return read.state === 'ok' ? read.value : undefined;
  }

  /** The layer's record file as read (damaged ones included: check() reports them). */
  readRecord(id: string): Promise<RecordRead<LayerRecord>> {
    validateId(id);
    return this.files.readRecord(this.files.layers, id, parseLayerRecord);
  }

  async #committed(id: string): Promise<LayerRecord> {
    validateId(id);
    const rec = await this.record(id);
    if (rec === undefined || rec.incomplete === true) throw new LayerNotFoundError(id);
    return rec;
  }

  /**
   * Writes the layer's record. `commitsContent`: the record commits what the driver just
   * wrote, which a durable store flushes first (one syncfs, which also covers the
   * record's temp file), so a record that says complete never names content a power cut
   * could take back.
   */
  async writeRecord(rec: LayerRecord, opts: { commitsContent?: boolean } = {}): Promise<void> {
    const tmp = await this.files.stageJson(rec, { flushedLater: opts.commitsContent === true });
    let handedOver = false; // publishJson removes the temp file itself when it fails
    try {
      if (opts.commitsContent === true) await this.files.flushContent(this.#contentFs);
      // The store lock's read side: recovery and repair (its write side) see no record appear or go mid-scan.
      await withLock(this.files.storeLock(), 'read', async () => {
        const marked = rec.incomplete === true;
        if (marked) await writeFile(join(this.files.incomplete, rec.id), '', { mode: 0o600 });
        handedOver = true;
        await this.files.publishJson(tmp, this.files.layers, rec.id, marked ? [this.files.incomplete] : []);
        if (!marked) await this.files.remove(this.files.incomplete, rec.id);
      });
    } catch (err) {
      if (!handedOver) await rm(tmp, { force: true });
      throw err;
    }
  }

  async deleteRecord(id: string): Promise<void> {
    await withLock(this.files.storeLock(), 'read', async () => {
      await this.files.remove(this.files.layers, id);
      await this.files.remove(this.files.incomplete, id);
    });
  }

  /** Every record, incomplete ones included; a damaged one is left out (check() reports it). */
  async records(): Promise<LayerRecord[]> {
    return (await this.recordFiles()).flatMap((r) => (r.state === 'ok' ? [r.value] : []));
  }

  /** Every file in home/layers as read: records and damaged ones (a name that is no layer id is damaged too). */
  async recordFiles(): Promise<Array<RecordRead<LayerRecord>>> {
    const names = await readdir(this.files.layers);
    return Promise.all(
      names.map((n) =>
        isLayerId(n) ? this.files.readRecord(this.files.layers, n, parseLayerRecord) : { state: 'damaged' as const, path: join(this.files.layers, n), reason: 'its name is no layer id' },
      ),
    );
  }

  async #children(id: string): Promise<string[]> {
    return (await this.records()).filter((r) => r.parent === id).map((r) => r.id);
  }

  // --- locks

  /**
   * Runs `fn` holding the given layers' locks, taken in id order so two callers cannot
   * deadlock; `probes` are made under them in the trip that takes the last one, and
   * `fn` gets their answers.
   */
  async #withLayers<T>(
    wanted: Array<[string, 'read' | 'write']>,
    fn: (probed: ProbeResult[]) => Promise<T>,
    probes: readonly PathProbe[] = [],
    kept?: { id: string; keep: (held: HeldLock) => void },
  ): Promise<T> {
    const byId = new Map<string, 'read' | 'write'>();
    for (const [id, kind] of wanted) if (byId.get(id) !== 'write') byId.set(id, kind);
    const ids = [...byId.keys()].sort();
    const held: Array<[string, HeldLock]> = [];
    let succeeded = false;
    try {
      for (const [i, id] of ids.entries()) held.push([id, await lock(this.files.layerLock(id), byId.get(id)!, i === ids.length - 1 ? probes : [])]);
      const result = await fn(held.at(-1)?.[1].probed ?? []);
      succeeded = true;
      return result;
    } finally {
      for (const [id, h] of held.reverse()) {
        // A layer that is gone (removed, or an import undone) takes its lock file with it.
        if (h.kind === 'write' && this.#gone.delete(id)) await h.removeAndRelease();
        else if (succeeded && kept?.id === id) kept.keep(h.downgrade());
        else await h.release();
      }
    }
  }

  async #takeLayers(wanted: Array<[string, 'read' | 'write']>): Promise<() => Promise<void>> {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    let ready!: () => void;
    let failed!: (err: unknown) => void;
    const taken = new Promise<void>((res, rej) => ((ready = res), (failed = rej)));
    const running = this.#withLayers(wanted, async () => {
      ready();
      await done;
    }).catch(failed);
    await taken;
    return async () => {
      release();
      await running;
    };
  }

  // --- create, import, apply

  async create(id: string, opts: StoreCreateOptions = {}): Promise<LayerRecord> {
    const { parent, kind, names, mountLabel } = createArgs(id, opts);
    return this.#withLayers([[id, 'write'], ...(parent ? [[parent, 'read'] as [string, 'read']] : [])], async () => {
      const rec = await this.#createLocked(id, parent, kind, names, mountLabel);
      await this.#measure(rec);
      delete rec.incomplete;
      await this.writeRecord(rec, { commitsContent: true });
      return rec;
    });
  }

  async importLayer(id: string, diff: DiffSource, opts: StoreImportOptions = {}): Promise<LayerRecord> {
    return this.importLayerHeld(id, diff, opts);
  }

  /**
   * importLayer; with `keep`, the new layer's lock is not dropped at the end but turned
   * into a read lock (atomically) and handed to `keep`: a pull holds the layers it made
   * until its image names them, so no prune can take them meanwhile (lib/store/lease.ts).
   */
  async importLayerHeld(id: string, diff: DiffSource, opts: StoreImportOptions = {}, keep?: (held: HeldLock) => void): Promise<LayerRecord> {
    const { parent, kind, names } = createArgs(id, opts);
    const kept = keep !== undefined ? { id, keep } : undefined;
    // A layer made empty by create() is filled, as an applyDiff (its parent the one it
    // was made on); one already filled is refused.
    const made = await this.record(id);
    if (made !== undefined && made.incomplete !== true) {
      if (made.diffSize !== undefined || made.uncompressedDigest !== undefined) throw new LayerExistsError(id);
      if (opts.parent !== undefined && parent !== made.parent) throw new InvalidOptionError(`layer ${JSON.stringify(id)} exists on ${JSON.stringify(made.parent ?? null)}, not on ${JSON.stringify(parent ?? null)}`);
      return this.applyDiff(id, diff, opts);
    }
    return this.#withLayers([[id, 'write'], ...(parent ? [[parent, 'read'] as [string, 'read']] : [])], async () => {
      const rec = await this.#createLocked(id, parent, kind, names, undefined);
      try {
        killPoint('after-create');
        const tar = tarRead(opts);
        rec.diffSize = await this.driver.applyDiff(id, parent, diff, tar.opts);
        killPoint('after-rename');
        const { size, digest } = tar.result();
        rec.uncompressedSize = size;
        rec.uncompressedDigest = digest;
        await this.#measure(rec);
        delete rec.incomplete;
        await this.writeRecord(rec, { commitsContent: true });
        return rec;
      } catch (err) {
        await this.#undoCreate(id);
        throw err;
      }
    }, [], kept);
  }

  /**
   * Sets rec.diskSize: what the layer's own inodes take, measured under its write lock
   * once its content is written (one walk of its directory; see lib/drivers/disk-usage.ts).
   * A walk that fails leaves the size unknown (df measures it then), never the write.
   */
  async #measure(rec: LayerRecord): Promise<void> {
    try {
      const [usage] = await layerDiskUsage(this.driver.home, [{ id: rec.id, parent: rec.parent }]);
      rec.diskSize = usage!.bytes;
    } catch {
      delete rec.diskSize;
    }
  }

  // Under the layer's write lock: the record (incomplete) first, then the layer.
  async #createLocked(id: string, parent: string | undefined, kind: LayerKind, names: string[], mountLabel: string | undefined): Promise<LayerRecord> {
    if ((await this.record(id)) !== undefined) throw new LayerExistsError(id);
    if ((await this.driver.inspect(id)).state !== 'missing') throw new LayerExistsError(id);
    if (parent !== undefined) await this.#committed(parent);
    const rec: LayerRecord = {
      id,
      ...(parent !== undefined ? { parent } : {}),
      kind,
      names,
      created: new Date().toISOString(),
      ...(mountLabel !== undefined ? { mountLabel } : {}),
      incomplete: true,
    };
    await this.writeRecord(rec);
    try {
      const o = mountLabel !== undefined ? { mountLabel } : {};
      if (kind === 'container') await this.driver.createReadWrite(id, parent, o);
      else await this.driver.create(id, parent, o);
    } catch (err) {
      await this.#undoCreate(id);
      throw err;
    }
    return rec;
  }

  async #undoCreate(id: string): Promise<void> {
    await this.driver.destroy(id).catch(() => undefined);
    await this.deleteRecord(id).catch(() => undefined);
    this.#gone.add(id);
  }

  async applyDiff(id: string, diff: DiffSource, opts: ApplyDiffOptions = {}): Promise<LayerRecord> {
    const first = await this.#committed(id);
    return this.#withLayers([[id, 'write'], ...(first.parent ? [[first.parent, 'read'] as [string, 'read']] : [])], async () => {
      const rec = await this.#committed(id);
      const children = await this.#children(id);
      if (children.length > 0) throw new LayerInUseError(id, `layer ${JSON.stringify(children[0])} stands on it; applying a diff would change what it shows`);
      const live = await this.#reconcile(id);
      if (live.length > 0) throw new LayerInUseError(id, `it is mounted by ${describeHolder(live[0]!)}`);
      const tar = tarRead(opts);
      const bytes = await this.driver.applyDiff(id, rec.parent, diff, tar.opts);
      killPoint('after-rename');
      const { size, digest } = tar.result();
      rec.diffSize = (rec.diffSize ?? 0) + bytes;
      rec.uncompressedSize = size;
      rec.uncompressedDigest = digest;
      await this.#measure(rec);
      await this.writeRecord(rec, { commitsContent: true });
      return rec;
    });
  }

  // --- mounts

  /** The layer's references; none when its file is damaged (check reports it, the next write replaces it). */
  async readRefs(id: string): Promise<MountRef[]> {
    return (await this.readRefsFile(id)) ?? [];
  }

  /** The layer's references as written; undefined when the file is damaged: unreadable (a fifo, say), or not a list of holders. */
  async readRefsFile(id: string): Promise<MountRef[] | undefined> {
    return parseRefs(await readSmallFile(join(this.files.mounts, id)).catch((err: unknown) => err as Error));
  }

  async writeRefs(id: string, refs: MountRef[]): Promise<void> {
    await applyFileChange(this.#refsChange(id, refs));
  }

  /** The file change that makes `refs` the layer's references (none: no file). */
  #refsChange(id: string, refs: MountRef[]): FileChange {
    return refs.length === 0 ? { remove: join(this.files.mounts, id) } : this.files.volatileJson(this.files.mounts, id, refs);
  }

  /**
   * Under the layer's write lock: its live references, after dropping those of a
   * container that is not mounted any more (the kernel wins) and reclaiming dead
   * holders' (written back when anything changed). `known`/`knownRefs`: the disk and
   * the references as just read under the same lock.
   */
  async #reconcile(id: string, known?: LayerOnDisk, knownRefs?: MountRef[]): Promise<MountRef[]> {
    const [refs, disk] = await Promise.all([knownRefs ?? this.readRefs(id), known ?? this.driver.inspect(id)]);
    const mounted = disk.state === 'container' ? disk.mounted : true;
    const cache = this.#livenessCache();
    const alive = mounted ? await Promise.all(refs.map((ref) => holderAlive(ref, cache))) : [];
    const live = mounted ? refs.filter((_, i) => alive[i]) : [];
    if (live.length !== refs.length) await this.writeRefs(id, live);
    return live;
  }

  /**
   * A mount or unmount of `id` under its write lock: the lock is taken in the same
   * trip as the lookups of the layer's record, its references and its disk, and `fn`
   * gets them (live references only; none of them changes under the lock).
   */
  #withMountState<T>(id: string, fn: (state: { rec: LayerRecord; disk: LayerOnDisk; live: MountRef[] }) => Promise<T>): Promise<T> {
    const plan = this.driver.planInspect(id);
    const probes: PathProbe[] = [['read', join(this.files.layers, id)], ['read', join(this.files.mounts, id)], ...plan.probes];
    return this.#withLayers(
      [[id, 'write']],
      async ([record, refs, ...disk]) => {
        const rec = probedRecord(join(this.files.layers, id), id, record);
        if (rec === undefined || rec.incomplete === true) throw new LayerNotFoundError(id);
        const known = await plan.finish(disk);
        return fn({ rec, disk: known, live: await this.#reconcile(id, known, parseRefs(refs) ?? []) });
      },
      probes,
    );
  }

  // This process is alive: its own references need no read of /proc.
  #livenessCache(): Map<number, string | undefined> {
    return new Map([[this.#me.pid, this.#me.start]]);
  }

  async mount(id: string, opts: StoreMountOptions = {}): Promise<string> {
    validateId(id);
    const holder = opts.detached === true ? DETACHED : this.#me;
    return this.#withMountState(id, async ({ rec, disk, live }) => {
      if (disk.state !== 'container' && disk.state !== 'image') throw new LayerNotFoundError(id);
      const before = live.map((r) => ({ ...r }));
      const mine = live.find((r) => sameHolder(r, holder));
      if (mine) mine.count++;
      else live.push({ ...holder, count: 1 });
      if (disk.state === 'container' && !disk.mounted) {
        const label = opts.mountLabel ?? rec.mountLabel;
        // The reference is written in the mount's own native job, right after the mount
        // (a kill between leaves a mount nobody holds, which the next open unmounts). A
        // failed mount puts the references back as they were.
        try {
          await this.driver.mountLayer(id, label !== undefined ? { mountLabel: label } : {}, { known: disk, references: this.#refsChange(id, live) });
        } catch (err) {
          await this.writeRefs(id, before).catch(() => undefined);
          throw err;
        }
        killPoint('after-mount');
      } else {
        await this.writeRefs(id, live);
      }
      return disk.path;
    });
  }

  async unmount(id: string, opts: StoreUnmountOptions = {}): Promise<UnmountResult> {
    validateId(id);
    const holder = opts.detached === true ? DETACHED : this.#me;
    return this.#withMountState(id, async ({ disk, live }) => {
      let refs = live;
      const before = refs.map((r) => ({ ...r }));
      let released = false;
      if (opts.force === true) {
        released = refs.length > 0;
        refs = [];
      } else {
        const mine = refs.find((r) => sameHolder(r, holder));
        if (mine !== undefined) {
          released = true;
          if (--mine.count === 0) refs = refs.filter((r) => r !== mine);
        }
      }
      // The disk as read above: under the layer's write lock nobody mounts or unmounts it.
      if (refs.length === 0 && disk.state === 'container' && disk.mounted) {
        // The references go in the unmount's own native job, right before it (a kill
        // between leaves a mount nobody holds, which the next open unmounts). A failed
        // unmount (EBUSY) puts them back as they were, so a retry (say with lazy)
        // releases the same one.
        try {
          await this.driver.unmountLayer(id, { lazy: opts.lazy === true }, { known: disk, references: this.#refsChange(id, refs) });
        } catch (err) {
          await this.writeRefs(id, before).catch(() => undefined);
          throw err;
        }
      } else {
        await this.writeRefs(id, refs);
      }
      return { released, mounted: refs.length > 0 && disk.state === 'container', references: total(refs), holders: refs.map(toPublicHolder) };
    });
  }

  // --- reading

  #diffParent(rec: LayerRecord, opts: StoreDiffOptions): string | undefined {
    if (opts.parent === null) return undefined;
    return opts.parent === undefined ? rec.parent : validateParent(opts.parent);
  }

  async #reading<T>(id: string, opts: StoreDiffOptions, fn: (parent: string | undefined) => Promise<T>): Promise<T> {
    const first = await this.#committed(id);
    const parent = this.#diffParent(first, opts);
    return this.#withLayers([[id, 'read'], ...(parent ? [[parent, 'read'] as [string, 'read']] : [])], async () => {
      await this.#committed(id);
      if (parent !== undefined) await this.#committed(parent);
      return fn(parent);
    });
  }

  changes(id: string, opts: StoreDiffOptions = {}): Promise<Change[]> {
    return this.#reading(id, opts, (parent) => this.driver.changes(id, parent, longOpts(opts)));
  }

  diffSize(id: string, opts: StoreDiffOptions = {}): Promise<number> {
    return this.#reading(id, opts, (parent) => this.driver.diffSize(id, parent, longOpts(opts)));
  }

  writeDiff(id: string, fd: number, opts: StoreDiffOptions = {}): Promise<number> {
    return this.#reading(id, opts, (parent) => this.driver.writeDiff(id, parent, fd, longOpts(opts)));
  }

  /** The tar stream holds the layers' read locks until it closes. */
  async diff(id: string, opts: StoreDiffOptions = {}): Promise<Readable> {
    const first = await this.#committed(id);
    const parent = this.#diffParent(first, opts);
    const release = await this.#takeLayers([[id, 'read'], ...(parent ? [[parent, 'read'] as [string, 'read']] : [])]);
    try {
      await this.#committed(id);
      if (parent !== undefined) await this.#committed(parent);
      const stream = await this.driver.diff(id, parent, longOpts(opts));
      stream.once('close', () => void release());
      return stream;
    } catch (err) {
      await release();
      throw err;
    }
  }

  // --- remove

  async remove(id: string): Promise<void> {
    await this.#committed(id);
    await this.#withLayers([[id, 'write']], async () => {
      await this.removeLocked(id);
      this.#gone.add(id);
    });
  }

  /**
   * remove() for a caller that holds the layer's write lock (prune: it takes the locks
   * of everything it removes first, without waiting, and removes their files after).
   */
  async removeLocked(id: string): Promise<void> {
    const rec = await this.#committed(id);
    const children = await this.#children(id);
    if (children.length > 0) throw new LayerInUseError(id, `it is the parent of ${children.join(', ')}`);
    const { imageRecords, damagedImages } = await import('./images.js');
    const image = (await imageRecords(this)).find((r) => r.incomplete !== true && r.layers.some((l) => l.id === id));
    if (image !== undefined) throw new LayerInUseError(id, `it is a layer of image ${image.names[0] ?? image.id} (ogd rmi removes an image)`);
    const damaged = rec.kind === 'image' ? await damagedImages(this) : [];
    if (damaged.length > 0) throw new LayerInUseError(id, `image record ${damaged[0]} is damaged, so which images use it is not known (ogd check --repair)`);
    const live = await this.#reconcile(id);
    if (live.length > 0) throw new LayerInUseError(id, `it is mounted by ${describeHolder(live[0]!)}`);
    // A mount nobody holds (a killed process's) is reclaimed.
    await this.driver.unmountLayer(id);
    rec.incomplete = true;
    await this.writeRecord(rec);
    killPoint('remove-marked');
    try {
      await this.driver.remove(id);
    } catch (err) {
      delete rec.incomplete;
      await this.writeRecord(rec).catch(() => undefined);
      throw err;
    }
    // The layer's directory is gone for good before its record goes: a power cut
    // between leaves an incomplete layer (removed at the next open), never a directory
    // without a record that repair would bring back.
    await this.files.flushContent(this.#contentFs);
    await this.files.remove(this.files.mounts, id);
    await this.deleteRecord(id);
  }

  // --- listing

  async exists(id: string): Promise<boolean> {
    validateId(id);
    const rec = await this.record(id);
    return rec !== undefined && rec.incomplete !== true;
  }

  async layer(id: string): Promise<Layer> {
    const rec = await this.#committed(id);
    return (await this.#withHolders([rec]))[0]!;
  }

  async list(): Promise<Layer[]> {
    const recs = (await this.records()).filter((r) => r.incomplete !== true).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return this.#withHolders(recs);
  }

  // Live references, read without the layers' locks (a snapshot, as a listing is).
  async #withHolders(recs: LayerRecord[]): Promise<Layer[]> {
    const withRefs = new Set(await readdir(this.files.mounts));
    const mountPoints = withRefs.size === 0 ? new Set<string>() : new Set((await readMountInfo()).map((m) => m.mountPoint));
    const cache = this.#livenessCache();
    return Promise.all(
      recs.map(async (rec) => {
        let holders: MountHolder[] = [];
        if (withRefs.has(rec.id)) {
          const disk = await this.driver.inspect(rec.id);
          const mounted = disk.state === 'image' || (disk.state === 'container' && mountPoints.has(disk.path));
          if (mounted) {
            const refs = await this.readRefs(rec.id);
            const alive = await Promise.all(refs.map((r) => holderAlive(r, cache)));
            holders = refs.filter((_, i) => alive[i]).map(toPublicHolder);
          }
        }
        return { ...rec, mountCount: holders.reduce((n, h) => n + h.count, 0), holders };
      }),
    );
  }

  metadata(id: string): Promise<Record<string, string>> {
    return this.#committed(id).then(() => this.driver.getMetadata(id));
  }

  // --- crash recovery, check, repair (lib/store/check.ts)

  /** At open: removes incomplete layers whose writer is gone, temp files, mounts nobody holds. */
  async recover(): Promise<void> {
    const { recover } = await import('./check.js');
    await recover(this);
  }

  async check(opts: CheckOptions = {}): Promise<CheckReport> {
    const { check } = await import('./check.js');
    return check(this, opts);
  }

  async repair(opts: RepairOptions = {}): Promise<RepairReport> {
    const { repair } = await import('./check.js');
    return repair(this, opts);
  }

  /** Under the store lock (held by the caller): tries the layer's write lock; undefined when a live process holds it. */
  tryLayer(id: string): Promise<HeldLock | undefined> {
    return tryLock(this.files.layerLock(id), 'write');
  }

  // --- images (lib/store/images.ts)

  async pull(ref: string, opts: StorePullOptions = {}): Promise<StorePullResult> {
    return (await import('./images.js')).pull(this, ref, opts);
  }

  async images(): Promise<ImageInfo[]> {
    return (await import('./images.js')).listImages(this);
  }

  async image(nameOrId: string): Promise<ImageInfo> {
    const images = await import('./images.js');
    return images.infoOf(this, await images.resolveImage(this, nameOrId));
  }

  async imageRecord(nameOrId: string): Promise<ImageRecord> {
    return (await import('./images.js')).resolveImage(this, nameOrId);
  }

  async removeImage(nameOrId: string, opts: RemoveImageOptions = {}): Promise<RemoveImageResult> {
    return (await import('./images.js')).removeImage(this, nameOrId, opts);
  }

  async tag(nameOrId: string, name: string): Promise<ImageInfo> {
    return (await import('./images.js')).tagImage(this, nameOrId, name);
  }

  async untag(nameOrId: string, names: string[] = []): Promise<ImageInfo> {
    return (await import('./images.js')).untagImage(this, nameOrId, names);
  }

  // --- space (lib/store/df.ts, lib/store/prune.ts)

  async df(opts: StoreDfOptions = {}): Promise<StoreDf> {
    return (await import('./df.js')).df(this, opts);
  }

  async prune(opts: StorePruneOptions = {}): Promise<StorePruneResult> {
    return (await import('./prune.js')).prune(this, opts);
  }

  async commit(container: string, name: string, opts: StoreCommitOptions = {}): Promise<ImageInfo> {
    return (await import('./images.js')).commit(this, container, name, opts);
  }

  async push(nameOrId: string, ref: string, opts: StorePushOptions = {}): Promise<StorePushResult> {
    return (await import('./images.js')).push(this, nameOrId, ref, opts);
  }

  async resolveLayer(nameOrId: string, opts: StoreResolveOptions = {}): Promise<string> {
    return (await import('./resolve.js')).resolveLayerArg(this, nameOrId, opts);
  }

  async resolve(nameOrId: string, opts: StoreResolveOptions = {}): Promise<ResolvedId> {
    return (await import('./resolve.js')).resolveArg(this, nameOrId, opts);
  }

  // --- cleanup

  async cleanup(opts: CleanupOptions = {}): Promise<CleanupResult> {
    const unmounted: string[] = [];
    const errors: unknown[] = [];
    for (const id of await readdir(this.files.mounts)) {
      try {
        await this.#withLayers([[id, 'write']], async () => {
          // Under the layer's write lock the disk read here is still the disk below.
          const [before, disk] = await Promise.all([this.readRefs(id), this.driver.inspect(id)]);
          const live = await this.#reconcile(id, disk, before);
          const keep = opts.force === true ? [] : live.filter((r) => !sameHolder(r, this.#me) && !(opts.detached === true && r.pid === 0));
          if (keep.length !== before.length) await this.writeRefs(id, keep);
          if (keep.length === 0 && disk.state === 'container' && disk.mounted) {
            await this.driver.unmountLayer(id, {}, { known: disk });
            unmounted.push(id);
          }
        });
      } catch (err) {
        errors.push(err);
      }
    }
    if (opts.force === true) {
      for (const id of await this.driver.layerIds()) {
        const disk = await this.driver.inspect(id).catch(() => undefined);
        if (disk?.state === 'container' && disk.mounted) {
          await this.driver.unmountLayer(id).catch((err: unknown) => errors.push(err));
          unmounted.push(id);
        }
      }
    }
    let homeReleased = false;
    await this.#openLock?.release();
    this.#openLock = undefined;
    // The home's mount goes only when no other process has the store open (or --force).
    const alone = opts.force === true ? undefined : await tryLock(this.files.openLock(), 'write');
    if (opts.force === true || alone !== undefined) {
      const busy = (await readdir(this.files.mounts)).length > 0;
      if (!busy || opts.force === true) {
        await this.driver.cleanup().catch((err: unknown) => errors.push(err));
        await releaseRunDir(this.files).catch((err: unknown) => errors.push(err));
        homeReleased = true;
      }
    }
    await alone?.release();
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'store cleanup: some mounts could not be released');
    return { unmounted: [...new Set(unmounted)], homeReleased };
  }

  /**
   * Moves a v1 CLI index (home/layers.json, before the store) into records; under the
   * store lock. Its entries are a stranger's: one that does not make a valid record
   * (an id that climbs out of the home, say) is left behind in layers.json.v1.
   */
  async migrateV1(): Promise<boolean> {
    const old: unknown = await this.files.readJson<unknown>(this.home, 'layers.json').catch(() => undefined);
    if (old === undefined) return false;
    const layers = typeof old === 'object' && old !== null ? (old as { layers?: unknown }).layers : undefined;
    const entries = typeof layers === 'object' && layers !== null && !Array.isArray(layers) ? Object.entries(layers) : [];
    for (const [id, entry] of entries) {
      if (!isLayerId(id) || typeof entry !== 'object' || entry === null) continue;
      const r = entry as { parent?: unknown; kind?: unknown; label?: unknown; created?: unknown; size?: unknown };
      const candidate = {
        id,
        ...(r.parent ? { parent: r.parent } : {}),
        kind: r.kind ?? 'image',
        names: [],
        created: r.created ?? new Date().toISOString(),
        ...(r.label !== undefined ? { mountLabel: r.label } : {}),
        ...(r.size !== undefined ? { diffSize: r.size } : {}),
      };
      const parsed = parseLayerRecord(Buffer.from(JSON.stringify(candidate)), id);
      if (!parsed.ok || (await this.readRecord(id)).state !== 'missing') continue;
      await this.files.writeJson(this.files.layers, id, parsed.value, true);
    }
    await rename(join(this.home, 'layers.json'), join(this.home, 'layers.json.v1'));
    await this.files.flushDirs([this.home]);
    return true;
  }
}

/** The record a 'read' probe found (undefined: none); DamagedRecordError when it is not one. */
function probedRecord(path: string, id: string, probed: ProbeResult | undefined): LayerRecord | undefined {
  let data: Buffer | undefined;
  try {
    data = probedData(probed!);
  } catch (err) {
    throw new DamagedRecordError(path, unreadable(err));
  }
  if (data === undefined) return undefined;
  const parsed = parseLayerRecord(data, id);
  if (!parsed.ok) throw new DamagedRecordError(path, parsed.reason);
  return parsed.value;
}

function createArgs(id: string, opts: StoreCreateOptions) {
  validateId(id);
  const parent = validateParent(opts.parent);
  const kind = opts.kind ?? 'image';
  if (kind !== 'image' && kind !== 'container') throw new InvalidOptionError(`kind must be 'image' or 'container', not ${JSON.stringify(kind)}`);
  const names = opts.names ?? [];
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || Buffer.byteLength(n) > MAX_NAME_BYTES)) throw new InvalidOptionError(`names must be an array of strings of at most ${MAX_NAME_BYTES} bytes`);
  if (opts.mountLabel !== undefined && typeof opts.mountLabel !== 'string') throw new InvalidOptionError('mountLabel must be a string');
  return { parent, kind, names: [...names], mountLabel: opts.mountLabel };
}

/** The driver's apply options, and the tar's length and digest (measured by the apply job) once it has succeeded. */
function tarRead(opts: ApplyDiffOptions): { opts: ApplyDiffOptions; result(): { size: number; digest: string } } {
  let read: { size: number; digest: string } | undefined;
  return {
    opts: {
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.allowPrivilegedXattrs !== undefined ? { allowPrivilegedXattrs: opts.allowPrivilegedXattrs } : {}),
      ...(opts.allowEmpty !== undefined ? { allowEmpty: opts.allowEmpty } : {}),
      onTarDigest: (tar) => {
        read = tar;
        opts.onTarDigest?.(tar);
      },
    },
    result: () => {
      if (read === undefined) throw new Error('the driver applied the diff without measuring it');
      return read;
    },
  };
}

function longOpts(opts: StoreDiffOptions) {
  return { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
}

function total(refs: MountRef[]): number {
  return refs.reduce((n, r) => n + r.count, 0);
}

function toPublicHolder(r: MountRef): MountHolder {
  return { pid: r.pid, detached: r.pid === 0, count: r.count };
}
