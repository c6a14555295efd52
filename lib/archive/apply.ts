// Applies one layer tar (the OCI changeset format: entries, ".wh." whiteouts,
// opaque directories) onto a root directory that the caller has staged.
//
// Three properties drive every line here:
// - Containment. Nothing outside `root` is created, changed or deleted. Names are
//   cleaned lexically (path-safety.ts) and a name climbing above the root fails the
//   apply; every parent directory is resolved by the kernel inside the root
//   (native.resolveInRoot: symlinks are followed as if root were "/", the way real
//   images need for `bin -> usr/bin`); the last component is never followed, it is
//   replaced.
// - Shared inodes. An image's root is a hardlink copy of its parent's, so any
//   non-directory here (file, symlink, device, fifo) may be the parent's inode too.
//   We never write into an inode we did not create in this apply: an entry always
//   gets a new inode (O_EXCL create after removing what was there), and a tar
//   hardlink that changes a still-shared inode first gives it a private copy (the
//   rule is in shared-inodes.ts). Directories are never shared (a hardlink copy
//   recreates them), so a directory entry over a directory merges into it.
// - Streaming. Entries are read and applied one at a time from the stream; file
//   bodies above SMALL_FILE are written chunk by chunk, so memory stays bounded
//   whatever the layer's size.
//
// Directory times are set at the end, after their children; a pre-existing
// directory that the tar does not mention keeps its times (and all its metadata).
import { constants as fsc } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readlink, realpath, rename, rmdir, symlink, unlink } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { AbortError, InvalidArchiveError, InvalidOptionError, UnsafeLayerError, isSystemError } from '../errors.js';
import { toHost } from '../idmap.js';
import * as native from '../native.js';
import type { ApplyDiffOptions, DiffSource, IDMap } from '../types.js';
import { bytes, cleanName, displayName } from './path-safety.js';
import { TarReader, type TarEntry, type TarTime } from './tar-reader.js';
import { classifyWhiteout } from './whiteouts.js';
import { xattrAllowed } from './xattr-policy.js';
import { splitNs } from './entry-compare.js';
import { SharedInodes } from './shared-inodes.js';

export interface ApplyTarOptions extends ApplyDiffOptions {
  /** Container → host id maps: a tar's uid/gid are container ids. */
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
}

/** Files up to this size are read whole and written in one native call (open, write, chown, chmod, times, close). */
const SMALL_FILE = 512 * 1024;
/** Symlink hops when a missing parent directory sits behind a dangling symlink (the kernel's limit, MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;
const PROGRESS_INTERVAL_MS = 100;
/** Small files created concurrently (libuv's pool has 4 threads; more only queues). */
const IN_FLIGHT = 8;
/** Longest file name component Linux accepts. */
const NAME_MAX = 255;

/**
 * Applies the uncompressed layer tar `diff` onto `root`. Returns the bytes of
 * regular-file content written. Rejects with UnsafeLayerError (an entry that would
 * reach outside the root), InvalidArchiveError (corrupt or truncated tar),
 * AbortError, or a system error; on rejection the caller discards `root`.
 */
export async function applyTar(root: string, diff: DiffSource, opts: ApplyTarOptions = {}): Promise<number> {
  if (opts.signal?.aborted) throw new AbortError();
  const realRoot = (await realpath(root, { encoding: 'buffer' })).toString('latin1');
  const reader = new TarReader(opts.allowEmpty === true ? (diff as AsyncIterable<Uint8Array>) : refuseEmpty(diff as AsyncIterable<Uint8Array>), opts.signal);
  const applier = new LayerApplier(realRoot, opts);
  try {
    await applier.run(reader);
  } catch (err) {
    reader.close();
    throw err;
  }
  return applier.bytes;
}

// A 0-byte stream is not a tar (the shortest tar is its two zero blocks): most likely
// a failed download or an empty file given by mistake, which must not become an
// empty layer without a word.
async function* refuseEmpty(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let empty = true;
  for await (const chunk of source) {
    if (chunk.length > 0) empty = false;
    yield chunk;
  }
  if (empty) throw new InvalidArchiveError('the layer is empty (0 bytes), not a tar: a tar holds at least its two zero blocks; the option allowEmpty applies it as an empty layer');
}

interface Times {
  atime: TarTime;
  mtime: TarTime;
}

