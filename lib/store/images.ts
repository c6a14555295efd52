// Images in the store (containers/storage's images.go over layers.go): one JSON record
// per image (home/images/<id>, id = the hex of its config digest), naming its layers
// bottom first. Layers are ordinary store layers whose ids are the hex of their chain
// ids, so images that share base layers share them on disk, and a layer that exists
// is neither fetched nor applied again (lib/image/pull.ts).
//
// Crash safety follows the layers' rules: a pull writes its record (atomically, fsynced)
// only once every layer it names is committed, so a pull killed at any point leaves
// committed layers, at most one incomplete layer (the next open removes it) and blobs
// in home/blobs (the next pull reuses complete ones and resumes partial ones). A
// removal marks the record incomplete before it deletes anything; an incomplete image
// is never listed, and the next open (or `check --repair`) finishes the removal.
//
// Locks: home/locks/images, held for writing while a record is written (names move
// between images) or an image is removed; a pull or commit holds no store-wide lock
// while it transfers and applies. Order: images lock, then layer locks, then the store
// lock; recovery (which holds the store lock) only ever tries the images lock.
import { readdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { ImageInUseError, ImageNotFoundError, InvalidOptionError, LayerExistsError, LayerNotFoundError } from '../errors.js';
import { lock } from '../locks.js';
import { BlobCache } from '../image/blob-cache.js';
import { chainIds, digestHex, isDigest, parseDigest, type Digest } from '../image/digest.js';
import type { Image, LayerTarget } from '../image/image.js';
import { parseConfig, parseManifest } from '../image/manifest.js';
import type { ImageReference } from '../image/reference.js';
import { killPoint } from './kill-point.js';
import { uniquePrefix } from './resolve.js';
import type { LayerStore } from './store.js';
import type {
  ImageInfo,
  ImageRecord,
  LayerRecord,
  StoreCommitOptions,
  StorePullOptions,
  StorePullResult,
  StorePushOptions,
  StorePushResult,
} from './types.js';

const MAX_NAME_BYTES = 512;

/** Every image record, incomplete ones included (a record that does not parse is skipped). */
export async function imageRecords(s: LayerStore): Promise<ImageRecord[]> {
  const names = await readdir(s.files.images).catch(() => [] as string[]);
  const recs = await Promise.all(names.map((n) => s.files.readJson<ImageRecord>(s.files.images, n).catch(() => undefined)));
  return recs.filter((r): r is ImageRecord => r !== undefined && typeof r.id === 'string' && Array.isArray(r.layers));
}

async function writeImage(s: LayerStore, rec: ImageRecord): Promise<void> {
  await s.files.writeJson(s.files.images, rec.id, rec, true);
}

/** A name as the store keeps it: "repo:tag" (":latest" added when no tag is given). */
export function normaliseName(name: unknown): string {
  if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > MAX_NAME_BYTES || /[\s\0-\x1f\x7f]/.test(name)) {
    throw new InvalidOptionError(`image name ${JSON.stringify(name)} must be non-empty, at most ${MAX_NAME_BYTES} bytes, without spaces or control characters`);
  }
  if (name.includes('@')) return name;
  const last = name.slice(name.lastIndexOf('/') + 1);
  return last.includes(':') ? name : `${name}:latest`;
}

/** The names an image pulled from `ref` gets unless told otherwise. */
export function defaultNames(ref: ImageReference): string[] {
  if (ref.transport === 'oci') return ref.ref !== undefined ? [normaliseName(ref.ref)] : [];
  return ref.tag !== undefined ? [`${ref.registry}/${ref.repository}:${ref.tag}`] : [];
}

/**
 * The committed image `nameOrId` names: an id, "sha256:<id>" or a name: exact
 * ("debian" means "debian:latest"), else the one name that ends in "/" + it
 * ("debian:12" finds "docker.io/library/debian:12"); else a unique id prefix
 * (lib/store/resolve.ts has the rule).
 */
export function findImage(recs: ImageRecord[], nameOrId: string): ImageRecord {
  if (typeof nameOrId !== 'string' || nameOrId === '') throw new ImageNotFoundError(String(nameOrId));
  const live = recs.filter((r) => r.incomplete !== true);
  const found = findImageByName(live, nameOrId) ?? uniquePrefix(live, nameOrId);
  if (found === undefined) throw new ImageNotFoundError(nameOrId);
  return found;
}

