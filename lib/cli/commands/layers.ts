// The bookkeeping commands: status, ls, exists, metadata, create, cleanup, check
// (remove is with ps, in containers.ts). They are thin: the store does the work and keeps the records. Read-only
// commands on a home without a store say so and create nothing.
import { randomBytes } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Layer, LayerKind, Store } from '../../index.js';
import { LayerExistsError, LayerNotFoundError } from '../../index.js';
import { stringOption } from '../command.js';
import type { Command } from '../command.js';
import { formatBytes } from '../progress.js';
import { shortId, table } from '../table.js';

export const status: Command = {
  name: 'status',
  usage: 'status',
  summary: "the driver's status: backing filesystem and the store's paths",
  example: 'ogd --home /var/lib/ogd status',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const store = await ctx.storeIfExists();
    if (store === undefined) {
      ctx.result({ driver: ctx.driverName ?? 'overlay', home: ctx.home, exists: false, layers: 0 });
      ctx.say(`no store at ${ctx.home}`);
      return;
    }
    const pairs = store.status();
    const layers = (await store.list()).length;
    ctx.result({ driver: store.driverName, home: ctx.home, exists: true, layers, status: Object.fromEntries(pairs) });
    const rows: Array<[string, string]> = [['Driver', store.driverName], ['Home', ctx.home], ...pairs, ['Layers', String(layers)]];
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, v] of rows) ctx.say(`${(k + ':').padEnd(width + 1)} ${v}`);
  },
};

export interface LayerListing {
  id: string;
  kind: LayerKind;
  parent: string | null;
  /** Bytes of content applied (images) or in the upper dir (containers); null when unknown. */
  size: number | null;
  mounted: boolean;
  /** Live mount references (ogd mounts and library holders). */
  references: number;
}

export const ls: Command = {
  name: 'ls',
  usage: 'ls [--no-trunc]',
  summary: 'list every layer, image layers and containers: id, kind, parent, size, mounted',
  example: 'ogd ls --json',
  options: { 'no-trunc': { type: 'boolean', help: 'print 64-hex ids whole', byDefault: 'their first 12 hex digits' } },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const store = await ctx.storeIfExists();
    const listing = store === undefined ? [] : await listLayers(store);
    ctx.result(listing);
    if (ctx.json) return;
    if (store === undefined) {
      ctx.say(`no store at ${ctx.home}`);
      return;
    }
    const whole = values['no-trunc'] === true;
    const rows = [
      ['ID', 'KIND', 'PARENT', 'SIZE', 'MOUNTED'],
      ...listing.map((l) => [shortId(l.id, whole), l.kind, l.parent === null ? '-' : shortId(l.parent, whole), l.size === null ? '-' : formatBytes(l.size), l.references > 0 ? 'yes' : 'no']),
    ];
    for (const line of table(rows)) ctx.say(line);
  },
};

async function listLayers(store: Store): Promise<LayerListing[]> {
  return Promise.all(
    (await store.list()).map(async (l: Layer) => {
      let size = l.diffSize ?? null;
      if (l.kind === 'container') {
        const upper = (await store.metadata(l.id).catch(() => ({}) as Record<string, string>))['UpperDir'];
        if (upper !== undefined) size = await treeBytes(upper);
      }
      return { id: l.id, kind: l.kind, parent: l.parent ?? null, size, mounted: l.mountCount > 0, references: l.mountCount };
    }),
  );
}

/** Bytes of the regular files under `dir` (what a container wrote). */
export async function treeBytes(dir: string): Promise<number> {
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
  summary: 'exit 0 if the layer (or image) exists, 1 if not; prints true/false',
  example: 'ogd exists base && echo have base',
  options: {},
  positionals: [1, 1],
  async run(ctx, [id]) {
    const store = await ctx.storeIfExists();
    const found =
      store !== undefined &&
      (await store.resolveLayer(id!).then(
        () => true,
        (err: unknown) => {
          if (err instanceof LayerNotFoundError) return false;
          throw err;
        },
      ));
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
  async run(ctx, [arg]) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new LayerNotFoundError(arg!);
    const id = await store.resolveLayer(arg!);
    const meta = await store.metadata(id);
    const layer = await store.layer(id);
    ctx.result({ id, parent: layer.parent ?? null, kind: layer.kind, metadata: meta });
    for (const [k, v] of Object.entries(meta)) ctx.say(`${k}: ${v}`);
  },
};

