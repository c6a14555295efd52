// prune: removes what nothing uses (podman's image/container/system prune). The plan
// (planPrune, also what df reports as reclaimable) is made from a snapshot; every
// removal is then decided again under locks, and whatever another process holds is
// skipped, never waited for:
//
// - the images lock (write) for the whole prune: no image is recorded, tagged or
//   removed meanwhile;
// - a container layer is removed under its write lock, taken without waiting (a mount,
//   unmount, commit or create on it holds it), and only when no live process holds a
//   mount reference on it;
// - an image goes only when the write locks of all its own layers are free
//   (removeImageLocked): a pull or commit in flight holds a read lock on every layer it
//   found or made until its image is recorded (lib/store/lease.ts), so a prune never
//   takes a layer one of them is about to name; a create on the image's top layer holds
//   its read lock, and a container made before is seen under the lock;
// - blobs go only under the blobs lock's write side (tried once): with no pull,
//   commit or push in flight anywhere, a blob no image names is not about to be.
import { lock } from '../locks.js';
import { InvalidOptionError, LayerInUseError } from '../errors.js';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { blobFiles, parentsFirst, readState, type BlobFile } from './df.js';
import { blobsOf, imageRecords, removeImageLocked } from './images.js';
import { whenNoTransfers } from './lease.js';
import type { LayerStore } from './store.js';
import type { ImageRecord, KeepBlobs, Layer, StorePruneOptions, StorePruneResult } from './types.js';

export interface StoreState {
  /** Committed layers, with their live holders. */
  layers: Layer[];
  /** Live image records. */
  images: ImageRecord[];
  blobs: BlobFile[];
  /** Each layer's own bytes. */
  sizes: Map<string, number>;
}

