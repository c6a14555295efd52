// A streaming, byte-exact tar reader for layer apply. We parse headers ourselves
// rather than through tar-stream's extract because tar-stream decodes PAX records
// as UTF-8: that corrupts binary xattr values (security.capability) and names
// that are not UTF-8, and it ignores PAX uid/gid/mtime. Here every name is kept
// as a "binary string" (latin1: one char per byte, so Buffer.from(s, 'latin1')
// gives the exact bytes back), and every malformed or truncated input becomes an
// InvalidArchiveError instead of a hang or a half-read entry.
//
// Memory stays bounded: the reader holds at most the chunk being consumed plus a
// header, and PAX / GNU long-name headers are capped (MAX_META_BYTES).
import { AbortError, InvalidArchiveError } from '../errors.js';
import { displayName } from './path-safety.js';

export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

/** A point in time as a tar carries it: whole seconds from the header, nanoseconds from PAX. */
export interface TarTime {
  sec: number;
  nsec: number;
}

export interface TarEntry {
  /** The raw bytes of the name, one char per byte (latin1). */
  name: string;
  /** Raw bytes of the link target (symlinks and hardlinks), latin1 as `name`. */
  linkname: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: TarTime;
  atime?: TarTime;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, values byte-exact. */
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's first header in the stream (for error messages). */
  offset: number;
}

const BLOCK = 512;
/** PAX and GNU long-name headers above this are refused: real ones are a few KiB. */
export const MAX_META_BYTES = 1 << 20;

export class TarReader {
  private readonly source: AsyncIterator<Uint8Array | string>;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes consumed so far. */
  position = 0;
  /** Body bytes (plus padding) of the current entry not yet consumed. */
  private bodyLeft = 0;
  private padLeft = 0;

  constructor(
    source: AsyncIterable<Uint8Array | string>,
    private readonly signal?: AbortSignal,
  ) {
    this.source = source[Symbol.asyncIterator]();
  }

