// `ogd version` (what --version prints, podman's command for it) and `ogd info`
// (podman's: the host, the store and the versions in one document; YAML-like text,
// or JSON with --json / --format json, or a template: --format '{{.Store.Driver}}').
import { arch, cpus, freemem, hostname, platform, release, totalmem } from 'node:os';
import { authFilePath } from '../../index.js';
import { stringOption } from '../command.js';
import type { Command, OptionValues } from '../command.js';
import type { CliContext } from '../context.js';
import { compileTemplate } from '../template.js';
import { formatVersion, versionInfo } from '../version.js';

const formatFlag = { type: 'string', short: 'f', value: 'FMT', help: "json, or a Go template, e.g. '{{.Host.Kernel}}'", byDefault: 'text' } as const;

/** --format json / a template: printed here (true); otherwise the caller prints text. */
function printAs(ctx: CliContext, values: OptionValues, doc: unknown): boolean {
  const format = stringOption(values, 'format');
  if (ctx.json || format === 'json') {
    process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
    return true;
  }
  if (format === undefined) return false;
  const line = compileTemplate(format)(doc);
  process.stdout.write(line.endsWith('\n') ? line : `${line}\n`);
  return true;
}

export const version: Command = {
  name: 'version',
  usage: 'version [--format FMT]',
  summary: 'versions of ogd, Node, N-API, the addon in use and the kernel (as --version)',
  example: "ogd version --format '{{.Kernel}}'",
  options: { format: formatFlag },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const v = await versionInfo();
    // The document --version --json prints; a template's fields match ignoring case ({{.Ogd}}).
    if (printAs(ctx, values, v)) return;
    process.stdout.write(formatVersion(v));
  },
};

/** Nested objects as indented "key: value" lines (the shape of podman info's YAML). */
function yamlish(value: unknown, indent = ''): string[] {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      lines.push(`${indent}${k}:${Object.keys(v).length === 0 ? ' {}' : ''}`, ...yamlish(v, indent + '  '));
    } else if (Array.isArray(v)) {
      lines.push(`${indent}${k}:${v.length === 0 ? ' []' : ''}`, ...v.map((x) => `${indent}- ${typeof x === 'object' ? JSON.stringify(x) : String(x)}`));
    } else {
      lines.push(`${indent}${k}: ${v === null ? '~' : String(v)}`);
    }
  }
  return lines;
}

export const info: Command = {
  name: 'info',
  usage: 'info [--format FMT]',
  summary: 'the host, the store (home, driver, its status, layer and image counts) and the versions, in one document',
  example: "ogd info --format '{{.Store.GraphDriverName}}'",
  options: { format: formatFlag },
  positionals: [0, 0],
  async run(ctx, _args, values) {
    const v = await versionInfo();
    const store = await ctx.storeIfExists();
    const layers = store === undefined ? [] : await store.list();
    const images = store === undefined ? [] : await store.images();
    const doc = {
      Host: {
        // Go's names, as podman prints them (amd64, not x64).
        Arch: arch() === 'x64' ? 'amd64' : arch() === 'ia32' ? '386' : arch(),
        Os: platform(),
        Kernel: release(),
        Hostname: hostname(),
        Cpus: cpus().length,
        MemTotal: totalmem(),
        MemFree: freemem(),
        Rootless: process.getuid?.() !== 0,
        OverlayAvailable: v.overlay.available,
      },
      Store: {
        GraphRoot: ctx.home,
        Exists: store !== undefined,
        GraphDriverName: store?.driverName ?? ctx.driverName ?? 'overlay',
        GraphStatus: store === undefined ? {} : Object.fromEntries(store.status()),
        ImageStore: { Number: images.length },
        ContainerStore: { Number: layers.filter((l) => l.kind === 'container').length },
        LayerStore: { Number: layers.length },
        AuthFile: authFilePath(),
      },
      Version: { Ogd: v.ogd, Node: v.node, Napi: v.napi.node, AddonNapi: v.napi.addon, Addon: v.addon },
    };
    if (printAs(ctx, values, doc)) return;
    process.stdout.write(yamlish(doc).join('\n') + '\n');
  },
};
