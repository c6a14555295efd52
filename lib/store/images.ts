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
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { ImageInUseError, ImageNotFoundError, InvalidOptionError, LayerExistsError, LayerInUseError, LayerNotFoundError, LayerRemovedError } from '../errors.js';
import { lock, tryLock, type HeldLock } from '../locks.js';
import { BlobCache } from '../image/blob-cache.js';
import { chainIds, digestHex, isDigest, layerIdOf, parseDigest, sha256Of, type Digest } from '../image/digest.js';
import { readSmallFile } from '../native.js';
import type { Image, LayerTarget } from '../image/image.js';
import { MAX_MANIFEST_BYTES, parseConfig, parseManifest } from '../image/manifest.js';
import type { ImageReference } from '../image/reference.js';
import { blobEntries } from './blobs.js';
import type { RecordRead } from './files.js';
import { killPoint } from './kill-point.js';
import { Lease, whenNoTransfers } from './lease.js';
import { uniquePrefix } from './resolve.js';
import { MAX_NAME_BYTES, isImageId, isImageName, parseImageRecord } from './schema.js';
import type { LayerStore } from './store.js';
import type {
  ImageInfo,
  ImageRecord,
  LayerRecord,
  RemoveImageOptions,
  RemoveImageResult,
  StoreCommitOptions,
  StorePullOptions,
  StorePullResult,
  StorePushOptions,
  StorePushResult,
} from './types.js';

/** Every image record, incomplete ones included; a damaged one is left out (imageRecordFiles has it). */
export async function imageRecords(s: LayerStore): Promise<ImageRecord[]> {
  return (await imageRecordFiles(s)).flatMap((r) => (r.state === 'ok' ? [r.value] : []));
}

/** Every file in home/images as read: records, and damaged ones with what is wrong (check() reports them). */
export async function imageRecordFiles(s: LayerStore): Promise<Array<RecordRead<ImageRecord>>> {
  const names = await readdir(s.files.images).catch(() => [] as string[]);
  return Promise.all(
    names.map((n) => (isImageId(n) ? s.files.readRecord(s.files.images, n, parseImageRecord) : { state: 'damaged' as const, path: join(s.files.images, n), reason: 'its name is no image id' })),
  );
}

async function writeImage(s: LayerStore, rec: ImageRecord): Promise<void> {
  await s.files.writeJson(s.files.images, rec.id, rec, true);
}

/**
 * Runs `fn` (a pull, commit or push: it writes blobs no image record names yet) holding
 * home/locks/blobs for reading, so check and repair leave the cache's blobs alone meanwhile.
 */

/** Keeps `data` as the blob of its sha256 (an image's manifest and config): what repair rebuilds a damaged image record from. */
async function keepBlob(s: LayerStore, data: Buffer): Promise<void> {
  const path = new BlobCache(s.files.blobs).path(sha256Of(data));
  if ((await readSmallFile(path).catch(() => undefined))?.equals(data) === true) return;
  await mkdir(join(s.files.blobs, 'sha256'), { recursive: true });
  await s.files.writeBlob(path, data);
}

/** Damaged image records (their paths): while there is one, which layers images own is not known. */
export async function damagedImages(s: LayerStore): Promise<string[]> {
  return (await imageRecordFiles(s)).flatMap((r) => (r.state === 'damaged' ? [r.path] : []));
}