export const create: Command = {
  name: 'create',
  usage: 'create [ID] [--parent P] [--rw] [--name NAME] [--label L]',
  summary: 'create an empty layer: an image layer, or a container with --rw; without ID it gets a new 64-hex id, printed',
  example: 'ogd create --rw --parent debian:bookworm --name web-1',
  options: {
    parent: { type: 'string', value: 'P', help: 'the layer to stand on: a layer id, short id or name, or an image name (its top layer)', byDefault: 'none, a base layer' },
    rw: { type: 'boolean', help: 'a container layer (writable, mounted as an overlay)', byDefault: 'an image layer' },
    label: { type: 'string', value: 'L', help: 'SELinux mount label of the layer' },
    name: { type: 'string', value: 'NAME', help: 'a name that commands take in place of the id (podman --name)', byDefault: 'none' },
  },
  positionals: [0, 1],
  async run(ctx, [given], values) {
    const store = await ctx.store();
    // podman's ids: 32 random bytes in hex, when the caller names none.
    const id = given ?? randomBytes(32).toString('hex');
    const name = stringOption(values, 'name');
    if (name !== undefined) {
      const taken = (await store.list()).find((l) => l.id === name || l.names.includes(name));
      if (taken !== undefined) throw new LayerExistsError(name);
    }
    const named = stringOption(values, 'parent') || undefined;
    // An image name stands for its top layer (ogd create web-1 --rw --parent debian:bookworm).
    const parent = named !== undefined ? await store.resolveLayer(named) : undefined;
    const label = stringOption(values, 'label');
    const kind: LayerKind = values['rw'] === true ? 'container' : 'image';
    await store.create(id, { kind, ...(parent ? { parent } : {}), ...(label !== undefined ? { mountLabel: label } : {}), ...(name !== undefined ? { names: [name] } : {}) });
    ctx.result({ id, kind, parent: parent ?? null, names: name !== undefined ? [name] : [] });
    // A generated id is the answer, alone on its line (as podman create prints it).
    if (given === undefined) ctx.say(id);
    else ctx.say(`created ${kind} layer ${id}${parent ? ` on ${parent}` : ''}`);
  },
};

export const cleanup: Command = {
  name: 'cleanup',
  usage: 'cleanup [--force]',
  summary: "release `ogd mount`s and the store's own mount when no other process uses it (--force: every mount of every holder)",
  example: 'ogd cleanup',
  options: { force: { type: 'boolean', help: 'also release every other holder\'s mounts and the store\'s own' } },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const store = await ctx.storeIfExists();
    if (store === undefined) {
      ctx.result({ unmounted: [], homeReleased: false });
      ctx.say(`no store at ${ctx.home}`);
      return;
    }
    const { unmounted, homeReleased } = await store.cleanup({ detached: true, force: values['force'] === true });
    ctx.result({ unmounted, homeReleased });
    const what = unmounted.length > 0 ? `unmounted ${unmounted.join(', ')}` : 'nothing unmounted';
    ctx.say(`${what}; ${homeReleased ? 'store released' : 'store still in use by another process (ogd cleanup --force releases it anyway)'}`);
  },
};

export const check: Command = {
  name: 'check',
  usage: 'check [--repair [--force]] [--deep]',
  summary: "check the store's records against its disk, mounts and blobs; --repair fixes what it can",
  example: 'ogd check --repair',
  options: {
    repair: { type: 'boolean', help: 'fix what can be fixed (rebuilding rather than deleting), then check again' },
    force: { type: 'boolean', help: 'with --repair: delete what cannot be rebuilt instead of moving it to HOME/lost+found' },
    deep: { type: 'boolean', help: 'also hash every kept blob and check image layers through their blobs' },
  },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const store = await ctx.storeIfExists();
    if (store === undefined) {
      ctx.result({ ok: true, problems: [], exists: false });
      ctx.say(`no store at ${ctx.home}`);
      return 0;
    }
    const deep = values['deep'] === true;
    if (values['repair'] === true) {
      const report = await store.repair({ deep, force: values['force'] === true });
      ctx.result({ ok: report.remaining.length === 0, repaired: report.repaired, problems: report.remaining });
      for (const p of report.repaired) ctx.say(`repaired: ${p.message}: ${p.repair}`);
      for (const p of report.remaining) ctx.say(`problem: ${p.message}`);
      if (report.repaired.length === 0 && report.remaining.length === 0) ctx.say('ok: nothing to repair');
      return report.remaining.length === 0 ? 0 : 1;
    }
    const report = await store.check({ deep });
    ctx.result(report);
    for (const p of report.problems) ctx.say(`problem (${p.kind}): ${p.message} [--repair: ${p.repair}]`);
    for (const p of report.reclaimable) ctx.say(`reclaimable: ${p.message} [--repair: ${p.repair}]`);
    if (report.reclaimable.length > 0) ctx.say(`${formatBytes(report.reclaimable.reduce((n, p) => n + (p.size ?? 0), 0))} reclaimable (ogd check --repair deletes it)`);
    if (report.ok) ctx.say('ok');
    return report.ok ? 0 : 1;
  },
};
