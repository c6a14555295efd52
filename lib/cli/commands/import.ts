// `ogd import` (create + apply a layer tar) and `ogd apply-diff` (apply into an existing
// layer). Input is a FILE or stdin, plain tar, gzip or zstd by its magic bytes. A failed
// or interrupted import removes the layer it created, and the index is written only
// after success, so the store is left exactly as it was.
import { open } from 'node:fs/promises';
import { fstatSync } from 'node:fs';
import { addAbortSignal } from 'node:stream';
import type { Readable } from 'node:stream';
import { LayerExistsError } from '../../index.js';
import type { Driver } from '../../index.js';
import { UsageError, parentOption, stringOption } from '../command.js';
import type { Command, OptionValues } from '../command.js';
import type { CliContext } from '../context.js';
import { openLayer } from '../../archive/compression.js';
import type { LayerFormat } from '../../archive/compression.js';
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
}

interface ApplyRequest {
  driver: Driver;
  id: string;
  parent: string | undefined;
  file: string | undefined;
  /** Create the layer once the input looks like a layer, and remove it again if applying fails. */
  create: boolean;
}

async function applyFromInput(ctx: CliContext, command: Command, req: ApplyRequest): Promise<Applied> {
  const { driver, id, parent } = req;
  const input = await openInput(command, req.file, ctx.signal);
  const bar = ctx.progress(command.name);
  const started = process.hrtime.bigint();
  let tar: Readable | undefined;
  try {
    const opened = await openLayer(input.chunks);
    tar = opened.tar;
    if (req.create) await driver.create(id, parent);
    let bytes: number;
    try {
      bytes = await driver.applyDiff(id, parent, tar, {
        signal: ctx.signal,
        onProgress: (p) => bar.update({ ...p, doneBytes: input.read.bytes, ...(input.totalBytes ? { totalBytes: input.totalBytes } : {}) }),
      });
    } catch (err) {
      // applyDiff itself is all or nothing; the layer we created for it must go too.
      if (req.create) await driver.remove(id).catch(() => {});
      throw err;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { id, parent: parent ?? null, format: opened.format, bytes, inputBytes: input.read.bytes, seconds };
  } finally {
    bar.done();
    tar?.destroy();
    await input.close();
  }
}

function report(ctx: CliContext, verb: string, r: Applied): void {
  ctx.result(r);
  const compressed = r.format === 'tar' ? '' : `${r.format}, `;
  ctx.say(`${verb} ${r.id}${r.parent ? ` on ${r.parent}` : ''} (${compressed}${formatBytes(r.bytes)} of content) in ${formatDuration(r.seconds)}`);
}

export const importLayer: Command = {
  name: 'import',
  usage: 'import ID [--parent P] [FILE|-]',
  summary: 'create a layer and apply a layer tar (tar, tar.gz or tar.zst; stdin when no FILE)',
  example: 'ogd import base base.tar.gz && ogd import app --parent base app.tar',
  options: { ...parentOption },
  positionals: [1, 2],
  async run(ctx, [id, file], values) {
    const driver = await ctx.driver();
    const record = await ctx.index.get(id!);
    const existed = await driver.exists(id!);
    // Importing into a layer made empty by `ogd create` fills it; a filled one is refused.
    if (existed && (record === undefined || record.size !== undefined)) throw new LayerExistsError(id!);
    const parent = existed ? await ctx.parentOf(id!, stringOption(values, 'parent')) : stringOption(values, 'parent') || undefined;
    const applied = await applyFromInput(ctx, this, { driver, id: id!, parent, file, create: !existed });
    await ctx.index.update((layers) => {
      layers[id!] = { ...(layers[id!] ?? { kind: 'image', created: new Date().toISOString() }), ...(parent ? { parent } : {}), size: applied.bytes };
    });
    report(ctx, 'imported', applied);
  },
};

export const applyDiff: Command = {
  name: 'apply-diff',
  usage: 'apply-diff ID [--parent P] [FILE|-]',
  summary: 'apply a layer tar to an existing layer (parent remembered from create/import)',
  example: 'ogd create app --parent base && ogd apply-diff app app.tar',
  options: { ...parentOption },
  positionals: [1, 2],
  async run(ctx, [id, file], values: OptionValues) {
    const driver = await ctx.driver();
    const parent = await ctx.parentOf(id!, stringOption(values, 'parent'));
    const applied = await applyFromInput(ctx, this, { driver, id: id!, parent, file, create: false });
    await ctx.index.update((layers) => {
      const record = layers[id!];
      if (record !== undefined) record.size = (record.size ?? 0) + applied.bytes;
    });
    report(ctx, 'applied to', applied);
  },
};
