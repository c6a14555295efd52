// Blobs kept by digest in a directory the caller gives (DIR/sha256/<hex>), so a pull
// that stops (an abort, a lost connection, a killed process) resumes rather than
// restarts, and commit and push find the compressed layers they made. A blob appears
// under its name only by rename after its digest and size were verified; bytes on
// their way live in DIR/sha256/<hex>.partial-<pid>-<n>, which a later fetch adopts
// (when that pid is gone) and continues with an HTTP Range request.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, stat, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestMismatchError } from '../errors.js';
import { DigestVerifier, Hasher, digestAlgorithm, digestHex, parseDigest, type Digest } from './digest.js';

export type FetchRange = (offset: number, signal: AbortSignal | undefined) => Promise<{ body: Readable; offset: number }>;

let serial = 0;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class BlobCache {
  /** Fetches in flight in this process, so two pulls of one blob share one download. */
  private readonly inFlight = new Map<string, Promise<string>>();

  constructor(readonly dir: string) {}

  /** The cached file of `digest` (which must be valid: it becomes a path). */
  path(digest: Digest): string {
    parseDigest(digest);
    return join(this.dir, digestAlgorithm(digest), digestHex(digest));
  }

  /** Whether the blob is cached with this size (size undefined: any). */
  async has(digest: Digest, size?: number): Promise<boolean> {
    try {
      const st = await stat(this.path(digest));
      return st.isFile() && (size === undefined || st.size === size);
    } catch {
      return false;
    }
  }

  /**
   * Makes sure the blob is cached and verified, fetching what is missing with `get`;
   * resolves to its path. `onBytes` hears of every chunk received. A digest or size
   * mismatch throws DigestMismatchError and drops the partial file; an abort or a
   * network error keeps it for the next try.
   */
  fetch(digest: Digest, size: number, get: FetchRange, opts: { signal?: AbortSignal | undefined; onBytes?: (n: number) => void } = {}): Promise<string> {
    const key = this.path(digest);
    let p = this.inFlight.get(key);
    if (p === undefined) {
      p = this.doFetch(digest, size, get, opts).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  private async doFetch(digest: Digest, size: number, get: FetchRange, opts: { signal?: AbortSignal | undefined; onBytes?: (n: number) => void }): Promise<string> {
    const final = this.path(digest);
    if (await this.has(digest, size)) return final;
    const dir = join(this.dir, digestAlgorithm(digest));
    await mkdir(dir, { recursive: true });
    const partial = `${final}.partial-${process.pid}-${serial++}`;
    let offset = await this.adopt(dir, digestHex(digest), partial);
    let hash = createHash(digestAlgorithm(digest));
    if (offset > size) offset = 0;
    if (offset > 0) {
      for await (const chunk of createReadStream(partial, { end: offset - 1 })) hash.update(chunk as Buffer);
    }
    const { body, offset: from } = await get(offset, opts.signal);
    if (from !== offset) {
      offset = 0;
      hash = createHash(digestAlgorithm(digest));
    }
    if (offset === 0) await truncate(partial, 0).catch(() => {});
    const counted = opts.onBytes
      ? Readable.from(
          (async function* () {
            for await (const chunk of body) {
              opts.onBytes!((chunk as Buffer).length);
              yield chunk as Buffer;
            }
          })(),
        )
      : body;
    try {
      await pipeline(counted, new DigestVerifier(`blob ${digest}`, digest, size, { hash: hash as Hash, bytes: offset }), createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' }), {
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      body.destroy();
      if (err instanceof DigestMismatchError) await unlink(partial).catch(() => {});
      throw err;
    }
    await rename(partial, final);
    return final;
  }

  /** Takes over a partial download left by a process that is gone; resolves to its length (0: none). */
  private async adopt(dir: string, hex: string, mine: string): Promise<number> {
    for (const name of await readdir(dir)) {
      const m = /^([0-9a-f]+)\.partial-(\d+)-\d+$/.exec(name);
      if (m === null || m[1] !== hex) continue;
      const pid = Number(m[2]);
      if (pid === process.pid || alive(pid)) continue;
      try {
        await rename(join(dir, name), mine);
        return (await stat(mine)).size;
      } catch {
        // another process took it first
      }
    }
    return 0;
  }

  /**
   * Stores a stream under its digest (computed while it is written): commit and push
   * keep the compressed layers they make here. Resolves to the blob's digest and size.
   */
  async ingest(input: Readable, signal?: AbortSignal): Promise<{ digest: Digest; size: number; path: string }> {
    const dir = join(this.dir, 'sha256');
    await mkdir(dir, { recursive: true });
    const temp = join(dir, `ingest.partial-${process.pid}-${serial++}`);
    const hasher = new Hasher('sha256');
    try {
      await pipeline(input, hasher, createWriteStream(temp), { ...(signal ? { signal } : {}) });
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
    const digest = hasher.digest();
    const path = this.path(digest);
    await rename(temp, path);
    return { digest, size: hasher.bytes, path };
  }
}
