// The addon's long jobs: tree copy, scan, compare, removal, file reads for export,
// tar pack and tar apply. Each runs off the JS thread (on the pool or threads of its
// own), reports progress and stops on abort.
import { availableParallelism } from 'node:os';
import { AbortError } from '../errors.js';
import type { IDMap } from '../types.js';
import { addon, checkInt, checkPath, invalidArg, withStack } from './addon.js';
import type { Addon, CopyProgress, CopyStats, CopyTreeOptions, DiskUsage, PathLike } from './addon.js';

/** How a copyTree that was aborted (or failed) says what it left behind. */
export interface CopyTreeError extends Error {
  code: string;
  /** `dst` when the copy created it or anything inside it: a partial tree the caller may remove. */
  leftBehind?: PathLike;
  /** What had been made when it stopped. */
  copied?: CopyStats;
}

/**
 * Copies the tree at `src` to `dst` off the JS thread (see README "copyTree" for what
 * is preserved). `dst` must not exist (its parent must), or be an empty directory.
 *
 * Rejects with a Node-style system error, or:
 * - ENOENT (syscall 'open') when `src` is missing, ENOTDIR when it is not a directory;
 * - ENOTEMPTY (syscall 'copyTree') when `dst` is a directory that is not empty;
 * - EEXIST (syscall 'copyTree') when `dst` exists and is not a directory (a symlink is not followed);
 * - EINVAL (syscall 'copyTree') when `dst` is `src` or lies inside it;
 * - AbortError (code 'ABORT_ERR') when `signal` aborts; nothing is removed: `.leftBehind`
 *   names the partial copy, if any, and `.copied` counts it.
 */
export function copyTree(src: PathLike, dst: PathLike, options: CopyTreeOptions = {}): Promise<CopyStats> {
  checkPath(src, 'src');
  checkPath(dst, 'dst');
  const mode = options.mode ?? 'content';
  if (mode !== 'hardlink' && mode !== 'content') throw invalidArg('options.mode', "must be 'hardlink' or 'content'");
  const threads = options.threads ?? 0;
  checkInt(threads, 'options.threads');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidArg('options.onProgress', 'must be a function');
  return runCopy(src, dst, mode === 'hardlink', threads, options);
}

async function runCopy(src: PathLike, dst: PathLike, hardlink: boolean, threads: number, options: CopyTreeOptions): Promise<CopyStats> {
  if (options.signal?.aborted) throw copyAborted(undefined, options.signal.reason);
  const job = new NativeJob(options.signal, options.onProgress);
  try {
    return await withStack(addon.copyTree(src, dst, { hardlink, threads, abortFlag: job.abortFlag, ...job.progressOption() }));
  } catch (err) {
    const e = err as CopyTreeError & { aborted?: boolean };
    if (e.aborted !== true) throw err;
    job.throwProgressError();
    throw copyAborted(e, options.signal?.reason);
  } finally {
    job.settle();
  }
}

/**
 * What a long native job (copyTree, packTree) shares with JS: an abort flag it polls
 * between entries (setting byte 0 is how JS stops C++ threads), set when the signal
 * fires; and the progress callback, guarded: a throwing callback stops the job, and
 * its error is what the caller sees.
 */
class NativeJob {
  readonly abortFlag = Buffer.alloc(1);
  #progressError: { error: unknown } | undefined;
  #settled = false;
  readonly #onAbort = (): void => void (this.abortFlag[0] = 1);

