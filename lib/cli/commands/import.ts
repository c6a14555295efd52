// `ogd import` (create + apply a layer tar) and `ogd apply-diff` (apply into an existing
// layer). Input is a FILE or stdin, plain tar, gzip or zstd by its magic bytes. The
// store makes an import all or nothing: a failed, interrupted or killed import leaves
// no layer (a kill leaves an incomplete record the next command removes).
import { open, stat } from 'node:fs/promises';
import { fstatSync } from 'node:fs';
import { addAbortSignal } from 'node:stream';
import { InvalidArchiveError, InvalidOptionError, LayerFile, openLayer } from '../../index.js';
import type { LayerFormat, LayerRecord, OpenedLayer, Store } from '../../index.js';
import { UsageError, stringOption } from '../command.js';
import type { Command, OptionSpec, OptionValues } from '../command.js';
import type { CliContext } from '../context.js';
import { formatBytes, formatDuration } from '../progress.js';

interface LayerInput {
  chunks: AsyncIterable<Buffer>;
  /** Size of the input when it is a regular file; drives the bar's ETA. */
  totalBytes: number | undefined;
  read: { bytes: number };
  close(): Promise<void>;
}

async function openInput(command: Command, file: string | undefined, signal: AbortSignal): Promise<LayerInput> {
  const read = { bytes: 0 };
  const counted = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      read.bytes += chunk.length;
      yield chunk;
    }
  };
  if (file === undefined || file === '-') {
    if (process.stdin.isTTY === true) throw new UsageError('no layer given: name a FILE, or pipe a tar into stdin', command);
    const st = fstatSync(0); // startup-time check of what stdin is; cheap and never blocks
    return {
      // Ctrl-C must also stop a read that waits on a quiet pipe.
      chunks: counted(addAbortSignal(signal, process.stdin) as AsyncIterable<Buffer>),
      totalBytes: st.isFile() ? st.size : undefined,
      read,
      close: async () => void process.stdin.destroy(),
    };
  }
  const handle = await open(file, 'r');
  const st = await handle.stat();
  const stream = addAbortSignal(signal, handle.createReadStream({ highWaterMark: 1 << 20 }));
  return {
    chunks: counted(stream as AsyncIterable<Buffer>),
    totalBytes: st.isFile() ? st.size : undefined,
    read,
    close: async () => {
      stream.destroy();
      await handle.close().catch(() => {});
    },
  };
}

interface Applied {
  id: string;
  parent: string | null;
  format: LayerFormat;
  bytes: number;
  inputBytes: number;
  seconds: number;
  /** sha256 of the uncompressed tar, as the store records it. */
  digest: string | null;
}

interface ApplyRequest {
  store: Store;
  id: string;
  parent: string | undefined;
  file: string | undefined;
  /** Import (create + apply, all or nothing) rather than apply to an existing layer. */
  create: boolean;
  /** Accept a 0-byte input as an empty layer (--allow-empty). */
  allowEmpty: boolean;
}