class LayerApplier {
  bytes = 0;
  private entries = 0;
  private lastProgress = 0;
  /** Parent dirs already resolved: cleaned name → real path. Cleared whenever a dir or symlink is removed. */
  private readonly dirCache = new Map<string, string>();
  /** Real paths this apply put there (files, dirs incl. merged ones, links): never lower content. */
  private readonly unpacked = new Set<string>();
  /** Which existing inodes may be changed in place (the rest are broken first). */
  private readonly inodes = new SharedInodes(this.unpacked);
  /** Times to set on directories at the end: from their tar entries, or their own (restored) when the tar has none. */
  private readonly dirTimes = new Map<string, Times>();
  private readonly uidMaps: readonly IDMap[];
  private readonly gidMaps: readonly IDMap[];
  private readonly rootUid: number;
  private readonly rootGid: number;

  constructor(
    private readonly root: string,
    private readonly opts: ApplyTarOptions,
  ) {
    this.uidMaps = opts.uidMaps ?? [];
    this.gidMaps = opts.gidMaps ?? [];
    const uid = toHost(this.uidMaps, 0);
    const gid = toHost(this.gidMaps, 0);
    if (uid === undefined || gid === undefined) throw new InvalidOptionError('the id maps do not map container root (id 0)');
    this.rootUid = uid;
    this.rootGid = gid;
  }

  async run(reader: TarReader): Promise<void> {
    try {
      for (;;) {
        this.checkAbort();
        const entry = await reader.next();
        if (entry === null) break;
        try {
          await this.apply(entry, reader);
        } catch (err) {
          if (isSystemError(err, 'ENAMETOOLONG')) {
            throw new InvalidArchiveError(`entry ${JSON.stringify(displayName(entry.name))}: path too long for the filesystem`, { cause: err });
          }
          throw err;
        }
        this.entries++;
        this.progress(false);
      }
      await this.drain();
    } catch (err) {
      // Nothing may still be writing into the root once the caller sees the failure (it discards the root).
      await this.settle();
      throw err;
    }
    await reader.drain();
    for (const [dir, t] of this.dirTimes) {
      this.checkAbort();
      try {
        await native.setMeta(bytes(dir), { atime: t.atime, mtime: t.mtime });
      } catch (err) {
        if (!isSystemError(err, 'ENOENT')) throw err;
      }
    }
    this.progress(true);
  }

  private async apply(e: TarEntry, reader: TarReader): Promise<void> {
    const comps = cleanName(e.name);
    if (comps === null) throw unsafe(e, 'its name climbs above the layer root');
    if (comps.some((c) => c.length > NAME_MAX)) throw new InvalidArchiveError(`entry ${JSON.stringify(displayName(e.name))} has a name component over ${NAME_MAX} bytes`);
    const wh = classifyWhiteout(comps);
    switch (wh.kind) {
      case 'aufs-meta':
        return;
      case 'invalid':
        throw unsafe(e, 'a whiteout must name a sibling entry');
      case 'opaque': {
        await this.drain();
        const dir = await this.dir(comps.slice(0, -1), e, true);
        await this.clearLower(dir!);
        return;
      }
      case 'remove': {
        await this.drain();
        const dir = await this.dir(comps.slice(0, -1), e, false);
        if (dir !== null) await this.whiteout(dir + '/' + wh.target, dir);
        return;
      }
      case 'none':
        break;
    }
    if (this.failure !== undefined) throw this.failure;
    if (e.type === 'file' && e.size <= SMALL_FILE && e.xattrs.size === 0 && comps.length > 0) {
      const parent = comps.length === 1 ? this.root : this.dirCache.get(comps.slice(0, -1).join('/'));
      const path = parent + '/' + comps[comps.length - 1]!;
      if (parent !== undefined && !this.conflictsInFlight(path)) {
        const data = await reader.readBody();
        const meta = this.meta(e, true);
        await this.noteChange(parent);
        await this.launch(path, () => this.place(path, parent, () => native.writeNewFile(bytes(path), data, meta)));
        this.unpacked.add(path);
        this.bytes += e.size;
        return;
      }
    }
    // Everything else runs alone, in stream order, after what was launched before it.
    await this.drain();
    if (comps.length === 0) {
      if (e.type !== 'dir') throw unsafe(e, 'it would replace the layer root');
      await this.dirMeta(this.root, e);
      return;
    }
    const parent = (await this.dir(comps.slice(0, -1), e, true))!;
    const path = parent + '/' + comps[comps.length - 1]!;
    switch (e.type) {
      case 'file':
        await this.file(path, parent, e, reader);
        break;
      case 'dir':
        await this.directory(path, parent, e, comps.join('/'));
        break;
      case 'symlink':
        await this.symlink(path, parent, e);
        break;
      case 'link':
        await this.hardlink(path, parent, e);
        break;
      case 'char':
      case 'block':
      case 'fifo':
        await this.node(path, parent, e);
        break;
    }
    this.unpacked.add(path);
  }

