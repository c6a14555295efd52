// Packs a change set as a layer tar (containers/storage ExportChanges, with the
// overlay whiteout conventions): A and C entries from the new tree, D as ".wh.NAME",
// a directory that lost every entry of the parent as ".wh..wh..opq" right after the
// directory, hardlinks as tar hardlinks to the first name of the inode in this tar
// (a group with a changed name is exported whole), xattrs as SCHILY.xattr.* PAX
// records (overlay's own dropped), owners mapped back to container ids.
// Deterministic: the change set is sorted and headers hold nothing variable;
// whiteouts are mode 0, root-owned, mtime 0.
// Streaming: a Readable pulled from an async generator, so nothing is read ahead of
// what the consumer takes beyond a small window of prepared entries.
import { Readable } from 'node:stream';
import { close as closeCb, constants as fsConstants, open as openCb, read as readCb } from 'node:fs';
import type { IDMap, LongOperationOptions } from '../types.js';
import { InvalidOptionError } from '../errors.js';
import type { ChangeRecord, ChangeSet } from './change-set.js';
import { contentXattrs, inodeKey, isDir, readXattrs, type EntryStat } from './entry-compare.js';
import { readFiles } from '../native.js';
import { IoGate } from './io-gate.js';
import { baseOf, comparePaths, parentOf, rawBytes, readlinkRaw } from './raw-path.js';
import { endOfArchive, paddingOf, type TarEntryHeader, type TarType } from './tar-header.js';
import { TarBatch } from './tar-batch.js';

export interface ExportOptions extends LongOperationOptions {
  /** Host → container id translation for owners (the driver's maps); identity when empty. */
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
}

const whiteoutPrefix = '.wh.';
const opaqueWhiteout = '.wh..wh..opq';
/** Entries prepared ahead of the one being written (metadata, small contents). */
const lookahead = 32;
/** Files up to this size are read whole while preparing; larger ones stream in chunks. */
const smallFile = 64 * 1024;
const chunkSize = 512 * 1024;
/** Headers and small contents are gathered into chunks of about this size. */
const batchSize = 256 * 1024;
/**
 * Scanned entries (xattrs and link targets already read) are prepared in groups, the
 * small files of a group read in one native call; one group is read ahead while
 * the previous one is encoded, so the pool thread and the JS thread work together.
 */
const groupEntries = 2048;
const groupBytes = 4 * 1024 * 1024;
/** In a group, files up to this size are read whole too (bigger ones stream in chunks). */
const groupFile = 4 * 1024 * 1024;
/** Content at least this big is handed on as it is rather than copied into a batch. */
const ownChunk = 64 * 1024;
const groupsAhead = 2;

/**
 * A plain fd with the few FileHandle methods used here: fs.promises' FileHandle
 * costs a tracked object per file, which shows on layers of many small files.
 */
class FileHandle {
  constructor(private readonly fd: number) {}

  static open(path: Buffer): Promise<FileHandle> {
    return new Promise((resolve, reject) =>
      openCb(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW, (err, fd) => (err ? reject(err) : resolve(new FileHandle(fd)))),
    );
  }

  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return new Promise((resolve, reject) => readCb(this.fd, buf, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead }))));
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => closeCb(this.fd, (err) => (err ? reject(err) : resolve())));
  }
}

const S_IFMT = 0o170000n;
const typeOfMode: Record<string, TarType | undefined> = {
  [String(0o100000n)]: 'file',
  [String(0o040000n)]: 'directory',
  [String(0o120000n)]: 'symlink',
  [String(0o020000n)]: 'char',
  [String(0o060000n)]: 'block',
  [String(0o010000n)]: 'fifo',
};

/** Maps a host id to the container id the tar records. */
export function toContainerId(hostId: number, maps: readonly IDMap[] | undefined, what: string, path: string): number {
  if (!maps || maps.length === 0) return hostId;
  for (const m of maps) {
    if (hostId >= m.hostId && hostId < m.hostId + m.size) return m.containerId + (hostId - m.hostId);
  }
  throw new InvalidOptionError(`${what} ${hostId} of ${JSON.stringify(rawBytes(path).toString())} has no container id in the driver's ${what} maps`);
}

