// Reference-counted mounts (containers/storage drivers/counter.go), safe across
// overlapping async calls: every operation on one mount path runs under that path's
// lock, so a hundred concurrent get/put pairs mount once and unmount once. As in the
// Go counter, a path found mounted when first seen counts as one reference (someone
// else's, which this process never unmounts), and a path found unmounted behind our
// back drops its stale references.
import { KeyedLock } from './keyed-lock.js';

/**
 * References this process took on each mount path. A mount found in place when a path is
 * first seen belongs to someone else (another process, or a store's reference): it is
 * counted as one foreign reference that this counter never releases, so the last put()
 * here unmounts only a mount this counter made.
 */
export class MountCounter {
  /** Own references per path, and whether the path was mounted by someone else when first seen. */
  readonly #counts = new Map<string, { own: number; foreign: boolean }>();
  readonly #lock = new KeyedLock();
  readonly #isMounted: (path: string) => Promise<boolean>;

  /** `isMounted(path)` tells whether the kind of mount this counter tracks is on `path` now. */
  constructor(isMounted: (path: string) => Promise<boolean>) {
    this.#isMounted = isMounted;
  }

  /**
   * Runs `fn` while no reference to `path` can be taken or dropped; `fn` gets the current
   * count (a foreign mount counts one). `mounted`: whether `path` is mounted, as the
   * caller saw a moment ago under a lock that keeps other processes from changing it
   * (the store's layer lock); it saves looking again unless this process holds
   * references there, which a get() queued before this call may have just taken.
   */
  withLock<T>(path: string, fn: (references: number) => Promise<T>, mounted?: boolean): Promise<T> {
    return this.#lock.run(path, async () => {
      const s = mounted !== undefined && !this.#counts.has(path) ? { own: 0, foreign: mounted } : await this.#sync(path);
      return fn(s.own + (s.foreign ? 1 : 0));
    });
  }

  /** Takes a reference to `path`, calling `mount()` first when nothing is mounted there. A failed mount takes no reference. */
  acquire(path: string, mount: () => Promise<void>): Promise<number> {
    return this.#lock.run(path, async () => {
      const s = await this.#sync(path);
      if (s.own === 0 && !s.foreign) await mount();
      this.#counts.set(path, { own: s.own + 1, foreign: s.foreign });
      return s.own + 1;
    });
  }

  /**
   * Drops a reference this process took on `path`, calling `unmount()` when it was the
   * last one and the mount is this counter's own; returns the own references left.
   * Dropping a reference that is not held does nothing (a foreign mount is never
   * unmounted) and returns undefined. When the unmount fails the reference is kept.
   */
  release(path: string, unmount: () => Promise<void>): Promise<number | undefined> {
    return this.#lock.run(path, async () => {
      const s = await this.#sync(path);
      if (s.own === 0) return undefined;
      if (s.own === 1 && !s.foreign) await unmount();
      if (s.own === 1) this.#counts.delete(path);
      else this.#counts.set(path, { own: s.own - 1, foreign: s.foreign });
      return s.own - 1;
    });
  }

  // Reconciles with the mount table: a mount not made here is foreign; references to a
  // mount that someone else removed are forgotten.
  async #sync(path: string): Promise<{ own: number; foreign: boolean }> {
    const known = this.#counts.get(path);
    const mounted = await this.#isMounted(path);
    if (!mounted) {
      this.#counts.delete(path);
      return { own: 0, foreign: false };
    }
    return known ?? { own: 0, foreign: true };
  }
}
