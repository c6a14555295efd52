// `ogd inspect IMAGE|LAYER|CONTAINER…`: what the store knows about each, as a JSON
// array (podman's habit), or through --format TEMPLATE once per object. An image
// shows podman's fields (Id, RepoTags, Created, Author, Config, RootFS, History…) and
// its manifest, layers and record; a layer or container its record, mount state and
// directories (GraphDriver.Data, as podman shows them).
import { ImageNotFoundError, LayerNotFoundError } from '../../index.js';
import type { ImageRecord, Layer, Store } from '../../index.js';
import { stringOption, UsageError } from '../command.js';
import type { Command } from '../command.js';
import { compileTemplate } from '../template.js';

type Kind = 'image' | 'layer' | 'container';

function decode(what: string, base64: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(base64, 'base64').toString('utf8')) as Record<string, unknown>;
  } catch {
    return { error: `the recorded ${what} is not JSON` };
  }
}

async function inspectImage(store: Store, rec: ImageRecord): Promise<Record<string, unknown>> {
  const config = decode('config', rec.config);
  const manifest = decode('manifest', rec.manifest);
  const info = await store.image(rec.id);
  const layers = await store.list();
  return {
    Type: 'image',
    Id: rec.id,
    Digest: rec.digest,
    RepoTags: rec.names,
    Names: rec.names,
    Created: config['created'] ?? null,
    Author: config['author'] ?? '',
    Architecture: config['architecture'] ?? '',
    Os: config['os'] ?? '',
    ...(config['variant'] !== undefined ? { Variant: config['variant'] } : {}),
    Config: config['config'] ?? {},
    RootFS: config['rootfs'] ?? null,
    History: config['history'] ?? [],
    Size: info.size,
    TopLayer: rec.topLayer ?? null,
    Layers: rec.layers.map((l) => ({ Id: l.id, DiffID: l.diffId, Blob: { MediaType: l.blob.mediaType, Digest: l.blob.digest, Size: l.blob.size } })),
    Containers: layers.filter((l) => l.kind === 'container' && l.parent !== undefined && l.parent === rec.topLayer).map((l) => l.id),
    ManifestType: manifest['mediaType'] ?? null,
    Manifest: manifest,
    Record: { Stored: rec.created },
  };
}

async function inspectLayer(store: Store, layer: Layer): Promise<Record<string, unknown>> {
  const [metadata, images] = await Promise.all([store.metadata(layer.id).catch(() => ({})), store.images()]);
  const image = layer.parent === undefined ? undefined : images.find((i) => i.topLayer === layer.parent);
  return {
    Type: layer.kind === 'container' ? 'container' : 'layer',
    Id: layer.id,
    Names: layer.names,
    Parent: layer.parent ?? null,
    ...(layer.kind === 'container' ? { Image: image?.names[0] ?? image?.id ?? null, ImageID: image?.id ?? null } : { Images: images.filter((i) => i.layers.includes(layer.id)).map((i) => i.id) }),
    Created: layer.created,
    MountLabel: layer.mountLabel ?? '',
    Mounted: layer.mountCount > 0,
    References: layer.mountCount,
    Holders: layer.holders,
    DiffSize: layer.diffSize ?? null,
    UncompressedSize: layer.uncompressedSize ?? null,
    UncompressedDigest: layer.uncompressedDigest ?? null,
    GraphDriver: { Name: store.driverName, Data: metadata },
  };
}

async function inspectOne(store: Store, arg: string, type: Kind | 'all'): Promise<Record<string, unknown>> {
  const found = await store.resolve(arg, { images: type !== 'layer' && type !== 'container' }).catch((err: unknown) => {
    if (err instanceof LayerNotFoundError && type === 'image') throw new ImageNotFoundError(arg);
    throw err;
  });
  if (found.kind === 'image') {
    if (type !== 'all' && type !== 'image') throw new LayerNotFoundError(arg);
    return inspectImage(store, await store.imageRecord(found.id));
  }
  const layer = await store.layer(found.id);
  const kind: Kind = layer.kind === 'container' ? 'container' : 'layer';
  if (type === 'image') throw new ImageNotFoundError(arg, `is a ${kind === 'container' ? 'container' : 'layer'}, not an image`);
  if (type !== 'all' && type !== kind) throw new LayerNotFoundError(arg, { cause: new Error(`it is ${kind === 'container' ? 'a container' : 'an image layer'}`) });
  return inspectLayer(store, layer);
}

export const inspect: Command = {
  name: 'inspect',
  usage: 'inspect [--type T] [--format FMT] NAME|ID...',
  summary: 'show images, image layers and containers in full: an image its manifest, config and layers; a layer its record, mounts and directories',
  example: "ogd inspect debian:bookworm --format '{{.Config.Env}}'",
  options: {
    type: { type: 'string', short: 't', value: 'T', help: 'only this kind: image, layer, container or all', byDefault: 'all' },
    format: { type: 'string', short: 'f', value: 'FMT', help: "a Go template per object, e.g. '{{.Id}}' or '{{json .Config}}'", byDefault: 'a JSON array' },
  },
  positionals: [1, Infinity],
  async run(ctx, args, values) {
    const type = stringOption(values, 'type') ?? 'all';
    if (!['image', 'layer', 'container', 'all'].includes(type)) throw new UsageError(`--type takes image, layer, container or all, not ${JSON.stringify(type)}`, this);
    const format = stringOption(values, 'format');
    // A template that does not parse fails before the store is read.
    const render = format !== undefined && format !== 'json' && !ctx.json ? compileTemplate(format) : undefined;
    const store = await ctx.storeIfExists();
    if (store === undefined) throw type === 'image' ? new ImageNotFoundError(args[0]!) : new LayerNotFoundError(args[0]!);
    const objects: Array<Record<string, unknown>> = [];
    for (const arg of args) objects.push(await inspectOne(store, arg, type as Kind | 'all'));
    if (render === undefined) {
      process.stdout.write(JSON.stringify(objects, null, 2) + '\n');
      return;
    }
    process.stdout.write(objects.map((o) => render(o)).map((l) => (l.endsWith('\n') ? l : `${l}\n`)).join(''));
  },
};