  /** The source's next chunk; an abort does not wait for a stalled source. */
  private async pull(): Promise<IteratorResult<Uint8Array | string>> {
    const signal = this.signal;
    if (signal === undefined) return this.source.next();
    if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new AbortError(undefined, { cause: signal.reason }));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([this.source.next(), aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort!);
    }
  }

  /** Stops reading the source (abort, or an error in the apply). */
  close(): void {
    this.ended = true;
    this.chunks = [];
    this.buffered = 0;
    // Not awaited: an async generator stuck in an await (a stalled source) settles return() only when it resumes.
    this.source.return?.()?.catch(() => undefined);
  }

  /** The next entry, or null at the end of the archive. */
  async next(): Promise<TarEntry | null> {
    await this.skipBody();
    let pax: Map<string, Buffer> | null = null;
    let longName: string | null = null;
    let longLink: string | null = null;
    const start = this.position;
    for (;;) {
      const headerAt = this.position;
      const have = await this.fill(BLOCK);
      if (!have) {
        if (this.buffered > 0) throw truncated(headerAt);
        if (pax !== null || longName !== null || longLink !== null) throw truncated(headerAt);
        return null; // end of input at a block boundary: tolerated, as GNU tar and Go do
      }
      const block = this.take(BLOCK);
      if (isZero(block)) {
        // End of archive is two zero blocks; a lone zero block followed by data is corrupt.
        if (!(await this.fill(BLOCK))) {
          if (this.buffered > 0) throw truncated(this.position);
          return null;
        }
        const second = this.take(BLOCK);
        if (!isZero(second)) throw new InvalidArchiveError(`invalid tar header at offset ${headerAt}: zero block inside the archive`);
        return null;
      }
      if (headerAt === 0 && block[0] === 0x1f && block[1] === 0x8b) {
        throw new InvalidArchiveError('the layer is gzip-compressed; an uncompressed tar is expected here');
      }
      if (headerAt === 0 && block.readUInt32LE(0) === 0xfd2fb528) {
        throw new InvalidArchiveError('the layer is zstd-compressed; an uncompressed tar is expected here');
      }
      verifyChecksum(block, headerAt);
      const flag = block[156]!;
      const size = octal(block, 124, 12, 'size', headerAt);
      if (flag === 0x78 /* x */ || flag === 0x67 /* g */ || flag === 0x4c /* L */ || flag === 0x4b /* K */) {
        if (size > MAX_META_BYTES) {
          throw new InvalidArchiveError(`tar ${metaName(flag)} header at offset ${headerAt} is ${size} bytes (limit ${MAX_META_BYTES})`);
        }
        const body = await this.readExact(size, headerAt);
        await this.skipExact(padding(size), headerAt);
        if (flag === 0x78) pax = parsePax(body, headerAt, pax);
        else if (flag === 0x4c) longName = cString(body);
        else if (flag === 0x4b) longLink = cString(body);
        // Global PAX headers ('g') are ignored, as Go's archive/tar (and so containers/storage) does.
        continue;
      }
      // The header's own fields first, then what overrides them (GNU long names, then
      // PAX records); only then the type, which may depend on the final name.
      const fields = decodeHeader(block, size, start);
      if (longName !== null) fields.name = longName;
      if (longLink !== null) fields.linkname = longLink;
      if (pax !== null) applyPax(fields, pax, headerAt);
      const entry: TarEntry = { ...fields, type: entryType(flag, fields.name, isV7(block), start) };
      this.bodyLeft = entry.size;
      this.padLeft = padding(entry.size);
      return entry;
    }
  }

  /** The whole body of the current entry in one buffer (for small files). */
  async readBody(): Promise<Buffer> {
    const body = await this.readExact(this.bodyLeft, this.position);
    this.bodyLeft = 0;
    await this.skipPadding();
    return body;
  }

  /** The body of the current entry as it arrives, chunk by chunk (views into the input). */
  async *bodyChunks(): AsyncGenerator<Buffer> {
    while (this.bodyLeft > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) throw truncated(this.position);
      const chunk = this.takeUpTo(this.bodyLeft);
      this.bodyLeft -= chunk.length;
      yield chunk;
    }
    await this.skipPadding();
  }

  /** Skips what is left of the current entry's body. */
  async skipBody(): Promise<void> {
    if (this.bodyLeft > 0) {
      await this.skipExact(this.bodyLeft, this.position);
      this.bodyLeft = 0;
    }
    await this.skipPadding();
  }

  /** Reads and discards the rest of the input after the end of the archive (so a piping writer is not cut off). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (!this.ended) {
      const r = await this.pull();
      if (r.done) this.ended = true;
    }
  }

  private async skipPadding(): Promise<void> {
    if (this.padLeft > 0) {
      const n = this.padLeft;
      this.padLeft = 0;
      await this.skipExact(n, this.position);
    }
  }

  private async skipExact(n: number, at: number): Promise<void> {
    while (n > 0) {
      if (this.buffered === 0 && !(await this.fill(1))) throw truncated(at);
      n -= this.takeUpTo(n).length;
    }
  }

  private async readExact(n: number, at: number): Promise<Buffer> {
    if (!(await this.fill(n))) throw truncated(at);
    return this.take(n);
  }

  /** Buffers at least n bytes; false when the input ends first. */
  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n) {
      if (this.ended) return false;
      const r = await this.pull();
      if (r.done) {
        this.ended = true;
        return false;
      }
      const v = r.value;
      if (typeof v === 'string') throw new InvalidArchiveError('the tar stream yields strings, not bytes (was an encoding set on it?)');
      if (v.length === 0) continue;
      const buf = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.chunks.push(buf);
      this.buffered += buf.length;
    }
    return true;
  }

  private takeUpTo(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length <= n) {
      this.chunks.shift();
      this.buffered -= first.length;
      this.position += first.length;
      return first;
    }
    this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    this.position += n;
    return first.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.takeUpTo(n);
    if (first.length === n) return first;
    const out = Buffer.allocUnsafe(n);
    first.copy(out, 0);
    let at = first.length;
    while (at < n) {
      const c = this.takeUpTo(n - at);
      c.copy(out, at);
      at += c.length;
    }
    return out;
  }
}

function truncated(at: number): InvalidArchiveError {
  return new InvalidArchiveError(`truncated tar stream: the input ended inside the entry at offset ${at}`);
}

function metaName(flag: number): string {
  return flag === 0x78 ? 'PAX' : flag === 0x67 ? 'global PAX' : flag === 0x4c ? 'GNU long name' : 'GNU long link name';
}

