// Blobs kept by digest in a directory the caller gives (DIR/sha256/<hex>), so a pull
// that is stopped (an abort, a killed process) resumes rather than restarts, and
// commit and push find the compressed layers they made. A blob appears under its name
// only by rename after its digest and size were verified; bytes on their way live in
// DIR/sha256/<hex>.partial-<pid>-<n>. A failed download removes its partial file; one
// stopped by the caller (FetchOptions.keepPartial) or by a kill stays, and a later
// fetch adopts it (when that pid is gone and it is younger than PARTIAL_MAX_AGE_MS) and
// continues with an HTTP Range request; an older one is removed by that fetch.
// A durable cache (the default) fsyncs a blob before the rename that makes it complete,
// and its directory after: a blob found under its name after a power cut is whole.
import { createHash, randomInt, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortError } from '../errors.js';
import { fsyncPaths } from '../native.js';
import { processAlive } from '../processes.js';
import { DigestVerifier, Hasher, digestAlgorithm, digestHex, parseDigest, type Digest } from './digest.js';

export type FetchRange = (offset: number, signal: AbortSignal | undefined) => Promise<{ body: Readable; offset: number }>;

export interface FetchOptions {
  signal?: AbortSignal | undefined;
  /** Hears of every chunk received. */
  onBytes?: (n: number) => void;
  /** Follows the download, so the blob can be read while it arrives. */
  live?: LiveBlob;
  /** Whether a failed download keeps its partial file for a later fetch to resume (default: never). */
  keepPartial?: (err: unknown) => boolean;
}

/** A partial download older than this is not resumed (its registry may have moved on; it is garbage by then). */
export const PARTIAL_MAX_AGE_MS = 24 * 3600_000;

const PARTIAL_NAME = /^([0-9a-f]+)\.partial-(\d+)-\d+$/;

/**
 * What a file in DIR/<algorithm>/ named like a partial download is: 'writing' (its pid
 * is alive), 'resumable' (a dead writer's, young enough for a fetch to adopt) or
 * 'stale' (nothing will use it: remove it). undefined: not a partial download's name.
 */
export function partialState(name: string, mtimeMs: number, now = Date.now()): 'writing' | 'resumable' | 'stale' | undefined {
  const m = PARTIAL_NAME.exec(name);
  if (m === null) return undefined;
  const pid = Number(m[2]);
  if (pid === process.pid || processAlive(pid)) return 'writing';
  return now - mtimeMs < PARTIAL_MAX_AGE_MS ? 'resumable' : 'stale';
}

/**
 * A blob on its way into the cache, readable while it downloads (so a layer is applied
 * as its bytes arrive, not after): read() hands out only bytes already written to the
 * partial file, waits for more, ends when the blob is complete and verified, and fails
 * with the download's error. The reader checks the digest again itself.
 */
export class LiveBlob {
  file: string | undefined;
  private final: string | undefined;
  private written = 0;
  private error: unknown;
  private waiters: Array<() => void> = [];

  setWritten(n: number): void {
    this.written = n;
    this.wake();
  }
  complete(path: string): void {
    this.final = path;
    this.wake();
  }
  fail(err: unknown): void {
    this.error = err;
    this.wake();
  }
  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  private changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async *read(): AsyncGenerator<Buffer> {
    let fh: FileHandle | undefined;
    let pos = 0;
    try {
      for (;;) {
        if (this.error !== undefined) throw this.error;
        if (fh === undefined) {
          const path = this.final ?? this.file;
          if (path === undefined) {
            await this.changed();
            continue;
          }
          try {
            fh = await open(path, 'r');
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
            if (this.final === undefined && this.error === undefined) await this.changed(); // renamed meanwhile: the final name comes
            continue;
          }
        }
        const available = this.final !== undefined ? 1 << 20 : Math.min(1 << 20, this.written - pos);
        if (available <= 0) {
          await this.changed();
          continue;
        }
        const buf = Buffer.allocUnsafe(available);
        const { bytesRead } = await fh.read(buf, 0, available, pos);
        if (bytesRead === 0) {
          if (this.final !== undefined) return;
          await this.changed();
          continue;
        }
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    } finally {
      await fh?.close();
    }
  }
}

export class BlobCache {
  /** Fetches in flight in this process, so two pulls of one blob share one download. */
  private readonly inFlight = new Map<string, Promise<string>>();

  readonly durable: boolean;

  constructor(
    readonly dir: string,
    opts: { durable?: boolean } = {},
  ) {
    this.durable = opts.durable !== false;
  }

