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
// Speed: the tar of many small files is built by the addon's readFiles, which reads
// each file right behind its header (encoded here) and pads it, in one buffer per
// group of entries: one pool trip per group and no copy of content in JS. Written
// to a file descriptor (writeChanges), content goes there natively and never enters
// JS; a whole tree (writeTree) is walked and packed by the addon alone.
import { Readable } from 'node:stream';
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { IDMap, LongOperationOptions } from '../types.js';
import { toContainer } from '../idmap.js';
import { InvalidOptionError } from '../errors.js';
import type { ChangeRecord, ChangeSet } from './change-set.js';
import { contentXattrs, inodeKey, isDir, readXattrs, splitNs, type EntryStat } from './entry-compare.js';
import { packTree, readFiles, sendFiles, type PackTreeError, type TarFrames } from '../native.js';
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
/** Entries (walked, not scanned) prepared ahead of the one being written. */
const lookahead = 32;
/** Files up to this size are read whole, behind their header; bigger ones stream in chunks when their turn comes. */
const wholeFile = 4 * 1024 * 1024;
const chunkSize = 512 * 1024;
/** Small pieces are gathered into chunks of about this size. */
const batchSize = 256 * 1024;
/**
 * Scanned entries (xattrs and link targets already read) are packed in groups, each
 * one readFiles call; groups are read ahead while the previous one is written, so
 * the pool thread and the JS thread work together.
 */
const groupEntries = 2048;
const groupBytes = 4 * 1024 * 1024;
/** Bytes at least this big are handed on as they are rather than copied into a batch. */
const ownChunk = 64 * 1024;
const groupsAhead = 2;

const S_IFMT = 0o170000n;
const typeOfMode: Record<string, TarType | undefined> = {
  [String(0o100000n)]: 'file',
  [String(0o040000n)]: 'directory',
  [String(0o120000n)]: 'symlink',
  [String(0o020000n)]: 'char',
  [String(0o060000n)]: 'block',
  [String(0o010000n)]: 'fifo',
};

/** The container id the tar records for host id `hostId` (lib/idmap.ts toContainer); an unmapped id is refused. */
function containerIdOf(hostId: number, maps: readonly IDMap[] | undefined, what: string, path: string): number {
  const id = toContainer(maps ?? [], hostId);
  if (id === undefined) throw unmappedId(what, hostId, path);
  return id;
}

/** An owner of the raw layer path `path` that the maps do not hold. */
function unmappedId(what: string, hostId: number, path: string): InvalidOptionError {
  return new InvalidOptionError(`${what} ${hostId} of ${JSON.stringify(rawBytes(path).toString())} has no container id in the driver's ${what} maps`);
}

/** Files read right behind their headers (readFiles' arguments): one piece of tar. */
interface Run {
  paths: string[];
  sizes: number[];
  frames: TarFrames;
  /** The run's bytes, when read ahead (stream output). */
  read?: Promise<Buffer>;
}

/** A file too big to hold whole, after its header: its content and padding, streamed when its turn comes. */
interface BigFile {
  /** Raw path relative to the new tree. */
  path: string;
  size: number;
}

/** A part of the tar: bytes ready to go, files read behind their headers, or a big file. */
type Piece = Buffer | Run | BigFile;

/** The tar of one entry or one group of entries. */
interface Slot {
  pieces: Piece[];
  entries: number;
  bytes: number;
}

/** What packing an entry needs besides the entry. */
interface Packer {
  set: ChangeSet;
  /** Inode key → the path whose entry carries the content; the inode's other names link to it. */
  carriers: ReadonlyMap<string, string>;
  opts: ExportOptions;
  gate: IoGate;
  /** Where headers are encoded; each packing takes what it wrote before it awaits anything. */
  frames: TarBatch;
  /** Read runs ahead, as they are packed (stream output); else the writer runs them in turn. */
  readAhead: boolean;
}

/** The tar of a change set as a byte stream. */
export function exportChanges(set: ChangeSet, opts: ExportOptions = {}): Readable {
  return Readable.from(packChanges(set, opts), { objectMode: false, highWaterMark: 256 * 1024 });
}

/**
 * The tar of a change set written to the file descriptor `fd` (a file, pipe, socket
 * or character device; the caller keeps it open): the same bytes as exportChanges,
 * but file content goes from the tree to `fd` natively (sendfile) without passing
 * through JS. Resolves to the bytes written; on failure what was written stays.
 */
