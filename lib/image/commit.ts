// commit: a container's changes become a new image layer on top of its image. The
// diff stream (driver.diff(container, imageTopLayer)) is hashed uncompressed (its
// diff_id) and compressed into the blob cache in one pass; the new layer (id: the hex
// of its chain id) is applied from that blob, its diff_id checked again on the way;
// the config and manifest are the parent image's with the layer appended (rootfs
// diff_ids, a history entry), with podman's --author, --message and --change applied.
import type { Readable } from 'node:stream';
import type { Compression } from '../archive/compression.js';
import type { Progress } from '../types.js';
import { BlobCache } from './blob-cache.js';
import { applyConfigChanges, type RuntimeConfig } from './config-changes.js';
import { Hasher, chainIds, layerIdOf, sha256Of, type Digest } from './digest.js';
import type { Image, ImageLayer, LayerTarget } from './image.js';
import { hostPlatform, MediaType, toBytes, type Descriptor, type ImageConfig, type ImageManifest } from './manifest.js';
import { verifiedLayerTar } from './pull.js';
import { compressedTar } from './push.js';

export interface CommitOptions {
  blobCache: string;
  /** Default true: a blob is fsynced (and its directory after the rename) before it is trusted as complete. */
  durable?: boolean;
  /** How the new layer's blob is stored (and later pushed); default gzip. */
  compression?: Compression;
  /** The history entry's created_by and comment. */
  createdBy?: string;
  comment?: string;
  /** The image's author (config and history entry). */
  author?: string;
  /** Dockerfile instructions for the runtime config (config-changes.ts). */
  changes?: readonly string[];
  /** The image's and history entry's time; default now. */
  created?: Date;
  signal?: AbortSignal;
  onProgress?: (p: CommitProgress) => void;
}

/** A commit's two long phases: the diff tarred and compressed into a blob, then applied as the new layer. */
export interface CommitProgress {
  phase: 'diff' | 'apply';
  /** Uncompressed tar bytes read (diff), or content bytes applied (apply). */
  bytes: number;
  entries?: number;
  /** The whole, where known (apply: the diff's tar bytes). */
  totalBytes?: number;
}

const LAYER_TYPE: Record<Compression, string> = { gzip: MediaType.ociLayerGzip, zstd: MediaType.ociLayerZstd, none: MediaType.ociLayer };

/** A config for an image made from nothing (no base). */
function scratchConfig(): ImageConfig {
  const p = hostPlatform();
  return { architecture: p.architecture, os: p.os, ...(p.variant !== undefined ? { variant: p.variant } : {}), rootfs: { type: 'layers', diff_ids: [] }, history: [] };
}

/**
 * Makes an image of `base` plus the layer `diff` (an uncompressed tar of the
 * container's changes against base's top layer); `base` undefined: an image of one layer.
 */
export async function commitImage(diff: Readable, base: Image | undefined, target: LayerTarget, opts: CommitOptions): Promise<Image> {
  const baseConfig = base?.config ?? scratchConfig();
  // Before any work: a change that does not parse fails the commit at once.
  const runtime = opts.changes !== undefined && opts.changes.length > 0 ? applyConfigChanges(baseConfig['config'] as RuntimeConfig | undefined, opts.changes) : undefined;
  const cache = new BlobCache(opts.blobCache, { durable: opts.durable !== false });
  const compression = opts.compression ?? 'gzip';
  const hasher = new Hasher('sha256');
  let tarBytes = 0;
  const blobStream = compressedTar(diff, hasher, compression);
  if (opts.onProgress !== undefined) {
    const report = opts.onProgress;
    // A second listener on the chunks the pipeline (attached above) reads: counts, never holds them.
    diff.on('data', (chunk: Buffer) => {
      tarBytes += chunk.length;
      report({ phase: 'diff', bytes: tarBytes });
    });
  }
  const stored = await cache.ingest(blobStream, opts.signal);
  const diffId = hasher.digest();
  const blob: Descriptor = { mediaType: LAYER_TYPE[compression], digest: stored.digest, size: stored.size };

  const baseLayers = base?.layers ?? [];
  const diffIds: Digest[] = [...baseLayers.map((l) => l.diffId), diffId];
  const chainId = chainIds(diffIds)[diffIds.length - 1]!;
  const layer: ImageLayer = { id: layerIdOf(chainId), parent: baseLayers[baseLayers.length - 1]?.id, chainId, diffId, blob };
  if (!(await target.has(layer.id))) {
    const report = opts.onProgress;
    const onProgress = report === undefined ? undefined : (p: Progress) => report({ phase: 'apply', bytes: p.bytes, entries: p.entries, totalBytes: tarBytes });
    await target.put(layer.id, layer.parent, await verifiedLayerTar(stored.path, blob, diffId), { signal: opts.signal, onProgress });
  }

  const created = (opts.created ?? new Date()).toISOString();
  const history = [...(baseConfig.history ?? [])];
  history.push({
    created,
    ...(opts.author !== undefined ? { author: opts.author } : {}),
    ...(opts.createdBy !== undefined ? { created_by: opts.createdBy } : {}),
    ...(opts.comment !== undefined ? { comment: opts.comment } : {}),
  });
  const config: ImageConfig = {
    ...baseConfig,
    created,
    ...(opts.author !== undefined ? { author: opts.author } : {}),
    ...(runtime !== undefined ? { config: runtime } : {}),
    rootfs: { type: 'layers', diff_ids: diffIds },
    history,
  };
  const configBytes = toBytes(config);
  const configDigest = sha256Of(configBytes);
  const layers = [...baseLayers, layer];
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: configDigest, size: configBytes.length },
    layers: layers.map((l) => ({ mediaType: l.blob.mediaType === MediaType.dockerLayerGzip ? MediaType.ociLayerGzip : l.blob.mediaType, digest: l.blob.digest, size: l.blob.size })),
  };
  const manifestBytes = toBytes(manifest);
  return { manifest, manifestBytes, manifestDigest: sha256Of(manifestBytes), config, configBytes, configDigest, layers };
}
