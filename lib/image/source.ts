// Where an image comes from: a registry repository or an OCI image layout directory,
// behind one small interface, so the pull pipeline is written once. Both hand out
// bytes only; checking them (digests, sizes, grammar) is the pipeline's job.
import { constants as fsConstants, createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidImageError, RegistryError } from '../errors.js';
import { digestAlgorithm, digestHex, parseDigest, type Digest } from './digest.js';
import { MAX_MANIFEST_BYTES, MediaType, parseManifest } from './manifest.js';
import { formatReference, type DockerReference, type OciLayoutReference } from './reference.js';
import { RegistryClient, type RegistryOptions } from './registry.js';

export interface ImageSource {
  readonly name: string;
  /** The top manifest (or index) of the reference: its bytes, declared media type, and the digest it must have when known. */
  topManifest(signal?: AbortSignal): Promise<{ bytes: Buffer; mediaType: string | undefined; digest: Digest | undefined }>;
  /** A manifest named by digest (an index's entry). */
  manifest(digest: Digest, signal?: AbortSignal): Promise<{ bytes: Buffer; mediaType: string | undefined }>;
  /** A blob's bytes from `offset` (the answer's offset is 0 when the source could not skip). */
  blob(digest: Digest, offset: number, signal?: AbortSignal): Promise<{ body: Readable; offset: number }>;
  /** A file holding the blob, when the source is on this machine (read in place, not copied to the cache). */
  localBlob?(digest: Digest): string;
}

export class RegistrySource implements ImageSource {
  readonly name: string;
  readonly client: RegistryClient;
  constructor(
    readonly ref: DockerReference,
    opts: RegistryOptions,
  ) {
    this.name = formatReference(ref);
    this.client = new RegistryClient(ref, opts);
  }
  async topManifest(signal?: AbortSignal) {
    const { bytes, mediaType } = await this.client.getManifest(this.ref.digest ?? this.ref.tag ?? 'latest', signal);
    return { bytes, mediaType, digest: this.ref.digest };
  }
  manifest(digest: Digest, signal?: AbortSignal) {
    return this.client.getManifest(digest, signal);
  }
  blob(digest: Digest, offset: number, signal?: AbortSignal) {
    return this.client.getBlob(digest, offset, signal);
  }
}

/** Reads at most `max` bytes of a file, refusing a bigger one. */
export async function readBounded(path: string, max: number, what: string): Promise<Buffer> {
  // O_NONBLOCK: a FIFO planted in a layout must not hang the open; it is refused below.
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InvalidImageError(`${what} is not a regular file`);
    if (st.size > max) throw new InvalidImageError(`${what} is ${st.size} bytes, more than the ${max} accepted`);
    const buf = Buffer.alloc(st.size);
    let at = 0;
    while (at < buf.length) {
      const { bytesRead } = await fh.read(buf, at, buf.length - at, at);
      if (bytesRead === 0) break;
      at += bytesRead;
    }
    return buf.subarray(0, at);
  } finally {
    await fh.close();
  }
}

/** Refuses a blob that is not a regular file (a FIFO would hang a reader, a device would never end). */
export async function assertRegularFile(path: string, what: string): Promise<void> {
  const st = await stat(path);
  if (!st.isFile()) throw new InvalidImageError(`${what} is not a regular file`);
}

/** The path of a blob in a layout; the digest is validated before it becomes a path. */
export function layoutBlobPath(dir: string, digest: Digest): string {
  parseDigest(digest);
  return join(dir, 'blobs', digestAlgorithm(digest), digestHex(digest));
}

export const REF_NAME = 'org.opencontainers.image.ref.name';

export class LayoutSource implements ImageSource {
  readonly name: string;
  constructor(readonly ref: OciLayoutReference) {
    this.name = formatReference(ref);
  }
  async topManifest() {
    const indexBytes = await readBounded(join(this.ref.dir, 'index.json'), MAX_MANIFEST_BYTES, `${this.ref.dir}/index.json`).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new RegistryError(`${this.ref.dir} is not an OCI image layout (no index.json)`, 404, 'NAME_UNKNOWN');
      throw err;
    });
    const parsed = parseManifest(indexBytes, MediaType.ociIndex);
    if (parsed.kind !== 'index') throw new InvalidImageError(`${this.ref.dir}/index.json is not an image index`);
    const entries = parsed.index.manifests;
    const matches = this.ref.ref === undefined ? entries : entries.filter((m) => m.annotations?.[REF_NAME] === this.ref.ref);
    if (matches.length !== 1) {
      const names = entries.map((m) => m.annotations?.[REF_NAME]).filter((n) => n !== undefined);
      const what = this.ref.ref === undefined ? 'no image name given and the layout does not hold exactly one image' : `no image named ${JSON.stringify(this.ref.ref)}`;
      throw new RegistryError(`${this.name}: ${what}${matches.length > 1 ? ` (${matches.length} entries match)` : ''}; names in the layout: ${names.join(', ') || 'none'}`, 404, 'MANIFEST_UNKNOWN');
    }
    const desc = matches[0]!;
    if (desc.size > MAX_MANIFEST_BYTES) throw new InvalidImageError(`the manifest is ${desc.size} bytes, more than the ${MAX_MANIFEST_BYTES} accepted`);
    const bytes = await readBounded(layoutBlobPath(this.ref.dir, desc.digest), MAX_MANIFEST_BYTES, `manifest ${desc.digest}`);
    return { bytes, mediaType: desc.mediaType, digest: desc.digest };
  }
  async manifest(digest: Digest) {
    return { bytes: await readBounded(layoutBlobPath(this.ref.dir, digest), MAX_MANIFEST_BYTES, `manifest ${digest}`), mediaType: undefined };
  }
  async blob(digest: Digest, offset: number) {
    const path = layoutBlobPath(this.ref.dir, digest);
    await assertRegularFile(path, `blob ${digest}`);
    return { body: createReadStream(path, { start: offset }), offset };
  }
  localBlob(digest: Digest): string {
    return layoutBlobPath(this.ref.dir, digest);
  }
}
