// push: an image (config + layers in the driver) to a registry or an OCI layout.
// A layer is sent as the compressed blob it came from when the blob cache has it
// (so a pulled image pushed elsewhere keeps its digests, as skopeo copy does);
// otherwise its tar is made again from the driver (driver.diff against its parent),
// compressed (gzip by default, zstd, or none) into the blob cache while its diff_id
// and blob digest are computed, and the config's diff_ids are set to what was made
// (the driver's tar holds the same tree, not necessarily the same bytes). Blobs the
// destination has (HEAD, or a file in the layout) are not sent again. A kept blob is
// hashed before it is reused: a corrupt one is dropped and its layer made again.
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Readable, pipeline as streamPipeline } from 'node:stream';
import { InvalidReferenceError } from '../errors.js';
import { createCompressor, type Compression } from '../archive/compression.js';
import type { Driver } from '../types.js';
import { BlobCache } from './blob-cache.js';
import { Hasher, sha256Of, type Digest } from './digest.js';
import type { Image, ImageLayer } from './image.js';
import { MediaType, toBytes, type Descriptor, type ImageConfig, type ImageManifest } from './manifest.js';
import { LayoutWriter } from './oci-layout.js';
import { limiter } from './pull.js';
import { parseReference, type ImageReference } from './reference.js';
import { RegistryClient, type RegistryOptions } from './registry.js';

/** What push needs: the config and the layers (bottom first); blob and diffId are reused when the cache still has that blob. */
export interface PushImage {
  config: ImageConfig;
  /** The config's exact bytes, kept when the diff_ids do not change (so the digest stays). */
  configBytes?: Buffer;
  /** The manifest's exact bytes, kept when neither config nor layers change. */
  manifestBytes?: Buffer;
  manifest?: ImageManifest;
  layers: Array<Pick<ImageLayer, 'id' | 'parent'> & Partial<Pick<ImageLayer, 'diffId' | 'blob'>>>;
}

export interface PushProgress {
  digest: Digest;
  kind: 'layer' | 'config' | 'manifest';
  /** 'exists': the destination had it; nothing sent. */
  phase: 'exists' | 'uploading' | 'done';
  size: number;
}

export interface PushOptions extends RegistryOptions {
  blobCache: string;
  /** Default true: a blob is fsynced (and its directory after the rename) before it is trusted as complete. */
  durable?: boolean;
  /** Compression of layers made again from the driver; a cached blob is reused whatever its compression unless this is set. */
  compression?: Compression;
  /** Upload in PATCH chunks of this many bytes; default one monolithic PUT per blob. */
  chunkSize?: number;
  /** Blob uploads at once; default 3. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: PushProgress) => void;
}

export interface PushResult {
  manifestDigest: Digest;
  manifestBytes: Buffer;
  configDigest: Digest;
  /** Per layer: the blob pushed, and whether it was sent (false: the destination had it). */
  layers: Array<{ blob: Descriptor; diffId: Digest; sent: boolean }>;
}

const LAYER_TYPE: Record<Compression, string> = { gzip: MediaType.ociLayerGzip, zstd: MediaType.ociLayerZstd, none: MediaType.ociLayer };

function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('+zstd')) return 'zstd';
  if (mediaType.endsWith('gzip')) return 'gzip';
  return 'none';
}

interface Blob {
  desc: Descriptor;
  /** The file holding it, or its bytes. */
  source: { from: string } | { data: Buffer };
}

