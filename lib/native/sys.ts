// The addon's short calls: each one syscall Node lacks (mount, umount2, mknod, xattrs,
// openat2, renameat2, OFD locks, syncfs, fsync of a directory by path), or a few on one file done in one pool trip (setMeta,
// a small file read or written whole, a lock file opened and locked).
import { unlink } from 'node:fs/promises';
import { addon, checkInt, checkPath, invalidArg, withStack } from './addon.js';
import type { EntryMeta, FileChange, LockKind, MetaArgs, PathLike, PathProbe, ProbeResult } from './addon.js';

/**
 * mount(2). `data` is the filesystem's option string (for overlay: lowerdir=…,upperdir=…,
 * workdir=…). `after`: a file change made in the same job once the mount is in place;
 * when it fails the mount is undone (detached) and its error is the call's.
 */
export function mount(source: PathLike, target: PathLike, fstype: string, flags: number, data?: string, after?: FileChange): Promise<void> {
  checkPath(source, 'source');
  checkPath(target, 'target');
  checkInt(flags, 'flags');
  if (typeof fstype !== 'string') throw invalidArg('fstype', 'must be a string');
  if (data !== undefined && (typeof data !== 'string' || data.includes('\0'))) throw invalidArg('data', 'must be a string without null bytes');
  if (after !== undefined) checkFileChange(after);
  return withStack(addon.mount(source, target, fstype, flags, data, after));
}

/** An overlay mount made with the new mount API (native/fs_mount.cc). */
export interface OverlayFsMount {
  /** Lower dirs, top first, one fsconfig("lowerdir+") each. */
  lowers: string[];
  /** The bottom of a stack deeper than one overlay takes: mounted first as a nested read-only overlay, the lowest lower. */
  base?: string[];
  upper?: string;
  work?: string;
  /** Other options, "key=value" or a flag "key". */
  options?: string[];
  readOnly: boolean;
}

/** fsopen("overlay") + fsconfig per option + fsmount + move_mount onto `target` (Linux 6.8+ for "lowerdir+"). */
export function mountOverlayFs(target: PathLike, options: OverlayFsMount, after?: FileChange): Promise<void> {
  checkPath(target, 'target');
  for (const p of [...options.lowers, ...(options.base ?? []), ...(options.options ?? [])]) {
    if (typeof p !== 'string' || p.includes('\0')) throw invalidArg('options', 'paths and options must be strings without null bytes');
  }
  if (after !== undefined) checkFileChange(after);
  return withStack(addon.mountOverlayFs(target, options, after));
}

/**
 * umount2(2); flags such as constants.MNT_DETACH. `before`: a file change made in the
 * same job first; when it fails nothing is unmounted and its error is the call's.
 */
export function unmount(target: PathLike, flags = 0, before?: FileChange): Promise<void> {
  checkPath(target, 'target');
  checkInt(flags, 'flags');
  if (before !== undefined) checkFileChange(before);
  return withStack(addon.unmount(target, flags, before));
}

/** Makes a file change on its own, as mount/unmount would beside their work: one pool trip. */
export async function applyFileChange(change: FileChange): Promise<void> {
  checkFileChange(change);
  if ('remove' in change) {
    // unlink, not rm: rm lstats first, one more trip to the thread pool.
    await unlink(change.remove).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    });
  } else {
    await writeNewFile(change.tmp, change.data, false, change.dest);
  }
}

function checkFileChange(change: FileChange): void {
  if ('remove' in change) return checkPath(change.remove, 'remove');
  checkPath(change.tmp, 'tmp');
  checkPath(change.dest, 'dest');
  if (!Buffer.isBuffer(change.data)) throw invalidArg('data', 'must be a Buffer');
}

/**
 * Takes (or with 'unlock' drops) an OFD lock on the whole file open as `fd`, without
 * waiting: false when another open file description holds a conflicting lock.
 */
export function ofdTryLock(fd: number, kind: LockKind | 'unlock'): boolean {
  checkInt(fd, 'fd');
  return addon.ofdTryLock(fd, kind);
}

/** Waits for an OFD lock on the whole file open as `fd` (the wait runs on its own thread). */
export function ofdLock(fd: number, kind: LockKind): Promise<void> {
  checkInt(fd, 'fd');
  return withStack(addon.ofdLock(fd, kind));
}