async function applyFromInput(ctx: CliContext, command: Command, req: ApplyRequest): Promise<Applied> {
  if (req.file !== undefined && req.file !== '-') {
    // What cannot be stat'ed is left to openInput, whose open() reports it.
    const st = await stat(req.file).catch(() => undefined);
    if (st?.isFile() === true) return applyFromFile(ctx, command, req, req.file, st.size);
  }
  const { store, id, parent } = req;
  const input = await openInput(command, req.file, ctx.signal);
  const bar = ctx.progress(command.name);
  const started = process.hrtime.bigint();
  let opened: OpenedLayer | undefined;
  try {
    opened = await openLayer(input.chunks);
    const opts = {
      signal: ctx.signal,
      allowEmpty: req.allowEmpty,
      onProgress: (p: { entries: number; bytes: number }) => bar.update({ ...p, doneBytes: input.read.bytes, ...(input.totalBytes ? { totalBytes: input.totalBytes } : {}) }),
    };
    let rec: LayerRecord;
    try {
      // Both are all or nothing: a failed import leaves no layer, a failed apply the layer as it was.
      rec = req.create ? await store.importLayer(id, opened.tar, { ...opts, ...(parent ? { parent } : {}) }) : await store.applyDiff(id, opened.tar, opts);
    } catch (err) {
      if (err instanceof InvalidArchiveError && input.read.bytes === 0) {
        throw new InvalidArchiveError(`the layer ${req.file === undefined || req.file === '-' ? 'on stdin' : JSON.stringify(req.file)} is empty (0 bytes), not a tar; --allow-empty applies it as an empty layer`, { cause: err });
      }
      throw await opened.explain(err);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { id, parent: rec.parent ?? null, format: opened.format, bytes: rec.diffSize ?? 0, inputBytes: input.read.bytes, seconds, digest: rec.uncompressedDigest ?? null };
  } finally {
    bar.done();
    opened?.tar.destroy();
    opened?.close();
    await input.close();
  }
}

/** A regular file (tar or gzip) is read by the apply job itself, not through a stream (lib/archive/layer-file.ts). */
async function applyFromFile(ctx: CliContext, command: Command, req: ApplyRequest, file: string, size: number): Promise<Applied> {
  const { store, id, parent } = req;
  const source = new LayerFile(file);
  const format = (await source.format()) ?? 'tar';
  const bar = ctx.progress(command.name);
  const started = process.hrtime.bigint();
  try {
    const opts = {
      signal: ctx.signal,
      allowEmpty: req.allowEmpty,
      // Content bytes against the file's size: close enough for an uncompressed tar's bar.
      onProgress: (p: { entries: number; bytes: number }) => bar.update({ ...p, ...(format === 'tar' ? { totalBytes: size } : {}) }),
    };
    let rec: LayerRecord;
    try {
      rec = req.create ? await store.importLayer(id, source, { ...opts, ...(parent ? { parent } : {}) }) : await store.applyDiff(id, source, opts);
    } catch (err) {
      if (err instanceof InvalidArchiveError && size === 0) {
        throw new InvalidArchiveError(`the layer ${JSON.stringify(file)} is empty (0 bytes), not a tar; --allow-empty applies it as an empty layer`, { cause: err });
      }
      throw err;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { id, parent: rec.parent ?? null, format, bytes: rec.diffSize ?? 0, inputBytes: size, seconds, digest: rec.uncompressedDigest ?? null };
  } finally {
    bar.done();
  }
}

/** A 0-byte input is refused (it is not a tar: a tar has at least its two zero blocks) unless this says it is meant. */
const allowEmptyOption: OptionSpec = { 'allow-empty': { type: 'boolean', help: 'take a 0-byte input as an empty layer', byDefault: 'refused' } };

function report(ctx: CliContext, verb: string, r: Applied): void {
  ctx.result(r);
  const compressed = r.format === 'tar' ? '' : `${r.format}, `;
  ctx.say(`${verb} ${r.id}${r.parent ? ` on ${r.parent}` : ''} (${compressed}${formatBytes(r.bytes)} of content) in ${formatDuration(r.seconds)}`);
}

export const importLayer: Command = {
  name: 'import',
  usage: 'import ID [--parent P] [--allow-empty] [FILE|-]',
  summary: 'create a layer and apply a layer tar (tar, tar.gz or tar.zst; stdin when no FILE)',
  example: 'ogd import base base.tar.gz && ogd import app --parent base app.tar',
  options: {
    parent: { type: 'string', value: 'P', help: 'the layer to stand on: a layer id, short id or name, or an image name (its top layer)', byDefault: 'none, a base layer' },
    ...allowEmptyOption,
  },
  positionals: [1, 2],
  async run(ctx, [id, file], values) {
    const store = await ctx.store();
    const named = stringOption(values, 'parent') || undefined;
    const parent = named !== undefined ? await store.resolveLayer(named) : undefined;
    const allowEmpty = values['allow-empty'] === true;
    // The store decides what an import into an existing layer means (a layer made empty by `ogd create` is filled).
    report(ctx, 'imported', await applyFromInput(ctx, this, { store, id: id!, parent, file, create: true, allowEmpty }));
  },
};

export const applyDiff: Command = {
  name: 'apply-diff',
  usage: 'apply-diff ID [--parent P] [--allow-empty] [FILE|-]',
  summary: 'apply a layer tar to an existing layer (parent remembered from create/import)',
  example: 'ogd create app --parent base && ogd apply-diff app app.tar',
  options: {
    parent: { type: 'string', value: 'P', help: 'checked against the parent the layer was made on', byDefault: 'that parent' },
    ...allowEmptyOption,
  },
  positionals: [1, 2],
  async run(ctx, [arg, file], values: OptionValues) {
    const store = await ctx.store();
    const id = await store.resolveLayer(arg!, { images: false });
    const rec = await store.layer(id);
    const explicit = stringOption(values, 'parent');
    // The parent is the record's; --parent is only checked against it.
    if (explicit !== undefined && (explicit || undefined) !== rec.parent) {
      throw new InvalidOptionError(`layer ${JSON.stringify(id)} was created on ${JSON.stringify(rec.parent ?? null)}, not on ${JSON.stringify(explicit || null)}`);
    }
    const applied = await applyFromInput(ctx, this, { store, id, parent: rec.parent, file, create: false, allowEmpty: values['allow-empty'] === true });
    report(ctx, 'applied to', applied);
  },
};