export async function pushImage(image: PushImage | Image, dest: string | ImageReference, driver: Pick<Driver, 'diff'>, opts: PushOptions): Promise<PushResult> {
  const ref = typeof dest === 'string' ? parseReference(dest) : dest;
  const cache = new BlobCache(opts.blobCache, { durable: opts.durable !== false });
  const signal = opts.signal;

  // 1. Every layer as a blob in the cache.
  const layerBlobs: Blob[] = [];
  const diffIds: Digest[] = [];
  let reusedAll = true;
  for (const l of image.layers) {
    const cached =
      l.blob !== undefined && l.diffId !== undefined && (opts.compression === undefined || compressionOf(l.blob.mediaType) === opts.compression) && (await cache.has(l.blob.digest, l.blob.size));
    // A kept blob is read through once before it is sent: one whose bytes no longer hash
    // to its digest is dropped, and the layer is made again from the driver below.
    const reuse = cached && (await cache.intact(l.blob!.digest, l.blob!.size));
    if (cached && !reuse) await unlink(cache.path(l.blob!.digest)).catch(() => undefined);
    if (reuse) {
      layerBlobs.push({ desc: l.blob!, source: { from: cache.path(l.blob!.digest) } });
      diffIds.push(l.diffId!);
      continue;
    }
    reusedAll = false;
    const compression = opts.compression ?? 'gzip';
    const tar = await driver.diff(l.id, l.parent, signal ? { signal } : {});
    const diffHasher = new Hasher('sha256');
    const compressed = compressedTar(tar, diffHasher, compression);
    const { digest, size, path } = await cache.ingest(compressed, signal);
    layerBlobs.push({ desc: { mediaType: LAYER_TYPE[compression], digest, size }, source: { from: path } });
    diffIds.push(diffHasher.digest());
  }

  // 2. The config (its bytes kept when nothing in it changes) and the manifest.
  const sameDiffIds = diffIds.length === image.config.rootfs.diff_ids.length && diffIds.every((d, i) => d === image.config.rootfs.diff_ids[i]);
  const configBytes = sameDiffIds && image.configBytes !== undefined ? image.configBytes : toBytes({ ...image.config, rootfs: { type: 'layers', diff_ids: diffIds } });
  const configDigest = sha256Of(configBytes);
  let manifestBytes: Buffer;
  let manifestType: string;
  if (reusedAll && sameDiffIds && image.configBytes !== undefined && image.manifestBytes !== undefined && image.manifest !== undefined && image.manifest.config.digest === configDigest) {
    manifestBytes = image.manifestBytes;
    manifestType = image.manifest.mediaType;
  } else {
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length },
      // A reused Docker blob is the same bytes under the OCI name.
      layers: layerBlobs.map((b) => ({ mediaType: LAYER_TYPE[compressionOf(b.desc.mediaType)], digest: b.desc.digest, size: b.desc.size })),
    };
    manifestBytes = toBytes(manifest);
    manifestType = MediaType.ociManifest;
  }
  const manifestDigest = sha256Of(manifestBytes);
  if (ref.transport === 'docker' && ref.digest !== undefined && ref.tag === undefined && ref.digest !== manifestDigest) {
    throw new InvalidReferenceError(`@${ref.digest}`, `the pushed manifest's digest is ${manifestDigest}`);
  }
  const blobs: Array<Blob & { kind: 'layer' | 'config' }> = [
    ...layerBlobs.map((b) => ({ ...b, kind: 'layer' as const })),
    { desc: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length }, source: { data: configBytes }, kind: 'config' },
  ];
  const progress = (b: { desc: Descriptor; kind: PushProgress['kind'] }, phase: PushProgress['phase']) => opts.onProgress?.({ digest: b.desc.digest, kind: b.kind, phase, size: b.desc.size });
  const sent = new Map<string, boolean>();
  const limit = limiter(opts.concurrency ?? 3);

  // 3. Blobs first, then the manifest that names them.
  if (ref.transport === 'oci') {
    const layout = new LayoutWriter(ref.dir);
    await layout.init();
    for (const b of blobs) {
      if (await layout.hasBlob(b.desc.digest, b.desc.size)) {
        progress(b, 'exists');
        sent.set(b.desc.digest, false);
        continue;
      }
      progress(b, 'uploading');
      await layout.putBlob(b.desc.digest, b.source);
      sent.set(b.desc.digest, true);
      progress(b, 'done');
    }
    await layout.putBlob(manifestDigest, { data: manifestBytes });
    await layout.tag({ mediaType: manifestType, digest: manifestDigest, size: manifestBytes.length }, ref.ref);
  } else {
    const client = new RegistryClient(ref, opts);
    await client.authenticate('pull,push', signal);
    const unique = [...new Map(blobs.map((b) => [b.desc.digest, b])).values()];
    await Promise.all(
      unique.map((b) =>
        limit(async () => {
          const has = await client.hasBlob(b.desc.digest, signal);
          if (has === b.desc.size) {
            progress(b, 'exists');
            sent.set(b.desc.digest, false);
            return;
          }
          progress(b, 'uploading');
          const open = (start: number, end: number): Readable =>
            'from' in b.source ? createReadStream(b.source.from, { start, end: end - 1 }) : Readable.from([b.source.data.subarray(start, end)]);
          await client.uploadBlob(b.desc.digest, b.desc.size, open, { chunkSize: opts.chunkSize, signal });
          sent.set(b.desc.digest, true);
          progress(b, 'done');
        }),
      ),
    );
    await client.putManifest(ref.tag ?? manifestDigest, manifestBytes, manifestType, signal);
  }
  opts.onProgress?.({ digest: manifestDigest, kind: 'manifest', phase: 'done', size: manifestBytes.length });
  return {
    manifestDigest,
    manifestBytes,
    configDigest,
    layers: layerBlobs.map((b, i) => ({ blob: b.desc, diffId: diffIds[i]!, sent: sent.get(b.desc.digest) ?? false })),
  };
}

/** tar → diff_id hasher → compressor, as one stream (an error of any stage destroys it with that error). */
export function compressedTar(tar: Readable, hasher: Hasher, compression: Compression): Readable {
  return streamPipeline(tar, hasher, createCompressor(compression), () => {}) as unknown as Readable;
}