/**
 * Opens the lock file `path` (created 0600 when missing, close-on-exec) and takes an
 * OFD lock on it when nobody holds a conflicting one, checking that the locked file is
 * still the one at `path`, then makes `probes` under the lock: one pool trip. `locked`
 * false: the fd is open, not locked, and nothing was probed.
 */
export function ofdTryLockPath(path: PathLike, kind: LockKind, probes: readonly PathProbe[] = []): Promise<{ fd: number; locked: boolean; probed?: ProbeResult[] }> {
  checkPath(path, 'path');
  return withStack(addon.ofdTryLockPath(path, kind, flatProbes(probes)));
}

/** The probes made back to back in one pool trip, an answer each (see ProbeResult). */
export function probePaths(probes: readonly PathProbe[]): Promise<ProbeResult[]> {
  return withStack(addon.probePaths(flatProbes(probes)));
}

function flatProbes(probes: readonly PathProbe[]): string[] {
  const flat: string[] = [];
  for (const [op, path] of probes) {
    checkPath(path, 'path');
    flat.push(op, path);
  }
  return flat;
}

/** An 'lstat' or 'statfs' probe's answer: undefined when the path is missing; its error thrown. */
export function probedNumber(result: ProbeResult): number | undefined {
  if (result instanceof Error) throw result;
  if (Buffer.isBuffer(result)) throw new TypeError('a read probe answers content, not a number');
  return result;
}

/** A 'read' probe's answer: undefined when the file is missing; its error thrown. */
export function probedData(result: ProbeResult): Buffer | undefined {
  if (result instanceof Error) throw result;
  if (typeof result === 'number') throw new TypeError('an lstat or statfs probe answers a number, not content');
  return result;
}

/** A whole small file (at most 16 MiB; a symlink is refused with ELOOP) in one pool trip; undefined when it does not exist. */
export function readSmallFile(path: PathLike): Promise<Buffer | undefined> {
  checkPath(path, 'path');
  return withStack(addon.readSmallFile(path));
}

/**
 * Creates `path` (O_EXCL, mode 0600), writes `data`, when `durable` fsyncs it, and when
 * `renameTo` is given renames it there, in one pool trip; a failure leaves no file.
 */
export function writeNewFile(path: PathLike, data: Buffer, durable: boolean, renameTo?: PathLike): Promise<void> {
  checkPath(path, 'path');
  if (renameTo !== undefined) checkPath(renameTo, 'renameTo');
  if (!Buffer.isBuffer(data)) throw invalidArg('data', 'must be a Buffer');
  return withStack(addon.writeNewFile(path, data, durable === true, renameTo));
}

/**
 * syncfs(2) of the filesystem `path` is on: every dirty file and the journal, one
 * writeback (other users' files on that filesystem too). Rejects with the writeback
 * error (EIO, ENOSPC) the kernel kept since the open (Linux 5.8+).
 */
export function syncFs(path: PathLike): Promise<void> {
  checkPath(path, 'path');
  return withStack(addon.syncFs(path));
}

/**
 * fsync(2) (or with `dataOnly` fdatasync(2)) of each path in turn, files or directories
 * (a directory after a rename or unlink in it), in one pool trip; stops at the first
 * failure. A symlink is not followed (ELOOP).
 */
export function fsyncPaths(paths: readonly PathLike[], opts: { dataOnly?: boolean } = {}): Promise<void> {
  if (!Array.isArray(paths)) throw invalidArg('paths', 'must be an array');
  paths.forEach((p, i) => checkPath(p, `paths[${i}]`));
  return withStack(addon.fsyncPaths([...paths], opts.dataOnly === true));
}

/** mknod(2) for fifos and device nodes; `mode` includes the S_IF* type bits. */
export function mknod(path: PathLike, mode: number, major = 0, minor = 0): Promise<void> {
  checkPath(path, 'path');
  checkInt(mode, 'mode');
  checkInt(major, 'major');
  checkInt(minor, 'minor');
  return withStack(addon.mknod(path, mode, major, minor));
}

/** lgetxattr(2): rejects with code ENODATA when the attribute is absent. */
export function getXattr(path: PathLike, name: string): Promise<Buffer> {
  checkPath(path, 'path');
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) throw invalidArg('name', 'must be a non-empty string');
  return withStack(addon.getXattr(path, name));
}

