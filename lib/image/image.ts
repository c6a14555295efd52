// What pull, commit and push pass between them (an image: manifest, config, and its
// layers as chain ids), and the one seam to the layer storage: LayerTarget. The store
// implements it with its records and locks; driverTarget() is the raw driver's.
import type { Readable } from 'node:stream';
import type { Driver, Progress } from '../types.js';
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

/**
 * A LayerTarget over a raw driver: a layer exists when the driver has it (a raw driver
 * keeps no "incomplete" record: the store's target does), and a failed put removes
 * the layer it created. Two processes pulling into one raw driver home at once are
 * not coordinated (the store's locks are).
 */
export function driverTarget(driver: Driver): LayerTarget {
  return {
    dir: driver.home,
    has: (id) => driver.exists(id),
    async put(id, parent, tar, opts) {
      await driver.create(id, parent);
      try {
        return await driver.applyDiff(id, parent, tar, { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
      } catch (err) {
        tar.destroy();
        await driver.remove(id);
        throw err;
      }
    },
  };
}