/** The committed image with this full id or name; undefined when none has it. */
export function findImageByName(recs: ImageRecord[], nameOrId: string): ImageRecord | undefined {
  const live = recs.filter((r) => r.incomplete !== true);
  const full = /^(?:sha256:)?([0-9a-f]{64})$/.exec(nameOrId)?.[1];
  const byId = full !== undefined ? live.find((r) => r.id === full) : undefined;
  if (byId !== undefined) return byId;
  let wanted: string[];
  try {
    wanted = [...new Set([nameOrId, normaliseName(nameOrId)])];
  } catch {
    return undefined;
  }
  const exact = live.filter((r) => r.names.some((n) => wanted.includes(n)));
  if (exact.length > 0) return exact[0]!;
  const suffix = live.filter((r) => r.names.some((n) => wanted.some((w) => n.endsWith(`/${w}`))));
  if (suffix.length > 1) throw new ImageNotFoundError(nameOrId, `is ambiguous: ${suffix.map((r) => r.names.find((n) => wanted.some((w) => n.endsWith(`/${w}`)))).join(', ')}`);
  return suffix[0];
}

export async function resolveImage(s: LayerStore, nameOrId: string): Promise<ImageRecord> {
  return findImage(await imageRecords(s), nameOrId);
}

export async function infoOf(s: LayerStore, rec: ImageRecord, layers?: Map<string, LayerRecord>): Promise<ImageInfo> {
  let size = 0;
  for (const l of rec.layers) {
    const lr = layers !== undefined ? layers.get(l.id) : await s.record(l.id);
    size += lr?.uncompressedSize ?? 0;
  }
  return { id: rec.id, names: rec.names, topLayer: rec.topLayer ?? null, digest: rec.digest, size, layers: rec.layers.map((l) => l.id), created: rec.created };
}

export async function listImages(s: LayerStore): Promise<ImageInfo[]> {
  const recs = (await imageRecords(s)).filter((r) => r.incomplete !== true).sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : 0));
  const layers = new Map((await s.records()).map((r) => [r.id, r]));
  return Promise.all(recs.map((r) => infoOf(s, r, layers)));
}

/** The transport's view of a record: manifest, config and layers with their chain ids. */
export function imageOf(rec: ImageRecord): Image {
  const manifestBytes = Buffer.from(rec.manifest, 'base64');
  const configBytes = Buffer.from(rec.config, 'base64');
  const parsed = parseManifest(manifestBytes, undefined);
  if (parsed.kind !== 'manifest') throw new InvalidOptionError(`image ${rec.id}: its recorded manifest is an index`);
  const diffIds = rec.layers.map((l) => parseDigest(l.diffId));
  const chains = chainIds(diffIds);
  return {
    manifest: parsed.manifest,
    manifestBytes,
    manifestDigest: rec.digest as Digest,
    config: parseConfig(configBytes),
    configBytes,
    configDigest: `sha256:${rec.id}` as Digest,
    layers: rec.layers.map((l, i) => ({
      id: l.id,
      parent: i === 0 ? undefined : rec.layers[i - 1]!.id,
      chainId: chains[i]!,
      diffId: diffIds[i]!,
      blob: { mediaType: l.blob.mediaType, digest: parseDigest(l.blob.digest), size: l.blob.size },
    })),
  };
}