/** A name as the store keeps it: "repo:tag" (":latest" added when no tag is given). */
export function normaliseName(name: unknown): string {
  if (!isImageName(name)) {
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

/**
 * The LayerTarget of pull and commit: layers become store layers (records, locks,
 * incomplete flag), each held by the run's lease (lib/store/lease.ts) until its image
 * is recorded.
 */
export function storeTarget(s: LayerStore, lease: Lease): LayerTarget {
  return {
    dir: s.home,
    has: (id) => lease.hold(id),
    async put(id, parent, tar, opts) {
      try {
        const rec = await s.importLayerHeld(
          id,
          tar,
          {
            kind: 'image',
            ...(parent !== undefined ? { parent } : {}),
            ...(opts.signal ? { signal: opts.signal } : {}),
            ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
          },
          (held) => lease.keep(held),
        );
        return rec.diffSize ?? 0;
      } catch (err) {
        tar.destroy();
        // Another process applied the same layer meanwhile (it held the layer's lock): it is there.
        if (err instanceof LayerExistsError && (await lease.hold(id))) return 0;
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
async function recordImage(s: LayerStore, image: Image, names: string[], action: string): Promise<ImageRecord> {
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    for (const [i, l] of image.layers.entries()) {
      if (!(await s.exists(l.id))) throw new LayerRemovedError(`${action}: its layer ${i} (${l.id}) was removed by another process (an rmi?) before the image was recorded; try again`, l.id);
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
    if (!old) {
      await keepBlob(s, image.manifestBytes);
      await keepBlob(s, image.configBytes);
    }
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
  const lease = await Lease.begin(s);
  let rec: ImageRecord;
  let pulled: Awaited<ReturnType<typeof pullImage>>;
  try {
    pulled = await pullImage(parsed, storeTarget(s, lease), {
      blobCache: s.files.blobs,
      durable: s.files.durable,
      ...(opts.tlsVerify !== undefined ? { tlsVerify: opts.tlsVerify } : {}),
      ...(opts.creds !== undefined ? { creds: opts.creds } : {}),
      ...(opts.authFiles !== undefined ? { authFiles: opts.authFiles } : {}),
      ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
      ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...((opts.maxBlobSize ?? s.maxBlobSize) !== undefined ? { maxBlobSize: (opts.maxBlobSize ?? s.maxBlobSize)! } : {}),
      ...(opts.idleTimeout !== undefined ? { idleTimeout: opts.idleTimeout } : {}),
    });
    killPoint('pull-layers-done');
    rec = await recordImage(s, pulled, names, `pull of ${ref}`);
  } finally {
    await lease.end();
  }
  await dropUnkeptBlobs(s);
  return { ...(await infoOf(s, rec)), fetched: pulled.fetched, applied: pulled.applied };
}

/** With keepBlobs 'none', the blobs nothing keeps go now (when no transfer is in flight; else the next prune takes them). */
async function dropUnkeptBlobs(s: LayerStore): Promise<void> {
  if (s.keepBlobs !== 'none') return;
  const { pruneBlobs } = await import('./prune.js');
  await pruneBlobs(s, {}).catch(() => undefined);
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
  const lease = await Lease.begin(s);
  let rec: ImageRecord;
  try {
    // The base stays while the new layer is made on it, whatever a prune elsewhere decides.
    if (c.parent !== undefined && !(await lease.hold(c.parent))) throw new LayerNotFoundError(c.parent);
    const diff: Readable = await s.diff(container, opts.signal ? { signal: opts.signal } : {});
    const image = await commitImage(diff, base, storeTarget(s, lease), {
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
    rec = await recordImage(s, image, names, `commit of ${container}`);
  } finally {
    await lease.end();
  }
  await dropUnkeptBlobs(s);
  return infoOf(s, rec);
}

export async function push(s: LayerStore, nameOrId: string, ref: string, opts: StorePushOptions): Promise<StorePushResult> {
  const { pushImage } = await import('../image/push.js');
  const image = imageOf(await resolveImage(s, nameOrId));
  // Layers whose blob is not kept are made again from the store (under its read locks).
  const source = { diff: (id: string, parent?: string, o: { signal?: AbortSignal } = {}) => s.diff(id, { parent: parent ?? null, ...o }) };
  // The image's layers and the blobs read stay for the whole push.
  const lease = await Lease.begin(s);
  let result: Awaited<ReturnType<typeof pushImage>>;
  try {
    for (const l of image.layers) if (!(await lease.hold(l.id))) throw new LayerNotFoundError(l.id);
    result = await pushImage(image, ref, source, {
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
  } finally {
    await lease.end();
  }
  // What push compressed again (no kept blob, or another compression) lands in the blob cache, named by no image.
  await dropUnkeptBlobs(s);
  return {
    digest: result.manifestDigest,
    layers: result.layers.map((l, i) => ({ digest: l.blob.digest, size: l.blob.size, sent: l.sent, recompressed: l.blob.digest !== image.layers[i]?.blob.digest })),
  };
}

/** The layers of `rec` that no other live image uses, top first (the order they can be removed in). */
function ownLayers(rec: ImageRecord, recs: ImageRecord[]): string[] {
  const used = new Set(recs.filter((r) => r.id !== rec.id && r.incomplete !== true).flatMap((r) => r.layers.map((l) => l.id)));
  return rec.layers.map((l) => l.id).filter((id) => !used.has(id)).reverse();
}

/** The blobs an image record names: its layers', its manifest's and its config's. */
export function blobsOf(rec: ImageRecord): string[] {
  return [...rec.layers.map((l) => l.blob.digest), rec.digest, `sha256:${rec.id}`];
}

/**
 * Deletes the kept blobs of `rec` that no other image names, unless the policy keeps
 * them ('all') or a pull, commit or push is in flight (it may be using one: the next
 * prune takes them).
 */
async function dropBlobs(s: LayerStore, rec: ImageRecord, recs: ImageRecord[]): Promise<void> {
  if (s.keepBlobs === 'all') return;
  const used = new Set(recs.filter((r) => r.id !== rec.id && r.incomplete !== true).flatMap(blobsOf));
  const cache = new BlobCache(s.files.blobs);
  await whenNoTransfers(s, async () => {
    const dirs = new Set<string>();
    for (const d of blobsOf(rec)) {
      if (used.has(d) || !isDigest(d)) continue;
      const path = cache.path(d);
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
  });
}

/** The name of `rec` that `nameOrId` stands for (names first, as findImage has it); undefined when it is the image's id or an id prefix. */
function nameOf(rec: ImageRecord, nameOrId: string): string | undefined {
  let wanted: string[];
  try {
    wanted = [nameOrId, normaliseName(nameOrId)];
  } catch {
    return undefined;
  }
  return rec.names.find((n) => wanted.includes(n)) ?? rec.names.find((n) => wanted.some((w) => n.endsWith(`/${w}`)));
}

/** Container layers standing on the image (on its top layer or one of its own layers), and those on them: leaves first. */
function containersOn(rec: ImageRecord, own: string[], layers: LayerRecord[]): string[] {
  const base = new Set([...own, ...(rec.topLayer !== undefined ? [rec.topLayer] : [])]);
  const found: string[] = [];
  let frontier = layers.filter((l) => l.kind === 'container' && l.incomplete !== true && l.parent !== undefined && base.has(l.parent));
  while (frontier.length > 0) {
    found.push(...frontier.map((l) => l.id));
    const ids = new Set(frontier.map((l) => l.id));
    frontier = layers.filter((l) => l.incomplete !== true && l.parent !== undefined && ids.has(l.parent) && !found.includes(l.id));
  }
  return found.reverse();
}

/**
 * Under the images lock: removes image `rec` (its own layers top first, its blobs,
 * its record) when nothing holds it. The write locks of its own layers are taken
 * without waiting first, so a pull or commit that relies on one of them (it holds a
 * read lock until its image is recorded) or a mount keeps the image whole. Resolves to
 * undefined when removed, else to why not (nothing was changed then).
 */
export async function removeImageLocked(s: LayerStore, rec: ImageRecord, recs: ImageRecord[], removedLayers: string[] = []): Promise<string | undefined> {
  const own = ownLayers(rec, recs);
  const held: Array<[string, HeldLock]> = [];
  try {
    for (const id of [...own].sort()) {
      const h = await s.tryLayer(id);
      if (h === undefined) return `its layer ${id} is held by another process (a pull or commit using it, or a mount)`;
      held.push([id, h]);
    }
    // Refused before anything changes: a container (or any layer) on one of its own layers, or a mount of one.
    const ownSet = new Set(own);
    const layers = await s.records();
    // A container on its top layer uses the image, even when another image shares that layer.
    const child = layers.find((l) => l.parent !== undefined && ((ownSet.has(l.parent) && !ownSet.has(l.id)) || (l.kind === 'container' && l.parent === rec.topLayer)));
    if (child !== undefined) return `${child.kind === 'container' ? 'container' : 'layer'} ${JSON.stringify(child.id)} stands on it`;
    for (const id of own) {
      const l = await s.layer(id).catch(() => undefined);
      if (l !== undefined && l.mountCount > 0) return `its layer ${id} is mounted`;
    }
    await writeImage(s, { ...rec, incomplete: true });
    killPoint('rmi-marked');
    await finishRemoval(s, rec, recs, async (id) => {
      await s.removeLocked(id);
      removedLayers.push(id);
    });
    return undefined;
  } finally {
    for (const [id, h] of held) {
      if ((await s.record(id).catch(() => undefined)) === undefined) await h.removeAndRelease();
      else await h.release();
    }
  }
}

export async function removeImage(s: LayerStore, nameOrId: string, opts: RemoveImageOptions = {}): Promise<RemoveImageResult> {
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    const recs = await imageRecords(s);
    const rec = findImage(recs, nameOrId);
    const name = nameOf(rec, nameOrId);
    // podman's rmi: a name of an image that has others is only untagged.
    if (name !== undefined && rec.names.length > 1) {
      await writeImage(s, { ...rec, names: rec.names.filter((n) => n !== name) });
      return { id: rec.id, untagged: [name], removed: false, containers: [] };
    }
    if (name === undefined && rec.names.length > 1 && opts.force !== true) {
      throw new ImageInUseError(nameOrId, `it has ${rec.names.length} names (${rec.names.join(', ')}): remove them one at a time, or the id with force (rmi --force)`);
    }
    const containers: string[] = [];
    if (opts.force === true) {
      for (const id of containersOn(rec, ownLayers(rec, recs), await s.records())) {
        const h = await s.tryLayer(id);
        if (h === undefined) throw new ImageInUseError(nameOrId, `container ${JSON.stringify(id)} on it is busy in another process`);
        let gone = false;
        try {
          await s.removeLocked(id);
          gone = true;
          containers.push(id);
        } catch (err) {
          if (err instanceof LayerInUseError) throw new ImageInUseError(nameOrId, `container ${JSON.stringify(id)} on it: ${err.message}`);
          throw err;
        } finally {
          if (gone) await h.removeAndRelease();
          else await h.release();
        }
      }
    }
    const why = await removeImageLocked(s, rec, recs);
    if (why !== undefined) throw new ImageInUseError(nameOrId, why);
    return { id: rec.id, untagged: rec.names, removed: true, containers };
  } finally {
    await held.release();
  }
}

/** Gives the image `name` too; the name leaves the image that had it. */
export async function tagImage(s: LayerStore, nameOrId: string, name: string): Promise<ImageInfo> {
  const added = normaliseName(name);
  if (added.includes('@')) throw new InvalidOptionError(`${JSON.stringify(name)} is a digest reference: a tag is REPO[:TAG]`);
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    const recs = await imageRecords(s);
    const rec = findImage(recs, nameOrId);
    if (!rec.names.includes(added)) {
      const tagged = { ...rec, names: [...rec.names, added] };
      await writeImage(s, tagged);
      for (const other of recs) {
        if (other.id !== rec.id && other.incomplete !== true && other.names.includes(added)) await writeImage(s, { ...other, names: other.names.filter((n) => n !== added) });
      }
      return infoOf(s, tagged);
    }
    return infoOf(s, rec);
  } finally {
    await held.release();
  }
}

/** Takes `names` (every name when none are given) from the image; the image stays (without names it is dangling: prune takes it). */
export async function untagImage(s: LayerStore, nameOrId: string, names: string[] = []): Promise<ImageInfo> {
  const held = await lock(s.files.imagesLock(), 'write');
  try {
    const recs = await imageRecords(s);
    const rec = findImage(recs, nameOrId);
    const gone = names.map((n) => {
      const own = nameOf(rec, n);
      if (own === undefined) throw new ImageNotFoundError(n, `is not a name of image ${rec.names[0] ?? rec.id.slice(0, 12)}`);
      return own;
    });
    const left = names.length === 0 ? [] : rec.names.filter((n) => !gone.includes(n));
    const untagged = { ...rec, names: left };
    await writeImage(s, untagged);
    return infoOf(s, untagged);
  } finally {
    await held.release();
  }
}

/**
 * Removes the image's own layers (top first), its own blobs, then its record; under the
 * images lock. While another image's record is damaged nobody knows which layers and
 * blobs that image needs: then only the record goes (check --repair rebuilds the
 * damaged one; layers nothing names are then plain layers).
 */
export async function finishRemoval(s: LayerStore, rec: ImageRecord, recs: ImageRecord[], removeLayer: (id: string) => Promise<void>): Promise<void> {
  if ((await damagedImages(s)).length > 0) {
    await s.files.remove(s.files.images, rec.id);
    return;
  }
  for (const id of ownLayers(rec, recs)) {
    if ((await s.record(id)) === undefined) continue;
    await removeLayer(id);
  }
  await dropBlobs(s, rec, recs);
  await s.files.remove(s.files.images, rec.id);
}

/**
 * The record of image `id` made again from what the blob cache keeps: its config (the
 * blob the id names) and a manifest blob naming that config, with every layer they
 * name committed. The names are not kept anywhere else: the rebuilt image has none.
 * undefined when any of it is missing.
 */
export async function rebuildImageRecord(s: LayerStore, id: string): Promise<ImageRecord | undefined> {
  const cache = new BlobCache(s.files.blobs);
  const configDigest = `sha256:${id}` as Digest;
  const configBytes = await readSmallFile(cache.path(configDigest)).catch(() => undefined);
  if (configBytes === undefined || sha256Of(configBytes) !== configDigest) return undefined;
  let config;
  try {
    config = parseConfig(configBytes);
  } catch {
    return undefined;
  }
  const diffIds = config.rootfs.diff_ids;
  const ids = chainIds(diffIds).map(layerIdOf);
  for (const layer of ids) if (!(await s.exists(layer).catch(() => false))) return undefined;
  for (const e of await blobEntries(s.files.blobs)) {
    if (e.kind !== 'blob' || e.size > MAX_MANIFEST_BYTES) continue;
    const bytes = await readSmallFile(e.path).catch(() => undefined);
    if (bytes === undefined || bytes[0] !== 0x7b || sha256Of(bytes) !== e.digest) continue;
    let parsed;
    try {
      parsed = parseManifest(bytes, undefined);
    } catch {
      continue;
    }
    if (parsed.kind !== 'manifest' || parsed.manifest.config.digest !== configDigest || parsed.manifest.layers.length !== ids.length) continue;
    const blobs = parsed.manifest.layers;
    return {
      id,
      digest: e.digest,
      names: [],
      ...(ids.length > 0 ? { topLayer: ids[ids.length - 1]! } : {}),
      layers: ids.map((layer, i) => ({ id: layer, diffId: diffIds[i]!, blob: { mediaType: blobs[i]!.mediaType, digest: blobs[i]!.digest, size: blobs[i]!.size } })),
      manifest: bytes.toString('base64'),
      config: configBytes.toString('base64'),
      created: typeof config.created === 'string' ? config.created : new Date().toISOString(),
    };
  }
  return undefined;
}

/** Writes a rebuilt image record, under the images lock (repair's, which only tries it: false when a live process holds it). */
export async function writeRebuiltImage(s: LayerStore, rec: ImageRecord): Promise<boolean> {
  const held = await tryLock(s.files.imagesLock(), 'write');
  if (held === undefined) return false;
  try {
    await writeImage(s, rec);
    return true;
  } finally {
    await held.release();
  }
}
