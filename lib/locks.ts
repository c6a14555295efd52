// Cross-process read/write locks on lock files (OFD fcntl locks, native/ofd_lock.cc).
// Every store operation takes them, in every process; the kernel drops a dead
// holder's lock, so a crash never leaves the store locked and there is no pid file to
// judge. Each acquisition opens its own file description, so two acquisitions in one
// process (or in two worker threads) exclude each other exactly as two processes do.
//
// A lock file may be deleted by the holder of its write lock (a removed layer's lock):
// a waiter that then gets the lock on the deleted inode notices (its fd no longer
// matches the path) and starts over on the new file.
import { close, closeSync, fstat } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { isSystemError } from './errors.js';
import { ofdLock, ofdTryLock, ofdTryLockPath, probePaths } from './native.js';
import type { LockKind, PathProbe, ProbeResult } from './native.js';

export type { LockKind, PathProbe, ProbeResult };

const closeFd = promisify(close);
const fstatFd = promisify(fstat);

export interface HeldLock {
  readonly path: string;
  readonly kind: LockKind;
  /** The answers to the probes asked for, made while the lock was already held. */
  readonly probed: ProbeResult[];
  /** Drops the lock (closing its file description). */
  release(): Promise<void>;
  /** Deletes the lock file, then drops the lock; for the write holder of a lock whose object is gone. */
  removeAndRelease(): Promise<void>;
  /**
   * Turns a write lock into a read lock on the same file description, atomically (the
   * kernel converts an OFD lock in place: no other writer can slip in between); this
   * object is then spent and the returned one holds the lock.
   */
  downgrade(): HeldLock;
}

/**
 * Takes `kind` on the lock file `path` (created when missing), waiting for it; then
 * makes `probes` (what the caller reads under the lock), in the same pool trip when
 * the lock was free.
 */
export async function lock(path: string, kind: LockKind, probes: readonly PathProbe[] = []): Promise<HeldLock> {
  return (await acquire(path, kind, true, probes))!;
}

/** Takes `kind` on `path` only when nobody holds a conflicting lock; undefined otherwise. */
export function tryLock(path: string, kind: LockKind): Promise<HeldLock | undefined> {
  return acquire(path, kind, false, []);
}

/** Runs `fn` holding `kind` on `path`. */
export async function withLock<T>(path: string, kind: LockKind, fn: () => Promise<T>): Promise<T> {
  const held = await lock(path, kind);
  try {
    return await fn();
  } finally {
    await held.release();
  }
}

// An uncontended lock costs one trip to the thread pool (open, lock, the check that
// the file is still the one at the path, and the probes, natively); a contended one
// waits on a thread of its own, checks the path here and probes after.
async function acquire(path: string, kind: LockKind, wait: boolean, probes: readonly PathProbe[]): Promise<HeldLock | undefined> {
  for (;;) {
    const { fd, locked, probed } = await ofdTryLockPath(path, kind, probes);
    if (locked) return held(fd, path, kind, probed ?? []);
    try {
      if (!wait) {
        await closeFd(fd);
        return undefined;
      }
      await ofdLock(fd, kind);
      if (await samePath(fd, path)) return held(fd, path, kind, probes.length > 0 ? await probePaths(probes) : []);
    } catch (err) {
      await closeFd(fd).catch(() => undefined);
      throw err;
    }
    await closeFd(fd); // the file was deleted (and maybe re-created) while we waited
  }
}

async function samePath(fd: number, path: string): Promise<boolean> {
  const [mine, now] = await Promise.all([fstatFd(fd), stat(path).catch((err: unknown) => (isSystemError(err, 'ENOENT') ? undefined : Promise.reject(err)))]);
  return now !== undefined && now.ino === mine.ino && now.dev === mine.dev;
}

function held(fd: number, path: string, kind: LockKind, probed: ProbeResult[]): HeldLock {
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    // On the JS thread: closing a lock file (which drops the lock) never waits for the
    // disk, and a pool trip for it cost more than the close, twice per mount+unmount.
    closeSync(fd);
  };
  return {
    path,
    kind,
    probed,
    release,
    async removeAndRelease() {
      await unlink(path).catch((err: unknown) => {
        if (!isSystemError(err, 'ENOENT')) throw err;
      });
      await release();
    },
    downgrade() {
      if (released) throw new Error(`lock ${path} was already released`);
      if (kind === 'write') ofdTryLock(fd, 'read');
      released = true;
      return held(fd, path, 'read', []);
    },
  };
}
