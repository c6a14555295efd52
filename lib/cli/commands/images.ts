// The image commands: pull, images, commit, push (rmi, tag, untag: tags.ts). Thin, as the others: the store
// (lib/store/images.ts) keeps the records, the transport (lib/image) moves the bytes.
// References in skopeo's syntax (docker://HOST/REPO:TAG, oci:DIR:TAG), and skopeo's
// flag names where a user would reach for them (--creds, --authfile, --tls-verify=false).
import { parseReference } from '../../index.js';
import type { CommitProgress, Compression, ImageInfo, LayerProgress, PushProgress, Store } from '../../index.js';
import { listOption, stringOption, UsageError } from '../command.js';
import type { Command, OptionSpec, OptionValues } from '../command.js';
import { formatOption, printFormatted } from '../format-option.js';
import { formatBytes, formatDuration, LayerBoard, ProgressBar } from '../progress.js';
import { formatAgo, table } from '../table.js';

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

/** A row of `ogd images`: one per name (an unnamed image has one row); podman's field names, for --format templates. */
export interface ImageRow {
  ID: string;
  Repository: string;
  Tag: string;
  /** The manifest's digest. */
  Digest: string;
  /** The image's creation time, from its config (not when it was pulled). */
  Created: string;
  CreatedSince: string;
  /** Bytes of its uncompressed layers. */
  Size: number;
  Names: string[];
  TopLayer: string | null;
}

/** "host:5000/repo/x:tag" → ["host:5000/repo/x", "tag"]; a digest name has no tag. */
function splitName(name: string): [string, string] {
  const at = name.indexOf('@');
  if (at >= 0) return [name.slice(0, at), '<none>'];
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? [name.slice(0, colon), name.slice(colon + 1)] : [name, 'latest'];
}

/** podman's `images NAME`: a name matches by repository (with or without its registry) or repository:tag. */
function nameMatches(name: string, filter: string): boolean {
  const [repo, tag] = splitName(name);
  const full = `${repo}:${tag}`;
  return [repo, full, name].some((n) => n === filter || n.endsWith(`/${filter}`));
}

async function imageRows(store: Store, list: ImageInfo[]): Promise<Array<{ info: ImageInfo; created: string; rows: ImageRow[] }>> {
  return Promise.all(
    list.map(async (info) => {
      const rec = await store.imageRecord(info.id);
      let created = info.created;
      try {
        const config = JSON.parse(Buffer.from(rec.config, 'base64').toString('utf8')) as { created?: unknown };
        if (typeof config.created === 'string' && Number.isFinite(Date.parse(config.created))) created = config.created;
      } catch {
        // a config that does not parse was refused at pull; keep the record's time
      }
      const base = { ID: info.id, Digest: info.digest, Created: created, CreatedSince: formatAgo(created), Size: info.size, Names: info.names, TopLayer: info.topLayer };
      const names = info.names.length > 0 ? info.names : [undefined];
      const rows = names.map((n) => {
        const [Repository, Tag] = n === undefined ? ['<none>', '<none>'] : splitName(n);
        return { ...base, Repository, Tag };
      });
      return { info, created, rows };
    }),
  );
}

