// `ogd df` (also `ogd system df`, as podman users type it): what the store takes on
// disk and what a prune would reclaim, from the store's records (store.df()).
import type { StoreDf } from '../../index.js';
import type { CliContext } from '../context.js';
import type { Command, OptionSpec, OptionValues } from '../command.js';
import { formatBytes } from '../progress.js';

export const dfOptions: OptionSpec = {
  verbose: { type: 'boolean', short: 'v', help: 'every image, container and blob too', byDefault: 'the totals' },
  exact: { type: 'boolean', help: "walk every layer's tree instead of reading the recorded sizes", byDefault: 'the records' },
};

const short = (id: string) => id.slice(0, 12);

function percent(part: number, whole: number): string {
  return `${formatBytes(part)} (${whole === 0 ? 0 : Math.round((part / whole) * 100)}%)`;
}

function table(ctx: CliContext, rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) ctx.say(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
}

function printDf(ctx: CliContext, d: StoreDf, verbose: boolean): void {
  table(ctx, [
    ['TYPE', 'COUNT', 'SIZE', 'SHARED', 'UNIQUE', 'RECLAIMABLE'],
    ['Images', String(d.images.count), formatBytes(d.images.size), formatBytes(d.images.shared), formatBytes(d.images.unique), percent(d.images.reclaimable, d.images.size)],
    ['Layers', String(d.layers.count), formatBytes(d.layers.size), '-', '-', percent(d.layers.reclaimable, d.layers.size)],
    ['Containers', String(d.containers.count), formatBytes(d.containers.size), '-', '-', percent(d.containers.reclaimable, d.containers.size)],
    ['Blobs', String(d.blobs.count), formatBytes(d.blobs.size), '-', '-', percent(d.blobs.reclaimable, d.blobs.size)],
    ['Metadata', '-', formatBytes(d.metadata.size), '-', '-', '-'],
    ['Total', '-', formatBytes(d.total), '-', '-', '-'],
  ]);
  if (d.measured > 0) ctx.say(`(${d.measured} layer${d.measured > 1 ? 's' : ''} had no size in ${d.measured > 1 ? 'their records' : 'its record'}, from before sizes were recorded: measured now, and kept)`);
  if (!verbose) return;
  ctx.say('');
  table(ctx, [
    ['IMAGE ID', 'NAMES', 'CREATED', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS'],
    ...(d.images.items ?? []).map((i) => [short(i.id), i.names.join(',') || '<none>', i.created.slice(0, 19).replace('T', ' '), formatBytes(i.size), formatBytes(i.shared), formatBytes(i.unique), String(i.containers)]),
  ]);
  ctx.say('');
  table(ctx, [['CONTAINER', 'ON LAYER', 'SIZE', 'MOUNTED'], ...(d.containers.items ?? []).map((c) => [c.id, c.parent !== undefined ? short(c.parent) : '-', formatBytes(c.size), c.mounted === true ? 'yes' : 'no'])]);
  ctx.say('');
  table(ctx, [['BLOB', 'SIZE', 'IMAGES'], ...(d.blobs.items ?? []).map((b) => [b.digest.slice(0, 19), formatBytes(b.size), String(b.images)])]);
}

export async function runDf(ctx: CliContext, values: OptionValues): Promise<void> {
  const store = await ctx.storeIfExists();
  const verbose = values['verbose'] === true;
  if (store === undefined) {
    ctx.result(null);
    ctx.say(`no store at ${ctx.home}`);
    return;
  }
  const d = await store.df({ verbose, exact: values['exact'] === true });
  ctx.result(d);
  if (!ctx.json) printDf(ctx, d, verbose);
}

export const df: Command = {
  name: 'df',
  usage: 'df [-v] [--exact]',
  summary: 'disk used by images, layers, containers and blobs (each inode once, as du -sx counts), and what prune would reclaim; -v per item; --exact walks the trees instead of reading recorded sizes',
  example: 'ogd df -v',
  options: dfOptions,
  positionals: [0, 0],
  async run(ctx, _positionals, values) {
    await runDf(ctx, values);
  },
};
