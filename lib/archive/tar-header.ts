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
  mtimeSec: bigint;
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

function writeOctal(buf: Buffer, offset: number, width: number, value: number | bigint): void {
  const s = value.toString(8).padStart(width - 1, '0');
  buf.write(s, offset, width - 1, 'latin1');
  buf[offset + width - 1] = 0;
}

/** One PAX record: "LEN key=value\n", where LEN counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

function ustarBlock(h: TarEntryHeader, name: Buffer, prefix: Buffer, typeflag: number, size: number): Buffer {
  const b = Buffer.alloc(blockSize);
  name.copy(b, 0, 0, Math.min(name.length, 100));
  writeOctal(b, 100, 8, h.mode & 0o7777);
  writeOctal(b, 108, 8, h.uid > max7 ? 0 : h.uid);
  writeOctal(b, 116, 8, h.gid > max7 ? 0 : h.gid);
  writeOctal(b, 124, 12, size > max11 ? 0 : size);
  const sec = h.mtimeSec < 0n || h.mtimeSec > BigInt(max11) ? 0n : h.mtimeSec;
  writeOctal(b, 136, 12, sec);
  b.fill(0x20, 148, 156);
  b[156] = typeflag;
  if (h.linkname && h.linkname.length <= 100) h.linkname.copy(b, 157);
  b.write('ustar\u000000', 257, 8, 'latin1');
  writeOctal(b, 329, 8, h.devmajor ?? 0);
  writeOctal(b, 337, 8, h.devminor ?? 0);
  prefix.copy(b, 345, 0, Math.min(prefix.length, 155));
  let sum = 0;
  for (const c of b) sum += c;
  writeOctal(b, 148, 7, sum);
  b[155] = 0x20;
  return b;
}

function padding(size: number): number {
  return (blockSize - (size % blockSize)) % blockSize;
}

/** The header block(s) of one entry: an optional PAX header with its data, then the ustar block. */
export function encodeHeader(h: TarEntryHeader): Buffer {
  const records: Buffer[] = [];
  const split = isAscii(h.name) ? splitUstarName(h.name) : undefined;
  if (split === undefined) records.push(paxRecord('path', h.name));
  if (h.linkname && (h.linkname.length > 100 || !isAscii(h.linkname))) records.push(paxRecord('linkpath', h.linkname));
  if (h.uid > max7) records.push(paxRecord('uid', Buffer.from(String(h.uid))));
  if (h.gid > max7) records.push(paxRecord('gid', Buffer.from(String(h.gid))));
  if (h.size > max11) records.push(paxRecord('size', Buffer.from(String(h.size))));
  if (h.mtimeNsec !== 0 || h.mtimeSec < 0n || h.mtimeSec > BigInt(max11)) {
    const frac = h.mtimeNsec === 0 ? '' : '.' + String(h.mtimeNsec).padStart(9, '0');
    records.push(paxRecord('mtime', Buffer.from(`${h.mtimeSec}${frac}`)));
  }
  for (const [key, value] of h.xattrs ?? []) records.push(paxRecord(`SCHILY.xattr.${key}`, value));

  const [prefix, name] = split ?? [Buffer.alloc(0), h.name.subarray(0, 100)];
  const main = ustarBlock(h, name, prefix, typeflags[h.type], h.size);
  if (records.length === 0) return main;

  const data = Buffer.concat(records);
  // The PAX header's own name, as Go's archive/tar makes it: "<dir>/PaxHeaders.0/<base>", cut to 100 bytes.
  const paxName = paxHeaderName(h.name);
  const paxHeader = ustarBlock({ ...h, linkname: undefined, xattrs: undefined }, paxName, Buffer.alloc(0), 0x78 /* 'x' */, data.length);
  return Buffer.concat([paxHeader, data, Buffer.alloc(padding(data.length)), main]);
}

function paxHeaderName(name: Buffer): Buffer {
  let end = name.length;
  if (end > 0 && name[end - 1] === 0x2f) end--;
  const slash = name.lastIndexOf(0x2f, end - 1);
  const dir = slash >= 0 ? name.subarray(0, slash + 1) : Buffer.alloc(0);
  const base = name.subarray(slash + 1, end);
  return Buffer.concat([dir, Buffer.from('PaxHeaders.0/'), base]).subarray(0, 100);
}

/** Zero bytes that round content of `size` bytes up to a whole block. */
export function contentPadding(size: number): Buffer {
  return Buffer.alloc(padding(size));
}

/** Two zero blocks end an archive. */
export const endOfArchive: Buffer = Buffer.alloc(2 * blockSize);
