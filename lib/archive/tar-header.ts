// Encodes tar headers byte for byte: ustar, plus a PAX extended header for what
// ustar cannot hold (long or non-ASCII names, sub-second mtimes, xattrs, big ids
// and sizes). Written here rather than with tar-stream's pack because layer content
// needs raw bytes where tar-stream takes JS strings: names that are not UTF-8 and
// binary xattr values (security.capability) would be re-encoded. Nothing variable
// (clock, host user names, pids) goes into a header, so output is deterministic.

export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

const typeflags: Record<TarType, number> = {
  file: 0x30,
  link: 0x31,
  symlink: 0x32,
  char: 0x33,
  block: 0x34,
  directory: 0x35,
  fifo: 0x36,
};

export interface TarEntryHeader {
  /** Raw bytes of the name, relative ("etc/passwd"); directories end with "/". */
  name: Buffer;
  type: TarType;
  /** Permission bits incl. setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content that follow (0 but for regular files). */
  size: number;
  /** Seconds since the epoch, rounded down (so a time before it has a positive mtimeNsec). */
  mtimeSec: bigint;
  /** 0..999999999 */
  mtimeNsec: number;
  /** Target of a symlink or hardlink. */
  linkname?: Buffer;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, sorted by name. */
  xattrs?: ReadonlyArray<readonly [string, Buffer]>;
}

export const blockSize = 512;

// Largest values the ustar numeric fields hold (octal digits + NUL).
const max7 = 0o7777777;
const max11 = 0o77777777777;
const maxMtime = BigInt(max11);

function isAscii(b: Buffer): boolean {
  for (const c of b) if (c >= 0x80 || c === 0) return false;
  return true;
}

/** Splits a name into ustar's prefix (≤155) and name (≤100) fields at a '/', or undefined. */
function splitUstarName(name: Buffer): [Buffer, Buffer] | undefined {
  if (name.length <= 100) return [Buffer.alloc(0), name];
  if (name.length > 256) return undefined;
  // The last '/' that leaves ≤100 bytes after it and ≤155 before it (a trailing '/' of a directory stays in the name).
  for (let i = name.length - 2; i >= 0; i--) {
    if (name[i] !== 0x2f) continue;
    if (name.length - i - 1 > 100) return undefined;
    if (i <= 155 && i > 0) return [name.subarray(0, i), name.subarray(i + 1)];
  }
  return undefined;
}

/** `value` as zero-padded octal digits and a NUL in the `width` bytes at `offset` (value ≤ 8^(width-1) - 1). */
function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  let v = value;
  buf[offset + width - 1] = 0;
  for (let i = offset + width - 2; i >= offset; i--) {
    const digit = v % 8;
    buf[i] = 0x30 + digit;
    v = (v - digit) / 8;
  }
}

const ustarMagic = Buffer.from('ustar\u000000', 'latin1');

/**
 * Writes one ustar block at `at` of `out`. The 512 bytes there must be zero
 * (every Reserve hands out zeroed space), so only the fields are written.
 */
function ustarInto(out: Buffer, at: number, h: TarEntryHeader, linkname: Buffer | undefined, name: Buffer, prefix: Buffer, typeflag: number, size: number): void {
  name.copy(out, at, 0, Math.min(name.length, 100));
  writeOctal(out, at + 100, 8, h.mode & 0o7777);
  writeOctal(out, at + 108, 8, h.uid > max7 ? 0 : h.uid);
  writeOctal(out, at + 116, 8, h.gid > max7 ? 0 : h.gid);
  writeOctal(out, at + 124, 12, size > max11 ? 0 : size);
  writeOctal(out, at + 136, 12, h.mtimeSec < 0n || h.mtimeSec > maxMtime ? 0 : Number(h.mtimeSec));
  out.fill(0x20, at + 148, at + 156);
  out[at + 156] = typeflag;
  if (linkname && linkname.length <= 100) linkname.copy(out, at + 157);
  ustarMagic.copy(out, at + 257);
  writeOctal(out, at + 329, 8, h.devmajor ?? 0);
  writeOctal(out, at + 337, 8, h.devminor ?? 0);
  if (prefix.length > 0) prefix.copy(out, at + 345, 0, Math.min(prefix.length, 155));
  let sum = 0;
  for (let i = at, end = at + blockSize; i < end; i++) sum += out[i]!;
  writeOctal(out, at + 148, 7, sum);
  out[at + 155] = 0x20;
}

/**
 * A PAX time: "SEC" or "SEC.NNNNNNNNN", the exact instant, so 1.5 s before the epoch
 * (sec -2, nsec 500000000) is "-1.500000000", as Go's archive/tar and GNU tar read it.
 */
