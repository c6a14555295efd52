// `df`: what the store takes on disk, as `du -sx home` counts it (allocated blocks,
// an inode shared by hardlinks once), and what a prune would give back. Image layers
// are counted from their records (each layer's own inodes, measured when its content
// was written: lib/drivers/disk-usage.ts), so df reads records, not trees; container
// layers change under their records and are measured afresh (their own directory
// only); blobs and the store's own files are a stat each. A record made before sizes
// were recorded is measured once and the size written back. `exact` walks every
// layer's tree instead (parents first, each inode under the first layer that holds it).
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chainDiskUsage, layerDiskUsage } from '../drivers/disk-usage.js';
import { diskUsage } from '../native.js';
import { imageRecords } from './images.js';
import { planPrune, type StoreState } from './prune.js';
import type { LayerStore } from './store.js';
import type { BlobUsage, ImageUsage, Layer, LayerUsage, StoreDf, StoreDfOptions } from './types.js';

/** A blob file under home/blobs: a complete blob (digest) or a download or ingest in progress. */
export interface BlobFile {
  path: string;
  /** "sha256:<hex>" for a complete blob; undefined for a partial file. */
  digest: string | undefined;
  /** The pid in a partial file's name. */
  pid: number | undefined;
  size: number;
  mtimeMs: number;
}

/** Every file under home/blobs/<algorithm>/, with its allocated size. */
export async function blobFiles(s: LayerStore): Promise<BlobFile[]> {
  const found: Array<Omit<BlobFile, 'size' | 'mtimeMs'>> = [];
  for (const alg of await readdir(s.files.blobs).catch(() => [] as string[])) {
    const dir = join(s.files.blobs, alg);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const partial = /\.partial-(\d+)-\d+$/.exec(name);
      found.push({ path: join(dir, name), digest: partial === null && /^[0-9a-f]+$/.test(name) ? `${alg}:${name}` : undefined, pid: partial ? Number(partial[1]) : undefined });
    }
  }
  const [usage, stats] = await Promise.all([diskUsage(found.map((f) => f.path)), Promise.all(found.map((f) => lstat(f.path).catch(() => undefined)))]);
  return found.map((f, i) => ({ ...f, size: usage[i]!.bytes, mtimeMs: stats[i]?.mtimeMs ?? 0 }));
}

/** The layers parents first (a chain's inodes belong to the layer that made them). */
export function parentsFirst<T extends { id: string; parent?: string | undefined }>(layers: T[]): T[] {
  const byId = new Map(layers.map((l) => [l.id, l]));
  const depth = new Map<string, number>();
  const depthOf = (l: T): number => {
    const known = depth.get(l.id);
    if (known !== undefined) return known;
    depth.set(l.id, 0); // a cycle in damaged records ends here
    const p = l.parent !== undefined ? byId.get(l.parent) : undefined;
    const d = p === undefined ? 0 : depthOf(p) + 1;
    depth.set(l.id, d);
    return d;
  };
  return [...layers].sort((a, b) => depthOf(a) - depthOf(b));
}

/** What df and prune read: committed layers with their sizes, live images, blobs. */
export async function readState(s: LayerStore, opts: { exact?: boolean } = {}): Promise<StoreState & { measured: number }> {
  const [layers, images, blobs] = await Promise.all([s.list(), imageRecords(s).then((r) => r.filter((i) => i.incomplete !== true)), blobFiles(s)]);
  const sizes = new Map<string, number>();
  let measured = 0;
  if (opts.exact === true) {
    const ordered = parentsFirst(layers);
    const usage = await chainDiskUsage(s.driver.home, ordered.map((l) => l.id));
    ordered.forEach((l, i) => sizes.set(l.id, usage[i]!.bytes));
  } else {
    // Containers always, image layers whose record has no size yet: one walk for all.
    const walk = layers.filter((l) => l.kind === 'container' || l.diskSize === undefined);
    const usage = await layerDiskUsage(s.driver.home, walk.map((l) => ({ id: l.id, parent: l.parent })));
    walk.forEach((l, i) => sizes.set(l.id, usage[i]!.bytes));
    for (const l of layers) if (!sizes.has(l.id)) sizes.set(l.id, l.diskSize!);
    const unmeasured = walk.filter((l) => l.kind !== 'container');
    measured = unmeasured.length;
    await Promise.all(unmeasured.map((l) => writeBackSize(s, l.id, sizes.get(l.id)!)));
  }
  return { layers, images, blobs, sizes, measured };
}

/** Records a measured size in a layer's record, when nobody holds the layer (else the next df measures it again). */
async function writeBackSize(s: LayerStore, id: string, size: number): Promise<void> {
  const held = await s.tryLayer(id).catch(() => undefined);
  if (held === undefined) return;
  try {
    const rec = await s.record(id);
    if (rec === undefined || rec.incomplete === true || rec.diskSize !== undefined) return;
    await s.writeRecord({ ...rec, diskSize: size });
  } catch {
    // a size is an optimisation: the record stays as it was
  } finally {
    await held.release();
  }
}