  // ---- entry types ----

  private async file(path: string, parent: string, e: TarEntry, reader: TarReader): Promise<void> {
    const meta = this.meta(e, true);
    if (e.size <= SMALL_FILE) {
      const data = await reader.readBody();
      await this.place(path, parent, () => native.writeNewFile(bytes(path), data, meta));
    } else {
      let fh: Awaited<ReturnType<typeof open>> | undefined;
      await this.place(path, parent, async () => {
        fh = await open(bytes(path), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      });
      try {
        for await (const chunk of reader.bodyChunks()) {
          this.checkAbort();
          for (let off = 0; off < chunk.length; ) off += (await fh!.write(chunk, off, chunk.length - off)).bytesWritten;
        }
      } finally {
        await fh!.close();
      }
      await native.setMeta(bytes(path), meta);
    }
    await this.xattrs(path, e);
    this.bytes += e.size;
  }

  private async directory(path: string, parent: string, e: TarEntry, key: string): Promise<void> {
    await this.noteChange(parent);
    try {
      await mkdir(bytes(path), 0o700);
    } catch (err) {
      if (!isSystemError(err, 'EEXIST')) throw err;
      const st = await lstat(bytes(path));
      if (!st.isDirectory()) {
        await this.remove(path);
        await mkdir(bytes(path), 0o700);
      }
      // A directory over a directory merges: it keeps its content and takes the entry's metadata.
    }
    await this.dirMeta(path, e);
    this.dirCache.set(key, path);
  }

  private async dirMeta(path: string, e: TarEntry): Promise<void> {
    const { uid, gid, mode, atime, mtime } = this.meta(e, true);
    await native.setMeta(bytes(path), { uid, gid, mode });
    await this.xattrs(path, e);
    this.dirTimes.set(path, { atime: atime!, mtime: mtime! });
  }

  private async symlink(path: string, parent: string, e: TarEntry): Promise<void> {
    if (e.linkname === '') throw new InvalidArchiveError(`symlink ${JSON.stringify(displayName(e.name))} has an empty target`);
    await this.place(path, parent, () => symlink(bytes(e.linkname), bytes(path)));
    await native.setMeta(bytes(path), this.meta(e, false));
    await this.xattrs(path, e);
  }

  private async node(path: string, parent: string, e: TarEntry): Promise<void> {
    const type = e.type === 'char' ? fsc.S_IFCHR : e.type === 'block' ? fsc.S_IFBLK : fsc.S_IFIFO;
    await this.place(path, parent, () => native.mknod(bytes(path), type | (e.mode & 0o777), e.devmajor, e.devminor));
    await native.setMeta(bytes(path), this.meta(e, true));
    await this.xattrs(path, e);
  }

  private async hardlink(path: string, parent: string, e: TarEntry): Promise<void> {
    const tcomps = cleanName(e.linkname);
    if (tcomps === null) throw unsafe(e, 'its hardlink target climbs above the layer root');
    if (tcomps.length === 0) throw unsafe(e, 'it hardlinks the layer root');
    const tdir = await this.dir(tcomps.slice(0, -1), e, false);
    const target = tdir === null ? null : tdir + '/' + tcomps[tcomps.length - 1]!;
    const st = target === null ? null : await lstatOrNull(target);
    if (target === null || st === null) throw unsafe(e, `its hardlink target ${JSON.stringify(displayName(e.linkname))} does not exist`);
    if (st.isDirectory()) throw unsafe(e, 'it hardlinks a directory');
    // Change only what differs: a chown, even to the same owner, would strip the file's capabilities.
    const want = this.meta(e, !st.isSymbolicLink());
    const change: native.EntryMeta = {};
    if (BigInt(want.uid!) !== st.uid || BigInt(want.gid!) !== st.gid) Object.assign(change, { uid: want.uid, gid: want.gid });
    if (want.mode !== undefined && BigInt(want.mode) !== (st.mode & 0o7777n)) change.mode = want.mode;
    if (change.uid !== undefined && (st.mode & 0o6000n) !== 0n) change.mode = want.mode; // chown clears setuid/setgid
    const mtime = nsTime(st.mtimeNs);
    if (want.mtime!.sec !== mtime.sec || want.mtime!.nsec !== mtime.nsec) Object.assign(change, { atime: want.atime, mtime: want.mtime });
    const xattrs = await this.changedXattrs(target, e);
    // A change would land on the parent image's inode too: give the target its own inode first.
    // (Without a change the link shares the inode, which keeps its other names linked with it.)
    const changes = Object.keys(change).length > 0 || xattrs.length > 0;
    if (changes && this.inodes.mustBreak(target, st.nlink)) {
      await this.copyUp(target, st);
      this.inodes.brokeAt(target);
    }
    if (target !== path) {
      await this.place(path, parent, () => link(bytes(target), bytes(path)));
      this.inodes.linked(path, target);
    }
    if (Object.keys(change).length > 0) await native.setMeta(bytes(path), change);
    for (const [name, value] of xattrs) await native.setXattr(bytes(path), name, value);
  }

  /** The entry's xattrs (as the policy allows) that `path` does not already have with the same value. */
  private async changedXattrs(path: string, e: TarEntry): Promise<Array<[string, Buffer]>> {
    const out: Array<[string, Buffer]> = [];
    for (const [name, value] of e.xattrs) {
      if (name === '' || !xattrAllowed(name, this.opts.allowPrivilegedXattrs === true)) continue;
      const have = await native.getXattr(bytes(path), name).catch(() => null);
      if (have === null || !have.equals(value)) out.push([name, value]);
    }
    return out;
  }

  // ---- whiteouts ----

  private async whiteout(path: string, parent: string): Promise<void> {
    // A whiteout hides lower content only, never what this layer itself put there (OCI image spec):
    // over a directory of this layer (merged with a lower one) it hides just the lower part.
    if (this.unpacked.has(path)) {
      const st = await lstatOrNull(path);
      if (st?.isDirectory()) await this.clearLower(path);
      return;
    }
    if ((await lstatOrNull(path)) === null) return;
    await this.noteChange(parent);
    await this.remove(path);
  }

  /** Opaque directory: removes everything below `dir` that this layer did not put there, in whatever order the entries came. */
  private async clearLower(dir: string): Promise<void> {
    const children = await readdir(bytes(dir), { withFileTypes: true, encoding: 'buffer' });
    for (const child of children) {
      const path = dir + '/' + (child.name as unknown as Buffer).toString('latin1');
      if (this.unpacked.has(path)) {
        if (child.isDirectory()) await this.clearLower(path);
        continue;
      }
      await this.noteChange(dir);
      await this.remove(path);
    }
  }

  // ---- small files in flight ----
  //
  // A small regular file whose parent is already resolved is created by one native
  // call; up to IN_FLIGHT of them run at once on the thread pool while the stream is
  // parsed. Only such files overlap, and only when no file in flight has the same
  // real path, lies above it or below it (real paths, so a symlinked alias cannot
  // sneak past: a replaced directory is never emptied under a file being created in
  // it); every other entry waits for all of them.

  private readonly inFlight = new Map<string, Promise<void>>();
  private failure: unknown;

  /** True when `path` is, is below, or is above a file still in flight (at most IN_FLIGHT to scan). */
  private conflictsInFlight(path: string): boolean {
    for (const p of this.inFlight.keys()) {
      if (p === path || path.startsWith(p + '/') || p.startsWith(path + '/')) return true;
    }
    return false;
  }

  private async launch(path: string, op: () => Promise<void>): Promise<void> {
    while (this.inFlight.size >= IN_FLIGHT) await Promise.race(this.inFlight.values());
    const done = op().then(
      () => {
        this.inFlight.delete(path);
      },
      (err: unknown) => {
        this.inFlight.delete(path);
        this.failure ??= err;
      },
    );
    this.inFlight.set(path, done);
  }

  /** Waits for every file in flight; throws the first failure among them. */
  private async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.values());
    if (this.failure !== undefined) throw this.failure;
  }

  private async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled(this.inFlight.values());
  }

  // ---- building blocks ----

  /**
   * The real path of the directory named by `comps` (cleaned components under the
   * root), resolved inside the root. Missing directories are created 0755 root when
   * `create`, else null is returned. Fails the entry when the path is not a directory.
   */
  private async dir(comps: readonly string[], e: TarEntry, create: boolean, hops = 0): Promise<string | null> {
    if (comps.length === 0) return this.root;
    const key = comps.join('/');
    const hit = this.dirCache.get(key);
    if (hit !== undefined) return hit;
    let real: string;
    try {
      real = ((await native.resolveInRoot(bytes(this.root), bytes(key), true)) as Buffer).toString('latin1');
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) {
        if (!create) return null;
        return this.makeMissingDir(comps, e, hops);
      }
      if (isSystemError(err, 'ENOTDIR')) {
        if (!create) return null;
        throw unsafe(e, `${JSON.stringify(displayName(key))} on its way is not a directory`);
      }
      if (isSystemError(err, 'ELOOP')) throw unsafe(e, 'too many symlinks on its way');
      if (isSystemError(err, 'EXDEV')) throw unsafe(e, 'its path crosses a mount point');
      throw err;
    }
    const st = await lstat(bytes(real));
    if (!st.isDirectory()) {
      if (!create) return null;
      throw unsafe(e, `${JSON.stringify(displayName(key))} on its way is not a directory`);
    }
    this.dirCache.set(key, real);
    return real;
  }

  private async makeMissingDir(comps: readonly string[], e: TarEntry, hops: number): Promise<string> {
    const parent = (await this.dir(comps.slice(0, -1), e, true, hops))!;
    const path = parent + '/' + comps[comps.length - 1]!;
    await this.noteChange(parent);
    try {
      await mkdir(bytes(path), 0o700);
    } catch (err) {
      if (!isSystemError(err, 'EEXIST')) throw err;
      // The resolver found nothing, yet something is there: a dangling symlink. Create
      // its target, inside the root, as a kernel walk from "/" would reach it.
      const st = await lstat(bytes(path));
      if (!st.isSymbolicLink() || hops >= MAX_SYMLINK_HOPS) throw unsafe(e, `cannot create its parent directory ${JSON.stringify(displayName(comps.join('/')))}`);
      const target = (await readlink(bytes(path), { encoding: 'buffer' })).toString('latin1');
      const from = target.startsWith('/') ? '' : parent.slice(this.root.length + 1);
      return (await this.dir(clampToRoot(from + '/' + target), e, true, hops + 1))!;
    }
    await native.setMeta(bytes(path), { uid: this.rootUid, gid: this.rootGid, mode: 0o755 });
    this.unpacked.add(path);
    this.dirCache.set(comps.join('/'), path);
    return path;
  }

  /** Creates an entry at `path`; when something is there, replaces it (removed first: the entry always gets a new inode). */
  private async place(path: string, parent: string, create: () => Promise<void>): Promise<void> {
    await this.noteChange(parent);
    try {
      await create();
      return;
    } catch (err) {
      if (!isSystemError(err, 'EEXIST')) throw err;
    }
    await this.remove(path);
    await create();
  }

  /** Removes whatever is at `path` (a whole tree for a directory), never following a symlink. */
  private async remove(path: string): Promise<void> {
    const st = await lstatOrNull(path);
    if (st === null) return;
    if (st.isDirectory()) {
      await removeTree(path);
      for (const dir of this.dirTimes.keys()) if (dir === path || dir.startsWith(path + '/')) this.dirTimes.delete(dir);
    } else {
      await unlink(bytes(path));
    }
    this.inodes.replaced(path);
    // Resolved parents may have gone through what was removed.
    if (st.isDirectory() || st.isSymbolicLink()) this.dirCache.clear();
  }

  /**
   * Before the first change inside a directory this apply did not make and the tar
   * has no entry for, remember its times, to put them back at the end.
   */
  private async noteChange(dir: string): Promise<void> {
    if (this.dirTimes.has(dir) || this.unpacked.has(dir)) return;
    const st = await lstat(bytes(dir), { bigint: true });
    this.dirTimes.set(dir, { atime: nsTime(st.atimeNs), mtime: nsTime(st.mtimeNs) });
  }

  /**
   * Replaces a lower entry that still shares its inode (with the parent image) by a
   * private copy: same type, content or target or device, owner, mode, xattrs and
   * times, new inode.
   */
  private async copyUp(path: string, st: BigIntStats): Promise<void> {
    const slash = path.lastIndexOf('/');
    const tmp = `${path.slice(0, slash)}/.ogd-copyup-${process.pid}-${this.entries}`;
    if (st.isFile()) await copyContent(path, tmp);
    else if (st.isSymbolicLink()) await symlink(await readlink(bytes(path), { encoding: 'buffer' }), bytes(tmp));
    else {
      // glibc's dev_t layout (gnu_dev_major/minor).
      const major = ((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn);
      const minor = (st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn);
      await native.mknod(bytes(tmp), Number(st.mode), Number(major), Number(minor));
    }
    const isLink = st.isSymbolicLink();
    await native.setMeta(bytes(tmp), { uid: Number(st.uid), gid: Number(st.gid), ...(isLink ? {} : { mode: Number(st.mode) & 0o7777 }) });
    for (const name of await native.listXattr(bytes(path))) {
      await native.setXattr(bytes(tmp), name, await native.getXattr(bytes(path), name));
    }
    await native.setMeta(bytes(tmp), { atime: nsTime(st.atimeNs), mtime: nsTime(st.mtimeNs) });
    await rename(bytes(tmp), bytes(path));
  }

  private async xattrs(path: string, e: TarEntry): Promise<void> {
    if (e.xattrs.size === 0) return;
    const allowPrivileged = this.opts.allowPrivilegedXattrs === true;
    for (const [name, value] of e.xattrs) {
      if (name === '' || !xattrAllowed(name, allowPrivileged)) continue;
      try {
        await native.setXattr(bytes(path), name, value);
      } catch (err) {
        // user.* xattrs are not permitted on symlinks and device nodes; the kernel refuses, as it would for any unpacker.
        if (isSystemError(err, 'EPERM') && name.startsWith('user.') && e.type !== 'file' && e.type !== 'dir') continue;
        throw err;
      }
    }
  }

  /** Host owner, mode and times of an entry. */
  private meta(e: TarEntry, withMode: boolean): native.EntryMeta {
    const uid = toHost(this.uidMaps, e.uid);
    const gid = toHost(this.gidMaps, e.gid);
    if (uid === undefined) throw unsafe(e, `its uid ${e.uid} is not mapped to a host uid`);
    if (gid === undefined) throw unsafe(e, `its gid ${e.gid} is not mapped to a host gid`);
    return { uid, gid, ...(withMode ? { mode: e.mode } : {}), atime: e.atime ?? e.mtime, mtime: e.mtime };
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new AbortError(undefined, { cause: this.opts.signal.reason });
  }

  private progress(final: boolean): void {
    const onProgress = this.opts.onProgress;
    if (onProgress === undefined) return;
    const now = Date.now();
    if (!final && now - this.lastProgress < PROGRESS_INTERVAL_MS) return;
    this.lastProgress = now;
    onProgress({ entries: this.entries, bytes: this.bytes });
  }
}

