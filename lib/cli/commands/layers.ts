// The bookkeeping commands: status, ls, exists, metadata, create, remove, cleanup.
// They are thin: the driver does the work, the index remembers parents and kinds.
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LayerInUseError } from '../../index.js';
import type { Driver } from '../../index.js';
import { parentOption, stringOption } from '../command.js';
import type { Command } from '../command.js';
import type { CliContext } from '../context.js';
import type { LayerKind } from '../layer-index.js';
import { mountedPaths } from '../mounts.js';
import { formatBytes } from '../progress.js';

export const status: Command = {
  name: 'status',
  usage: 'status',
  summary: "the driver's status: backing filesystem and the store's paths",
  example: 'ogd --home /var/lib/ogd status',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const driver = await ctx.driver();
    const pairs = driver.status();
    const layers = Object.keys(await ctx.index.all()).length;
    ctx.result({ driver: driver.name, home: ctx.home, driverHome: driver.home, layers, status: Object.fromEntries(pairs) });
    const rows: Array<[string, string]> = [['Driver', driver.name], ['Home', ctx.home], ...pairs, ['Layers', String(layers)]];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) ctx.say(`${(k + ':').padEnd(width + 1)} ${v}`);
  },
};

export interface LayerListing {
  id: string;
  kind: LayerKind | 'unknown';
  parent: string | null;
  /** Bytes of content applied (images) or in the upper dir (containers); null when unknown. */
  size: number | null;
  mounted: boolean;
}

export const ls: Command = {
  name: 'ls',
  usage: 'ls',
  summary: 'list layers: id, kind (image/container), parent, size, mounted',
  example: 'ogd ls --json',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const driver = await ctx.driver();
    const listing = await listLayers(ctx, driver);
    ctx.result(listing);
    if (ctx.json) return;
    const rows = [
      ['ID', 'KIND', 'PARENT', 'SIZE', 'MOUNTED'],
      ...listing.map((l) => [l.id, l.kind, l.parent ?? '-', l.size === null ? '-' : formatBytes(l.size), l.mounted ? 'yes' : 'no']),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) ctx.say(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
  },
};

async function listLayers(ctx: CliContext, driver: Driver): Promise<LayerListing[]> {
  const records = await ctx.index.all();
  const ids = new Set(Object.keys(records));
  // Layers made through the library rather than this CLI are listed too, without a parent.
  for (const name of await readdir(driver.home).catch(() => [] as string[])) {
    if (!ids.has(name) && (await driver.exists(name).catch(() => false))) ids.add(name);
  }
  const mounted = await mountedPaths();
  const listing: LayerListing[] = [];
  for (const id of [...ids].sort()) {
    if (!(await driver.exists(id).catch(() => false))) continue;
    const record = records[id];
    const meta = await driver.getMetadata(id).catch(() => ({}) as Record<string, string>);
    const merged = meta['MergedDir'];
    let size = record?.size ?? null;
    if (record?.kind === 'container' && meta['UpperDir'] !== undefined) size = await treeBytes(meta['UpperDir']);
    listing.push({
      id,
      kind: record?.kind ?? 'unknown',
      parent: record?.parent ?? null,
      size,
      mounted: merged !== undefined && mounted.has(merged),
    });
  }
  return listing;
}

