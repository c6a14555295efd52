// `ogd prune`, and `ogd image prune` / `ogd system prune` as podman users type them:
// the store's prune (lib/store/prune.ts) with podman's flags where podman has one
// (-a/--all, --filter until=DURATION, -f/--force, which only skips a question we never
// ask) and ours where it has none (--containers, --older-than, --dry-run).
import type { StorePruneOptions, StorePruneResult } from '../../index.js';
import type { CliContext } from '../context.js';
import { listOption, stringOption, UsageError } from '../command.js';
import type { Command, OptionSpec, OptionValues } from '../command.js';
import { formatBytes } from '../progress.js';
import { dfOptions, runDf } from './df.js';

const pruneOptions: OptionSpec = {
  all: { type: 'boolean', short: 'a', help: 'every image no container uses', byDefault: 'dangling images only' },
  containers: { type: 'boolean', help: 'container layers nobody holds mounted too (system prune: always)', byDefault: 'kept' },
  filter: { type: 'string', multiple: true, value: 'until=DUR', help: "podman's filter: only what is older than DUR (24h, 90m) or a timestamp" },
  'older-than': { type: 'string', value: 'DUR', help: 'only what is older than DUR (24h, 90m) or a timestamp', byDefault: 'any age' },
  force: { type: 'boolean', short: 'f', help: 'accepted as podman has it; prune asks nothing' },
  'dry-run': { type: 'boolean', help: 'say what would go, remove nothing' },
};

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Milliseconds in a Go duration ("90m", "1h30m", "24h") as podman's until= takes it,
 * or the age of a timestamp (RFC 3339 or seconds since the epoch).
 */
export function parseAge(text: string, now = Date.now()): number | undefined {
  if (/^\d+(\.\d+)?$/.test(text)) return Math.max(0, now - Number(text) * 1000);
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (parts.length > 0 && parts.map((p) => p[0]).join('') === text) return parts.reduce((n, p) => n + Number(p[1]) * UNITS[p[2]!]!, 0);
  const at = Date.parse(text);
  return Number.isNaN(at) || !/^\d{4}-\d\d-\d\d/.test(text) ? undefined : Math.max(0, now - at);
}

function pruneArgs(command: Command, values: OptionValues, scope: 'store' | 'image' | 'system'): StorePruneOptions {
  const filters = listOption(values, 'filter');
  let olderThan: number | undefined;
  for (const f of filters) {
    const m = /^until=(.+)$/.exec(f);
    if (m === null) throw new UsageError(`unsupported filter ${JSON.stringify(f)} (until=DURATION or until=TIMESTAMP)`, command);
    olderThan = parseAge(m[1]!);
    if (olderThan === undefined) throw new UsageError(`until= takes a duration (24h, 90m) or a timestamp, not ${JSON.stringify(m[1])}`, command);
  }
  const older = stringOption(values, 'older-than');
  if (older !== undefined) {
    olderThan = parseAge(older);
    if (olderThan === undefined) throw new UsageError(`--older-than takes a duration (24h, 90m) or a timestamp, not ${JSON.stringify(older)}`, command);
  }
  const containers = scope === 'system' || (scope === 'store' && values['containers'] === true);
  if (scope === 'image' && values['containers'] === true) throw new UsageError('image prune removes images only: ogd system prune (or ogd prune --containers) removes containers too', command);
  return {
    images: values['all'] === true ? 'all' : 'dangling',
    containers,
    ...(olderThan !== undefined ? { olderThan } : {}),
    ...(values['dry-run'] === true ? { dryRun: true } : {}),
  };
}

async function runPrune(ctx: CliContext, command: Command, values: OptionValues, scope: 'store' | 'image' | 'system'): Promise<void> {
  const opts = pruneArgs(command, values, scope);
  const store = await ctx.storeIfExists();
  const r: StorePruneResult = store === undefined ? { images: [], containers: [], layers: [], blobs: [], reclaimed: 0, skipped: [] } : await store.prune(opts);
  ctx.result(r);
  const verb = opts.dryRun === true ? 'would remove' : 'removed';
  for (const id of r.containers) ctx.say(`${verb} container ${id}`);
  for (const id of r.images) ctx.say(`${verb} image ${id.slice(0, 12)}`);
  for (const s of r.skipped) ctx.say(`kept ${s.id.length === 64 ? s.id.slice(0, 12) : s.id}: ${s.reason}`);
  ctx.say(
    `${verb} ${r.images.length} image${r.images.length === 1 ? '' : 's'} (${r.layers.length} layer${r.layers.length === 1 ? '' : 's'}), ${r.containers.length} container${r.containers.length === 1 ? '' : 's'}, ${r.blobs.length} blob${r.blobs.length === 1 ? '' : 's'}: ${formatBytes(r.reclaimed)} ${opts.dryRun === true ? 'reclaimable' : 'reclaimed'}`,
  );
}

export const prune: Command = {
  name: 'prune',
  usage: 'prune [-a] [--containers] [--older-than DUR] [--dry-run]',
  summary: 'remove images no container uses and no name points to (-a: every unused image), with --containers the container layers nobody holds mounted, and blobs no kept image needs; never what another process holds',
  example: 'ogd prune -a --containers --older-than 24h',
  options: pruneOptions,
  positionals: [0, 0],
  async run(ctx, _positionals, values) {
    await runPrune(ctx, this, values, 'store');
  },
};

export const image: Command = {
  name: 'image',
  usage: 'image prune [-a] [--filter until=DUR] [-f]',
  summary: "podman's image prune: unused images (dangling ones; -a: all without a container) and the blobs only they needed",
  example: 'ogd image prune -a --filter until=24h',
  options: pruneOptions,
  positionals: [1, 1],
  async run(ctx, [sub], values) {
    if (sub !== 'prune') throw new UsageError(`unknown image command ${JSON.stringify(sub)} (image prune)`, this);
    await runPrune(ctx, this, values, 'image');
  },
};

export const system: Command = {
  name: 'system',
  usage: 'system prune [-a] [--filter until=DUR] [-f] | system df [-v]',
  summary: "podman's system prune (unmounted containers, unused images, unneeded blobs) and system df (as ogd df)",
  example: 'ogd system prune -a -f',
  options: { ...pruneOptions, ...dfOptions },
  positionals: [1, 1],
  async run(ctx, [sub], values) {
    if (sub === 'df') return runDf(ctx, values);
    if (sub !== 'prune') throw new UsageError(`unknown system command ${JSON.stringify(sub)} (system prune, system df)`, this);
    await runPrune(ctx, this, values, 'system');
  },
};
