// The image commands: pull, images, rmi, commit, push. Thin, as the others: the store
// (lib/store/images.ts) keeps the records, the transport (lib/image) moves the bytes.
// References in skopeo's syntax (docker://HOST/REPO:TAG, oci:DIR:TAG), and skopeo's
// flag names where a user would reach for them (--creds, --authfile, --tls-verify=false).
import { ImageNotFoundError, parseReference } from '../../index.js';
import type { Compression, ImageInfo, LayerProgress, PushProgress } from '../../index.js';
import { stringOption, UsageError } from '../command.js';
import type { Command, OptionSpec, OptionValues } from '../command.js';
import { formatBytes, formatDuration, LayerBoard } from '../progress.js';

const registryOptions: OptionSpec = {
  creds: { type: 'string', value: 'U:P', help: 'registry user and password', byDefault: 'from the auth files (ogd login)' },
  authfile: { type: 'string', value: 'FILE', help: 'the auth file to read credentials from', byDefault: '$REGISTRY_AUTH_FILE, then podman\'s and docker\'s' },
  'tls-verify': { type: 'string', value: 'BOOL', help: 'false: plain HTTP or a certificate not verified', byDefault: 'true' },
};
const compressOption: OptionSpec = {
  compress: { type: 'string', value: 'C', help: 'layer compression: gzip, zstd or none', byDefault: 'gzip' },
};

function registryArgs(command: Command, values: OptionValues): { creds?: string; authFiles?: string[]; tlsVerify?: boolean } {
  const tls = stringOption(values, 'tls-verify');
  if (tls !== undefined && tls !== 'true' && tls !== 'false') throw new UsageError('--tls-verify takes true or false (--tls-verify=false)', command);
  const creds = stringOption(values, 'creds');
  const authfile = stringOption(values, 'authfile');
  return {
    ...(creds !== undefined ? { creds } : {}),
    ...(authfile !== undefined ? { authFiles: [authfile] } : {}),
    ...(tls !== undefined ? { tlsVerify: tls === 'true' } : {}),
  };
}

function compressionArg(command: Command, values: OptionValues): Compression | undefined {
  const c = stringOption(values, 'compress');
  if (c === undefined) return undefined;
  if (c !== 'gzip' && c !== 'zstd' && c !== 'none') throw new UsageError(`--compress takes gzip, zstd or none, not ${JSON.stringify(c)}`, command);
  return c;
}

const short = (id: string) => id.slice(0, 12);

export const pull: Command = {
  name: 'pull',
  usage: 'pull REF [--creds U:P] [--authfile F] [--tls-verify=false] [--platform OS/ARCH]',
  summary: 'pull an image (docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG]) into the store; layers it has are not fetched; --platform os/arch[/variant] picks from an index',
  example: 'ogd pull docker://127.0.0.1:5000/debian:bookworm --tls-verify=false && ogd create web-1 --rw --parent debian:bookworm',
  options: { ...registryOptions, platform: { type: 'string', value: 'OS/ARCH', help: 'the platform to pick from a multi-platform image', byDefault: "this machine's" } },
  positionals: [1, 1],
  async run(ctx, [ref], values) {
    // A reference that does not parse is refused before a store is opened (or made).
    parseReference(ref!);
    const args = registryArgs(this, values);
    const store = await ctx.store();
    const board = new LayerBoard();
    const started = process.hrtime.bigint();
    const onProgress = (p: LayerProgress) => {
      const amount = p.phase === 'downloading' ? `${formatBytes(p.bytes)} / ${formatBytes(p.totalBytes)}` : p.phase === 'exists' ? '' : formatBytes(p.totalBytes);
      board.set(String(p.layer), `layer ${p.layer + 1} ${short(p.id)}  ${p.phase === 'exists' ? 'already in the store' : p.phase}  ${amount}`, p.phase !== 'downloading');
    };
    const platform = stringOption(values, 'platform');
    try {
      const r = await store.pull(ref!, { ...args, ...(platform !== undefined ? { platform } : {}), signal: ctx.signal, onProgress });
      board.done();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const fetched = r.fetched.reduce((a, b) => a + b, 0);
      ctx.result({ ...r, seconds });
      const applied = r.applied.filter((a) => a).length;
      ctx.say(`pulled ${r.names[0] ?? ref} (image ${short(r.id)}, ${r.layers.length} layers: ${applied} applied, ${r.layers.length - applied} already here; ${formatBytes(fetched)} fetched) in ${formatDuration(seconds)}`);
    } finally {
      board.done();
    }
  },
};

