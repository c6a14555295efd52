// Crafts tar archives for tests, byte by byte. Headers are written here, not by a
// tar library, so a test can make exactly the archive it needs: a valid layer with
// every entry type, PAX and GNU long names, binary xattrs and non-UTF-8 names, or a
// hostile one (bad checksum, a size field that lies, a huge PAX header, a name with
// "..", a truncated stream). For ordinary archives there is also `pack()`, through
// tar-stream's pack, as a second, independent writer.
import tarStream from 'tar-stream';

export type Bytes = string | Buffer;

/** Fields of one 512-byte header. Anything not given gets a sensible default. */
export interface RawHeader {
  name: Bytes;
  /** One char: '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, 'x' PAX, 'g', 'L', 'K'. */
  typeflag?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** The size written in the header (may differ from the data actually appended). */
  size?: number;
  mtime?: number;
  linkname?: Bytes;
  devmajor?: number;
  devminor?: number;
  /** 'ustar' (POSIX, prefix field used), 'gnu' (old GNU magic), 'v7' (no magic). */
  format?: 'ustar' | 'gnu' | 'v7';
  prefix?: Bytes;
  /** Replace a numeric field's raw 8/12 bytes (e.g. base-256 or garbage). */
  rawFields?: Partial<Record<'mode' | 'uid' | 'gid' | 'size' | 'mtime', Buffer>>;
  /** Write this checksum instead of the right one. */
  checksum?: number;
}

const buf = (b: Bytes): Buffer => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b);

function octal(value: number, width: number): Buffer {
  const text = value.toString(8).padStart(width - 1, '0');
  if (text.length > width - 1) throw new Error(`${value} does not fit in ${width} bytes of octal`);
  return Buffer.from(text + '\0', 'latin1');
}

/** A GNU base-256 number field (high bit set), e.g. for sizes above 8 GiB or negative values. */
export function base256(value: bigint, width: number): Buffer {
  const out = Buffer.alloc(width);
  let v = value < 0n ? (1n << BigInt(width * 8)) + value : value;
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[0] = value < 0n ? 0xff : out[0]! | 0x80;
  return out;
}

/** One raw 512-byte header block. */
export function header(h: RawHeader): Buffer {
  const b = Buffer.alloc(512);
  const name = buf(h.name);
  if (name.length > 100) throw new Error('name longer than 100 bytes: use a PAX or GNU long-name header');
  name.copy(b, 0);
  const put = (field: 'mode' | 'uid' | 'gid' | 'size' | 'mtime', off: number, width: number, value: number): void => {
    (h.rawFields?.[field] ?? octal(value, width)).copy(b, off, 0, width);
  };
  put('mode', 100, 8, h.mode ?? 0o644);
  put('uid', 108, 8, h.uid ?? 0);
  put('gid', 116, 8, h.gid ?? 0);
  put('size', 124, 12, h.size ?? 0);
  put('mtime', 136, 12, h.mtime ?? 1_600_000_000);
  b.write(h.typeflag ?? '0', 156, 'latin1');
  if (h.linkname !== undefined) buf(h.linkname).copy(b, 157, 0, 100);
  const format = h.format ?? 'ustar';
  if (format === 'ustar') b.write('ustar\x0000', 257, 'latin1');
  if (format === 'gnu') b.write('ustar  \x00', 257, 'latin1');
  if (format !== 'v7') {
    octal(h.devmajor ?? 0, 8).copy(b, 329);
    octal(h.devminor ?? 0, 8).copy(b, 337);
  }
  if (h.prefix !== undefined) buf(h.prefix).copy(b, 345, 0, 155);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  octal(h.checksum ?? sum, 7).copy(b, 148);
  b[155] = 0x20;
  return b;
}

export function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

/** PAX records "len key=value\n"; values may be binary. */
export function paxRecords(records: Record<string, Bytes>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), buf(value), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  return Buffer.concat(parts);
}

export interface EntryOptions {
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** Extra PAX records (e.g. { mtime: '1.5' }); xattrs go in `xattrs`. */
  pax?: Record<string, Bytes>;
  xattrs?: Record<string, Bytes>;
  /** How to carry a name or link name over 100 bytes. Default 'pax'. */
  longNames?: 'pax' | 'gnu';
}

/** Builds an archive entry by entry; `end()` adds the two zero blocks. */
export class TarBuilder {
  private readonly parts: Buffer[] = [];

  /** Appends raw bytes (a crafted header, garbage, anything). */
  raw(data: Buffer): this {
    this.parts.push(data);
    return this;
  }

  file(name: Bytes, content: Bytes = '', opts: EntryOptions = {}): this {
    const data = buf(content);
    return this.entry({ name, typeflag: '0', size: data.length, mode: opts.mode ?? 0o644 }, opts, data);
  }

  dir(name: Bytes, opts: EntryOptions = {}): this {
    return this.entry({ name, typeflag: '5', mode: opts.mode ?? 0o755 }, opts);
  }

  symlink(name: Bytes, target: Bytes, opts: EntryOptions = {}): this {
    return this.entry({ name, typeflag: '2', linkname: target, mode: opts.mode ?? 0o777 }, opts);
  }