interface Prepared {
  header: TarEntryHeader;
  /** Whole content of a small file. */
  content?: Buffer;
  /** Open handle of a large file, read while writing. */
  handle?: FileHandle;
}

/** The tar of a change set as a byte stream. */
export function exportChanges(set: ChangeSet, opts: ExportOptions = {}): Readable {
  return Readable.from(packChanges(set, opts), { objectMode: false, highWaterMark: 256 * 1024 });
}

async function* packChanges(set: ChangeSet, opts: ExportOptions): AsyncGenerator<Buffer> {
  const gate = new IoGate(lookahead, opts.signal);
  const records = withWholeLinkGroups(set).filter((c) => !(c.kind === 'D' && set.opaqueDirs.has(parentOf(c.path))));
  // Each slot is one entry (prepared on its own) or a group of scanned ones.
  const pending: Array<Promise<Array<PreparedEntry | undefined>>> = [];
  const claimed = new Set<string>();
  let next = 0;
  const fill = () => {
    while (next < records.length && pending.length < (records[next]!.scanned ? groupsAhead : lookahead)) {
      let p: Promise<Array<PreparedEntry | undefined>>;
      if (records[next]!.scanned) {
        const start = next;
        next = groupEnd(records, start);
        p = prepareGroup(records.slice(start, next), set, claimed, gate, opts);
      } else {
        p = prepare(records[next++]!, set, gate, opts).then((e) => [e]);
      }
      p.catch(() => undefined); // awaited in order below; avoid unhandled rejections meanwhile
      pending.push(p);
    }
  };
  const seen = new Map<string, Buffer>();
  const batch = new TarBatch();
  let entries = 0;
  let bytes = 0;
  let lastReport = 0;

  let current: Array<PreparedEntry | undefined> = [];
  try {
    fill();
    while (pending.length > 0) {
      const group = await pending.shift()!;
      current = group;
      fill();
      for (let g = 0; g < group.length; g++) {
        const prepared = group[g];
        group[g] = undefined; // the rest of the group is closed by `finally` if this one fails
        gate.checkAborted();
        if (prepared === undefined) continue;
        const { header } = prepared;
        // Hardlinks: the first name of an inode in this tar carries the data, later ones link to it.
        if (header.type !== 'directory' && prepared.linkKey !== undefined) {
          const first = seen.get(prepared.linkKey);
          if (first !== undefined) {
            await prepared.handle?.close();
            batch.header({ ...header, type: 'link', size: 0, linkname: first, xattrs: header.xattrs });
            entries++;
            continue;
          }
          seen.set(prepared.linkKey, header.name);
        }
        batch.header(header);
        if (prepared.content && prepared.content.length >= ownChunk) {
          if (batch.length > 0) yield batch.take();
          yield prepared.content;
          batch.zeros(paddingOf(header.size));
        } else if (prepared.content) {
          batch.bytes(prepared.content);
          batch.zeros(paddingOf(prepared.content.length));
        } else if (prepared.handle) {
          if (batch.length > 0) yield batch.take();
          yield* streamContent(prepared.handle, header, gate);
          batch.zeros(paddingOf(header.size));
        }
        if (header.type === 'directory' && set.opaqueDirs.has(prepared.path)) batch.header(whiteoutHeader(prepared.path + '/' + opaqueWhiteout));
        entries++;
        bytes += header.size;
        if (batch.length >= batchSize) yield batch.take();
        if (opts.onProgress && Date.now() - lastReport >= 100) {
          lastReport = Date.now();
          opts.onProgress({ entries, bytes });
        }
      }
    }
    batch.bytes(endOfArchive);
    yield batch.take();
    opts.onProgress?.({ entries, bytes });
  } finally {
    // Stopped early (error, abort or destroy): close what the lookahead opened.
    for (const prepared of current) await prepared?.handle?.close().catch(() => undefined);
    for (const p of pending) {
      for (const prepared of (await p.catch(() => undefined)) ?? []) await prepared?.handle?.close().catch(() => undefined);
    }
  }
}

/**
 * The changes plus the unchanged names of every inode that also has a changed name:
 * a hardlink group that gained or kept a name in this layer travels whole, its first
 * name carrying the data, so the tar never links to a file of the parent (which an
 * applier would have to copy first, splitting the group).
 */