function unsafe(e: TarEntry, reason: string): UnsafeLayerError {
  return new UnsafeLayerError(displayName(e.name), reason);
}

function nsTime(ns: bigint): TarTime {
  const { sec, nsec } = splitNs(ns);
  return { sec: Number(sec), nsec };
}

/** Copies a file's bytes to a new file, reading with O_NOATIME so the (shared) source keeps even its atime. */
async function copyContent(from: string, to: string): Promise<void> {
  const src = await open(bytes(from), fsc.O_RDONLY | fsc.O_NOATIME);
  try {
    const dst = await open(bytes(to), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const { bytesRead } = await src.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        for (let off = 0; off < bytesRead; ) off += (await dst.write(buf, off, bytesRead - off)).bytesWritten;
      }
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}

async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(bytes(path), { bigint: true });
  } catch (err) {
    if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) return null;
    throw err;
  }
}

/** rm -rf without following symlinks, for names that may not be UTF-8. */
async function removeTree(path: string): Promise<void> {
  const children = await readdir(bytes(path), { withFileTypes: true, encoding: 'buffer' });
  for (const child of children) {
    const p = path + '/' + (child.name as unknown as Buffer).toString('latin1');
    if (child.isDirectory()) await removeTree(p);
    else await unlink(bytes(p));
  }
  await rmdir(bytes(path));
}

/** Components of a symlink target taken inside the root: ".." at the root stays at the root, as with RESOLVE_IN_ROOT. */
function clampToRoot(path: string): string[] {
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}
