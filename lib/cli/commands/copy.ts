// `ogd copy-tree SRC DST [--hardlink]` (first named `copy`, still an alias the benchmarks
// use): the native copy engine on its own, with no store involved; for anyone comparing
// it with `cp -a` / `cp -al`. Not an image copy: that is skopeo's `copy`.
import { lstat, rm } from 'node:fs/promises';
// The package's light entry (overlay-graphdriver/native): copy needs no store, and
// loading the whole library would be a fifth of a small copy's time.
import { copyTree } from '../../native.js';
import { UsageError } from '../command.js';
import type { Command } from '../command.js';
import { formatBytes, formatCount, formatDuration } from '../progress.js';

export const copyTreeCommand: Command = {
  name: 'copy-tree',
  aliases: ['copy'],
  usage: 'copy-tree SRC DST [--hardlink] [--threads N]',
  summary: 'copy a directory tree (not an image) with the native copy engine; DST must not exist, or be empty',
  example: 'ogd copy-tree /var/lib/rootfs /tmp/rootfs-copy --hardlink',
  options: {
    hardlink: { type: 'boolean', help: 'hard-link regular files instead of copying their data' },
    threads: { type: 'string', value: 'N', help: 'copy threads (0: one per core)', byDefault: 'the engine\'s choice' },
  },
  positionals: [2, 2],
  async run(ctx, [src, dst], values) {
    const threads = values['threads'] === undefined ? undefined : parseCount(String(values['threads']));
    const dstExisted = await lstat(dst!).then(
      () => true,
      () => false,
    );
    const bar = ctx.progress('copy');
    const started = process.hrtime.bigint();
    try {
      const stats = await copyTree(src!, dst!, {
        mode: values['hardlink'] === true ? 'hardlink' : 'content',
        signal: ctx.signal,
        onProgress: (p) => bar.update(p),
        ...(threads !== undefined ? { threads } : {}),
      });
      bar.done();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      ctx.result({ ...stats, seconds });
      ctx.say(`copied ${formatCount(stats.entries)} entries (${formatBytes(stats.bytes)}) in ${formatDuration(seconds)}`);
    } catch (err) {
      bar.done();
      // An aborted or failed copy must not leave a half tree where there was none.
      if (!dstExisted) await rm(dst!, { recursive: true, force: true });
      throw err;
    }
  },
};

function parseCount(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--threads must be a non-negative integer, not ${JSON.stringify(text)}`);
  return n;
}