function withWholeLinkGroups(set: ChangeSet): ChangeRecord[] {
  if (set.unchangedNames.size === 0) return [...set.changes];
  const extra: ChangeRecord[] = [];
  const pulled = new Set<string>();
  for (const c of set.changes) {
    if (c.stat === undefined || isDir(c.stat) || c.stat.nlink < 2n) continue;
    const key = inodeKey(c.stat);
    const names = set.unchangedNames.get(key);
    if (names === undefined || pulled.has(key)) continue;
    pulled.add(key);
    for (const path of names) extra.push({ path, kind: 'C', stat: c.stat });
  }
  if (extra.length === 0) return [...set.changes];
  return [...set.changes, ...extra].sort((a, b) => comparePaths(a.path, b.path));
}

async function* streamContent(handle: FileHandle, header: TarEntryHeader, gate: IoGate): AsyncGenerator<Buffer> {
  const size = header.size;
  const readAt = async (pos: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(Math.min(chunkSize, size - pos));
    const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  };
  // One read ahead of the chunk being yielded: the pool reads while the consumer writes.
  let ahead: Promise<Buffer> | undefined = size > 0 ? readAt(0) : undefined;
  try {
    let pos = 0;
    while (ahead !== undefined) {
      const chunk = await ahead;
      ahead = undefined;
      if (chunk.length === 0) throw new Error(`${rawBytes('/' + header.name.toString('latin1')).toString()} shrank while being exported`);
      pos += chunk.length;
      if (pos < size) {
        ahead = readAt(pos);
        ahead.catch(() => undefined); // awaited next turn or in finally
      }
      gate.checkAborted();
      yield chunk;
    }
  } finally {
    if (ahead !== undefined) await ahead.catch(() => undefined);
    await handle.close();
  }
}

function whiteoutHeader(rawPath: string): TarEntryHeader {
  return { name: rawBytes(rawPath.slice(1)), type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtimeSec: 0n, mtimeNsec: 0 };
}

interface PreparedEntry extends Prepared {
  path: string;
  /** Inode key of a non-directory with more than one name. */
  linkKey?: string;
}

async function prepare(change: ChangeRecord, set: ChangeSet, gate: IoGate, opts: ExportOptions): Promise<PreparedEntry | undefined> {
  if (change.kind === 'D') {
    return { path: change.path, header: whiteoutHeader(parentOf(change.path) + '/' + whiteoutPrefix + baseOf(change.path)) };
  }
  const full = set.newRoot + change.path;
  const st = change.stat!;
  const type = typeOfMode[String(st.mode & S_IFMT)];
  // Sockets are not layer content (containers/storage skips them too).
  if (type === undefined) return undefined;
  let handle: FileHandle | undefined;
  let content: Buffer | undefined;
  if (type === 'file') {
    // The size is the walk's: a file that grows meanwhile is cut there, one that shrinks fails the export.
    handle = await gate.run(() => FileHandle.open(rawBytes(full)));
    try {
      if (st.size <= BigInt(smallFile)) {
        content = await gate.run(() => readWhole(handle!, Number(st.size), full));
        await handle.close();
        handle = undefined;
      }
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw err;
    }
  }
  try {
    const [xattrs, linkname] = await Promise.all([
      gate.run(() => readXattrs(full)),
      type === 'symlink' ? gate.run(() => readlinkRaw(full)) : undefined,
    ]);
    const name = rawBytes(change.path.slice(1) + (type === 'directory' ? '/' : ''));
    const header = headerOf(name, type, st, change.path, opts);
    const kept = contentXattrs(xattrs);
    if (kept.length > 0) header.xattrs = kept;
    if (linkname) header.linkname = linkname;
    const entry: PreparedEntry = { path: change.path, header };
    if (content) entry.content = content;
    if (handle) entry.handle = handle;
    if (!isDir(st) && st.nlink > 1n) entry.linkKey = inodeKey(st);
    return entry;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    throw err;
  }
}