export interface PrunePlan {
  images: string[];
  containers: string[];
  /** Image layers that go with the images. */
  layers: string[];
  blobs: BlobFile[];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The blobs nothing keeps: those no image in `images` names (under 'none' every layer
 * blob: only the images' manifests and configs stay, which repair rebuilds a damaged
 * record from); and partial files of processes that are gone.
 */
export function unneededBlobs(blobs: BlobFile[], images: ImageRecord[], policy: KeepBlobs, cutoff: number): BlobFile[] {
  const needed = new Set(policy === 'none' ? images.flatMap((i) => [i.digest, `sha256:${i.id}`]) : images.flatMap(blobsOf));
  return blobs.filter((b) => (b.digest !== undefined ? !needed.has(b.digest) && b.mtimeMs <= cutoff : b.pid !== undefined && b.pid !== process.pid && !alive(b.pid)));
}

/** What a prune with `opts` would remove, from a snapshot of the store. */
export function planPrune(state: StoreState, opts: StorePruneOptions, policy: KeepBlobs, now: number): PrunePlan {
  const cutoff = opts.olderThan !== undefined ? now - opts.olderThan : Infinity;
  const old = (iso: string) => Date.parse(iso) <= cutoff;
  const { layers, images } = state;

  // Containers nobody holds mounted; one with a layer on it that stays, stays.
  const containers = new Set(opts.containers === true ? layers.filter((l) => l.kind === 'container' && l.mountCount === 0 && old(l.created)).map((l) => l.id) : []);
  for (let changed = true; changed; ) {
    changed = false;
    for (const l of layers) {
      if (l.parent !== undefined && containers.has(l.parent) && !containers.has(l.id)) {
        containers.delete(l.parent);
        changed = true;
      }
    }
  }
  const staying = layers.filter((l) => !containers.has(l.id));

  // Images no staying container stands on (dangling ones only, unless 'all').
  const mode = opts.images ?? 'dangling';
  let candidates = mode === false ? [] : images.filter((img) => (mode === 'all' || img.names.length === 0) && old(img.created));
  candidates = candidates.filter((img) => {
    const ids = new Set(img.layers.map((l) => l.id));
    return !staying.some((l) => l.kind === 'container' && l.parent !== undefined && ids.has(l.parent));
  });
  // An image with an own layer something else stands on is left whole (as removeImageLocked does).
  let freed = new Set<string>();
  for (let changed = true; changed; ) {
    changed = false;
    const chosen = new Set(candidates.map((c) => c.id));
    const keptNames = new Set(images.filter((i) => !chosen.has(i.id)).flatMap((i) => i.layers.map((l) => l.id)));
    freed = new Set(candidates.flatMap((c) => c.layers.map((l) => l.id)).filter((id) => !keptNames.has(id)));
    const blocked = new Set(staying.filter((l) => !freed.has(l.id) && l.parent !== undefined && freed.has(l.parent)).map((l) => l.parent!));
    if (blocked.size > 0) {
      candidates = candidates.filter((c) => !c.layers.some((l) => blocked.has(l.id)));
      changed = true;
    }
  }
  const chosen = new Set(candidates.map((c) => c.id));
  const blobs = opts.blobs === false ? [] : unneededBlobs(state.blobs, images.filter((i) => !chosen.has(i.id)), policy, cutoff);
  return { images: candidates.map((c) => c.id), containers: [...containers], layers: [...freed], blobs };
}

function validate(opts: StorePruneOptions): void {
  if (opts.images !== undefined && opts.images !== false && opts.images !== 'dangling' && opts.images !== 'all') {
    throw new InvalidOptionError(`images must be 'dangling', 'all' or false, not ${JSON.stringify(opts.images)}`);
  }
  if (opts.olderThan !== undefined && (typeof opts.olderThan !== 'number' || !Number.isFinite(opts.olderThan) || opts.olderThan < 0)) {
    throw new InvalidOptionError(`olderThan must be a number of milliseconds >= 0, not ${JSON.stringify(opts.olderThan)}`);
  }
}

export async function prune(s: LayerStore, opts: StorePruneOptions = {}): Promise<StorePruneResult> {
  validate(opts);
  const result: StorePruneResult = { images: [], containers: [], layers: [], blobs: [], reclaimed: 0, skipped: [] };
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    const state = await readState(s);
    const plan = planPrune(state, opts, s.keepBlobs, Date.now());
    const size = (id: string) => state.sizes.get(id) ?? 0;
    if (opts.dryRun === true) {
      Object.assign(result, { images: plan.images, containers: plan.containers, layers: plan.layers, blobs: plan.blobs.map((b) => b.digest ?? b.path) });
      result.reclaimed = [...plan.containers, ...plan.layers].reduce((n, id) => n + size(id), 0) + plan.blobs.reduce((n, b) => n + b.size, 0);
      return result;
    }

    // Containers, leaves first.
    const order = parentsFirst(state.layers.filter((l) => plan.containers.includes(l.id))).reverse();
    for (const { id } of order) {
      const h = await s.tryLayer(id);
      if (h === undefined) {
        result.skipped.push({ id, reason: 'busy in another process' });
        continue;
      }
      let gone = false;
      try {
        await s.removeLocked(id);
        gone = true;
        result.containers.push(id);
        result.reclaimed += size(id);
      } catch (err) {
        if (!(err instanceof LayerInUseError)) throw err;
        result.skipped.push({ id, reason: err.message });
      } finally {
        if (gone) await h.removeAndRelease();
        else await h.release();
      }
    }

    // Images, each decided again on fresh records under its layers' locks.
    for (const id of plan.images) {
      const recs = await imageRecords(s);
      const rec = recs.find((r) => r.id === id && r.incomplete !== true);
      if (rec === undefined) continue;
      const layers: string[] = [];
      const why = await removeImageLocked(s, rec, recs, layers);
      if (why !== undefined) {
        result.skipped.push({ id, reason: why });
        continue;
      }
      result.images.push(id);
      result.layers.push(...layers);
      result.reclaimed += layers.reduce((n, l) => n + size(l), 0);
    }

    if (opts.blobs !== false) {
      const gone = await pruneBlobs(s, opts);
      if (gone === undefined) result.skipped.push({ id: 'blobs', reason: 'a pull, commit or push is in flight: blobs no image names yet may be its' });
      else {
        result.blobs.push(...gone.map((b) => b.digest ?? b.path));
        result.reclaimed += gone.reduce((n, b) => n + b.size, 0);
      }
    }
    return result;
  } finally {
    await held.release();
  }
}

/**
 * Deletes the blobs the store's policy does not keep, when no pull, commit or push is
 * in flight in any process; resolves to what went, or undefined when one was.
 */
export async function pruneBlobs(s: LayerStore, opts: Pick<StorePruneOptions, 'olderThan'>): Promise<BlobFile[] | undefined> {
  return whenNoTransfers(s, async () => {
    const images = (await imageRecords(s)).filter((i) => i.incomplete !== true);
    const cutoff = opts.olderThan !== undefined ? Date.now() - opts.olderThan : Infinity;
    const gone = unneededBlobs(await blobFiles(s), images, s.keepBlobs, cutoff);
    for (const b of gone) await rm(b.path, { force: true });
    await s.files.flushDirs([...new Set(gone.map((b) => dirname(b.path)))]);
    return gone;
  });
}