export const images: Command = {
  name: 'images',
  usage: 'images [NAME] [-q] [--no-trunc] [--digests] [--format FMT]',
  summary: "list images, newest first: repository, tag, id, created (the image's own time), size; NAME keeps those of that repository or repository:tag",
  example: "ogd images debian --format '{{.Repository}}:{{.Tag}} {{.ID}}'",
  options: {
    all: { type: 'boolean', short: 'a', help: "podman's habit, accepted: every image is listed anyway" },
    quiet: { type: 'boolean', short: 'q', help: 'print the image ids only, once each' },
    'no-trunc': { type: 'boolean', help: 'print ids whole (sha256:…)', byDefault: 'their first 12 hex digits' },
    digests: { type: 'boolean', help: "add a column with each image's manifest digest" },
    format: formatOption('{{.Repository}}:{{.Tag}}'),
  },
  positionals: [0, 1],
  async run(ctx, [filter], values) {
    const store = await ctx.storeIfExists();
    const all = store === undefined ? [] : await imageRows(store, await store.images());
    const kept = all
      .map((i) => ({ ...i, rows: filter === undefined ? i.rows : i.rows.filter((r) => r.Repository !== '<none>' && nameMatches(`${r.Repository}:${r.Tag}`, filter)) }))
      .filter((i) => i.rows.length > 0)
      .sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
    // --json keeps its first shape; --format json has podman's, with the config's Created.
    ctx.result(kept.map(({ info }) => ({ id: info.id, names: info.names, topLayer: info.topLayer, digest: info.digest, size: info.size })));
    if (ctx.json) return;
    const whole = values['no-trunc'] === true;
    const id = (hex: string) => (whole ? `sha256:${hex}` : hex.slice(0, 12));
    if (values['quiet'] === true) {
      for (const i of kept) ctx.say(id(i.info.id));
      return;
    }
    if (stringOption(values, 'format') === 'json') {
      printFormatted(ctx, values, kept.map(({ info, created }) => ({ Id: info.id, Names: info.names, Digest: info.digest, Created: created, Size: info.size, TopLayer: info.topLayer, Layers: info.layers })));
      return;
    }
    const rows = kept.flatMap((i) => i.rows);
    if (printFormatted(ctx, values, rows)) return;
    const digests = values['digests'] === true;
    const header = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'];
    const lines = rows.map((r) => [r.Repository, r.Tag, ...(digests ? [r.Digest] : []), id(r.ID), r.CreatedSince, formatBytes(r.Size)]);
    for (const line of table([header, ...lines])) ctx.say(line);
  },
};

export const commit: Command = {
  name: 'commit',
  usage: 'commit CONTAINER NAME [-m MSG] [--author A] [--change INSTR]... [--compress C]',
  summary: "make the container's changes a new image layer on its image, named NAME; the container stays as it is",
  example: 'ogd commit web-1 myapp:v2 -m "add the site" --change \'CMD ["nginx", "-g", "daemon off;"]\' --change \'EXPOSE 80\'',
  options: {
    message: { type: 'string', short: 'm', value: 'MSG', help: "the history entry's comment", byDefault: 'none' },
    author: { type: 'string', short: 'a', value: 'A', help: "the image's author", byDefault: 'none' },
    change: { type: 'string', short: 'c', multiple: true, value: 'INSTR', help: 'a Dockerfile instruction for the image config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR' },
    ...compressOption,
  },
  positionals: [2, 2],
  async run(ctx, [arg, name], values) {
    const store = await ctx.store();
    const compression = compressionArg(this, values);
    const container = await store.resolveLayer(arg!, { images: false });
    const message = stringOption(values, 'message');
    const author = stringOption(values, 'author');
    const changes = listOption(values, 'change');
    // Two bars on a terminal: the diff tarred and compressed, then the new layer applied.
    let bar: ProgressBar | undefined;
    let phase: CommitProgress['phase'] | undefined;
    const onProgress = (p: CommitProgress) => {
      if (p.phase !== phase) {
        bar?.done();
        bar = ctx.progress(p.phase === 'diff' ? 'commit: diff + compress' : 'commit: apply');
        phase = p.phase;
      }
      bar!.update({ bytes: p.bytes, entries: p.entries ?? 0, ...(p.totalBytes !== undefined && p.totalBytes > 0 ? { totalBytes: p.totalBytes } : {}) });
    };
    const started = process.hrtime.bigint();
    let info: ImageInfo;
    try {
      info = await store.commit(container, name!, {
        signal: ctx.signal,
        createdBy: `ogd commit ${arg}`,
        ...(compression !== undefined ? { compression } : {}),
        ...(message !== undefined ? { comment: message } : {}),
        ...(author !== undefined ? { author } : {}),
        ...(changes.length > 0 ? { changes } : {}),
        ...(process.stderr.isTTY === true ? { onProgress } : {}),
      });
    } finally {
      bar?.done();
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.result(info);
    ctx.say(`committed ${arg} as ${info.names.join(', ')} (image ${short(info.id)}, top layer ${short(info.topLayer ?? '')}) in ${formatDuration(seconds)}`);
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