/** Where the group of scanned records starting at `start` ends (exclusive). */
function groupEnd(records: readonly ChangeRecord[], start: number): number {
  let end = start;
  let bytes = 0;
  while (end < records.length && end - start < groupEntries && bytes < groupBytes) {
    const r = records[end]!;
    if (!r.scanned) break;
    if (r.stat !== undefined && r.stat.size <= BigInt(groupFile) && (r.stat.mode & S_IFMT) === 0o100000n) bytes += Number(r.stat.size);
    end++;
  }
  return end;
}

/**
 * Prepares scanned records (their xattrs and link targets already read) together:
 * the contents of the group's small files come from one native readFiles call. A
 * file whose inode an earlier entry of this tar already carries (`claimed`) becomes
 * a tar hardlink, so its content is not read again.
 */
async function prepareGroup(
  group: readonly ChangeRecord[],
  set: ChangeSet,
  claimed: Set<string>,
  gate: IoGate,
  opts: ExportOptions,
): Promise<Array<PreparedEntry | undefined>> {
  const out: Array<PreparedEntry | undefined> = [];
  const toRead: Array<{ entry: PreparedEntry; index: number }> = [];
  const paths: string[] = [];
  const sizes: number[] = [];
  try {
    for (const change of group) {
      if (change.kind === 'D') {
        out.push({ path: change.path, header: whiteoutHeader(parentOf(change.path) + '/' + whiteoutPrefix + baseOf(change.path)) });
        continue;
      }
      const st = change.stat!;
      const type = typeOfMode[String(st.mode & S_IFMT)];
      if (type === undefined) {
        out.push(undefined);
        continue;
      }
      const name = rawBytes(change.path.slice(1) + (type === 'directory' ? '/' : ''));
      const header = headerOf(name, type, st, change.path, opts);
      const kept = contentXattrs(change.scanned!.xattrs);
      if (kept.length > 0) header.xattrs = kept;
      const linkname = change.scanned!.linkTarget;
      if (linkname && linkname.length > 0) header.linkname = linkname;
      const entry: PreparedEntry = { path: change.path, header };
      let linked = false;
      if (!isDir(st) && st.nlink > 1n) {
        entry.linkKey = inodeKey(st);
        linked = claimed.has(entry.linkKey);
        claimed.add(entry.linkKey);
      }
      if (type === 'file' && !linked) {
        if (st.size > BigInt(groupFile)) {
          entry.handle = await gate.run(() => FileHandle.open(rawBytes(set.newRoot + change.path)));
        } else if (st.size === 0n) {
          entry.content = Buffer.alloc(0);
        } else {
          toRead.push({ entry, index: paths.length });
          paths.push(change.path.slice(1));
          sizes.push(Number(st.size));
        }
      }
      out.push(entry);
    }
    if (paths.length > 0) {
      const { data, shrunk } = await gate.run(() => readFiles(rawBytes(set.newRoot), paths, sizes));
      if (shrunk >= 0) throw new Error(`${rawBytes(set.newRoot + '/' + paths[shrunk]!).toString()} shrank while being exported`);
      let at = 0;
      for (const { entry, index } of toRead) {
        entry.content = data.subarray(at, at + sizes[index]!);
        at += sizes[index]!;
      }
    }
    return out;
  } catch (err) {
    for (const entry of out) await entry?.handle?.close().catch(() => undefined);
    throw err;
  }
}

async function readWhole(handle: FileHandle, size: number, path: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  while (pos < size) {
    const { bytesRead } = await handle.read(buf, pos, size - pos, pos);
    if (bytesRead === 0) throw new Error(`${rawBytes(path).toString()} shrank while being exported`);
    pos += bytesRead;
  }
  return buf;
}

function headerOf(name: Buffer, type: TarType, st: EntryStat, path: string, opts: ExportOptions): TarEntryHeader {
  const header: TarEntryHeader = {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: toContainerId(Number(st.uid), opts.uidMaps, 'uid', path),
    gid: toContainerId(Number(st.gid), opts.gidMaps, 'gid', path),
    size: type === 'file' ? Number(st.size) : 0,
    mtimeSec: st.mtimeNs / 1_000_000_000n,
    mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
  };
  if (type === 'char' || type === 'block') {
    const rdev = st.rdev;
    header.devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    header.devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  }
  return header;
}
