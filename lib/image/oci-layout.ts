// Writing an OCI image layout (image-spec image-layout.md): oci-layout, blobs/<alg>/<hex>,
// index.json naming each image with org.opencontainers.image.ref.name. Each file
// appears by rename once complete, blobs before the index that points at them, so a
// reader (skopeo, umoci, a crash) sees the old image or the new one, never half.
// Writers of one layout at the same time must be serialised by the caller.
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidImageError } from '../errors.js';
import type { Digest } from './digest.js';
import { MAX_MANIFEST_BYTES, MediaType, parseManifest, toBytes, type Descriptor } from './manifest.js';
import { layoutBlobPath, readBounded, REF_NAME } from './source.js';

const LAYOUT_VERSION = '1.0.0';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes `data` (or copies `from`) to `path` through a temp file in the same directory and a rename. */
async function atomicWrite(path: string, source: { data: Buffer } | { from: string }): Promise<void> {
  const temp = join(dirname(path), `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    if ('data' in source) await writeFile(temp, source.data, { mode: 0o644 });
    else await copyFile(source.from, temp);
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
}

export class LayoutWriter {
  constructor(readonly dir: string) {}

  /** Makes the layout (oci-layout, blobs/sha256) if missing; refuses a directory that is another layout version. */
  async init(): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    const marker = join(this.dir, 'oci-layout');
    if (await exists(marker)) {
      const j = JSON.parse((await readBounded(marker, 4096, marker)).toString('utf8')) as { imageLayoutVersion?: unknown };
      if (j.imageLayoutVersion !== LAYOUT_VERSION) throw new InvalidImageError(`${marker}: unsupported imageLayoutVersion ${JSON.stringify(j.imageLayoutVersion)}`);
    } else {
      await atomicWrite(marker, { data: toBytes({ imageLayoutVersion: LAYOUT_VERSION }) });
    }
  }

  async hasBlob(digest: Digest, size: number): Promise<boolean> {
    try {
      const st = await stat(layoutBlobPath(this.dir, digest));
      return st.isFile() && st.size === size;
    } catch {
      return false;
    }
  }

  async putBlob(digest: Digest, source: { data: Buffer } | { from: string }): Promise<void> {
    const path = layoutBlobPath(this.dir, digest);
    await mkdir(dirname(path), { recursive: true });
    await atomicWrite(path, source);
  }

  /** Points index.json at `manifest`, named `ref` (replacing the entry of that name); no ref: added without a name. */
  async tag(manifest: Descriptor, ref: string | undefined): Promise<void> {
    const indexPath = join(this.dir, 'index.json');
    let manifests: Descriptor[] = [];
    if (await exists(indexPath)) {
      const parsed = parseManifest(await readBounded(indexPath, MAX_MANIFEST_BYTES, indexPath), MediaType.ociIndex);
      if (parsed.kind !== 'index') throw new InvalidImageError(`${indexPath} is not an image index`);
      manifests = parsed.index.manifests.filter((m) => ref === undefined || m.annotations?.[REF_NAME] !== ref);
    }
    manifests.push({ ...manifest, ...(ref !== undefined ? { annotations: { [REF_NAME]: ref } } : {}) });
    await atomicWrite(indexPath, { data: toBytes({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }) });
  }
}
