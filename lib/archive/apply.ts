// Applies one layer tar (the OCI changeset format: entries, ".wh." whiteouts,
// opaque directories) onto a root directory that the caller has staged.
//
// The per-entry work (parsing, containment, shared-inode safety, whiteouts, every
// syscall) is one native job: native/apply_tar.cc, whose header comment states the
// rules, and native/tar_reader.cc, the one tar parser. This file feeds it the
// stream's bytes (or, for a LayerFile, lets the job read the file itself) and keeps
// what is not per entry: options, id maps, the abort signal, a source that fails or
// stalls, and the errors' wording. The job also measures and hashes the tar (the
// layer's uncompressed size and digest), off the JS thread.
import { realpath } from 'node:fs/promises';
import { AbortError, InvalidArchiveError, InvalidOptionError, UnsafeLayerError } from '../errors.js';
import { toHost } from '../idmap.js';
import { startApplyTar, type ApplyTarError, type ApplyTarFile, type ApplyTarJob } from '../native.js';
import type { ApplyDiffOptions, DiffSource, IDMap } from '../types.js';
import { decompressionError, openLayer } from './compression.js';
import { isLayerFile, openLayerFile } from './layer-file.js';
import { displayName } from './path-safety.js';

/** Writer threads of the native apply: OGD_APPLY_THREADS, read at each apply, overrides the default (benchmarks compare). */
function threadsFromEnv(): number | undefined {
  const given = process.env['OGD_APPLY_THREADS'];
  return given === undefined ? undefined : Number(given);
}

export interface ApplyTarOptions extends ApplyDiffOptions {
  /** Container → host id maps: a tar's uid/gid are container ids. */
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
  /**
   * Writer threads beside the parsing one (default 2 on a machine with 2+ cores, else 0;
   * OGD_APPLY_THREADS overrides): small files are written on them, one directory per
   * writer at a time, while parsing, directories and symlinks go on (bench/README.md, import).
   */
  threads?: number;
}

/**
 * Applies the uncompressed layer tar `diff` onto `root`. Returns the bytes of
 * regular-file content written. Rejects with UnsafeLayerError (an entry that would
 * reach outside the root), InvalidArchiveError (corrupt or truncated tar),
 * AbortError, the source's own error, or a system error; on rejection the caller
 * discards `root`, and nothing is still writing into it.
 */
export async function applyTar(root: string, diff: DiffSource | Uint8Array, opts: ApplyTarOptions = {}): Promise<number> {
  const signal = opts.signal;
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
  if (toHost(opts.uidMaps ?? [], 0) === undefined || toHost(opts.gidMaps ?? [], 0) === undefined) {
    throw new InvalidOptionError('the id maps do not map container root (id 0)');
  }
  const realRoot = await realpath(root, { encoding: 'buffer' });
  const threads = opts.threads ?? threadsFromEnv();
  const start = (file?: ApplyTarFile): ApplyTarJob =>
    startApplyTar(realRoot, {
      uidMaps: opts.uidMaps,
      gidMaps: opts.gidMaps,
      allowPrivilegedXattrs: opts.allowPrivilegedXattrs === true,
      ...(threads !== undefined ? { threads } : {}),
      signal,
      onProgress: opts.onProgress,
      ...(file !== undefined ? { file } : {}),
    });
  if (!isLayerFile(diff)) return applyStream(start(), diff instanceof Uint8Array ? [diff] : diff, opts);
  const opened = await openLayerFile(diff);
  try {
    if (opened.native) return await applyFile(start({ fd: opened.handle.fd, path: diff.path, gzip: opened.format === 'gzip' }), opts);
    const layer = await openLayer(opened.handle.createReadStream({ highWaterMark: 1 << 20, autoClose: false }));
    try {
      return await applyStream(start(), layer.tar, opts);
    } catch (err) {
      throw await layer.explain(err);
    } finally {
      layer.close();
    }
  } finally {
    await opened.handle.close();
  }
}

