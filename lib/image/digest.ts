// Digests: the one grammar every digest from a registry, a layout or a config is held
// to before it names a file or a URL, the hashing stream that checks bytes while they
// pass (never after the fact), and chain ids.
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { DigestMismatchError, InvalidImageError } from '../errors.js';

export type Algorithm = 'sha256' | 'sha512';

/** Hex lengths of the algorithms the OCI image spec registers; anything else is refused. */
const HEX_LENGTH: Record<Algorithm, number> = { sha256: 64, sha512: 128 };
const DIGEST = /^(sha256|sha512):([a-f0-9]+)$/;

/** A validated "algorithm:hex" string. */
export type Digest = string & { readonly __digest: unique symbol };

export function isDigest(value: unknown): value is Digest {
  if (typeof value !== 'string') return false;
  const m = DIGEST.exec(value);
  return m !== null && m[2]!.length === HEX_LENGTH[m[1] as Algorithm];
}

/** Throws InvalidImageError unless `value` is a sha256 or sha512 digest in canonical form. */
export function parseDigest(value: unknown, what = 'digest'): Digest {
  if (!isDigest(value)) throw new InvalidImageError(`${what} is not a sha256/sha512 digest: ${JSON.stringify(value)?.slice(0, 200)}`);
  return value;
}

export function digestAlgorithm(d: Digest): Algorithm {
  return d.slice(0, d.indexOf(':')) as Algorithm;
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function sha256Of(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** Checks a buffer already in memory (a manifest, a config) against its digest. */
export function verifyBytes(what: string, data: Uint8Array, expected: Digest): void {
  const actual = `${digestAlgorithm(expected)}:${createHash(digestAlgorithm(expected)).update(data).digest('hex')}`;
  if (actual !== expected) throw new DigestMismatchError(what, expected, actual);
}

/**
 * ChainID(L0) = DiffID(L0); ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))
 * (OCI image spec, config.md): one id per stack, so images sharing base layers share them.
 */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const diffId of diffIds) {
    const parent = out[out.length - 1];
    out.push(parent === undefined ? diffId : sha256Of(`${parent} ${diffId}`));
  }
  return out;
}

/**
 * The driver layer id of a chain id: its hex, as containers/storage names layers. 64
 * (or 128) hex characters are a valid single path component (lib/ids.ts), and the
 * algorithm prefix adds nothing while sha256 is the only one chain ids use.
 */
export function layerIdOf(chainId: Digest): string {
  return digestHex(chainId);
}

/** Hashes what flows through; `digest()` is valid once the stream has ended. */
export class Hasher extends Transform {
  private readonly hash: Hash;
  bytes = 0;
  constructor(readonly algorithm: Algorithm = 'sha256') {
    super();
    this.hash = createHash(algorithm);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
  private result: Digest | undefined;
  digest(): Digest {
    this.result ??= `${this.algorithm}:${this.hash.digest('hex')}` as Digest;
    return this.result;
  }
}

/**
 * Passes bytes through while hashing them, and fails the stream (DigestMismatchError)
 * before its end when they do not hash to `expected`, or as soon as they exceed
 * `size` — so a consumer never sees the end of a stream whose content was wrong.
 */
export class DigestVerifier extends Transform {
  private readonly hash: Hash;
  bytes: number;
  constructor(
    private readonly what: string,
    private readonly expected: Digest,
    private readonly size?: number,
    /** Bytes already hashed elsewhere (a resumed download): their hash state is `resume`. */
    resume?: { hash: Hash; bytes: number },
  ) {
    super();
    this.hash = resume?.hash ?? createHash(digestAlgorithm(expected));
    this.bytes = resume?.bytes ?? 0;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.size !== undefined && this.bytes > this.size) {
      done(new DigestMismatchError(this.what, this.expected, undefined, `more than the ${this.size} bytes its descriptor says`));
      return;
    }
    this.hash.update(chunk);
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    if (this.size !== undefined && this.bytes !== this.size) {
      done(new DigestMismatchError(this.what, this.expected, undefined, `${this.bytes} bytes where its descriptor says ${this.size}`));
      return;
    }
    const actual = `${digestAlgorithm(this.expected)}:${this.hash.digest('hex')}`;
    done(actual === this.expected ? null : new DigestMismatchError(this.what, this.expected, actual));
  }
}
