// The store's own files under its home (next to the driver's directory):
//
//   home/layers/<id>   one JSON record per layer (durable: written to a temp file,
//                      fsynced, renamed into place)
//   home/run/          the store's volatile state, on a tmpfs of its own for a driver
//                      that mounts (lib/store/run-dir.ts):
//   home/run/mounts/<id>  the layer's mount references, one per holder (checked against
//                      the kernel's mount table and the holders' liveness on every use, so
//                      a dead holder makes them stale, never wrong)
//   home/run/tmp/      temp files of the references' atomic writes, named like home/tmp's
//   home/locks/store   the store-wide lock: write for crash recovery, check and repair;
//                      read while a record is added or deleted
//   home/locks/open    read-held by every open Store, for its lifetime: cleanup() may
//                      release the home's mount only when it can take it for writing
//   home/locks/layer/<id>  the layer's lock: write for create/import/apply/remove/mount/
//                      unmount of the layer, read while it is read (diff, changes) or
//                      stood on (create of a child)
//   home/images/<id>   one JSON record per image (durable, like a layer's); written only
//                      once every layer it names is committed
//   home/blobs/sha256/<hex>  compressed layer blobs kept by digest (pull resumes, push reuses)
//   home/locks/images  write while an image record is written or an image removed
//   home/locks/blobs   read while a pull, commit or push writes blobs; write (tried) by
//                      repair's sweep of blobs no image names
//   home/lost+found/   what repair could not rebuild, moved aside (lib/store/lost-found.ts)
//   home/tmp/          temp files of atomic writes, named <pid>-<random>-<n>
//   home/incomplete/<id>  an empty marker while the layer's record says incomplete (made
//                      before the record, removed after its commit): an open finds the
//                      layers to recover without reading every record
//
// Lock order: a layer's lock (child before parent), then the store lock; whoever
// holds the store lock only ever tries a layer's lock without waiting.
//
// Durability (a durable store, the default): a record reaches its name by rename only
// after its bytes are on the device, and the rename itself is followed by an fsync of
// its directory (without that the new name may not survive a power cut); a record's
// removal too. A layer's content is flushed with one syncfs before the record that
// commits it (flushContent). A marker is flushed before its record's rename, not after
// its removal (one that comes back finds no record and is swept). run/ is never flushed:
// it is run state, on a tmpfs, meant to be gone after a reboot. A store opened with
// durable: false skips every flush (podman's transient store): a power cut may then
// lose what a call reported done, never make the store inconsistent by more than a
// kill would.
import { randomBytes } from 'node:crypto';
import { readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { applyFileChange, fsyncPaths, readSmallFile, syncFs, writeNewFile } from '../native.js';
import type { FileChange } from '../native.js';
import { processStart } from '../processes.js';
import { killPoint } from './kill-point.js';
import { unreadable, type Parsed } from './schema.js';

export const STORE_LOCK = 'store';
export const OPEN_LOCK = 'open';

/** The JSON in a file's content (undefined: no file). */
export function parseJson<T>(data: Buffer | undefined): T | undefined {
  return data === undefined ? undefined : (JSON.parse(data.toString('utf8')) as T);
}

/** A record file as read: none, one that passed its schema, or a damaged one (what is wrong with it). */
export type RecordRead<T> = { state: 'missing' } | { state: 'ok'; value: T } | { state: 'damaged'; path: string; reason: string };

export class StoreFiles {
  readonly home: string;
  readonly layers: string;
  readonly run: string;
  readonly mounts: string;
  readonly runTmp: string;
  readonly locks: string;
  readonly tmp: string;
  readonly incomplete: string;
  readonly images: string;
  readonly blobs: string;
  /** Whether calls flush what they commit (openStore's `durable`). */
  readonly durable: boolean;

  // Temp names: <pid>-<a random tag drawn once per object>-<a counter>. Unique without a
  // draw from the system's generator per write (one per mount or unmount), and the pid
  // first, which is how staleTemps() knows whose a temp file is.
  readonly #tempTag = randomBytes(6).toString('hex');
  #temps = 0;

  #tempName(): string {
    return `${process.pid}-${this.#tempTag}-${++this.#temps}`;
  }

  constructor(home: string, opts: { durable?: boolean } = {}) {
    this.durable = opts.durable !== false;
    this.incomplete = join(home, 'incomplete');
    this.home = home;
    this.layers = join(home, 'layers');
    this.run = join(home, 'run');
    this.mounts = join(this.run, 'mounts');
    this.runTmp = join(this.run, 'tmp');
    this.locks = join(home, 'locks');
    this.tmp = join(home, 'tmp');
    this.images = join(home, 'images');
    this.blobs = join(home, 'blobs');
  }

  layerLock(id: string): string {
    return join(this.locks, 'layer', id);
  }

  storeLock(): string {
    return join(this.locks, STORE_LOCK);
  }

  imagesLock(): string {
    return join(this.locks, 'images');
  }

  openLock(): string {
    return join(this.locks, OPEN_LOCK);
  }

  /** Read-held by a pull, commit or push (they write blobs before an image names them); repair's blob sweep tries it for writing. */
  blobsLock(): string {
    return join(this.locks, 'blobs');
  }

  /** Writes `data` to `dest` (a blob) through a temp file and a rename (both flushed in a durable store): it appears whole or not at all. */
  async writeBlob(dest: string, data: Buffer): Promise<void> {
    await writeNewFile(join(this.tmp, this.#tempName()), data, this.durable, dest);
    await this.flushDirs([dirname(dest)]);
  }

  // Records and references are read and written natively, one pool trip each (not
  // node:fs's four or five): they are on the path of every mount and unmount.

  /** The JSON in `dir/name`, or undefined when there is no such file. */
  async readJson<T>(dir: string, name: string): Promise<T | undefined> {
    return parseJson<T>(await readSmallFile(join(dir, name)));
  }

  /**
   * The record `dir/name` checked by `parse` (lib/store/schema.ts). Read non-blocking,
   * a regular file of at most 16 MiB: a fifo, a directory, a symlink or a huge file
   * there is a damaged record, never a wait.
   */
  async readRecord<T>(dir: string, name: string, parse: (data: Buffer, file: string) => Parsed<T>): Promise<RecordRead<T>> {
    const path = join(dir, name);
    let data: Buffer | undefined;
    try {
      data = await readSmallFile(path);
    } catch (err) {
      return { state: 'damaged', path, reason: unreadable(err) };
    }
    if (data === undefined) return { state: 'missing' };
    const parsed = parse(data, name);
    return parsed.ok ? { state: 'ok', value: parsed.value } : { state: 'damaged', path, reason: parsed.reason };
  }

  /**
   * Replaces `dir/name` with `value` in one step (temp file + rename). `record` (every
   * caller but the references' own path): a store file under home/, flushed in a durable
   * store (see stageJson and publishJson); otherwise a volatile file under run/, written
   * and renamed in one pool trip (see volatileJson).
   */
  async writeJson(dir: string, name: string, value: unknown, record: boolean): Promise<void> {
    if (!record) return applyFileChange(this.volatileJson(dir, name, value));
    await this.publishJson(await this.stageJson(value), dir, name);
  }

  /**
   * A record's temp file (home/tmp), for publishJson: fsynced in a durable store unless
   * `flushedLater` (a syncfs made before the publish covers it).
   */
  async stageJson(value: unknown, opts: { flushedLater?: boolean } = {}): Promise<string> {
    const tmp = join(this.tmp, this.#tempName());
    await writeNewFile(tmp, Buffer.from(JSON.stringify(value) + '\n'), this.durable && opts.flushedLater !== true);
    return tmp;
  }

  /**
   * Renames a staged temp file to `dir/name`; in a durable store, `before` (directories
   * whose changes must reach the device first: a marker's) is fsynced before the rename
   * and `dir` after it. The 'record-write' kill point comes before the rename. A failure
   * removes the temp file.
   */
  async publishJson(tmp: string, dir: string, name: string, before: string[] = []): Promise<void> {
    try {
      await this.flushDirs(before);
      killPoint('record-write');
      await rename(tmp, join(dir, name));
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await this.flushDirs([dir]);
  }

  /** In a durable store: an fsync of each directory (after a rename or unlink in it), in one pool trip. */
  async flushDirs(dirs: string[]): Promise<void> {
    if (this.durable && dirs.length > 0) await fsyncPaths(dirs);
  }

  /** In a durable store: syncfs of the filesystem of each path (a layer's content, before its record commits it). */
  async flushContent(paths: string[]): Promise<void> {
    if (!this.durable) return;
    for (const p of paths) await syncFs(p);
  }

  /** The change that replaces the volatile `dir/name` (under run/) with `value`, for a native job to make (or applyFileChange). */
  volatileJson(dir: string, name: string, value: unknown): FileChange {
    return { tmp: join(this.runTmp, this.#tempName()), data: Buffer.from(JSON.stringify(value) + '\n'), dest: join(dir, name) };
  }

  /**
   * Deletes `dir/name`; a missing file is no failure. A record's removal (layers/,
   * images/) is flushed in a durable store: a removal that returned stays done.
   */
  async remove(dir: string, name: string): Promise<void> {
    await applyFileChange({ remove: join(dir, name) });
    if (dir === this.layers || dir === this.images) await this.flushDirs([dir]);
  }

  /** Temp files whose writer is gone (kill -9 between write and rename). */
  async staleTemps(): Promise<string[]> {
    const stale = await Promise.all(
      [this.tmp, this.runTmp].map(async (dir) =>
        Promise.all(
          (await readdir(dir).catch(() => [] as string[])).map(async (n) => {
            const pid = Number(n.split('-')[0]);
            if (pid === process.pid) return undefined;
            return Number.isInteger(pid) && pid > 0 && (await processStart(pid)) !== undefined ? undefined : join(dir, n);
          }),
        ),
      ),
    );
    return stale.flat().filter((p): p is string => p !== undefined);
  }
}