export async function writeChanges(set: ChangeSet, fd: number, opts: ExportOptions = {}): Promise<number> {
  const gate = new IoGate(lookahead, opts.signal);
  const root = rawBytes(set.newRoot);
  const pending = new TarBatch();
  let written = 0;
  // What was gathered in `pending` goes out in front of the run's first frame: one write.
  const send = async (run: Run) => {
    const head = pending.take();
    const frames = head.length === 0 ? run.frames : { bytes: Buffer.concat([head, run.frames.bytes]), lengths: [head.length + run.frames.lengths[0]!, ...run.frames.lengths.slice(1)] };
    const { written: n, shrunk } = await gate.run(() => sendFiles(root, run.paths, run.sizes, frames, fd));
    written += n;
    if (shrunk >= 0) throw shrankError(set.newRoot + '/' + run.paths[shrunk]!);
  };
  const noFiles = (): Run => ({ paths: [], sizes: [], frames: { bytes: Buffer.alloc(0), lengths: [0] } });
  const sendSlot = async (slot: Slot) => {
    for (const piece of slot.pieces) {
      if (Buffer.isBuffer(piece)) {
        pending.bytes(piece);
        if (pending.length >= batchSize) await send(noFiles());
      } else if ('paths' in piece) {
        await send(piece);
      } else {
        await send({ paths: [piece.path], sizes: [piece.size], frames: { bytes: Buffer.alloc(0), lengths: [0, 0] } });
      }
    }
  };
  // A slot is written while the next ones are packed: taking the next slot from
  // packSlots encodes headers ahead, so JS and the pool thread work at once.
  let sending: Promise<void> = Promise.resolve();
  try {
    for await (const slot of packSlots(set, opts, gate, false)) {
      await sending;
      sending = sendSlot(slot);
      sending.catch(() => undefined); // awaited next turn or below
    }
  } finally {
    await sending.catch(() => undefined);
  }
  await sending;
  pending.bytes(endOfArchive);
  await send(noFiles());
  return written;
}

/**
 * The tar of the whole tree at `root` (a raw path, as ChangeSet.newRoot) written to
 * `fd`: the bytes writeChanges writes for changesDirs(root, undefined), but walked,
 * encoded and written in one native job (packTree) with no change set built in JS.
 * Resolves to the bytes written; on failure what was written stays.
 */
export async function writeTree(root: string, fd: number, opts: ExportOptions = {}): Promise<number> {
  try {
    const { written } = await packTree(rawBytes(root), fd, { uidMaps: opts.uidMaps, gidMaps: opts.gidMaps, signal: opts.signal, onProgress: opts.onProgress });
    return written;
  } catch (err) {
    // Said as the JS packer says them (containerIdOf, shrankError).
    const { unmappedId: unmapped, shrunk } = err as PackTreeError;
    if (unmapped !== undefined) throw unmappedId(unmapped.what, unmapped.hostId, '/' + unmapped.path.toString('latin1'));
    if (shrunk !== undefined) throw shrankError(root + '/' + shrunk.toString('latin1'));
    throw err;
  }
}

async function* packChanges(set: ChangeSet, opts: ExportOptions): AsyncGenerator<Buffer> {
  const gate = new IoGate(lookahead, opts.signal);
  const batch = new TarBatch();
  // Small bytes are gathered into chunks of about batchSize, big ones go on as they are.
  function* out(bytes: Buffer): Generator<Buffer> {
    if (bytes.length < ownChunk) {
      batch.bytes(bytes);
      if (batch.length >= batchSize) yield batch.take();
      return;
    }
    if (batch.length > 0) yield batch.take();
    yield bytes;
  }
  for await (const slot of packSlots(set, opts, gate, true)) {
    for (const piece of slot.pieces) {
      if (Buffer.isBuffer(piece)) yield* out(piece);
      else if ('paths' in piece) yield* out(await (piece.read ?? readRun(set, gate, piece)));
      else for await (const chunk of streamFile(set, piece, gate)) yield* out(chunk);
    }
  }
  batch.bytes(endOfArchive);
  yield batch.take();
}

/**
 * The change set packed as slots, in tar order: one per walked entry or per group of
 * scanned ones, packed a few slots ahead of the one the consumer is writing, so the
 * pool threads and the JS thread work together. Reports progress as slots are taken.
 */
