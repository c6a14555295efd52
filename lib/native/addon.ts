// The addon, loaded through node-gyp-build (a prebuilt binary when one matches,
// else the one built at install), with a real type for every native function, and
// the argument checks the wrappers share. Arguments are validated in TS before they
// cross into C++; what an errno means is decided by the callers, not by the addon.
// lib/native.ts re-exports the wrappers: sys.ts (one syscall, or one pool trip, each)
// and jobs.ts (long jobs over trees and streams, with progress and abort).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import type { ApplyTarFile, ApplyTarResult, PackTreeResult } from './jobs.js';
import type { OverlayFsMount } from './sys.js';

export type PathLike = string | Buffer;

/** An OFD lock's mode: shared ('read') or exclusive ('write'). */
export type LockKind = 'read' | 'write';

/**
 * A small file change made in the same native job as a mount (right after it) or an
 * unmount (right before it): a file replaced (written to `tmp`, 0600, then renamed to
 * `dest`), or a file removed (missing is fine).
 */
export type FileChange = { readonly tmp: string; readonly data: Buffer; readonly dest: string } | { readonly remove: string };

/**
 * A lookup made natively beside others in one pool trip (native/path_probes.h): 'lstat'
 * answers st_mode, 'statfs' f_type, 'read' a small file's content (a symlink is refused).
 */
export type PathProbe = readonly ['lstat' | 'statfs' | 'read', string];
/** A probe's answer: undefined when the path is missing (ENOENT, ENOTDIR), else an fs-shaped Error, st_mode or f_type, or the content. */
export type ProbeResult = undefined | Error | number | Buffer;

/**
 * Counts of what a copy created, by type (the root directory counts as one entry),
 * and the bytes of file content it copied. Entries hardlinked instead of copied add no
 * bytes: knowing their size would cost a stat per file, the one syscall hardlink mode saves.
 */
export interface CopyStats {
  entries: number;
  directories: number;
  files: number;
  symlinks: number;
  /** Entries made as hardlinks: any non-directory in hardlink mode (to the source), regular files in content mode (to an earlier copy). */
  hardlinks: number;
  devices: number;
  fifos: number;
  sockets: number;
  bytes: number;
}

export interface CopyProgress {
  entries: number;
  bytes: number;
}

export interface CopyTreeOptions {
  /** 'hardlink': every non-directory (file, symlink, device, fifo, socket) becomes a hardlink of the source, as with `cp -al`. 'content' (default): data is copied. */
  mode?: 'hardlink' | 'content';
  signal?: AbortSignal;
  /** Called on the JS thread at most every 100 ms while the copy runs. */
  onProgress?: (progress: CopyProgress) => void;
  /** Worker threads the copy may use (default: chosen by benchmark). */
  threads?: number;
}

export interface NativeConstants {
  MS_RDONLY: number;
  MS_NOSUID: number;
  MS_NODEV: number;
  MS_NOEXEC: number;
  MS_REMOUNT: number;
  MS_BIND: number;
  MS_REC: number;
  MS_PRIVATE: number;
  MS_SLAVE: number;
  MS_SHARED: number;
  MS_UNBINDABLE: number;
  MNT_FORCE: number;
  MNT_DETACH: number;
  MNT_EXPIRE: number;
  UMOUNT_NOFOLLOW: number;
  XATTR_CREATE: number;
  XATTR_REPLACE: number;
  RENAME_NOREPLACE: number;
  RENAME_EXCHANGE: number;
}

