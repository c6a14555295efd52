// `ogd diff`, `ogd changes`, `ogd diff-size`: what a layer changed against its parent
// (the store's record unless --parent says otherwise; --parent "" for the whole layer).
import { rmSync } from 'node:fs';
import { open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { LayerNotFoundError, isSystemError } from '../../index.js';
import { processAlive } from '../../native.js';
import { CliContext } from '../context.js';
import { OutputClosedError, UsageError, parentOption, stringOption } from '../command.js';
import type { Command } from '../command.js';
import { formatBytes, formatDuration } from '../progress.js';
import { onForcedExit } from '../signals.js';

async function isRegularOrMissing(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

// `FILE.ogd-<pid>.tmp` files of diffs that were killed before their rename: removed by
// the next `diff -o FILE` once their process is gone.
async function sweepStaleTemps(output: string): Promise<void> {
  const dir = dirname(output);
  const prefix = `${basename(output)}.ogd-`;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(name.startsWith(prefix) && name.endsWith('.tmp') ? name.slice(prefix.length, -'.tmp'.length) : NaN);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    if (!processAlive(pid)) await rm(join(dir, name), { force: true });
  }
}

export const diff: Command = {
  name: 'diff',
  usage: 'diff ID [--parent P] [-o FILE]',
  summary: "write the layer's changes as an uncompressed tar to stdout or FILE",
  example: 'ogd diff web-1 -o web-1.tar',
  options: { ...parentOption, output: { type: 'string', short: 'o', value: 'FILE', help: 'write the tar to FILE (made whole or not at all)', byDefault: 'stdout' } },
  positionals: [1, 1],
  async run(ctx, [arg], values) {
    const output = stringOption(values, 'output');
    if (output === undefined && process.stdout.isTTY === true) {
      throw new UsageError('refusing to write a tar to a terminal: use -o FILE or a pipe', this);
    }
    const store = await ctx.store();
    const id = await store.resolveLayer(arg!);
    const parentArg = await CliContext.parentLayer(store, stringOption(values, 'parent'));
    const parent = parentArg === undefined ? (await store.layer(id)).parent : (parentArg ?? undefined);
    const bar = ctx.progress('diff');
    const started = process.hrtime.bigint();
    // A regular FILE is written next to itself and renamed at the end, so an interrupted
    // diff leaves no half tar; anything else (/dev/null, a fifo) is written in place.
    // The tar goes to the descriptor natively (writeDiff), not through a stream.
    const staged = output !== undefined && (await isRegularOrMissing(output));
    const tmp = staged ? `${output}.ogd-${process.pid}.tmp` : undefined;
    if (staged) await sweepStaleTemps(output!);
    let bytes: number;
    const forget = tmp === undefined ? undefined : onForcedExit(() => rmSync(tmp, { force: true }));
    try {
      const file = output === undefined ? undefined : await open(tmp ?? output, 'w', 0o644);
      try {
        bytes = await store.writeDiff(id, file?.fd ?? process.stdout.fd, { parent: parent ?? null, signal: ctx.signal, onProgress: (p) => bar.update(p) });
      } finally {
        await file?.close();
      }
      if (tmp !== undefined) await rename(tmp, output!);
    } catch (err) {
      if (tmp !== undefined) await rm(tmp, { force: true });
      // The reader of our stdout stopped reading (`ogd diff X | head`): its choice.
      if (output === undefined && isSystemError(err, 'EPIPE')) throw new OutputClosedError({ cause: err });
      throw err;
    } finally {
      forget?.();
      bar.done();
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (output !== undefined) {
      ctx.result({ id, parent: parent ?? null, output, bytes, seconds });
      ctx.say(`wrote ${output} (${formatBytes(bytes)}) in ${formatDuration(seconds)}`);
    }
  },
};

export const changes: Command = {
  name: 'changes',
  usage: 'changes ID [--parent P]',
  summary: 'list what the layer changed: lines "A /path", "C /path", "D /path"',
  example: 'ogd changes web-1',
  options: { ...parentOption },
  positionals: [1, 1],
  async run(ctx, [arg], values) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new LayerNotFoundError(arg!);
    const id = await store.resolveLayer(arg!);
    const parent = await CliContext.parentLayer(store, stringOption(values, 'parent'));
    const list = await store.changes(id, { ...(parent !== undefined ? { parent } : {}), signal: ctx.signal });
    ctx.result(list);
    if (!ctx.json) process.stdout.write(list.map((c) => `${c.kind} ${c.path}\n`).join(''));
  },
};

export const diffSize: Command = {
  name: 'diff-size',
  usage: 'diff-size ID [--parent P]',
  summary: 'bytes of content the layer changed against its parent',
  example: 'ogd diff-size web-1',
  options: { ...parentOption },
  positionals: [1, 1],
  async run(ctx, [arg], values) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new LayerNotFoundError(arg!);
    const id = await store.resolveLayer(arg!);
    const parentArg = await CliContext.parentLayer(store, stringOption(values, 'parent'));
    const parent = parentArg === undefined ? (await store.layer(id)).parent : (parentArg ?? undefined);
    const bytes = await store.diffSize(id, { parent: parent ?? null, signal: ctx.signal });
    ctx.result({ id, parent: parent ?? null, bytes });
    ctx.say(String(bytes));
  },
};