function paxTime(sec: bigint, nsec: number): string {
  if (nsec === 0) return String(sec);
  if (sec >= 0n) return `${sec}.${String(nsec).padStart(9, '0')}`;
  return `-${-(sec + 1n)}.${String(1_000_000_000 - nsec).padStart(9, '0')}`;
}

function padding(size: number): number {
  return (blockSize - (size % blockSize)) % blockSize;
}

/** Where `n` bytes may be written: a buffer and an offset in it, the `n` bytes there zero. */
export type Reserve = (n: number) => [out: Buffer, at: number];

/** Bytes of one PAX record "LEN key=value\n", LEN counting the whole record including itself. */
function recordLength(key: string, valueLength: number): number {
  const body = key.length + valueLength + 3;
  let len = body + 1;
  while (String(len).length + body !== len) len = String(len).length + body;
  return len;
}

const noBytes = Buffer.alloc(0);

/**
 * Writes the header block(s) of one entry, an optional PAX header with its data
 * then the ustar block, into the space `reserve` gives: built in place, no Buffer
 * per record or block.
 */
export function writeHeader(h: TarEntryHeader, reserve: Reserve): void {
  const split = isAscii(h.name) ? splitUstarName(h.name) : undefined;
  // Values given as strings are ASCII.
  const records: Array<[string, Buffer | string]> = [];
  if (split === undefined) records.push(['path', h.name]);
  if (h.linkname && (h.linkname.length > 100 || !isAscii(h.linkname))) records.push(['linkpath', h.linkname]);
  if (h.uid > max7) records.push(['uid', String(h.uid)]);
  if (h.gid > max7) records.push(['gid', String(h.gid)]);
  if (h.size > max11) records.push(['size', String(h.size)]);
  if (h.mtimeNsec !== 0 || h.mtimeSec < 0n || h.mtimeSec > maxMtime) records.push(['mtime', paxTime(h.mtimeSec, h.mtimeNsec)]);
  for (const [key, value] of h.xattrs ?? []) records.push([`SCHILY.xattr.${key}`, value]);

  const [prefix, name] = split ?? [noBytes, h.name.subarray(0, 100)];
  if (records.length === 0) {
    const [out, at] = reserve(blockSize);
    ustarInto(out, at, h, h.linkname, name, prefix, typeflags[h.type], h.size);
    return;
  }
  const lengths = records.map(([key, value]) => recordLength(key, value.length));
  const dataLength = lengths.reduce((a, b) => a + b, 0);
  const [out, at] = reserve(blockSize + dataLength + padding(dataLength) + blockSize);
  ustarInto(out, at, h, undefined, paxHeaderName(h.name), noBytes, 0x78 /* 'x' */, dataLength);
  let p = at + blockSize;
  for (let i = 0; i < records.length; i++) {
    const [key, value] = records[i]!;
    p += out.write(`${lengths[i]!} ${key}=`, p, 'latin1');
    if (typeof value === 'string') p += out.write(value, p, 'latin1');
    else p += value.copy(out, p);
    out[p++] = 0x0a;
  }
  p += padding(dataLength);
  ustarInto(out, p, h, h.linkname, name, prefix, typeflags[h.type], h.size);
}

/** The header block(s) of one entry as a Buffer of their own. */
export function encodeHeader(h: TarEntryHeader): Buffer {
  let buf = noBytes;
  writeHeader(h, (n) => {
    buf = Buffer.alloc(n);
    return [buf, 0];
  });
  return buf;
}

const paxDir = Buffer.from('PaxHeaders.0/');

/** The PAX header's own name, as Go's archive/tar makes it: "<dir>/PaxHeaders.0/<base>", cut to 100 bytes. */
function paxHeaderName(name: Buffer): Buffer {
  let end = name.length;
  if (end > 0 && name[end - 1] === 0x2f) end--;
  const slash = name.lastIndexOf(0x2f, end - 1);
  const out = Buffer.allocUnsafe(Math.min(100, slash + 1 + paxDir.length + end - slash - 1));
  let p = name.copy(out, 0, 0, Math.min(slash + 1, out.length));
  p += paxDir.copy(out, p, 0, Math.min(paxDir.length, out.length - p));
  name.copy(out, p, slash + 1, slash + 1 + Math.min(end - slash - 1, out.length - p));
  return out;
}

/** Bytes of zeros that round content of `size` bytes up to a whole block. */
export function paddingOf(size: number): number {
  return padding(size);
}

/** Two zero blocks end an archive. */
export const endOfArchive: Buffer = Buffer.alloc(2 * blockSize);