/** The raw addon. Each function does one thing, off the JS thread, and rejects with a Node-style system error. */
export interface Addon {
  mount(source: PathLike, target: PathLike, fstype: string, flags: number, data?: string, after?: FileChange): Promise<void>;
  unmount(target: PathLike, flags: number, before?: FileChange): Promise<void>;
  mknod(path: PathLike, mode: number, major: number, minor: number): Promise<void>;
  getXattr(path: PathLike, name: string): Promise<Buffer>;
  setXattr(path: PathLike, name: string, value: Buffer, flags: number): Promise<void>;
  listXattr(path: PathLike): Promise<string[]>;
  removeXattr(path: PathLike, name: string): Promise<void>;
  resolveInRoot(root: PathLike, rel: PathLike, followLast: boolean, forceWalk?: boolean): Promise<string | Buffer>;
  rename2(from: PathLike, to: PathLike, flags: number): Promise<void>;
  copyTree(
    src: PathLike,
    dst: PathLike,
    options: { hardlink: boolean; threads: number; abortFlag: Buffer; onProgress?: (entries: number, bytes: number) => void },
  ): Promise<CopyStats>;
  setMeta(path: PathLike, ...meta: MetaArgs): Promise<void>;
  scanTree(root: PathLike, procXattrs?: boolean): Promise<{ records: ArrayBuffer; names: Buffer; extra: Buffer }>;
  readFiles(root: PathLike, paths: Buffer, sizes: number[], frames?: Buffer, frameLengths?: number[], fd?: number): Promise<{ data: Buffer; shrunk: number; written?: number }>;
  packTree(
    root: PathLike,
    fd: number,
    options: { uidMaps: number[]; gidMaps: number[]; abortFlag: Buffer; onProgress?: (entries: number, bytes: number) => void },
  ): Promise<PackTreeResult>;
  compareTrees(
    newRoot: PathLike,
    oldRoot: PathLike,
    options: { abortFlag: Buffer; onProgress?: (entries: number, bytes: number) => void },
  ): Promise<{ records: ArrayBuffer; names: Buffer; extra: Buffer; kinds: Buffer; opaque: Buffer; linkKeys: ArrayBuffer; linkNames: Buffer; entries: number }>;
  removeTree(path: PathLike): Promise<{ removed: number }>;
  applyTar(
    root: PathLike,
    options: {
      uidMaps: number[];
      gidMaps: number[];
      allowPrivilegedXattrs: boolean;
      threads: number;
      abortFlag: Buffer;
      onDrain: () => void;
      onProgress?: (entries: number, bytes: number) => void;
      file?: ApplyTarFile;
    },
  ): { done: Promise<ApplyTarResult>; feeder: unknown };
  applyTarPush(feeder: unknown, chunk: Uint8Array): boolean;
  applyTarEnd(feeder: unknown, failed: boolean): void;
  ofdTryLock(fd: number, kind: LockKind | 'unlock'): boolean;
  ofdLock(fd: number, kind: LockKind): Promise<void>;
  mountOverlayFs(target: PathLike, options: OverlayFsMount, after?: FileChange): Promise<void>;
  ofdTryLockPath(path: PathLike, kind: LockKind, probes?: string[]): Promise<{ fd: number; locked: boolean; probed?: ProbeResult[] }>;
  probePaths(probes: string[]): Promise<ProbeResult[]>;
  readSmallFile(path: PathLike): Promise<Buffer | undefined>;
  writeNewFile(path: PathLike, data: Buffer, durable: boolean, renameTo?: PathLike): Promise<void>;
  syncFs(path: PathLike): Promise<void>;
  fsyncPaths(paths: PathLike[], dataOnly: boolean): Promise<void>;
  constants: NativeConstants;
}

/** uid, gid (-1: keep), mode (-1: keep), atime s/ns, mtime s/ns (a negative ns: keep the times). */
export type MetaArgs = [uid: number, gid: number, mode: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number];

/** Owner, mode and times for setMeta; a field left out is left as it is. */
export interface EntryMeta {
  uid?: number;
  gid?: number;
  /** Permission bits incl. setuid/setgid/sticky; leave out for symlinks (chmod would follow them). */
  mode?: number;
  atime?: { sec: number; nsec: number };
  mtime?: { sec: number; nsec: number };
}

// dist/lib/native/addon.js -> the package root, where build/ and prebuilds/ are.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const require = createRequire(import.meta.url);

function load(): Addon {
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  try {
    return nodeGypBuild(packageRoot) as Addon;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `overlay-graphdriver: could not load its native addon (${reason}). ` +
        `No prebuilt binary matched ${process.platform}-${process.arch}; run "npm rebuild overlay-graphdriver" with a C++ compiler, python3 and make installed ` +
        `(where npm's allowScripts denied or did not cover its install script, "npm install-scripts approve overlay-graphdriver" first).`,
      { cause: err },
    );
  }
}

export const addon = load();

export const constants: Readonly<NativeConstants> = Object.freeze({ ...addon.constants });

export function checkPath(value: unknown, name: string): asserts value is PathLike {
  if (typeof value === 'string') {
    if (value.length === 0) throw invalidArg(name, 'must not be empty');
    if (value.includes('\0')) throw invalidArg(name, 'must not contain null bytes');
    return;
  }
  if (Buffer.isBuffer(value)) {
    if (value.length === 0) throw invalidArg(name, 'must not be empty');
    if (value.includes(0)) throw invalidArg(name, 'must not contain null bytes');
    return;
  }
  throw invalidArg(name, 'must be a string or Buffer');
}

export function checkInt(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw invalidArg(name, 'must be a non-negative integer');
  }
}

export function invalidArg(name: string, what: string): TypeError {
  const err = new TypeError(`The "${name}" argument ${what}`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

// Native errors are created without a JS stack; give them the caller's. Taken only
// when the call fails, from inside the await, where V8 still sees the awaiting callers
// ("at async …"): capturing it up front, on every call, cost more than a lock or a
// small read itself (a store mount+unmount makes six such calls).
export async function withStack<T>(op: Promise<T>): Promise<T> {
  try {
    return await op;
  } catch (err) {
    if (err instanceof Error) {
      const stackHolder: { stack?: string } = {};
      Error.captureStackTrace(stackHolder, withStack);
      if (stackHolder.stack !== undefined) err.stack = `${err.name}: ${err.message}\n${stackHolder.stack.split('\n').slice(1).join('\n')}`;
    }
    throw err;
  }
}