/** The store's own files: everything in home but the driver's layers, the blobs and a run dir on another filesystem. */
async function metadataSize(s: LayerStore, layerIds: Set<string>): Promise<number> {
  const home = s.home;
  const driverDir = s.driver.home;
  const homeDev = (await lstat(home)).dev;
  const roots: string[] = [];
  for (const name of await readdir(home)) {
    const path = join(home, name);
    if (path === driverDir || path === s.files.blobs) continue;
    if (path === s.files.run && (await lstat(path)).dev !== homeDev) continue; // a tmpfs: du -x leaves it out
    roots.push(path);
  }
  for (const name of await readdir(driverDir).catch(() => [] as string[])) if (!layerIds.has(name)) roots.push(join(driverDir, name));
  const dirs = [home, driverDir, s.files.blobs, ...(await readdir(s.files.blobs).catch(() => [] as string[])).map((a) => join(s.files.blobs, a))];
  const [usage, dirStats] = await Promise.all([diskUsage(roots), Promise.all(dirs.map((d) => lstat(d).catch(() => undefined)))]);
  return usage.reduce((n, u) => n + u.bytes, 0) + dirStats.reduce((n, st) => n + (st !== undefined && st.dev === homeDev ? st.blocks * 512 : 0), 0);
}

export async function df(s: LayerStore, opts: StoreDfOptions = {}): Promise<StoreDf> {
  const state = await readState(s, opts.exact === true ? { exact: true } : {});
  const { layers, images, blobs, sizes } = state;
  const size = (id: string) => sizes.get(id) ?? 0;
  const imageLayers = layers.filter((l) => l.kind !== 'container');
  const containers = layers.filter((l) => l.kind === 'container');

  const users = new Map<string, number>();
  for (const img of images) for (const l of new Set(img.layers.map((x) => x.id))) users.set(l, (users.get(l) ?? 0) + 1);
  // Each section's reclaimable: what pruning that alone frees (images: prune --all).
  const now = Date.now();
  const unusedImages = planPrune(state, { images: 'all', blobs: false }, s.keepBlobs, now);
  const idleContainers = planPrune(state, { images: false, containers: true, blobs: false }, s.keepBlobs, now);
  const unneeded = planPrune(state, { images: false }, s.keepBlobs, now);
  const containersOf = (layerIds: Set<string>) => containers.filter((c) => c.parent !== undefined && layerIds.has(c.parent)).length;

  const imageItems: ImageUsage[] = images.map((img) => {
    const ids = [...new Set(img.layers.map((l) => l.id))];
    const total = ids.reduce((n, id) => n + size(id), 0);
    const shared = ids.filter((id) => (users.get(id) ?? 0) > 1).reduce((n, id) => n + size(id), 0);
    return { id: img.id, names: img.names, created: img.created, size: total, shared, unique: total - shared, containers: containersOf(new Set(ids)) };
  });
  const named = [...users.keys()].filter((id) => sizes.has(id));
  const imagesSize = named.reduce((n, id) => n + size(id), 0);
  const imagesShared = named.filter((id) => users.get(id)! > 1).reduce((n, id) => n + size(id), 0);

  const layerItem = (l: Layer): LayerUsage => ({
    id: l.id,
    kind: l.kind,
    ...(l.parent !== undefined ? { parent: l.parent } : {}),
    size: size(l.id),
    images: users.get(l.id) ?? 0,
    ...(l.kind === 'container' ? { mounted: l.mountCount > 0 } : {}),
  });
  const blobUsers = new Map<string, number>();
  for (const img of images) for (const d of new Set(img.layers.map((l) => l.blob.digest))) blobUsers.set(d, (blobUsers.get(d) ?? 0) + 1);
  const complete = blobs.filter((b) => b.digest !== undefined);
  const blobItems: BlobUsage[] = complete.map((b) => ({ digest: b.digest!, size: b.size, images: blobUsers.get(b.digest!) ?? 0 }));
  const freedLayerBytes = unusedImages.layers.reduce((n, id) => n + size(id), 0);

  const layersSize = imageLayers.reduce((n, l) => n + size(l.id), 0);
  const containersSize = containers.reduce((n, l) => n + size(l.id), 0);
  const blobsSize = blobs.reduce((n, b) => n + b.size, 0);
  const metadata = await metadataSize(s, new Set(layers.map((l) => l.id)));
  const verbose = opts.verbose === true;
  return {
    images: {
      count: images.length,
      size: imagesSize,
      shared: imagesShared,
      unique: imagesSize - imagesShared,
      reclaimable: freedLayerBytes,
      ...(verbose ? { items: imageItems } : {}),
    },
    layers: { count: imageLayers.length, size: layersSize, reclaimable: freedLayerBytes, ...(verbose ? { items: imageLayers.map(layerItem) } : {}) },
    containers: {
      count: containers.length,
      size: containersSize,
      reclaimable: idleContainers.containers.reduce((n, id) => n + size(id), 0),
      ...(verbose ? { items: containers.map(layerItem) } : {}),
    },
    blobs: { count: complete.length, size: blobsSize, reclaimable: unneeded.blobs.reduce((n, b) => n + b.size, 0), ...(verbose ? { items: blobItems } : {}) },
    metadata: { size: metadata },
    total: layersSize + containersSize + blobsSize + metadata,
    measured: state.measured,
    exact: opts.exact === true,
  };
}
