// What pull, commit and push pass between them (an image: manifest, config, and its
// layers as chain ids), and the one seam to the layer storage: LayerTarget. The store
// implements it with its records and locks.
import type { Readable } from 'node:stream';
import type { Progress } from '../types.js';
import type { Digest } from './digest.js';
import type { Descriptor, ImageConfig, ImageManifest } from './manifest.js';

export interface ImageLayer {
  /** The driver layer id: the hex of the chain id (see layerIdOf). */
  id: string;
  /** The layer below, undefined for the base. */
  parent: string | undefined;
  chainId: Digest;
  /** sha256 of the uncompressed layer tar, as in the config's rootfs.diff_ids. */
  diffId: Digest;
  /** The compressed blob the layer came from (or was committed as). */
  blob: Descriptor;
}

export interface Image {
  manifest: ImageManifest;
  /** The manifest's exact bytes (its digest is the image's identity). */
  manifestBytes: Buffer;
  manifestDigest: Digest;
  config: ImageConfig;
  configBytes: Buffer;
  configDigest: Digest;
  /** Bottom first; layers[i].diffId === config.rootfs.diff_ids[i]. */
  layers: ImageLayer[];
}

/** Where layers are put. Every method must leave no trace of a layer whose put failed. */
export interface LayerTarget {
  /** Where the layers are written (its filesystem's free space is checked before a pull); default the blob cache's. */
  readonly dir?: string;
  /** Whether the layer exists, complete. */
  has(id: string): Promise<boolean>;
  /** Creates layer `id` on `parent` from an uncompressed tar, all or nothing; resolves to the content bytes applied. */
  put(id: string, parent: string | undefined, tar: Readable, opts: { signal?: AbortSignal | undefined; onProgress?: ((p: Progress) => void) | undefined }): Promise<number>;
}