/** lsetxattr(2); flags 0, constants.XATTR_CREATE or constants.XATTR_REPLACE. */
export function setXattr(path: PathLike, name: string, value: Buffer, flags = 0): Promise<void> {
  checkPath(path, 'path');
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) throw invalidArg('name', 'must be a non-empty string');
  if (!Buffer.isBuffer(value)) throw invalidArg('value', 'must be a Buffer');
  checkInt(flags, 'flags');
  return withStack(addon.setXattr(path, name, value, flags));
}

/** llistxattr(2): the attribute names of a path, not following a symlink. */
export function listXattr(path: PathLike): Promise<string[]> {
  checkPath(path, 'path');
  return withStack(addon.listXattr(path));
}

/** lremovexattr(2). */
export function removeXattr(path: PathLike, name: string): Promise<void> {
  checkPath(path, 'path');
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) throw invalidArg('name', 'must be a non-empty string');
  return withStack(addon.removeXattr(path, name));
}

/**
 * Resolves `rel` inside `root` as if `root` were "/" (openat2 RESOLVE_IN_ROOT): "..",
 * absolute symlinks and symlink chains never lead out of it. The last component is
 * followed only when `followLast` is true. Returns the real absolute path found,
 * as a Buffer when either argument was a Buffer. Rejects with ENOENT when a component is missing.
 */
export function resolveInRoot(root: PathLike, rel: PathLike, followLast = false): Promise<string | Buffer> {
  checkPath(root, 'root');
  if (typeof rel === 'string' ? rel.includes('\0') : !Buffer.isBuffer(rel) || rel.includes(0)) {
    throw invalidArg('rel', 'must be a string or Buffer without null bytes');
  }
  return withStack(addon.resolveInRoot(root, rel, followLast));
}

/**
 * resolveInRoot done by the userspace walk that stands in for openat2 where the
 * kernel lacks it (or a seccomp filter hides it). Exposed so tests can hold the two
 * to the same results on a kernel that has openat2.
 */
export function resolveInRootByWalk(root: PathLike, rel: PathLike, followLast = false): Promise<string | Buffer> {
  checkPath(root, 'root');
  if (typeof rel === 'string' ? rel.includes('\0') : !Buffer.isBuffer(rel) || rel.includes(0)) {
    throw invalidArg('rel', 'must be a string or Buffer without null bytes');
  }
  return withStack(addon.resolveInRoot(root, rel, followLast, true));
}

/** renameat2(2) with constants.RENAME_NOREPLACE or constants.RENAME_EXCHANGE. */
export function rename2(from: PathLike, to: PathLike, flags: number): Promise<void> {
  checkPath(from, 'from');
  checkPath(to, 'to');
  checkInt(flags, 'flags');
  return withStack(addon.rename2(from, to, flags));
}

function metaArgs(meta: EntryMeta): MetaArgs {
  const ids = meta.uid !== undefined && meta.gid !== undefined;
  if (ids) {
    checkInt(meta.uid, 'meta.uid');
    checkInt(meta.gid, 'meta.gid');
  }
  if (meta.mode !== undefined) checkInt(meta.mode, 'meta.mode');
  const m = meta.mtime;
  const a = meta.atime ?? m;
  for (const t of [a, m]) {
    if (t !== undefined && (!Number.isInteger(t.sec) || !Number.isInteger(t.nsec) || t.nsec < 0 || t.nsec > 999_999_999)) {
      throw invalidArg('meta times', 'must be { sec: integer, nsec: 0..999999999 }');
    }
  }
  const times = a !== undefined && m !== undefined;
  return [ids ? meta.uid! : -1, ids ? meta.gid! : -1, meta.mode ?? -1, a?.sec ?? 0, times ? a.nsec : -1, m?.sec ?? 0, times ? m.nsec : -1];
}

/** lchown, chmod (only when meta.mode is given: never for symlinks, chmod follows them) and utimensat(AT_SYMLINK_NOFOLLOW), in one trip. */
export function setMeta(path: PathLike, meta: EntryMeta): Promise<void> {
  checkPath(path, 'path');
  return withStack(addon.setMeta(path, ...metaArgs(meta)));
}