/** The LayerTarget of pull and commit: layers become store layers (records, locks, incomplete flag). */
export function storeTarget(s: LayerStore): LayerTarget {
  return {
    has: (id) => s.exists(id),
    async put(id, parent, tar, opts) {
      try {
        const rec = await s.importLayer(id, tar, {
          kind: 'image',
          ...(parent !== undefined ? { parent } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
          ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        });
        return rec.diffSize ?? 0;
      } catch (err) {
        tar.destroy();
        // Another process applied the same layer meanwhile (it held the layer's lock): it is there.
        if (err instanceof LayerExistsError && (await s.exists(id))) return 0;
        throw err;
      }
    },
  };
}

/**
 * Records `image` with `names`, under the images lock: only when every layer it names is
 * committed (a removal elsewhere may have taken one meanwhile). The names move from any
 * other image that had them; an image recorded before keeps its record and gains the names.
 */
async function recordImage(s: LayerStore, image: Image, names: string[]): Promise<ImageRecord> {
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    for (const l of image.layers) {
      if (!(await s.exists(l.id))) throw new LayerNotFoundError(l.id, { cause: new Error('removed by another process while the image was being stored; pull again') });
    }
    const id = digestHex(image.configDigest);
    const recs = await imageRecords(s);
    const old = recs.find((r) => r.id === id && r.incomplete !== true);
    const rec: ImageRecord = old
      ? { ...old, names: [...new Set([...old.names, ...names])] }
      : {
          id,
          digest: image.manifestDigest,
          names,
          ...(image.layers.length > 0 ? { topLayer: image.layers[image.layers.length - 1]!.id } : {}),
          layers: image.layers.map((l) => ({ id: l.id, diffId: l.diffId, blob: { mediaType: l.blob.mediaType, digest: l.blob.digest, size: l.blob.size } })),
          manifest: image.manifestBytes.toString('base64'),
          config: image.configBytes.toString('base64'),
          created: new Date().toISOString(),
        };
    await writeImage(s, rec);
    for (const other of recs) {
      if (other.id === id || other.incomplete === true || !other.names.some((n) => names.includes(n))) continue;
      await writeImage(s, { ...other, names: other.names.filter((n) => !names.includes(n)) });
    }
    return rec;
  } finally {
    await held.release();
  }
}