  constructor(
    private readonly signal: AbortSignal | undefined,
    private readonly onProgress: ((progress: CopyProgress) => void) | undefined,
  ) {
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** The addon's `onProgress` option, when the caller gave a callback. */
  progressOption(): { onProgress?: (entries: number, bytes: number) => void } {
    if (this.onProgress === undefined) return {};
    const onProgress = this.onProgress;
    return {
      onProgress: (entries, bytes) => {
        if (this.#settled || this.#progressError) return;
        try {
          onProgress({ entries, bytes });
        } catch (error) {
          this.#progressError = { error };
          this.abortFlag[0] = 1;
        }
      },
    };
  }

  /** Throws what the progress callback threw, if it did. */
  throwProgressError(): void {
    if (this.#progressError) throw this.#progressError.error;
  }

  settle(): void {
    this.#settled = true;
    this.signal?.removeEventListener('abort', this.#onAbort);
  }
}

function copyAborted(native: CopyTreeError | undefined, reason: unknown): AbortError & CopyTreeError {
  const left = native?.leftBehind;
  const where = left === undefined ? 'nothing was created' : `a partial copy was left at '${left.toString()}' (${native?.copied?.entries ?? 0} entries)`;
  const err = new AbortError(`copyTree was aborted: ${where}`, reason === undefined ? undefined : { cause: reason }) as AbortError & CopyTreeError;
  if (left !== undefined) err.leftBehind = left;
  if (native?.copied) err.copied = native.copied;
  if (native?.stack) err.stack = `${err.name}: ${err.message}\n${native.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

/**
 * One entry found by scanTree: its lstat fields under the names (and bigint types)
 * of fs.BigIntStats, its extended attributes and a symlink's target.
 */
export interface ScannedEntry {
  /** Path relative to the root ("usr/bin/sh"), one latin1 char per byte of the name. */
  path: string;
  mode: bigint;
  nlink: bigint;
  uid: bigint;
  gid: bigint;
  size: bigint;
  ino: bigint;
  dev: bigint;
  rdev: bigint;
  mtimeNs: bigint;
  /** Every extended attribute (none followed through a symlink), sorted by name. */
  xattrs: ReadonlyArray<readonly [string, Buffer]>;
  /** A symlink's target, raw bytes. */
  linkTarget?: Buffer;
}

const noXattrs: ReadonlyArray<readonly [string, Buffer]> = Object.freeze([]);

/**
 * lstat, xattrs and readlink of everything under `root` (not `root` itself) in one
 * thread-pool job, walked fd-relative (paths deeper than PATH_MAX included). Each
 * directory's children come sorted bytewise, right after the directory: a component-
 * wise sorted list where "/" sorts first. Fails on the first error (an entry removed
 * while being walked, EACCES, ...) with a Node-style error.
 */
export async function scanTree(root: PathLike): Promise<ScannedEntry[]> {
  checkPath(root, 'root');
  return decodeScanInSlices(await withStack(addon.scanTree(root)));
}

/**
 * scanTree reading xattrs through /proc/self/fd/N/NAME, as it does where the kernel
 * lacks getxattrat/listxattrat (before Linux 6.13). Exposed so tests can hold the
 * two ways to the same results on a kernel that has both.
 */
export async function scanTreeByProc(root: PathLike): Promise<ScannedEntry[]> {
  checkPath(root, 'root');
  return decodeScanInSlices(await withStack(addon.scanTree(root, true)));
}

/** Entries decoded between two turns of the event loop (decodeScanInSlices). */
const decodeSlice = 1024;

/** decodeScan a slice at a time, the event loop served in between: a long list does not hold it. */
async function decodeScanInSlices(packed: { records: ArrayBuffer; names: Buffer; extra: Buffer }): Promise<ScannedEntry[]> {
  const count = packed.records.byteLength / 88;
  if (count <= decodeSlice) return decodeScan(packed);
  const out: ScannedEntry[] = new Array<ScannedEntry>(count);
  for (let from = 0; from < count; from += decodeSlice) {
    if (from > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    decodeScan(packed, out, from, Math.min(count, from + decodeSlice));
  }
  return out;
}

function decodeScan(
  { records, names, extra }: { records: ArrayBuffer; names: Buffer; extra: Buffer },
  into?: ScannedEntry[],
  from = 0,
  to?: number,
): ScannedEntry[] {
  // 11 little-endian u64 slots per entry (native/scan_record.h).
  const u64 = new BigUint64Array(records);
  const i64 = new BigInt64Array(records);
  const u32 = new Uint32Array(records);
  const count = u64.length / 11;
  const out: ScannedEntry[] = into ?? new Array<ScannedEntry>(count);
  for (let i = from; i < (to ?? count); i++) {
    const s = i * 11;
    const w = s * 2;
    const nameOff = u32[w]!;
    const extraOff = u32[w + 18]!;
    const xattrCount = u32[w + 20]!;
    const linkLen = u32[w + 21]!;
    const entry: ScannedEntry = {
      path: names.toString('latin1', nameOff, nameOff + u32[w + 1]!),
      mode: BigInt(u32[w + 2]!),
      nlink: BigInt(u32[w + 3]!),
      uid: BigInt(u32[w + 4]!),
      gid: BigInt(u32[w + 5]!),
      size: u64[s + 3]!,
      ino: u64[s + 4]!,
      dev: u64[s + 5]!,
      rdev: u64[s + 6]!,
      mtimeNs: i64[s + 7]! * 1_000_000_000n + u64[s + 8]!,
      xattrs: noXattrs,
    };
    let at = extraOff;
    if (linkLen > 0 || (Number(entry.mode) & 0o170000) === 0o120000) {
      entry.linkTarget = extra.subarray(at, at + linkLen);
      at += linkLen;
    }
    if (xattrCount > 0) {
      const xattrs: Array<readonly [string, Buffer]> = [];
      for (let k = 0; k < xattrCount; k++) {
        const nul = extra.indexOf(0, at);
        const key = extra.toString('utf8', at, nul);
        const len = extra.readUInt32LE(nul + 1);
        xattrs.push([key, extra.subarray(nul + 5, nul + 5 + len)]);
        at = nul + 5 + len;
      }
      entry.xattrs = xattrs;
    }
    out[i] = entry;
  }
  return out;
}

/** One change compareTrees found: an entry of the new tree added or changed, or a name of the old one deleted. */
export interface TreeChange {
  kind: 'A' | 'C' | 'D';
  /** Path relative to the roots, latin1 ("etc/passwd"). */
  path: string;
  /** The new tree's entry (A and C). */
  entry?: ScannedEntry;
}

export interface TreeComparison {
  /** Sorted as lib/archive/raw-path.ts comparePaths sorts "/" + path: a directory right before its subtree. */
  changes: TreeChange[];
  /** Directories (relative, latin1) every entry of which in the old tree was deleted. */
  opaque: string[];
  /** When a changed or added non-directory has other links: every name of its inode in the new tree. */
  linkNames: Array<{ dev: bigint; ino: bigint; path: string }>;
  /** Entries of the new tree visited. */
  entries: number;
}

export interface CompareTreesOptions {
  signal?: AbortSignal;
  /** Called on the JS thread at most every 100 ms with the entries visited so far (bytes: 0). */
  onProgress?: (progress: CopyProgress) => void;
}

/**
 * The changes of the tree at `newRoot` against the one at `oldRoot`, in one
 * thread-pool job (see native/compare_trees.cc for the rules): both trees are
 * merge-walked a directory at a time, so memory follows the depth, the widest
 * directory and the number of changes, not the size of the trees. A name on the same
 * inode in both trees is not read. Rejects with a Node-style system error, or
 * AbortError (code 'ABORT_ERR') when `signal` aborts.
 */
export async function compareTrees(newRoot: PathLike, oldRoot: PathLike, options: CompareTreesOptions = {}): Promise<TreeComparison> {
  checkPath(newRoot, 'newRoot');
  checkPath(oldRoot, 'oldRoot');
  const { signal, onProgress } = options;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArg('options.onProgress', 'must be a function');
  if (signal?.aborted) throw new AbortError('compareTrees was aborted', { cause: signal.reason });
  const job = new NativeJob(signal, onProgress);
  let raw: Awaited<ReturnType<Addon['compareTrees']>>;
  try {
    raw = await withStack(addon.compareTrees(newRoot, oldRoot, { abortFlag: job.abortFlag, ...job.progressOption() }));
  } catch (err) {
    if ((err as { aborted?: boolean }).aborted !== true) throw err;
    job.throwProgressError();
    throw new AbortError('compareTrees was aborted', signal?.reason === undefined ? undefined : { cause: signal.reason });
  } finally {
    job.settle();
  }
  job.throwProgressError();
  const entries = await decodeScanInSlices(raw);
  const kinds = ['A', 'C', 'D'] as const;
  const changes = entries.map((entry, i): TreeChange => {
    const kind = kinds[raw.kinds[i]!]!;
    return kind === 'D' ? { kind, path: entry.path } : { kind, path: entry.path, entry };
  });
  const opaque = raw.opaque.length === 0 ? [] : raw.opaque.toString('latin1', 0, raw.opaque.length - 1).split('\0');
  const keys = new BigUint64Array(raw.linkKeys);
  const linkNames = raw.linkNames.length === 0 ? [] : raw.linkNames.toString('latin1', 0, raw.linkNames.length - 1).split('\0').map((path, i) => ({ dev: keys[2 * i]!, ino: keys[2 * i + 1]!, path }));
  return { changes, opaque, linkNames, entries: raw.entries };
}

/**
 * Removes `path` and everything under it (`rm -rf`) in one thread-pool job: walked
 * fd-relative a directory buffer at a time, so memory follows the depth of the tree,
 * not its size. A missing `path` is not an error. A directory below it on another
 * mount is not entered: the removal fails with EBUSY (syscall 'rmdir') and what is
 * mounted there is left untouched. Resolves to the number of entries removed below `path`.
 */
export async function removeTree(path: PathLike): Promise<number> {
  checkPath(path, 'path');
  return (await withStack(addon.removeTree(path))).removed;
}

/**
 * What `du -sx` counts under each root (allocated bytes, inodes), in one pool job:
 * nothing followed, no other filesystem entered, an inode with several links counted
 * once across all the roots (under the first root that holds it). `sharedWith[i]`
 * names a tree whose files root i does not own: a multiply-linked file that is the
 * same inode at the same path there is not counted (an overlay child's links into its
 * parent). A missing root counts 0.
 */
export async function diskUsage(roots: readonly string[], sharedWith: ReadonlyArray<string | undefined> = []): Promise<DiskUsage[]> {
  roots.forEach((r, i) => checkPath(r, `roots[${i}]`));
  return withStack(addon.diskUsage([...roots], roots.map((_, i) => sharedWith[i] ?? '')));
}

/** Tar framing for readFiles: `lengths[i]` bytes of `bytes` go before file i, the last length after the last file. */
export interface TarFrames {
  bytes: Buffer;
  lengths: readonly number[];
}

/**
 * The first `sizes[i]` bytes of each file `rawPaths[i]` (relative to `root`, latin1
 * strings one char per byte, a final symlink not followed), end to end in one
 * Buffer, in one thread-pool job: many small files without a pool trip per
 * open/read/close. `shrunk` is the index of a file that ended early (-1: none);
 * reading stops there. With `frames`, the Buffer is a piece of tar: each file's
 * content comes after its frame (the headers) and is padded to whole 512-byte blocks.
 */
export function readFiles(root: PathLike, rawPaths: readonly string[], sizes: readonly number[], frames?: TarFrames): Promise<{ data: Buffer; shrunk: number }> {
  const joined = readFilesArgs(root, rawPaths, sizes, frames);
  if (frames === undefined) return withStack(addon.readFiles(root, joined, [...sizes]));
  return withStack(addon.readFiles(root, joined, [...sizes], frames.bytes, [...frames.lengths]));
}

/**
 * readFiles' tar piece written to the file descriptor `fd` (a regular file, a pipe,
 * a socket or a character device; blocking or not) instead of returned: small files
 * go through one reused native buffer, big ones move inside the kernel (sendfile),
 * so no content passes through JS. `written` counts the bytes written, `shrunk` is
 * as in readFiles (what was written before it stays written).
 */
export function sendFiles(root: PathLike, rawPaths: readonly string[], sizes: readonly number[], frames: TarFrames, fd: number): Promise<{ written: number; shrunk: number }> {
  const joined = readFilesArgs(root, rawPaths, sizes, frames);
  checkInt(fd, 'fd');
  return withStack(addon.readFiles(root, joined, [...sizes], frames.bytes, [...frames.lengths], fd)).then(({ shrunk, written }) => ({ written: written ?? 0, shrunk }));
}

/** Checks readFiles' and sendFiles' arguments; the paths NUL-joined for the addon. */
function readFilesArgs(root: PathLike, rawPaths: readonly string[], sizes: readonly number[], frames: TarFrames | undefined): Buffer {
  checkPath(root, 'root');
  if (rawPaths.length !== sizes.length) throw invalidArg('sizes', 'must have one entry per path');
  for (const p of rawPaths) if (p.length === 0 || p.includes('\0')) throw invalidArg('rawPaths', 'must hold non-empty paths without null bytes');
  for (const n of sizes) checkInt(n, 'sizes');
  if (frames !== undefined) {
    if (frames.lengths.length !== rawPaths.length + 1) throw invalidArg('frames.lengths', 'must have one length per path plus one');
    let sum = 0;
    for (const n of frames.lengths) {
      checkInt(n, 'frames.lengths');
      sum += n;
    }
    if (sum !== frames.bytes.length) throw invalidArg('frames.lengths', 'must add up to the length of frames.bytes');
  }
  return rawPaths.length === 0 ? Buffer.alloc(0) : Buffer.from(rawPaths.join('\0') + '\0', 'latin1');
}

/** What packTree wrote: bytes to the fd, entries in the tar and their content bytes. */
export interface PackTreeResult {
  written: number;
  entries: number;
  bytes: number;
}

export interface PackTreeOptions {
  /** Host → container id translation for owners (containerId, hostId, size ranges); identity when empty. */
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
  signal?: AbortSignal;
  /** Called on the JS thread at most every 100 ms while packing, and once at the end with the totals. */
  onProgress?: (progress: CopyProgress) => void;
}

/**
 * How packTree fails when no syscall did: `unmappedId` (an owner the maps do not
 * hold) or `shrunk` (a regular file that ended before its lstat size), each naming
 * the entry by its raw path relative to the root. `written` counts what was written
 * before it stopped (it stays written).
 */
export interface PackTreeError extends Error {
  code: string;
  written?: number;
  unmappedId?: { what: 'uid' | 'gid'; hostId: number; path: Buffer };
  shrunk?: Buffer;
}

/**
 * The tar of everything under `root` (not `root` itself), written to the file
 * descriptor `fd` in one thread-pool job: walked as scanTree walks (fd-relative,
 * sorted, deeper than PATH_MAX included), headers encoded natively, content copied
 * right behind them (sendfile for big files), two zero blocks at the end. The same
 * bytes as lib/archive/export.ts exportChanges of the whole tree (see
 * native/pack_tree.cc for the entry rules). `fd` is as for sendFiles.
 *
 * Rejects with a Node-style system error (ENOENT with .path when `root` is missing),
 * a PackTreeError, or AbortError (code 'ABORT_ERR') when `signal` aborts, also while
 * waiting for a full non-blocking pipe.
 */
export function packTree(root: PathLike, fd: number, options: PackTreeOptions = {}): Promise<PackTreeResult> {
  checkPath(root, 'root');
  checkInt(fd, 'fd');
  const uidMaps = mapTriples(options.uidMaps, 'options.uidMaps');
  const gidMaps = mapTriples(options.gidMaps, 'options.gidMaps');
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidArg('options.onProgress', 'must be a function');
  return runPack(root, fd, uidMaps, gidMaps, options);
}

/** Id maps as the addon takes them: containerId, hostId, size, ... */
function mapTriples(maps: readonly IDMap[] | undefined, name: string): number[] {
  const out: number[] = [];
  for (const m of maps ?? []) {
    checkInt(m.containerId, `${name}.containerId`);
    checkInt(m.hostId, `${name}.hostId`);
    checkInt(m.size, `${name}.size`);
    out.push(m.containerId, m.hostId, m.size);
  }
  return out;
}

async function runPack(root: PathLike, fd: number, uidMaps: number[], gidMaps: number[], options: PackTreeOptions): Promise<PackTreeResult> {
  const { signal, onProgress } = options;
  if (signal?.aborted) throw new AbortError('packTree was aborted', { cause: signal.reason });
  // The worker polls the abort flag between entries and while it waits for the fd.
  const job = new NativeJob(signal, onProgress);
  let result: PackTreeResult;
  try {
    result = await withStack(addon.packTree(root, fd, { uidMaps, gidMaps, abortFlag: job.abortFlag, ...job.progressOption() }));
  } catch (err) {
    const e = err as PackTreeError & { aborted?: boolean };
    if (e.aborted !== true) throw err;
    job.throwProgressError();
    const aborted = new AbortError(`packTree was aborted after ${e.written ?? 0} bytes`, signal?.reason === undefined ? undefined : { cause: signal.reason });
    if (e.stack) aborted.stack = `${aborted.name}: ${aborted.message}\n${e.stack.split('\n').slice(1).join('\n')}`;
    throw aborted;
  } finally {
    job.settle();
  }
  job.throwProgressError();
  onProgress?.({ entries: result.entries, bytes: result.bytes });
  return result;
}

export interface ApplyTarJobOptions {
  /** Container → host id maps: a tar's uid/gid are container ids. */
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
  allowPrivilegedXattrs?: boolean;
  /** Threads that create and write small files beside the parsing one. Default 0: all on the parsing thread. */
  threads?: number;
  /** Read the tar from this file inside the job (nothing is pushed then). */
  file?: ApplyTarFile;
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
}

/** A regular file the job reads itself from offset 0: its fd is duplicated at the start (the caller may close its own). */
export interface ApplyTarFile {
  fd: number;
  /** Names the file in errors. */
  path: string;
  /** Inflate it (a gzip file). */
  gzip: boolean;
}

/** What an apply did: entries made, content bytes written, the tar's length and "sha256:<hex>" (everything read, past the end of the archive too). */
export interface ApplyTarResult {
  entries: number;
  bytes: number;
  tarSize: number;
  digest: string;
}

/**
 * How applyTar's native job stops when no syscall failed: `applyError` says why
 * ('invalid' archive, 'unsafe' entry, 'aborted', or 'source': the input failed),
 * `entry` names the entry (raw bytes), `reason` in words. A system error carries
 * `entry` too when it happened on one.
 */
export interface ApplyTarError extends Error {
  code: string;
  applyError?: 'invalid' | 'unsafe' | 'aborted' | 'source';
  entry?: Buffer;
  reason?: string;
}

/**
 * A layer apply running as one native job (native/apply_tar.cc): `push` hands it the
 * tar's bytes in order (false: wait for `drained` before pushing more), `end` says
 * the input is over (failed: the source failed), `done` settles with the entries
 * and content bytes applied. The job polls the signal between entries and while
 * it waits for input.
 */
export interface ApplyTarJob {
  done: Promise<ApplyTarResult>;
  push(chunk: Uint8Array): boolean;
  /** Resolves once the job has taken the queue down (or has finished). */
  drained(): Promise<void>;
  end(failed: boolean): void;
  /** Throws what the progress callback threw, if it did. */
  throwProgressError(): void;
}

/**
 * Two writer threads beside the parsing one when there is a second core for them:
 * files in different directories are created in parallel, which pays most where
 * inode allocation is slow (a filesystem after mass deletions; bench/README.md).
 */
function defaultApplyThreads(): number {
  return availableParallelism() >= 2 ? 2 : 0;
}

export function startApplyTar(root: PathLike, options: ApplyTarJobOptions = {}): ApplyTarJob {
  checkPath(root, 'root');
  const uidMaps = mapTriples(options.uidMaps, 'options.uidMaps');
  const gidMaps = mapTriples(options.gidMaps, 'options.gidMaps');
  // The default lives here only (the addon requires the number): see applyTar's threads option.
  const threads = options.threads ?? defaultApplyThreads();
  checkInt(threads, 'options.threads');
  if (threads > 64) throw invalidArg('options.threads', 'must be at most 64');
  const job = new NativeJob(options.signal, options.onProgress);
  let wake: (() => void) | undefined;
  let finished = false;
  const onDrain = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const { done, feeder } = addon.applyTar(root, {
    uidMaps,
    gidMaps,
    allowPrivilegedXattrs: options.allowPrivilegedXattrs === true,
    threads,
    abortFlag: job.abortFlag,
    onDrain,
    ...job.progressOption(),
    ...(options.file !== undefined ? { file: options.file } : {}),
  });
  const settled = withStack(done).finally(() => {
    finished = true;
    job.settle();
    onDrain();
  });
  return {
    done: settled,
    push: (chunk) => addon.applyTarPush(feeder, chunk),
    drained: () => (finished ? Promise.resolve() : new Promise<void>((resolve) => (wake = resolve))),
    end: (failed) => addon.applyTarEnd(feeder, failed),
    throwProgressError: () => job.throwProgressError(),
  };
}

