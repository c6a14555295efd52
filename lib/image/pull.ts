// pull: an image from a registry or an OCI layout into a LayerTarget, as a pipeline.
// The manifest (an index resolves to this machine's platform) and the config are
// fetched size-bounded and digest-checked; the layer ids are the chain ids of the
// config's diff_ids, so a layer that exists is neither fetched nor applied. Missing
// layer blobs download in parallel (3 at a time, bottom first) into the blob cache,
// verified while they stream; each layer is applied as soon as its parent is in place,
// read from the cache file as its bytes arrive, decompressed while its blob digest and
// its diff_id are checked again on the way into the driver (a mismatch fails the apply, which leaves
// nothing). An abort or a failure removes the half-applied layer (the target's put),
// keeps the verified blobs and the partial downloads for the next try.
import { createReadStream } from 'node:fs';
import { Readable, Writable, pipeline } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import { unlink } from 'node:fs/promises';
import { AbortError, DigestMismatchError, InvalidImageError } from '../errors.js';
import { BlobCache, LiveBlob } from './blob-cache.js';
import { DigestVerifier, chainIds, layerIdOf, sha256Of, verifyBytes, type Digest } from './digest.js';
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
}

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
  const raw = pipeline(typeof file === 'string' ? createReadStream(file) : file, new DigestVerifier(`layer blob ${blob.digest}`, blob.digest, blob.size), () => {});
  const { tar } = await openLayer(raw as AsyncIterable<Buffer>);
  return pipeline(tar, new DigestVerifier(`layer ${blob.digest}: its uncompressed tar against the config's diff_id`, diffId), () => {}) as Readable;
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

  // One failure stops every download; verified blobs stay in the cache.
  const inner = new AbortController();
  const stop = () => inner.abort(signal?.reason);
  signal?.addEventListener('abort', stop, { once: true });
  const limit = limiter(opts.concurrency ?? 3);
  const local = layers.map((l, i) => (needed[i] ? source.localBlob?.(l.blob.digest) : undefined));
  const live = layers.map(() => new LiveBlob());
  const blobFiles = layers.map((l, i) => {
    if (!needed[i]) return undefined;
    if (local[i] !== undefined) return Promise.resolve(local[i]!);
    return limit(async () => {
      let last = 0;
      progress(i, 'downloading', 0);
      const file = await cache.fetch(l.blob.digest, l.blob.size, (offset, s) => source.blob(l.blob.digest, offset, s), {
        signal: inner.signal,
        live: live[i]!,
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
        live[i]!.complete(file);
        return file;
      },
      (err: unknown) => {
        live[i]!.fail(err);
        throw err;
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
        // Corrupt bytes usually break the decompressor before the digest can be known:
        // when the blob itself is wrong, that is the error to report.
        const file = await blobFiles[i]!.catch((e: unknown) => {
          throw e instanceof DigestMismatchError ? e : err;
        });
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
    // Node's own AbortError (from a stream or a request) becomes ours, with the caller's reason.
    if (signal?.aborted && !(err instanceof AbortError)) throw new AbortError(undefined, { cause: signal.reason });
    throw err;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
  return { ...resolved, layers, fetched, applied };
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