/** The job reads the file itself: JS only waits (and words the failure). */
async function applyFile(job: ApplyTarJob, opts: ApplyTarOptions): Promise<number> {
  let result: Awaited<ApplyTarJob['done']>;
  try {
    result = await job.done;
  } catch (err) {
    job.throwProgressError();
    const e = err as ApplyTarError;
    if (e.applyError === 'aborted' || opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal?.reason });
    // The reader's inflate failed: worded as the stream path words node:zlib's errors.
    if (e.applyError === 'source') throw decompressionError('gzip', new Error(e.reason ?? 'inflate failed'));
    throw translate(e);
  }
  if (result.tarSize === 0 && opts.allowEmpty !== true) throw emptyLayer();
  return finish(job, result, opts);
}

function emptyLayer(): InvalidArchiveError {
  // A 0-byte stream is not a tar (the shortest tar is its two zero blocks): most
  // likely a failed download or an empty file given by mistake, which must not
  // become an empty layer without a word.
  return new InvalidArchiveError('the layer is empty (0 bytes), not a tar: a tar holds at least its two zero blocks; the option allowEmpty applies it as an empty layer');
}

function finish(job: ApplyTarJob, result: Awaited<ApplyTarJob['done']>, opts: ApplyTarOptions): number {
  job.throwProgressError();
  opts.onProgress?.({ entries: result.entries, bytes: result.bytes });
  opts.onTarDigest?.({ size: result.tarSize, digest: result.digest });
  return result.bytes;
}

/** Feeds the job the stream's bytes. */
async function applyStream(job: ApplyTarJob, diff: DiffSource | Uint8Array[], opts: ApplyTarOptions): Promise<number> {
  const signal = opts.signal;
  const source = (diff as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]?.() ?? toAsync(diff as Uint8Array[]);
  let stop = false;
  let sourceError: { error: unknown } | undefined;
  const feeding = (async () => {
    let empty = true;
    try {
      for (;;) {
        const r = await nextChunk(source, signal);
        if (r.done === true || stop) break;
        const v = r.value;
        if (typeof v === 'string') throw new InvalidArchiveError('the tar stream yields strings, not bytes (was an encoding set on it?)');
        if (v.length === 0) continue;
        empty = false;
        if (!job.push(v)) await job.drained();
      }
      if (empty && !stop && opts.allowEmpty !== true) throw emptyLayer();
      job.end(false);
    } catch (error) {
      sourceError = { error };
      job.end(true);
    }
  })();
  let result: Awaited<ApplyTarJob['done']>;
  try {
    result = await job.done;
  } catch (err) {
    // The job has stopped: nothing writes into the root any more. Stop reading the source.
    stop = true;
    // Not awaited: an async generator stuck in an await (a stalled source) settles return() only when it resumes.
    source.return?.()?.catch(() => undefined);
    job.throwProgressError();
    const e = err as ApplyTarError;
    if (e.applyError === 'source' && sourceError !== undefined) throw sourceError.error;
    if (e.applyError === 'aborted' || signal?.aborted) throw new AbortError(undefined, { cause: signal?.reason });
    throw translate(e);
  }
  await feeding;
  if (sourceError !== undefined) throw sourceError.error;
  return finish(job, result, opts);
}

async function* toAsync(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  yield* chunks;
}

/** The source's next chunk; an abort does not wait for a stalled source. */
async function nextChunk(source: AsyncIterator<Uint8Array | string>, signal: AbortSignal | undefined): Promise<IteratorResult<Uint8Array | string>> {
  if (signal === undefined) return source.next();
  if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason });
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new AbortError(undefined, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([source.next(), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/** The job's failure in this package's terms. */
function translate(e: ApplyTarError): Error {
  const name = e.entry === undefined || e.entry.length === 0 ? undefined : displayName(e.entry.toString('latin1'));
  if (e.applyError === 'unsafe') return new UnsafeLayerError(name ?? '', e.reason ?? 'unsafe entry', { cause: e });
  if (e.applyError === 'invalid') {
    return new InvalidArchiveError(name === undefined ? (e.reason ?? 'invalid archive') : `entry ${JSON.stringify(name)}: ${e.reason ?? 'invalid'}`);
  }
  if (e.code === 'ENAMETOOLONG' && name !== undefined) return new InvalidArchiveError(`entry ${JSON.stringify(name)}: path too long for the filesystem`, { cause: e });
  return e;
}
