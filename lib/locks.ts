// Cross-process read/write locks on lock files (OFD fcntl locks, native/ofd_lock.cc).
// Every store operation takes them, in every process; the kernel drops a dead
// holder's lock, so a crash never leaves the store locked and there is no pid file to
// judge. Each acquisition opens its own file description, so two acquisitions in one
// process (or in two worker threads) exclude each other exactly as two processes do.
//
// A lock file may be deleted by the holder of its write lock (a removed layer's lock):
// a waiter that then gets the lock on the deleted inode notices (its fd no longer
// matches the path) and starts over on the new file.
import { constants as fsConstants } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { isSystemError } from './errors.js';
import { ofdLock, ofdTryLock } from './native.js';
import type { LockKind } from './native.js';

export type { LockKind };

export interface HeldLock {
  readonly path: string;
  readonly kind: LockKind;
  /** Drops the lock (closing its file description). */
  release(): Promise<void>;
  /** Deletes the lock file, then drops the lock; for the write holder of a lock whose object is gone. */
  removeAndRelease(): Promise<void>;
}

// libuv opens every file close-on-exec: a child process never inherits a lock.
const OPEN_FLAGS = fsConstants.O_RDWR | fsConstants.O_CREAT;

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

async function acquire(path: string, kind: LockKind, wait: boolean): Promise<HeldLock | undefined> {
  for (;;) {
    const handle = await open(path, OPEN_FLAGS, 0o600);
    try {
      if (!ofdTryLock(handle.fd, kind)) {
        if (!wait) {
          await handle.close();
          return undefined;
        }
        await ofdLock(handle.fd, kind);
      }
      if (await samePath(handle, path)) return held(handle, path, kind);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
    await handle.close(); // the file was deleted (and maybe re-created) while we waited
  }
}

async function samePath(handle: FileHandle, path: string): Promise<boolean> {
  const [mine, now] = await Promise.all([handle.stat(), stat(path).catch((err: unknown) => (isSystemError(err, 'ENOENT') ? undefined : Promise.reject(err)))]);
  return now !== undefined && now.ino === mine.ino && now.dev === mine.dev;
}

function held(handle: FileHandle, path: string, kind: LockKind): HeldLock {
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await handle.close();
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