  hardlink(name: Bytes, target: Bytes, opts: EntryOptions = {}): this {
    return this.entry({ name, typeflag: '1', linkname: target, mode: opts.mode ?? 0o644 }, opts);
  }

  device(name: Bytes, kind: 'char' | 'block', major: number, minor: number, opts: EntryOptions = {}): this {
    return this.entry({ name, typeflag: kind === 'char' ? '3' : '4', devmajor: major, devminor: minor, mode: opts.mode ?? 0o600 }, opts);
  }

  fifo(name: Bytes, opts: EntryOptions = {}): this {
    return this.entry({ name, typeflag: '6', mode: opts.mode ?? 0o644 }, opts);
  }

  /** ".wh.NAME" beside NAME: deletes NAME of the lower layers. */
  whiteout(path: string): this {
    const slash = path.lastIndexOf('/');
    return this.file(`${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, '', { mode: 0o600 });
  }

  /** ".wh..wh..opq" in `dir`: hides the lower content of `dir`. */
  opaque(dir: string): this {
    return this.file(`${dir.replace(/\/$/, '')}/.wh..wh..opq`, '', { mode: 0o600 });
  }

  /** A header as the entry would have it, then its data: long names and xattrs go before it in PAX or GNU headers. */
  entry(h: RawHeader, opts: EntryOptions = {}, data: Buffer = Buffer.alloc(0)): this {
    const name = buf(h.name);
    const link = h.linkname === undefined ? undefined : buf(h.linkname);
    const pax: Record<string, Bytes> = { ...(opts.pax ?? {}) };
    for (const [k, v] of Object.entries(opts.xattrs ?? {})) pax[`SCHILY.xattr.${k}`] = v;
    let shortName = name;
    let shortLink = link;
    if (name.length > 100) {
      if (opts.longNames === 'gnu') this.gnuLong('L', name);
      else pax.path = name;
      shortName = name.subarray(0, 100);
    }
    if (link !== undefined && link.length > 100) {
      if (opts.longNames === 'gnu') this.gnuLong('K', link);
      else pax.linkpath = link;
      shortLink = link.subarray(0, 100);
    }
    if (Object.keys(pax).length > 0) this.paxHeader(pax);
    const full: RawHeader = { ...h, name: shortName, uid: opts.uid ?? h.uid, gid: opts.gid ?? h.gid, mtime: opts.mtime ?? h.mtime };
    if (shortLink !== undefined) full.linkname = shortLink;
    this.parts.push(header(full), data, padding(data.length));
    return this;
  }

  paxHeader(records: Record<string, Bytes>, typeflag: 'x' | 'g' = 'x'): this {
    const body = paxRecords(records);
    this.parts.push(header({ name: 'PaxHeaders/x', typeflag, size: body.length }), body, padding(body.length));
    return this;
  }

  gnuLong(typeflag: 'L' | 'K', value: Buffer): this {
    const body = Buffer.concat([value, Buffer.alloc(1)]);
    this.parts.push(header({ name: '././@LongLink', typeflag, size: body.length, format: 'gnu' }), body, padding(body.length));
    return this;
  }

  /** The archive so far, without the end-of-archive blocks. */
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }

  /** The complete archive. */
  end(): Buffer {
    return Buffer.concat([...this.parts, Buffer.alloc(1024)]);
  }
}

/** Feeds a buffer as a stream of chunks of `chunkSize` bytes (exercises headers split across chunks). */
export async function* chunked(data: Buffer, chunkSize = 4096): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += chunkSize) yield data.subarray(i, i + chunkSize);
}

export interface PackEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string>;
}

/** An ordinary archive written by tar-stream's pack (a writer independent of `TarBuilder`). */
export async function pack(entries: readonly PackEntry[]): Promise<Buffer> {
  const p = tarStream.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  for (const e of entries) {
    const { content, ...h } = e;
    await new Promise<void>((resolve, reject) => {
      p.entry({ ...h, mtime: h.mtime ?? new Date(1_600_000_000_000) }, content ?? '', (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * A layer of `totalBytes` of file content generated on the fly (files of `fileSize`
 * bytes, one reused chunk), for streaming and memory tests without a big tar on disk.
 */
export async function* generatedLayer(totalBytes: number, fileSize: number, chunkSize = 1 << 20): AsyncGenerator<Buffer> {
  const chunk = Buffer.alloc(chunkSize, 0x61);
  yield header({ name: 'big/', typeflag: '5', mode: 0o755 });
  for (let i = 0, left = totalBytes; left > 0; i++) {
    const size = Math.min(fileSize, left);
    const h = header({ name: `big/f${i}`, typeflag: '0', size: 0, mode: 0o644, rawFields: { size: base256(BigInt(size), 12) } });
    yield h;
    for (let sent = 0; sent < size; sent += chunkSize) yield chunk.subarray(0, Math.min(chunkSize, size - sent));
    yield padding(size);
    left -= size;
  }
  yield Buffer.alloc(1024);
}
