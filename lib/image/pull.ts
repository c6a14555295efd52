// pull: an image from a registry or an OCI layout into a LayerTarget, as a pipeline.
// The manifest (an index resolves to this machine's platform) and the config are
// fetched size-bounded and digest-checked; the layer ids are the chain ids of the
// config's diff_ids, so a layer that exists is neither fetched nor applied. Missing
// layer blobs download in parallel (3 at a time, bottom first) into the blob cache,
// verified while they stream; each layer is applied as soon as its parent is in place,
// read from the cache file as its bytes arrive, decompressed while its blob digest and
// its diff_id are checked again on the way into the driver (a mismatch fails the apply, which leaves
// nothing). Before a byte is fetched, each blob's declared size is held to maxBlobSize
// and the declared sizes to the free space. An abort or a failure removes the
// half-applied layer (the target's put) and stops every download at once; what it
// fetched for layers it did not apply (blobs, partial downloads) is removed, except
// after the caller's abort, which keeps it for the next pull to resume.
import { createReadStream } from 'node:fs';
import { Readable, Writable, pipeline } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { unlink } from 'node:fs/promises';
import { AbortError, BlobTooLargeError, DigestMismatchError, InvalidImageError, InvalidOptionError, LayerNotFoundError, LayerRemovedError, NoSpaceError, isSystemError } from '../errors.js';
import { BlobCache, LiveBlob } from './blob-cache.js';
import { DigestVerifier, chainIds, layerIdOf, sha256Of, verifyBytes, type Digest } from './digest.js';
import { assertFreeSpace, unpackedEstimate } from './free-space.js';
import type { Image, ImageLayer, LayerTarget } from './image.js';
import { hostPlatform, MAX_CONFIG_BYTES, parseConfig, parseManifest, parsePlatform, selectPlatform, type Descriptor, type ImageManifest } from './manifest.js';
import { parseReference, type ImageReference } from './reference.js';
import type { RegistryOptions } from './registry.js';
import { assertRegularFile, LayoutSource, RegistrySource, type ImageSource } from './source.js';
import { openLayer } from '../archive/compression.js';

export interface LayerProgress {
  /** Index of the layer, 0 for the base. */
  layer: number;
  id: string;
  /** 'exists': already in the target, nothing fetched or applied. */
  phase: 'exists' | 'downloading' | 'downloaded' | 'applying' | 'done';
  /** Compressed bytes received (downloading) or the blob's size. */
  bytes: number;
  totalBytes: number;
}

export interface PullOptions extends RegistryOptions {
  /** The blob cache directory (made if missing). */
  blobCache: string;
  /** Default true: a blob is fsynced (and its directory after the rename) before it is trusted as complete. */
  durable?: boolean;
  /** 'os/arch[/variant]' to choose from an index; default this machine's. */
  platform?: string;
  /** Layer downloads at once; default 3. */
  concurrency?: number;
  signal?: AbortSignal;
  /** Called on each phase change of a layer and at most every 100 ms while it downloads. */
  onProgress?: (p: LayerProgress) => void;
  /** The largest layer blob accepted, by the size its manifest declares; a bigger one fails the pull before a byte is fetched. Default DEFAULT_MAX_BLOB_SIZE. */
  maxBlobSize?: number;
}

/**
 * 64 GiB: above the largest layer a big registry takes (Amazon ECR's service quota:
 * 52 000 MiB; ECR Public's: 10 000 MiB), so no real image is refused, while a
 * manifest declaring a terabyte is.
 */
export const DEFAULT_MAX_BLOB_SIZE = 64 * 2 ** 30;

export interface PullResult extends Image {
  /** Per layer (bottom first): compressed bytes fetched from the source (0 for a layer that existed or was cached). */
  fetched: number[];
  /** Per layer: whether it was applied by this pull (false: it existed). */
  applied: boolean[];
}

export function openSource(ref: string | ImageReference, opts: RegistryOptions): ImageSource {
  const r = typeof ref === 'string' ? parseReference(ref) : ref;
  return r.transport === 'docker' ? new RegistrySource(r, opts) : new LayoutSource(r);
}

