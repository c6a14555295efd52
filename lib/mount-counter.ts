// Reference-counted mounts (containers/storage drivers/counter.go), safe across
// overlapping async calls: every operation on one mount path runs under that path's
// lock, so a hundred concurrent get/put pairs mount once and unmount once. As in the
// Go counter, a path found mounted when first seen counts as one reference (someone
// else's), and a path found unmounted behind our back drops its stale references.

/** Runs async functions one at a time per key, in call order. */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Runs `fn` holding the locks of all `keys` (taken in sorted order, so two callers cannot deadlock). */
  async runAll<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const take = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i]!, () => take(i + 1)));
    return take(0);
  }
}

export class MountCounter {
  readonly #counts = new Map<string, number>();
  readonly #lock = new KeyedLock();
  readonly #isMounted: (path: string) => Promise<boolean>;

  /** `isMounted(path)` tells whether the kind of mount this counter tracks is on `path` now. */
  constructor(isMounted: (path: string) => Promise<boolean>) {
    this.#isMounted = isMounted;
  }

  /** Runs `fn` while no reference to `path` can be taken or dropped; `fn` gets the current count. */
  withLock<T>(path: string, fn: (references: number) => Promise<T>): Promise<T> {
    return this.#lock.run(path, async () => fn(await this.#sync(path)));
  }

  /** Takes a reference to `path`, calling `mount()` first when there is none. A failed mount takes no reference. */
  acquire(path: string, mount: () => Promise<void>): Promise<number> {
    return this.#lock.run(path, async () => {
      const count = await this.#sync(path);
      if (count === 0) await mount();
      this.#counts.set(path, count + 1);
      return count + 1;
    });
  }

  /**
   * Drops a reference to `path`, calling `unmount()` when it was the last one, and
   * returns the references left. Dropping a reference that is not held does nothing
   * and returns undefined. When the unmount fails the reference is kept (the path is
   * still mounted) and the error is thrown.
   */
  release(path: string, unmount: () => Promise<void>): Promise<number | undefined> {
    return this.#lock.run(path, async () => {
      const count = await this.#sync(path);
      if (count === 0) return undefined;
      if (count === 1) await unmount();
      this.#set(path, count - 1);
      return count - 1;
    });
  }

  /** The references held on `path` right now (after checking the mount is still there). */
  references(path: string): Promise<number> {
    return this.#lock.run(path, () => this.#sync(path));
  }

  // Reconciles the count with the mount table: adopt an unknown mount as one reference,
  // forget references to a mount that someone else removed.
  async #sync(path: string): Promise<number> {
    const known = this.#counts.get(path);
    const mounted = await this.#isMounted(path);
    if (known === undefined) return mounted ? 1 : 0;
    if (!mounted) {
      this.#counts.delete(path);
      return 0;
    }
    return known;
  }

  #set(path: string, count: number): void {
    if (count === 0) this.#counts.delete(path);
    else this.#counts.set(path, count);
  }
}
