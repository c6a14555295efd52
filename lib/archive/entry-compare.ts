// What counts as "modified" when the same path exists in a layer and in its parent:
// containers/storage's rules (pkg/archive/changes_unix.go statDifferent, plus the
// xattrs) with two corrections. mtimes are compared to the nanosecond (our tars carry
// them; Go's tolerance for a zero nanosecond field was for tars that do not), and a
// regular file with a new inode but the same size and mtime is compared by content,
// so a rewrite within the same clock tick is not missed. A symlink's target is
// compared too. An inode shared with the parent (hardlink copy) never gets here;
// a new inode with another link count is a change of its hardlink group.
import { open } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import * as native from '../native.js';
import { isSystemError } from '../errors.js';
import { rawBytes, readlinkRaw } from './raw-path.js';
import type { IoGate } from './io-gate.js';

const S_IFMT = 0o170000n;
const S_IFDIR = 0o040000n;
const S_IFREG = 0o100000n;
const S_IFLNK = 0o120000n;
const S_IFCHR = 0o020000n;

/** The lstat fields the comparison and the export use: fs.BigIntStats, or a native scan's entry. */
export type EntryStat = Pick<BigIntStats, 'mode' | 'nlink' | 'uid' | 'gid' | 'size' | 'ino' | 'dev' | 'rdev' | 'mtimeNs'>;

export const isDir = (st: EntryStat): boolean => (st.mode & S_IFMT) === S_IFDIR;
export const isRegular = (st: EntryStat): boolean => (st.mode & S_IFMT) === S_IFREG;
export const isSymlink = (st: EntryStat): boolean => (st.mode & S_IFMT) === S_IFLNK;
/** An overlayfs whiteout: a character device 0/0. */
export const isWhiteout = (st: EntryStat): boolean => (st.mode & S_IFMT) === S_IFCHR && st.rdev === 0n;

/** Identity of an inode, for shared-inode and hardlink-group checks. */
export const inodeKey = (st: Pick<EntryStat, 'dev' | 'ino'>): string => `${st.dev}:${st.ino}`;

/**
 * A nanosecond time split as the kernel keeps it (tv_sec, tv_nsec): seconds rounded
 * down and 0 <= nsec < 1e9, also before 1970 (-1.5 s is sec -2, nsec 500000000).
 */
export function splitNs(ns: bigint): { sec: bigint; nsec: number } {
  const nsec = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return { sec: (ns - nsec) / 1_000_000_000n, nsec: Number(nsec) };
}

/** Overlay's own bookkeeping (trusted.overlay.*, user.overlay.* with userxattr) is never layer content. */
export function isOverlayXattr(name: string): boolean {
  return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
}

/** All extended attributes of a path (not following a symlink), overlay's included, sorted by name. */
export async function readXattrs(rawPath: string): Promise<Array<[string, Buffer]>> {
  const path = rawBytes(rawPath);
  let names: string[];
  try {
    names = await native.listXattr(path);
  } catch (err) {
    if (isSystemError(err, 'ENOTSUP') || isSystemError(err, 'EOPNOTSUPP')) return [];
    throw err;
  }
  if (names.length === 0) return [];
  names.sort();
  const out: Array<[string, Buffer]> = [];
  for (const name of names) {
    try {
      out.push([name, await native.getXattr(path, name)]);
    } catch (err) {
      // Removed between list and get.
      if (!isSystemError(err, 'ENODATA')) throw err;
    }
  }
  return out;
}

/** The xattrs that are layer content: everything but overlay's own. */
export function contentXattrs(all: ReadonlyArray<readonly [string, Buffer]>): Array<readonly [string, Buffer]> {
  return all.filter(([name]) => !isOverlayXattr(name));
}

function sameXattrs(a: ReadonlyArray<readonly [string, Buffer]>, b: ReadonlyArray<readonly [string, Buffer]>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]![0] !== b[i]![0] || !a[i]![1].equals(b[i]![1])) return false;
  }
  return true;
}

function statDifferent(oldSt: EntryStat, newSt: EntryStat): boolean {
  if (oldSt.mode !== newSt.mode || oldSt.uid !== newSt.uid || oldSt.gid !== newSt.gid || oldSt.rdev !== newSt.rdev) return true;
  // A directory's size and mtime follow its entries, not a change of the directory.
  if (isDir(oldSt)) return false;
  return oldSt.size !== newSt.size || oldSt.mtimeNs !== newSt.mtimeNs;
}

const compareChunk = 256 * 1024;

async function sameContent(oldPath: string, newPath: string, size: bigint): Promise<boolean> {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW;
  const [a, b] = await Promise.all([open(rawBytes(oldPath), flags), open(rawBytes(newPath), flags)]);
  try {
    const bufA = Buffer.allocUnsafe(Number(size < BigInt(compareChunk) ? size : BigInt(compareChunk)));
    const bufB = Buffer.allocUnsafe(bufA.length);
    let pos = 0;
    for (;;) {
      const [ra, rb] = await Promise.all([a.read(bufA, 0, bufA.length, pos), b.read(bufB, 0, bufB.length, pos)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (bufA.compare(bufB, 0, rb.bytesRead, 0, ra.bytesRead) !== 0) return false;
      pos += ra.bytesRead;
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

export interface CompareResult {
  changed: boolean;
  /** The new entry's xattrs as read (overlay's included), when they were read. */
  newXattrs?: Array<[string, Buffer]>;
}

/** Whether the entry at newPath differs from the one at oldPath (both exist, different inodes). */
export async function entryDiffers(gate: IoGate, oldPath: string, oldSt: BigIntStats, newPath: string, newSt: BigIntStats): Promise<CompareResult> {
  if (statDifferent(oldSt, newSt)) return { changed: true };
  const [oldX, newX] = await Promise.all([gate.run(() => readXattrs(oldPath)), gate.run(() => readXattrs(newPath))]);
  if (!sameXattrs(contentXattrs(oldX), contentXattrs(newX))) return { changed: true, newXattrs: newX };
  // A new inode with another link count: the name left or joined a hardlink group,
  // which only an entry of its own in the tar carries. (The counts, not the inodes:
  // through an overlay mount a file shows another device than in its lower dir.)
  if (!isDir(newSt) && oldSt.nlink !== newSt.nlink) return { changed: true, newXattrs: newX };
  if (isSymlink(newSt)) {
    const [ta, tb] = await Promise.all([gate.run(() => readlinkRaw(oldPath)), gate.run(() => readlinkRaw(newPath))]);
    return { changed: !ta.equals(tb), newXattrs: newX };
  }
  if (isRegular(newSt) && newSt.size > 0n) {
    const same = await gate.run(() => sameContent(oldPath, newPath, newSt.size));
    return { changed: !same, newXattrs: newX };
  }
  return { changed: false, newXattrs: newX };
}