export async function pull(s: LayerStore, ref: string, opts: StorePullOptions): Promise<StorePullResult> {
  // The transport is loaded only by the commands that use it: every open reads image records, few pull.
  const { parseReference } = await import('../image/reference.js');
  const { pullImage } = await import('../image/pull.js');
  const parsed = parseReference(ref);
  const names = opts.names !== undefined ? opts.names.map(normaliseName) : defaultNames(parsed);
  const result = await pullImage(parsed, storeTarget(s), {
    blobCache: s.files.blobs,
    durable: s.files.durable,
    ...(opts.tlsVerify !== undefined ? { tlsVerify: opts.tlsVerify } : {}),
    ...(opts.creds !== undefined ? { creds: opts.creds } : {}),
    ...(opts.authFiles !== undefined ? { authFiles: opts.authFiles } : {}),
    ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  killPoint('pull-layers-done');
  const rec = await recordImage(s, result, names);
  return { ...(await infoOf(s, rec)), fetched: result.fetched, applied: result.applied };
}

export async function commit(s: LayerStore, container: string, name: string, opts: StoreCommitOptions): Promise<ImageInfo> {
  const names = [normaliseName(name)];
  const c = await s.layer(container);
  if (c.kind !== 'container') throw new InvalidOptionError(`${JSON.stringify(container)} is an image layer, not a container`);
  let base: Image | undefined;
  if (c.parent !== undefined) {
    const recs = (await imageRecords(s)).filter((r) => r.incomplete !== true && r.topLayer === c.parent);
    if (recs.length === 0) throw new InvalidOptionError(`container ${JSON.stringify(container)} stands on layer ${JSON.stringify(c.parent)}, which is no image's top layer: nothing to commit onto`);
    base = imageOf(recs[0]!);
  }
  const { commitImage } = await import('../image/commit.js');
  // Checked before the diff is opened: a change that does not parse costs nothing.
  if (opts.changes !== undefined) (await import('../image/config-changes.js')).applyConfigChanges(undefined, opts.changes);
  const diff: Readable = await s.diff(container, opts.signal ? { signal: opts.signal } : {});
  const image = await commitImage(diff, base, storeTarget(s), {
    blobCache: s.files.blobs,
    durable: s.files.durable,
    createdBy: opts.createdBy ?? `ogd commit ${container}`,
    ...(opts.comment !== undefined ? { comment: opts.comment } : {}),
    ...(opts.author !== undefined ? { author: opts.author } : {}),
    ...(opts.changes !== undefined ? { changes: opts.changes } : {}),
    ...(opts.compression !== undefined ? { compression: opts.compression } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return infoOf(s, await recordImage(s, image, names));
}

export async function push(s: LayerStore, nameOrId: string, ref: string, opts: StorePushOptions): Promise<StorePushResult> {
  const { pushImage } = await import('../image/push.js');
  const image = imageOf(await resolveImage(s, nameOrId));
  // Layers whose blob is not kept are made again from the store (under its read locks).
  const source = { diff: (id: string, parent?: string, o: { signal?: AbortSignal } = {}) => s.diff(id, { parent: parent ?? null, ...o }) };
  const result = await pushImage(image, ref, source, {
    blobCache: s.files.blobs,
    durable: s.files.durable,
    ...(opts.tlsVerify !== undefined ? { tlsVerify: opts.tlsVerify } : {}),
    ...(opts.creds !== undefined ? { creds: opts.creds } : {}),
    ...(opts.authFiles !== undefined ? { authFiles: opts.authFiles } : {}),
    ...(opts.compression !== undefined ? { compression: opts.compression } : {}),
    ...(opts.chunkSize !== undefined ? { chunkSize: opts.chunkSize } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return { digest: result.manifestDigest, layers: result.layers.map((l) => ({ digest: l.blob.digest, size: l.blob.size, sent: l.sent })) };
}

/** The layers of `rec` that no other live image uses, top first (the order they can be removed in). */
function ownLayers(rec: ImageRecord, recs: ImageRecord[]): string[] {
  const used = new Set(recs.filter((r) => r.id !== rec.id && r.incomplete !== true).flatMap((r) => r.layers.map((l) => l.id)));
  return rec.layers.map((l) => l.id).filter((id) => !used.has(id)).reverse();
}

/** Deletes the kept blobs of `rec` that no other image names. */
async function dropBlobs(s: LayerStore, rec: ImageRecord, recs: ImageRecord[]): Promise<void> {
  const used = new Set(recs.filter((r) => r.id !== rec.id && r.incomplete !== true).flatMap((r) => r.layers.map((l) => l.blob.digest)));
  const cache = new BlobCache(s.files.blobs);
  const dirs = new Set<string>();
  for (const l of rec.layers) {
    if (used.has(l.blob.digest) || !isDigest(l.blob.digest)) continue;
    const path = cache.path(l.blob.digest);
    const removed = await unlink(path).then(
      () => true,
      (err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      },
    );
    if (removed) dirs.add(dirname(path));
  }
  await s.files.flushDirs([...dirs]);
}

export async function removeImage(s: LayerStore, nameOrId: string): Promise<void> {
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    const recs = await imageRecords(s);
    const rec = findImage(recs, nameOrId);
    const own = ownLayers(rec, recs);
    // Refused before anything changes: a container (or any layer) on one of its own layers, or a mount of one.
    const ownSet = new Set(own);
    const layers = await s.records();
    // A container on its top layer uses the image, even when another image shares that layer.
    const child = layers.find((l) => l.parent !== undefined && ((ownSet.has(l.parent) && !ownSet.has(l.id)) || (l.kind === 'container' && l.parent === rec.topLayer)));
    if (child !== undefined) throw new ImageInUseError(nameOrId, `${child.kind === 'container' ? 'container' : 'layer'} ${JSON.stringify(child.id)} stands on it`);
    for (const id of own) {
      const l = await s.layer(id).catch(() => undefined);
      if (l !== undefined && l.mountCount > 0) throw new ImageInUseError(nameOrId, `its layer ${id} is mounted`);
    }
    await writeImage(s, { ...rec, incomplete: true });
    killPoint('rmi-marked');
    await finishRemoval(s, rec, recs, (id) => s.remove(id));
  } finally {
    await held.release();
  }
}

/** Removes the image's own layers (top first), its own blobs, then its record; under the images lock. */
export async function finishRemoval(s: LayerStore, rec: ImageRecord, recs: ImageRecord[], removeLayer: (id: string) => Promise<void>): Promise<void> {
  for (const id of ownLayers(rec, recs)) {
    if ((await s.record(id)) === undefined) continue;
    await removeLayer(id);
  }
  await dropBlobs(s, rec, recs);
  await s.files.remove(s.files.images, rec.id);
}