export const images: Command = {
  name: 'images',
  usage: 'images',
  summary: 'list images: id, names, top layer, manifest digest, size',
  example: 'ogd images --json',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const store = await ctx.storeIfExists();
    const list: ImageInfo[] = store === undefined ? [] : await store.images();
    ctx.result(list.map((i) => ({ id: i.id, names: i.names, topLayer: i.topLayer, digest: i.digest, size: i.size })));
    if (ctx.json) return;
    const rows = [['ID', 'NAMES', 'TOP LAYER', 'DIGEST', 'SIZE'], ...list.map((i) => [short(i.id), i.names.join(',') || '-', i.topLayer ? short(i.topLayer) : '-', i.digest.slice(0, 19), formatBytes(i.size)])];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) ctx.say(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd());
  },
};

export const rmi: Command = {
  name: 'rmi',
  usage: 'rmi NAME|ID',
  summary: 'remove an image and the layers no other image uses (refused while a container stands on it)',
  example: 'ogd rmi debian:bookworm',
  options: {},
  positionals: [1, 1],
  async run(ctx, [name]) {
    const store = await ctx.storeIfExists();
    if (store === undefined) throw new ImageNotFoundError(name!);
    const info = await store.image(name!);
    await store.removeImage(info.id);
    ctx.result({ id: info.id, names: info.names, removed: true });
    ctx.say(`removed image ${short(info.id)}${info.names.length > 0 ? ` (${info.names.join(', ')})` : ''}`);
  },
};

export const commit: Command = {
  name: 'commit',
  usage: 'commit CONTAINER NAME [--compress C]',
  summary: "make the container's changes a new image layer on its image, named NAME; the container stays as it is; --compress as for push",
  example: 'ogd commit web-1 myapp:v2 && ogd push myapp:v2 docker://registry.example.com/myapp:v2',
  options: { ...compressOption },
  positionals: [2, 2],
  async run(ctx, [container, name], values) {
    const store = await ctx.store();
    const compression = compressionArg(this, values);
    const started = process.hrtime.bigint();
    const info = await store.commit(container!, name!, { signal: ctx.signal, ...(compression !== undefined ? { compression } : {}) });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.result(info);
    ctx.say(`committed ${container} as ${info.names.join(', ')} (image ${short(info.id)}, top layer ${short(info.topLayer ?? '')}) in ${formatDuration(seconds)}`);
  },
};

export const push: Command = {
  name: 'push',
  usage: 'push NAME REF [--compress C] [--creds U:P] [--authfile F] [--tls-verify=false]',
  summary: 'push an image to a registry (docker://…) or an OCI layout (oci:DIR:TAG); blobs the destination has are not sent; --compress gzip (default), zstd or none',
  example: 'ogd push myapp:v2 docker://127.0.0.1:5000/myapp:v2 --tls-verify=false',
  options: { ...registryOptions, ...compressOption },
  positionals: [2, 2],
  async run(ctx, [name, ref], values) {
    const store = await ctx.store();
    const compression = compressionArg(this, values);
    const board = new LayerBoard();
    const onProgress = (p: PushProgress) => board.set(p.digest, `${p.kind} ${p.digest.slice(7, 19)}  ${p.phase === 'exists' ? 'already there' : p.phase}  ${formatBytes(p.size)}`, true);
    const started = process.hrtime.bigint();
    try {
      const r = await store.push(name!, ref!, { ...registryArgs(this, values), ...(compression !== undefined ? { compression } : {}), signal: ctx.signal, onProgress });
      board.done();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      ctx.result({ ...r, seconds });
      const sent = r.layers.filter((l) => l.sent);
      ctx.say(`pushed ${name} to ${ref} (${r.digest}; ${sent.length} of ${r.layers.length} layers sent, ${formatBytes(sent.reduce((n, l) => n + l.size, 0))}) in ${formatDuration(seconds)}`);
    } finally {
      board.done();
    }
  },
};
