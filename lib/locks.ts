// Cross-process read/write locks on lock files (OFD fcntl locks, native/ofd_lock.cc).
// Every store operation takes them, in every process; the kernel drops a dead
// holder's lock, so a crash never leaves the store locked and there is no pid file to
// judge. Each acquisition opens its own file description, so two acquisitions in one
// process (or in two worker threads) exclude each other exactly as two processes do.
//
// A lock file may be deleted by the holder of its write lock (a removed layer's lock):
// a waiter that then gets the lock on the deleted inode notices (its fd no longer
// matches the path) and starts over on the new file.
import { close, fstat } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { isSystemError } from './errors.js';
import { ofdLock, ofdTryLockPath } from './native.js';
import type { LockKind } from './native.js';

export type { LockKind };

const closeFd = promisify(close);
const fstatFd = promisify(fstat);

export interface HeldLock {
  readonly path: string;
  readonly kind: LockKind;
  /** Drops the lock (closing its file description). */
  release(): Promise<void>;
  /** Deletes the lock file, then drops the lock; for the write holder of a lock whose object is gone. */
  removeAndRelease(): Promise<void>;
}

/** Takes `kind` on the lock file `path` (created when missing), waiting for it. */
export async function lock(path: string, kind: LockKind): Promise<HeldLock> {
  return (await acquire(path, kind, true))!;
}

/** Takes `kind` on `path` only when nobody holds a conflicting lock; undefined otherwise. */
export function tryLock(path: string, kind: LockKind): Promise<HeldLock | undefined> {
  return acquire(path, kind, false);
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

// An uncontended lock costs one trip to the thread pool (open, lock and the check that
// the file is still the one at the path, natively); a contended one waits on a thread
// of its own and checks the path here.
async function acquire(path: string, kind: LockKind, wait: boolean): Promise<HeldLock | undefined> {
  for (;;) {
    const { fd, locked } = await ofdTryLockPath(path, kind);
    if (locked) return held(fd, path, kind);
    try {
      if (!wait) {
        await closeFd(fd);
        return undefined;
      }
      await ofdLock(fd, kind);
      if (await samePath(fd, path)) return held(fd, path, kind);
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

function held(fd: number, path: string, kind: LockKind): HeldLock {
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await closeFd(fd);
  };
  return {
    path,
    kind,
    release,
    async removeAndRelease() {
      await unlink(path).catch((err: unknown) => {
        if (!isSystemError(err, 'ENOENT')) throw err;
      });
      await release();
    },
  };
}
