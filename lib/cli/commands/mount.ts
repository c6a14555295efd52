// `ogd mount` / `ogd unmount`. The driver counts mounts per process, but a mount made
// by `ogd mount` must outlive its process. So the CLI keeps the count itself, in the
// layer index, and checks it against the kernel's mount table (which wins after a reboot
// or a manual umount). The first `ogd mount` mounts; `ogd unmount` releases one
// reference and unmounts with the last. In a fresh process the driver sees an already
// mounted layer as holding one reference, so its put() unmounts it.
import { stringOption } from '../command.js';
import type { Command } from '../command.js';
import type { CliContext } from '../context.js';
import { mountedPaths } from '../mounts.js';

async function isMounted(ctx: CliContext, id: string): Promise<boolean> {
  const merged = (await (await ctx.driver()).getMetadata(id))['MergedDir'];
  return merged !== undefined && (await mountedPaths()).has(merged);
}

export const mount: Command = {
  name: 'mount',
  usage: 'mount ID [--label L]',
  summary: "mount the layer (if it needs it) and print its filesystem's path",
  example: 'cd "$(ogd mount web-1)"',
  options: { label: { type: 'string' } },
  positionals: [1, 1],
  async run(ctx, [id], values) {
    const driver = await ctx.driver();
    const label = stringOption(values, 'label') ?? (await ctx.index.get(id!))?.label;
    const wasMounted = await isMounted(ctx, id!);
    const path = await driver.get(id!, label !== undefined ? { mountLabel: label } : {});
    await ctx.index.update((layers) => {
      const record = layers[id!] ?? { kind: 'container', created: new Date().toISOString() };
      // A count without a mount behind it is stale (reboot, manual umount): start over.
      record.mounts = (wasMounted ? (record.mounts ?? 0) : 0) + 1;
      layers[id!] = record;
    });
    ctx.result({ id, path });
    ctx.say(path);
  },
};

export const unmount: Command = {
  name: 'unmount',
  usage: 'unmount ID [--force] [--lazy]',
  summary: 'release one `ogd mount` of the layer; the last one unmounts it (--force: unmount now; --lazy: detach even if busy)',
  example: 'ogd unmount web-1',
  options: { force: { type: 'boolean' }, lazy: { type: 'boolean' } },
  positionals: [1, 1],
  async run(ctx, [id], values) {
    const driver = await ctx.driver();
    const mounted = await isMounted(ctx, id!);
    const held = mounted ? Math.max((await ctx.index.get(id!))?.mounts ?? 1, 1) : 0;
    const left = values['force'] === true ? 0 : Math.max(held - 1, 0);
    if (mounted && left === 0) await driver.put(id!, { lazy: values['lazy'] === true });
    await ctx.index.update((layers) => {
      const record = layers[id!];
      if (record === undefined) return;
      if (left > 0) record.mounts = left;
      else delete record.mounts;
    });
    const stillMounted = mounted && left > 0;
    ctx.result({ id, mounted: stillMounted, references: left });
    ctx.say(!mounted ? `${id} was not mounted` : stillMounted ? `${id} stays mounted (${left} more)` : `unmounted ${id}`);
  },
};
