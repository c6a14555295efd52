// Containers, as podman shows them: `ogd ps` (also `ogd containers`) lists the
// container layers apart from the image layers, with the image each stands on and
// whether it is mounted; `ogd remove` (also `ogd rm`) removes several layers at once,
// with podman-rm's exit codes: 1 when one did not exist, 2 when one is in use.
import type { ImageInfo, Layer, Store } from '../../index.js';
import { LayerInUseError, LayerNotFoundError } from '../../index.js';
import type { Command } from '../command.js';
import { EXIT_FAILURE, EXIT_IN_USE, EXIT_NO, EXIT_OK } from '../exit-codes.js';
import { formatOption, printFormatted } from '../format-option.js';
import { formatBytes } from '../progress.js';
import { failureLine, report } from '../report.js';
import type { FailureReport } from '../report.js';
import { formatAgo, shortId, table } from '../table.js';
import { treeBytes } from './layers.js';

/** A row of `ogd ps`; the field names are podman's, for --format templates. */
export interface ContainerListing {
  ID: string;
  /** The first name of the image whose top layer it stands on; else the parent layer's id; "" for none. */
  Image: string;
  ImageID: string;
  Parent: string | null;
  Names: string[];
  Created: string;
  Mounted: boolean;
  /** Live mount references. */
  References: number;
  /** Bytes the container wrote (its upper dir), with --size. */
  Size?: number;
}

function imageOf(parent: string | undefined, images: ImageInfo[]): ImageInfo | undefined {
  return parent === undefined ? undefined : images.find((i) => i.topLayer === parent);
}

async function listContainers(store: Store, withSize: boolean): Promise<ContainerListing[]> {
  const [layers, images] = await Promise.all([store.list(), store.images()]);
  return Promise.all(
    layers
      .filter((l: Layer) => l.kind === 'container')
      .sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0))
      .map(async (l) => {
        const image = imageOf(l.parent, images);
        const row: ContainerListing = {
          ID: l.id,
          Image: image?.names[0] ?? image?.id ?? l.parent ?? '',
          ImageID: image?.id ?? '',
          Parent: l.parent ?? null,
          Names: l.names,
          Created: l.created,
          Mounted: l.mountCount > 0,
          References: l.mountCount,
        };
        if (withSize) {
          const upper = (await store.metadata(l.id).catch(() => ({}) as Record<string, string>))['UpperDir'];
          row.Size = upper === undefined ? 0 : await treeBytes(upper);
        }
        return row;
      }),
  );
}

export const ps: Command = {
  name: 'ps',
  aliases: ['containers'],
  usage: 'ps [-q] [-s] [--no-trunc] [--format FMT]',
  summary: 'list container layers (not image layers): id, image, created, mounted, names',
  example: "ogd ps --format '{{.ID}} {{.Image}} {{.Mounted}}'",
  options: {
    all: { type: 'boolean', short: 'a', help: "podman's habit, accepted: every container is listed anyway" },
    quiet: { type: 'boolean', short: 'q', help: 'print the ids only' },
    size: { type: 'boolean', short: 's', help: 'add the bytes each container wrote' },
    'no-trunc': { type: 'boolean', help: 'print ids whole', byDefault: 'their first 12 hex digits' },
    format: formatOption('{{.ID}} {{.Image}}'),
  },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const store = await ctx.storeIfExists();
    const list = store === undefined ? [] : await listContainers(store, values['size'] === true);
    ctx.result(list);
    if (ctx.json || printFormatted(ctx, values, list)) return;
    const whole = values['no-trunc'] === true;
    if (values['quiet'] === true) {
      for (const c of list) ctx.say(shortId(c.ID, whole));
      return;
    }
    const header = ['CONTAINER ID', 'IMAGE', 'CREATED', 'MOUNTED', ...(values['size'] === true ? ['SIZE'] : []), 'NAMES'];
    const rows = list.map((c) => [
      shortId(c.ID, whole),
      c.Image === c.Parent ? shortId(c.Image, whole) : c.Image || '-',
      formatAgo(c.Created),
      c.Mounted ? `yes (${c.References})` : 'no',
      ...(values['size'] === true ? [formatBytes(c.Size ?? 0)] : []),
      c.Names.join(','),
    ]);
    for (const line of table([header, ...rows])) ctx.say(line);
  },
};

export const remove: Command = {
  name: 'remove',
  aliases: ['rm'],
  usage: 'remove [-f] ID...',
  summary: 'remove layers (containers or image layers), refused while one is mounted or has children; exit 1 if one did not exist, 2 if one is in use',
  example: 'ogd rm -f web-1 3f2a9c81d0e4',
  options: {
    force: { type: 'boolean', short: 'f', help: "unmount first, dropping every holder's references", byDefault: 'a mounted layer is refused' },
  },
  positionals: [1, Infinity],
  async run(ctx, args, values) {
    const store = await ctx.storeIfExists();
    const removed: string[] = [];
    const errors: FailureReport[] = [];
    let missing = 0;
    let inUse = 0;
    for (const arg of args) {
      try {
        if (store === undefined) throw new LayerNotFoundError(arg);
        const id = await store.resolveLayer(arg, { images: false });
        if (values['force'] === true) await store.unmount(id, { force: true });
        await store.remove(id);
        removed.push(id);
        ctx.say(id);
      } catch (err) {
        if (err instanceof LayerNotFoundError) missing++;
        else if (err instanceof LayerInUseError) inUse++;
        else if (ctx.signal.aborted) throw err;
        const r = report(err, ctx.commandName);
        errors.push(r);
        process.stderr.write(failureLine(r, `ogd ${ctx.commandName}`));
      }
    }
    if (ctx.json) process.stdout.write(JSON.stringify(errors.length > 0 ? { error: errors[0], errors, removed } : { removed }, null, 2) + '\n');
    if (errors.length > missing + inUse) return EXIT_FAILURE;
    return inUse > 0 ? EXIT_IN_USE : missing > 0 ? EXIT_NO : EXIT_OK;
  },
};