function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function verifyChecksum(block: Buffer, at: number): void {
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const b = block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const stored = octal(block, 148, 8, 'checksum', at);
  if (stored !== unsigned && stored !== signed) {
    throw new InvalidArchiveError(`invalid tar header at offset ${at}: bad checksum (not a tar, or corrupt)`);
  }
}

/**
 * A numeric header field: octal text, or GNU base-256 when the high bit is set; a
 * negative base-256 value (0xff first) only where the field may be negative (mtime
 * before 1970, as GNU tar and Go write it).
 */
function octal(block: Buffer, off: number, len: number, field: string, at: number, signed = false): number {
  const first = block[off]!;
  if (first === 0xff && signed) {
    // Two's complement: -(complement + 1).
    let v = 0;
    for (let i = 1; i < len; i++) {
      v = v * 256 + (0xff - block[off + i]!);
      if (v > Number.MAX_SAFE_INTEGER) throw new InvalidArchiveError(`invalid tar header at offset ${at}: ${field} too large`);
    }
    return -(v + 1);
  }
  if (first & 0x80) {
    if (first === 0xff) throw new InvalidArchiveError(`invalid tar header at offset ${at}: negative ${field}`);
    let v = first & 0x7f;
    for (let i = 1; i < len; i++) {
      v = v * 256 + block[off + i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new InvalidArchiveError(`invalid tar header at offset ${at}: ${field} too large`);
    }
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new InvalidArchiveError(`invalid tar header at offset ${at}: ${field} field is not octal`);
    v = v * 8 + (c - 0x30);
  }
  for (; i < end; i++) {
    const c = block[i]!;
    if (c !== 0x20 && c !== 0) throw new InvalidArchiveError(`invalid tar header at offset ${at}: ${field} field is not octal`);
  }
  return v;
}

function cString(buf: Buffer, off = 0, len = buf.length - off): string {
  let end = off;
  const limit = off + len;
  while (end < limit && buf[end] !== 0) end++;
  return buf.toString('latin1', off, end);
}

/** A header block's own fields, before any GNU long name or PAX record overrides them. */
function decodeHeader(block: Buffer, size: number, offset: number): Omit<TarEntry, 'type'> {
  let name = cString(block, 0, 100);
  if (isPosixUstar(block) && block[345] !== 0) name = cString(block, 345, 155) + '/' + name;
  const flag = block[156]!;
  const device = flag === 0x33 || flag === 0x34;
  return {
    name,
    linkname: cString(block, 157, 100),
    mode: octal(block, 100, 8, 'mode', offset) & 0o7777,
    uid: octal(block, 108, 8, 'uid', offset),
    gid: octal(block, 116, 8, 'gid', offset),
    size,
    mtime: { sec: octal(block, 136, 12, 'mtime', offset, true), nsec: 0 },
    devmajor: device ? octal(block, 329, 8, 'devmajor', offset) : 0,
    devminor: device ? octal(block, 337, 8, 'devminor', offset) : 0,
    xattrs: new Map(),
    offset,
  };
}

/** POSIX ustar magic ("ustar\0"): the only format whose 155-byte prefix field is part of the name (old GNU keeps times there). */
function isPosixUstar(block: Buffer): boolean {
  return block.toString('latin1', 257, 263) === 'ustar\0';
}

/** A V7 header: no magic at all (neither POSIX "ustar\0" nor old GNU "ustar  "). */
function isV7(block: Buffer): boolean {
  return block.toString('latin1', 257, 262) !== 'ustar';
}

/**
 * The entry's type from its flag. Pre-POSIX tars (a NUL flag, or a V7 header) had no
 * directory type and marked a directory by a trailing slash on a regular-file entry;
 * that rule looks at the final name (after PAX `path` and GNU `L`), never at the
 * header's name field: Go's archive/tar puts only an ASCII remainder there, and a
 * long name cut at 100 bytes may end in a slash. A POSIX or GNU header with flag '0'
 * is a file whatever its name (as Go, and so containers/storage, reads it).
 */
function entryType(flag: number, name: string, v7: boolean, offset: number): TarEntryType {
  switch (flag) {
    case 0:
    case 0x30: // '0'
    case 0x37: // '7' contiguous file
      return name.endsWith('/') && (flag === 0 || v7) ? 'dir' : 'file';
    case 0x31:
      return 'link';
    case 0x32:
      return 'symlink';
    case 0x33:
      return 'char';
    case 0x34:
      return 'block';
    case 0x35:
      return 'dir';
    case 0x36:
      return 'fifo';
    default:
      throw new InvalidArchiveError(
        `unsupported tar entry type ${JSON.stringify(String.fromCharCode(flag))} for ${JSON.stringify(displayName(name))} at offset ${offset}`,
      );
  }
}

/** PAX extended header records: "<len> <key>=<value>\n", values kept as raw bytes. */
function parsePax(buf: Buffer, at: number, into: Map<string, Buffer> | null): Map<string, Buffer> {
  const out = into ?? new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    let sp = pos;
    while (sp < buf.length && buf[sp] !== 0x20) sp++;
    const lenText = buf.toString('latin1', pos, sp);
    if (!/^[1-9][0-9]{0,9}$/.test(lenText)) throw badPax(at);
    const len = Number(lenText);
    const end = pos + len;
    if (end > buf.length || buf[end - 1] !== 0x0a) throw badPax(at);
    const eq = buf.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= end) throw badPax(at);
    const key = buf.toString('utf8', sp + 1, eq);
    out.set(key, buf.subarray(eq + 1, end - 1));
    pos = end;
  }
  return out;
}