/** Reads the one image manifest (and its config) the source names, all verified (not the store's resolveImage, which finds a stored image by name or id). */
export async function readImage(source: ImageSource, opts: { platform?: string | undefined; signal?: AbortSignal | undefined }): Promise<Omit<Image, 'layers'>> {
  const top = await source.topManifest(opts.signal);
  if (top.digest !== undefined) verifyBytes(`manifest of ${source.name}`, top.bytes, top.digest);
  let parsed = parseManifest(top.bytes, top.mediaType);
  let manifestBytes = top.bytes;
  if (parsed.kind === 'index') {
    const want = opts.platform !== undefined ? parsePlatform(opts.platform) : hostPlatform();
    const desc = selectPlatform(parsed.index, want);
    const child = await source.manifest(desc.digest, opts.signal);
    if (child.bytes.length !== desc.size) throw new InvalidImageError(`manifest ${desc.digest} is ${child.bytes.length} bytes where the index says ${desc.size}`);
    verifyBytes(`manifest ${desc.digest}`, child.bytes, desc.digest);
    parsed = parseManifest(child.bytes, desc.mediaType);
    if (parsed.kind !== 'manifest') throw new InvalidImageError(`index entry ${desc.digest} is itself an index`);
    manifestBytes = child.bytes;
  }
  const manifest: ImageManifest = parsed.manifest;
  const configBytes = await readSmallBlob(source, manifest.config, MAX_CONFIG_BYTES, opts.signal);
  const config = parseConfig(configBytes);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new InvalidImageError(`the config lists ${config.rootfs.diff_ids.length} diff_ids for ${manifest.layers.length} layers`);
  }
  return { manifest, manifestBytes, manifestDigest: sha256Of(manifestBytes), config, configBytes, configDigest: manifest.config.digest };
}

async function readSmallBlob(source: ImageSource, desc: Descriptor, max: number, signal: AbortSignal | undefined): Promise<Buffer> {
  if (desc.size > max) throw new InvalidImageError(`blob ${desc.digest} is ${desc.size} bytes, more than the ${max} accepted`);
  const { body } = await source.blob(desc.digest, 0, signal);
  const chunks: Buffer[] = [];
  const verifier = new DigestVerifier(`config ${desc.digest}`, desc.digest, desc.size);
  await new Promise<void>((resolve, reject) => {
    pipeline(body, verifier, (err) => (err ? reject(err) : resolve()));
    verifier.on('data', (c: Buffer) => chunks.push(c));
  });
  return Buffer.concat(chunks);
}

/** The layers of a resolved image: chain ids as driver ids, parents, blobs. */
export function imageLayers(manifest: ImageManifest, diffIds: readonly Digest[]): ImageLayer[] {
  const chains = chainIds(diffIds);
  return manifest.layers.map((blob, i) => ({
    id: layerIdOf(chains[i]!),
    parent: i === 0 ? undefined : layerIdOf(chains[i - 1]!),
    chainId: chains[i]!,
    diffId: diffIds[i]!,
    blob,
  }));
}

/**
 * The uncompressed tar of a layer blob file, checked on the way: the blob against its
 * digest and size, the tar against the diff_id. Any mismatch errors the stream before
 * its end, so the consumer (applyDiff) fails and keeps nothing.
 */
export async function verifiedLayerTar(file: string | Readable, blob: Descriptor, diffId: Digest): Promise<Readable> {
  const source = typeof file === 'string' ? createReadStream(file) : file;
  const raw = pipeline(source, new DigestVerifier(`layer blob ${blob.digest}`, blob.digest, blob.size), () => {});
  const { tar } = await openLayer(raw as AsyncIterable<Buffer>);
  const out = pipeline(tar, new DigestVerifier(`layer ${blob.digest}: its uncompressed tar against the config's diff_id`, diffId), () => {}) as Readable;
  // A consumer that stops early (a failed apply) does not reach back through the
  // decompressor: the source is closed here, or its file stays open until collected.
  out.once('close', () => source.destroy());
  return out;
}

