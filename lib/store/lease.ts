// Leases: what a pull, commit or push in flight holds so that a prune or an rmi in
// another process cannot take it from under it (containerd's leases, made of the
// store's own OFD locks, which the kernel drops when the holder dies):
//
// - the blobs lock (home/locks/blobs), read-held for the whole run: blobs that
//   no image names yet (downloaded, being applied, about to be recorded) are deleted
//   only under its write side, which a prune or rmi only ever tries (never waits for);
// - a read lock on every layer the run relies on: each existing layer it found (taken
//   before it looks, so a removal either finished before, and the layer is fetched
//   again, or waits), and each layer it made (its write lock turned into a read lock in
//   place, so there is no moment when it is free). Prune and rmi take layers' write
//   locks without waiting and leave what they cannot take.
//
// Everything is released once the image record names the layers (or the run failed).
import { lock, tryLock, type HeldLock } from '../locks.js';
import type { LayerStore } from './store.js';

export class Lease {
  readonly #store: LayerStore;
  readonly #held: HeldLock[] = [];

  private constructor(store: LayerStore, transfers: HeldLock) {
    this.#store = store;
    this.#held.push(transfers);
  }

  /** Starts a lease: waits for a blob removal in progress to finish. */
  static async begin(store: LayerStore): Promise<Lease> {
    return new Lease(store, await lock(store.files.blobsLock(), 'read'));
  }

  /** Whether layer `id` exists, complete; when it does, it stays until end(). */
  async hold(id: string): Promise<boolean> {
    const held = await lock(this.#store.files.layerLock(id), 'read');
    if (await this.#store.exists(id)) {
      this.#held.push(held);
      return true;
    }
    await held.release();
    return false;
  }

  /** Keeps a layer's lock (a read lock the caller has) until end(). */
  keep(held: HeldLock): void {
    this.#held.push(held);
  }

  async end(): Promise<void> {
    for (const h of this.#held.splice(0).reverse()) await h.release();
  }
}

/**
 * Runs `fn` when no pull, commit or push is in flight in any process (the blobs
 * lock's write side, tried once); resolves undefined without running it otherwise.
 */
export async function whenNoTransfers<T>(store: LayerStore, fn: () => Promise<T>): Promise<T | undefined> {
  const held = await tryLock(store.files.blobsLock(), 'write');
  if (held === undefined) return undefined;
  try {
    return await fn();
  } finally {
    await held.release();
  }
}