/** Bytes of the regular files under `dir` (what a container wrote). */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    // Dirent.parentPath is Node >= 20.12; .path is its older name.
    const parent = e.parentPath ?? (e as { path?: string }).path ?? dir;
    if (e.isFile()) total += (await lstat(join(parent, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

export const exists: Command = {
  name: 'exists',
  usage: 'exists ID',
  summary: 'exit 0 if the layer exists, 1 if not (prints true/false)',
  example: 'ogd exists base && echo have base',
  options: {},
  positionals: [1, 1],
  async run(ctx, [id]) {
    const found = await (await ctx.driver()).exists(id!);
    ctx.result({ id, exists: found });
    ctx.say(String(found));
    return found ? 0 : 1;
  },
};

export const metadata: Command = {
  name: 'metadata',
  usage: 'metadata ID',
  summary: "the layer's directories (RootDir, or LowerDir/UpperDir/WorkDir/MergedDir)",
  example: 'ogd metadata web',
  options: {},
  positionals: [1, 1],
  async run(ctx, [id]) {
    const meta = await (await ctx.driver()).getMetadata(id!);
    const record = await ctx.index.get(id!);
    ctx.result({ id, ...(record ? { parent: record.parent ?? null, kind: record.kind } : {}), metadata: meta });
    for (const [k, v] of Object.entries(meta)) ctx.say(`${k}: ${v}`);
  },
};

export const create: Command = {
  name: 'create',
  usage: 'create ID [--parent P] [--rw] [--label L]',
  summary: 'create an empty layer (an image layer, or a container layer with --rw) on top of P',
  example: 'ogd create web-1 --parent app --rw',
  options: { ...parentOption, rw: { type: 'boolean' }, label: { type: 'string' } },
  positionals: [1, 1],
  async run(ctx, [id], values) {
    const driver = await ctx.driver();
    const parent = stringOption(values, 'parent') || undefined;
    const label = stringOption(values, 'label');
    const kind: LayerKind = values['rw'] === true ? 'container' : 'image';
    const opts = label !== undefined ? { mountLabel: label } : {};
    if (kind === 'container') await driver.createReadWrite(id!, parent, opts);
    else await driver.create(id!, parent, opts);
    await ctx.index.update((layers) => {
      layers[id!] = { kind, created: new Date().toISOString(), ...(parent ? { parent } : {}), ...(label !== undefined ? { label } : {}) };
    });
    ctx.result({ id, kind, parent: parent ?? null });
    ctx.say(`created ${kind} layer ${id}${parent ? ` on ${parent}` : ''}`);
  },
};

export const remove: Command = {
  name: 'remove',
  usage: 'remove ID',
  summary: 'remove a layer (refused while it is mounted or has children)',
  example: 'ogd remove web-1',
  options: {},
  positionals: [1, 1],
  async run(ctx, [id]) {
    const driver = await ctx.driver();
    const records = await ctx.index.all();
    // The driver, like containers/storage's, does not know a layer's children; the index does.
    const children = Object.entries(records)
      .filter(([, r]) => r.parent === id)
      .map(([child]) => child);
    if (children.length > 0) throw new LayerInUseError(id!, `it is the parent of ${children.join(', ')}`);
    if (await driver.exists(id!)) {
      const merged = (await driver.getMetadata(id!))['MergedDir'];
      if (merged !== undefined && (await mountedPaths()).has(merged)) throw new LayerInUseError(id!, `it is mounted at ${merged}; run "ogd unmount ${id}" first`);
    }
    await driver.remove(id!);
    await ctx.index.update((layers) => {
      delete layers[id!];
    });
    ctx.result({ id, removed: true });
    ctx.say(`removed ${id}`);
  },
};

export const cleanup: Command = {
  name: 'cleanup',
  usage: 'cleanup',
  summary: "unmount every layer of the store and the store's own bind mount (layers stay)",
  example: 'ogd cleanup',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const driver = await ctx.driver();
    const released: string[] = [];
    for (const layer of await listLayers(ctx, driver)) {
      if (!layer.mounted) continue;
      // A fresh process counts a mounted layer as one reference; put drops it.
      await driver.put(layer.id);
      released.push(layer.id);
    }
    await driver.cleanup();
    await ctx.index.update((layers) => {
      for (const r of Object.values(layers)) delete r.mounts;
    });
    ctx.result({ unmounted: released });
    ctx.say(released.length > 0 ? `unmounted ${released.join(', ')}; store released` : 'nothing mounted; store released');
  },
};