export async function pullImage(ref: string | ImageReference, target: LayerTarget, opts: PullOptions): Promise<PullResult> {
  const signal = opts.signal;
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
  const source = openSource(ref, opts);
  const resolved = await readImage(source, { platform: opts.platform, signal });
  const layers = imageLayers(resolved.manifest, resolved.config.rootfs.diff_ids);
  const cache = new BlobCache(opts.blobCache, { durable: opts.durable !== false });
  const fetched = layers.map(() => 0);
  const applied = layers.map(() => false);
  const progress = (layer: number, phase: LayerProgress['phase'], bytes: number) => opts.onProgress?.({ layer, id: layers[layer]!.id, phase, bytes, totalBytes: layers[layer]!.blob.size });

  // A layer whose chain id exists, exists with everything below it.
  const needed = await Promise.all(layers.map(async (l) => !(await target.has(l.id))));
  layers.forEach((_, i) => {
    if (!needed[i]) progress(i, 'exists', 0);
  });
  const maxBlobSize = opts.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE;
  if (!Number.isSafeInteger(maxBlobSize) || maxBlobSize <= 0) throw new InvalidOptionError(`maxBlobSize must be a positive whole number of bytes, not ${JSON.stringify(maxBlobSize)}`);
  for (const [i, l] of layers.entries()) {
    if (needed[i] && l.blob.size > maxBlobSize) throw new BlobTooLargeError(`layer ${i} (blob ${l.blob.digest})`, l.blob.digest, l.blob.size, maxBlobSize);
  }
  const local = layers.map((l, i) => (needed[i] ? source.localBlob?.(l.blob.digest) : undefined));
  const toFetch = await Promise.all(layers.map(async (l, i) => needed[i]! && local[i] === undefined && !(await cache.has(l.blob.digest, l.blob.size))));
  const sum = (f: (l: ImageLayer, i: number) => number) => layers.reduce((n, l, i) => n + f(l, i), 0);
  await assertFreeSpace(`pull ${source.name}`, [
    { dir: cache.dir, bytes: sum((l, i) => (toFetch[i] ? l.blob.size : 0)), what: 'of layer blobs to fetch' },
    { dir: target.dir ?? cache.dir, bytes: sum((l, i) => (needed[i] ? unpackedEstimate(l.blob.size, l.blob.mediaType) : 0)), what: 'of layers unpacked (estimated)' },
  ]);

  // One failure stops every download; verified blobs stay in the cache.
  const inner = new AbortController();
  const stop = () => inner.abort(signal?.reason);
  signal?.addEventListener('abort', stop, { once: true });
  const limit = limiter(opts.concurrency ?? 3);
  const live = layers.map(() => new LiveBlob());
  // Where each layer's download is: an apply that fails blames a failed download, stops a running one.
  const downloads = layers.map(() => ({ state: 'running' as 'running' | 'done' | 'failed', error: undefined as unknown }));
  const blobFiles = layers.map((l, i) => {
    if (!needed[i]) return undefined;
    if (local[i] !== undefined) {
      downloads[i]!.state = 'done';
      return Promise.resolve(local[i]!);
    }
    return limit(async () => {
      let last = 0;
      progress(i, 'downloading', 0);
      const file = await cache.fetch(l.blob.digest, l.blob.size, (offset, s) => source.blob(l.blob.digest, offset, s), {
        signal: inner.signal,
        live: live[i]!,
        // Only the caller's own stop keeps the bytes so far, for the next pull to resume.
        keepPartial: () => signal?.aborted === true,
        onBytes: (n) => {
          fetched[i]! += n;
          const now = Date.now();
          if (now - last >= 100) {
            last = now;
            progress(i, 'downloading', fetched[i]!);
          }
        },
      });
      progress(i, 'downloaded', l.blob.size);
      return file;
    }).then(
      (file) => {
        downloads[i]!.state = 'done';
        live[i]!.complete(file);
        return file;
      },
      (err: unknown) => {
        const error = isSystemError(err, 'ENOSPC')
          ? new NoSpaceError(`pull of ${source.name}: no space left on device for layer ${i} (blob ${l.blob.digest}) in ${cache.dir}`, err.path ?? cache.dir, { cause: err })
          : err;
        downloads[i] = { state: 'failed', error };
        live[i]!.fail(error);
        throw error;
      },
    );
  });
  blobFiles.forEach((p) => p?.catch(() => {})); // seen by the readers below
  try {
    for (const [i, l] of layers.entries()) {
      if (!needed[i]) continue;
      if (inner.signal.aborted) throw new AbortError(undefined, { cause: inner.signal.reason });
      if (local[i] !== undefined) await assertRegularFile(local[i]!, `blob ${l.blob.digest}`);
      progress(i, 'applying', l.blob.size);
      // Applied while it downloads: the live reader follows the cache's partial file.
      const tar = await verifiedLayerTar(local[i] ?? Readable.from(live[i]!.read()), l.blob, l.diffId);
      try {
        await target.put(l.id, l.parent, tar, { signal: inner.signal });
      } catch (err) {
        if (err instanceof AbortError || (err instanceof DigestMismatchError && err.expected !== l.blob.digest)) throw err;
        if (err instanceof LayerNotFoundError && l.parent !== undefined && err.id === l.parent) {
          throw new LayerRemovedError(
            `pull of ${source.name}: layer ${i - 1} (${l.parent}), on which layer ${i} is applied, was removed by another process (an rmi?) while the pull ran; pull again`,
            l.parent,
            { cause: err },
          );
        }
        // A download that failed is the cause (a stall, a closed connection, a full disk,
        // a blob that ran past its size): the apply only saw its stream end.
        const download = downloads[i]!;
        if (download.state === 'failed') throw download.error;
        if (isSystemError(err, 'ENOSPC')) {
          throw new NoSpaceError(`pull of ${source.name}: no space left on device while unpacking layer ${i} (blob ${l.blob.digest}): ${err.message}`, err.path ?? target.dir ?? '', { cause: err });
        }
        // Corrupt bytes usually break the decompressor before the digest can be known:
        // when the blob itself is wrong, that is the error to report. So a download with
        // little left to go may finish (a bounded grace); any other one stops now (below),
        // rather than running on to the end of a blob that may never end, and the apply's
        // error stands.
        if (download.state === 'running' && !(await settlesWithin(blobFiles[i]!, l.blob.size - fetched[i]!))) throw err;
        if (downloads[i]!.state === 'failed') throw downloads[i]!.error;
        const file = await blobFiles[i]!;
        const wrong = await checkBlobFile(file, l.blob);
        if (wrong === undefined) throw err;
        // A cached blob that no longer matches (a disk error, a hand edit) is dropped, so a retry fetches it again.
        if (local[i] === undefined) await unlink(file).catch(() => {});
        throw wrong;
      }
      applied[i] = true;
      progress(i, 'done', l.blob.size);
    }
  } catch (err) {
    stop();
    await Promise.allSettled(blobFiles);
    // A failure leaves nothing it fetched: the blobs this pull downloaded for layers it did
    // not apply go (their partial files went with their downloads). The caller's abort keeps them.
    if (!signal?.aborted) {
      await Promise.all(layers.map((l, i) => (toFetch[i] && !applied[i] && downloads[i]!.state === 'done' ? unlink(cache.path(l.blob.digest)).catch(() => {}) : undefined)));
    }
    // Node's own AbortError (from a stream or a request) becomes ours, with the caller's reason.
    if (signal?.aborted && !(err instanceof AbortError)) throw new AbortError(undefined, { cause: signal.reason });
    throw err;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
  return { ...resolved, layers, fetched, applied };
}

/** How much of a blob may still arrive, and how long it may take, after its apply failed: enough for a small layer. */
const GRACE_BYTES = 4 << 20;
const GRACE_MS = 2000;

/** Whether `download` settles within the grace (false at once when more than GRACE_BYTES are to come). */
async function settlesWithin(download: Promise<string>, rest: number): Promise<boolean> {
  if (rest > GRACE_BYTES) return false;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), GRACE_MS);
  });
  try {
    return await Promise.race([download.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The DigestMismatchError of a blob file that does not hash to its descriptor, or undefined. */
async function checkBlobFile(file: string, blob: Descriptor): Promise<DigestMismatchError | undefined> {
  try {
    await streamPipeline(createReadStream(file), new DigestVerifier(`layer blob ${blob.digest}`, blob.digest, blob.size), new Writable({ write: (_c, _e, done) => done() }));
    return undefined;
  } catch (err) {
    if (err instanceof DigestMismatchError) return err;
    throw err;
  }
}

/** Runs at most `n` of the given tasks at once, in the order they were submitted. */
export function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const queue: Array<() => void> = [];
  return (task) =>
    new Promise((resolve, reject) => {
      const run = () => {
        running++;
        task()
          .then(resolve, reject)
          .finally(() => {
            running--;
            queue.shift()?.();
          });
      };
      if (running < n) run();
      else queue.push(run);
    });
}