function badPax(at: number): InvalidArchiveError {
  return new InvalidArchiveError(`invalid PAX header at offset ${at}: malformed record`);
}

/**
 * PAX records override the header's fields. A record with an empty value deletes
 * the override (POSIX), so the header's field stands, as Go's archive/tar reads it.
 */
function applyPax(entry: Omit<TarEntry, 'type'>, pax: Map<string, Buffer>, at: number): void {
  let sparse = false;
  for (const [key, value] of pax) {
    const text = (): string => value.toString('latin1');
    if (value.length === 0 && OVERRIDES.has(key)) continue;
    switch (key) {
      case 'path':
      case 'linkpath':
        if (value.includes(0)) throw new InvalidArchiveError(`invalid PAX header at offset ${at}: ${key} contains a NUL byte`);
        if (key === 'path') entry.name = text();
        else entry.linkname = text();
        break;
      case 'size':
        entry.size = paxInt(text(), key, at);
        break;
      case 'uid':
        entry.uid = paxInt(text(), key, at);
        break;
      case 'gid':
        entry.gid = paxInt(text(), key, at);
        break;
      case 'mtime':
        entry.mtime = paxTime(text(), key, at);
        break;
      case 'atime':
        entry.atime = paxTime(text(), key, at);
        break;
      default:
        if (key.startsWith('SCHILY.xattr.')) entry.xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
        else if (key.startsWith('GNU.sparse.')) sparse = true;
    }
  }
  // After the loop, so the message names the entry by its final name.
  if (sparse) throw new InvalidArchiveError(`sparse file ${JSON.stringify(displayName(entry.name))} at offset ${at}: GNU sparse tars are not supported`);
}

/** PAX keys that override a header field (an empty value leaves the header's field). */
const OVERRIDES = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'mtime', 'atime']);

function paxInt(text: string, key: string, at: number): number {
  if (!/^[0-9]{1,16}$/.test(text) || Number(text) > Number.MAX_SAFE_INTEGER) {
    throw new InvalidArchiveError(`invalid PAX header at offset ${at}: ${key}=${JSON.stringify(text.slice(0, 40))}`);
  }
  return Number(text);
}

function paxTime(text: string, key: string, at: number): TarTime {
  const m = /^(-?[0-9]{1,15})(?:\.([0-9]{1,9})[0-9]*)?$/.exec(text);
  if (m === null) throw new InvalidArchiveError(`invalid PAX header at offset ${at}: ${key}=${JSON.stringify(text.slice(0, 40))}`);
  const sec = Number(m[1]);
  const nsec = m[2] === undefined ? 0 : Number(m[2].padEnd(9, '0'));
  // "-1.5" means 1.5 s before the epoch.
  if (m[1]!.startsWith('-') && nsec > 0) return { sec: sec - 1, nsec: 1e9 - nsec };
  return { sec, nsec };
}