async function* packSlots(set: ChangeSet, opts: ExportOptions, gate: IoGate, readAhead: boolean): AsyncGenerator<Slot> {
  const records = withWholeLinkGroups(set).filter((c) => !(c.kind === 'D' && set.opaqueDirs.has(parentOf(c.path))));
  const packer: Packer = { set, carriers: linkCarriers(records), opts, gate, frames: new TarBatch(), readAhead };
  const pending: Array<Promise<Slot>> = [];
  let next = 0;
  const fill = () => {
    while (next < records.length && pending.length < (records[next]!.scanned ? groupsAhead : lookahead)) {
      let p: Promise<Slot>;
      if (records[next]!.scanned) {
        const start = next;
        next = groupEnd(records, start);
        p = packGroup(records.slice(start, next), packer);
      } else {
        p = packOne(records[next++]!, packer);
      }
      p.catch(() => undefined); // awaited in order below; avoid unhandled rejections meanwhile
      pending.push(p);
    }
  };
  let entries = 0;
  let bytes = 0;
  let lastReport = 0;
  try {
    fill();
    while (pending.length > 0) {
      const slot = await pending.shift()!;
      fill();
      gate.checkAborted();
      yield slot;
      entries += slot.entries;
      bytes += slot.bytes;
      if (opts.onProgress && Date.now() - lastReport >= 100) {
        lastReport = Date.now();
        opts.onProgress({ entries, bytes });
      }
    }
    opts.onProgress?.({ entries, bytes });
  } finally {
    // Stopped early (error, abort or destroy): let the reads in flight end before the caller releases the tree.
    for (const p of pending) {
      for (const piece of (await p.catch(() => undefined))?.pieces ?? []) {
        if (!Buffer.isBuffer(piece) && 'paths' in piece) await piece.read?.catch(() => undefined);
      }
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

/**
 * For each inode with several names in the tar, the first name (in tar order): it
 * carries the content, later names are tar hardlinks to it. Decided up front, so
 * entries can be packed in any order (groups are packed ahead, concurrently).
 */
function linkCarriers(records: readonly ChangeRecord[]): Map<string, string> {
  const carriers = new Map<string, string>();
  for (const c of records) {
    const st = c.stat;
    if (c.kind === 'D' || st === undefined || isDir(st) || st.nlink < 2n || typeOfMode[String(st.mode & S_IFMT)] === undefined) continue;
    const key = inodeKey(st);
    if (!carriers.has(key)) carriers.set(key, c.path);
  }
  return carriers;
}

/**
 * The header of a change (a whiteout for a deletion, a tar hardlink for a later name
 * of an inode), or undefined for what a layer does not hold (sockets, as in
 * containers/storage).
 */
function headerFor(change: ChangeRecord, p: Packer, xattrs: ReadonlyArray<readonly [string, Buffer]>, linkname: Buffer | undefined): TarEntryHeader | undefined {
  if (change.kind === 'D') return whiteoutHeader(parentOf(change.path) + '/' + whiteoutPrefix + baseOf(change.path));
  const st = change.stat!;
  const type = typeOfMode[String(st.mode & S_IFMT)];
  if (type === undefined) return undefined;
  const name = rawBytes(change.path.slice(1) + (type === 'directory' ? '/' : ''));
  const header = headerOf(name, type, st, change.path, p.opts);
  const kept = contentXattrs(xattrs);
  if (kept.length > 0) header.xattrs = kept;
  if (linkname && linkname.length > 0) header.linkname = linkname;
  if (type !== 'directory' && st.nlink > 1n) {
    const carrier = p.carriers.get(inodeKey(st));
    if (carrier !== undefined && carrier !== change.path) {
      header.type = 'link';
      header.size = 0;
      header.linkname = rawBytes(carrier.slice(1));
    }
  }
  return header;
}

/**
 * Encodes the header of `change` and what follows it (the opaque whiteout of a
 * directory) into `frames`; returns the content bytes the entry needs after its
 * header, or -1 when the entry is not exported.
 */
function encodeInto(frames: TarBatch, change: ChangeRecord, p: Packer, xattrs: ReadonlyArray<readonly [string, Buffer]>, linkname: Buffer | undefined): number {
  const header = headerFor(change, p, xattrs, linkname);
  if (header === undefined) return -1;
  frames.header(header);
  if (header.type === 'directory' && p.set.opaqueDirs.has(change.path)) frames.header(whiteoutHeader(change.path + '/' + opaqueWhiteout));
  return header.size;
}

/**
 * Packs a group of scanned records (xattrs and link targets already read): headers
 * are encoded here, the small files' content goes right behind them in a run; a
 * big file ends a run and streams on its own.
 */
async function packGroup(group: readonly ChangeRecord[], p: Packer): Promise<Slot> {
  const pieces: Piece[] = [];
  const frames = p.frames;
  let lengths: number[] = [];
  let paths: string[] = [];
  let sizes: number[] = [];
  let cut = 0;
  const endRun = () => {
    lengths.push(frames.length - cut);
    const bytes = frames.take();
    pieces.push(paths.length === 0 ? bytes : startRun(p, { paths, sizes, frames: { bytes, lengths } }));
    lengths = [];
    paths = [];
    sizes = [];
    cut = 0;
  };
  let entries = 0;
  let bytes = 0;
  for (const change of group) {
    const size = encodeInto(frames, change, p, change.scanned?.xattrs ?? [], change.scanned?.linkTarget);
    if (size < 0) continue;
    entries++;
    bytes += size;
    if (size === 0) continue;
    if (size > wholeFile) {
      endRun();
      pieces.push({ path: change.path.slice(1), size });
    } else {
      lengths.push(frames.length - cut);
      cut = frames.length;
      paths.push(change.path.slice(1));
      sizes.push(size);
    }
  }
  endRun();
  await Promise.all(pieces.map((piece) => (Buffer.isBuffer(piece) || !('paths' in piece) ? undefined : piece.read)));
  return { pieces, entries, bytes };
}

/** A run, its reading started when the packer reads ahead. */
function startRun(p: Packer, run: Run): Run {
  if (p.readAhead) {
    run.read = readRun(p.set, p.gate, run);
    run.read.catch(() => undefined); // awaited by the consumer, or in packSlots' finally
  }
  return run;
}

/** A run's bytes: its files' content behind their headers, as one piece of tar. */
async function readRun(set: ChangeSet, gate: IoGate, run: Run): Promise<Buffer> {
  const { data, shrunk } = await gate.run(() => readFiles(rawBytes(set.newRoot), run.paths, run.sizes, run.frames));
  if (shrunk >= 0) throw shrankError(set.newRoot + '/' + run.paths[shrunk]!);
  return data;
}

/** Packs one walked record: its xattrs and link target are read here. */
async function packOne(change: ChangeRecord, p: Packer): Promise<Slot> {
  let xattrs: ReadonlyArray<readonly [string, Buffer]> = [];
  let linkname: Buffer | undefined;
  if (change.kind !== 'D') {
    const full = p.set.newRoot + change.path;
    const symlink = (change.stat!.mode & S_IFMT) === 0o120000n;
    [xattrs, linkname] = await Promise.all([p.gate.run(() => readXattrs(full)), symlink ? p.gate.run(() => readlinkRaw(full)) : undefined]);
  }
  const size = encodeInto(p.frames, change, p, xattrs, linkname);
  if (size < 0) return { pieces: [], entries: 0, bytes: 0 };
  const header = p.frames.take();
  const slot: Slot = { pieces: [], entries: 1, bytes: size };
  if (size === 0) slot.pieces.push(header);
  else if (size > wholeFile) slot.pieces.push(header, { path: change.path.slice(1), size });
  else {
    const run = startRun(p, { paths: [change.path.slice(1)], sizes: [size], frames: { bytes: header, lengths: [header.length, 0] } });
    await run.read;
    slot.pieces.push(run);
  }
  return slot;
}

/** A big file's content and padding in chunks, one read ahead of the chunk being yielded. */
async function* streamFile(set: ChangeSet, file: BigFile, gate: IoGate): AsyncGenerator<Buffer> {
  const path = set.newRoot + '/' + file.path;
  // The size is the walk's: a file that grows meanwhile is cut there, one that shrinks fails the export.
  const handle = await gate.run(() => open(rawBytes(path), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW));
  const readAt = async (pos: number): Promise<Buffer> => {
    const buf = Buffer.allocUnsafe(Math.min(chunkSize, file.size - pos));
    const { bytesRead } = await handle.read(buf, 0, buf.length, pos);
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  };
  let ahead: Promise<Buffer> | undefined = readAt(0);
  try {
    let pos = 0;
    while (ahead !== undefined) {
      const chunk = await ahead;
      ahead = undefined;
      if (chunk.length === 0) throw shrankError(path);
      pos += chunk.length;
      if (pos < file.size) {
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
  if (paddingOf(file.size) > 0) yield Buffer.alloc(paddingOf(file.size));
}

function shrankError(rawPath: string): Error {
  return new Error(`${rawBytes(rawPath).toString()} shrank while being exported`);
}

function whiteoutHeader(rawPath: string): TarEntryHeader {
  return { name: rawBytes(rawPath.slice(1)), type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtimeSec: 0n, mtimeNsec: 0 };
}

/** Where the group of scanned records starting at `start` ends (exclusive). */
function groupEnd(records: readonly ChangeRecord[], start: number): number {
  let end = start;
  let bytes = 0;
  while (end < records.length && end - start < groupEntries && bytes < groupBytes) {
    const r = records[end]!;
    if (!r.scanned) break;
    if (r.stat !== undefined && r.stat.size <= BigInt(wholeFile) && (r.stat.mode & S_IFMT) === 0o100000n) bytes += Number(r.stat.size);
    end++;
  }
  return end;
}

function headerOf(name: Buffer, type: TarType, st: EntryStat, path: string, opts: ExportOptions): TarEntryHeader {
  const mtime = splitNs(st.mtimeNs);
  const header: TarEntryHeader = {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: containerIdOf(Number(st.uid), opts.uidMaps, 'uid', path),
    gid: containerIdOf(Number(st.gid), opts.gidMaps, 'gid', path),
    size: type === 'file' ? Number(st.size) : 0,
    mtimeSec: mtime.sec,
    mtimeNsec: mtime.nsec,
  };
  if (type === 'char' || type === 'block') {
    const rdev = st.rdev;
    header.devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    header.devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  }
  return header;
}