  /** Renames a verified blob to its name; a durable cache flushes its bytes first and the directory after. */
  private async publish(temp: string, final: string, fh?: FileHandle): Promise<void> {
    if (this.durable) await (fh !== undefined ? fh.sync() : fsyncPaths([temp]));
    await rename(temp, final);
    if (this.durable) await fsyncPaths([dirname(final)]);
  }

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
   * Whether the cached blob is whole: `size` bytes that hash to its digest (read end
   * to end). A push sends a kept blob only after this: a flipped bit on disk must not
   * reach a registry under the old digest.
   */
  async intact(digest: Digest, size: number): Promise<boolean> {
    if (!(await this.has(digest, size))) return false;
    const hash = createHash(digestAlgorithm(digest));
    try {
      await pipeline(createReadStream(this.path(digest)), hash);
    } catch {
      return false;
    }
    return `${digestAlgorithm(digest)}:${hash.digest('hex')}` === digest;
  }

  /**
   * Makes sure the blob is cached and verified, fetching what is missing with `get`;
   * resolves to its path. `onBytes` hears of every chunk received. A digest or size
   * mismatch throws DigestMismatchError and drops the partial file; an abort or a
   * network error keeps it for the next try.
   */
  fetch(digest: Digest, size: number, get: FetchRange, opts: FetchOptions = {}): Promise<string> {
    const key = this.path(digest);
    let p = this.inFlight.get(key);
    if (p === undefined) {
      p = this.doFetch(digest, size, get, opts).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  private async doFetch(digest: Digest, size: number, get: FetchRange, opts: FetchOptions): Promise<string> {
    const final = this.path(digest);
    if (await this.has(digest, size)) return final;
    // Stopped before it began: a dead process's partial is not taken over only to be dropped.
    if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
    const dir = join(this.dir, digestAlgorithm(digest));
    await mkdir(dir, { recursive: true });
    const partial = `${final}.partial-${process.pid}-${randomInt(2 ** 47)}`;
    let offset = await this.adopt(dir, digestHex(digest), partial);
    const dropPartial = async (err: unknown) => {
      if (opts.keepPartial?.(err) !== true) await unlink(partial).catch(() => {});
    };
    let hash = createHash(digestAlgorithm(digest));
    if (offset > size) offset = 0;
    let body: Readable;
    try {
      if (offset > 0) {
        for await (const chunk of createReadStream(partial, { end: offset - 1 })) hash.update(chunk as Buffer);
      }
      const answer = await get(offset, opts.signal);
      body = answer.body;
      if (answer.offset !== offset) {
        offset = 0;
        hash = createHash(digestAlgorithm(digest));
      }
    } catch (err) {
      if (offset > 0) await dropPartial(err);
      throw err;
    }
    const fh = await open(partial, offset > 0 ? 'a' : 'w');
    if (offset === 0) await fh.truncate(0);
    const live = opts.live;
    if (live !== undefined) {
      live.file = partial;
      live.setWritten(offset);
    }
    let written = offset;
    // Bytes are announced to a live reader only once they are in the file.
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        fh.write(chunk).then(() => {
          written += chunk.length;
          live?.setWritten(written);
          done();
        }, done);
      },
    });
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
      await pipeline(counted, new DigestVerifier(`blob ${digest}`, digest, size, { hash: hash as Hash, bytes: offset }), sink, {
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      await this.publish(partial, final, fh);
    } catch (err) {
      body.destroy();
      await fh.close();
      await dropPartial(err);
      throw err;
    }
    await fh.close();
    return final;
  }

  /** Takes over a partial download of `hex` left by a process that is gone; resolves to its length (0: none). Stale ones go. */
  private async adopt(dir: string, hex: string, mine: string): Promise<number> {
    for (const name of await readdir(dir)) {
      if (PARTIAL_NAME.exec(name)?.[1] !== hex) continue;
      const st = await stat(join(dir, name)).catch(() => undefined);
      const state = st?.isFile() === true ? partialState(name, st.mtimeMs) : undefined;
      if (state === 'stale') await unlink(join(dir, name)).catch(() => {});
      if (state !== 'resumable') continue;
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
    const temp = join(dir, `ingest.partial-${process.pid}-${randomInt(2 ** 47)}`);
    const hasher = new Hasher('sha256');
    try {
      await pipeline(input, hasher, createWriteStream(temp), { ...(signal ? { signal } : {}) });
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
    const digest = hasher.digest();
    const path = this.path(digest);
    await this.publish(temp, path).catch(async (err: unknown) => {
      await unlink(temp).catch(() => {});
      throw err;
    });
    return { digest, size: hasher.bytes, path };
  }
}
