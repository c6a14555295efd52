// applyDiff, all or nothing. The tar is always applied into a staging copy inside the
// layer's dir (tmproot<pid>-XXXXXX) and the result swapped in with one rename, so a
// failure, an abort or a kill leaves the layer as it was (and the next init sweeps the
// staging dir). Three cases, after the seed:
//
// - parent has root/ (the seed's fast path): a hardlink copy of the parent's root,
//   the diff applied into it, renamed to root/ (RENAME_NOREPLACE); the layer's
//   upper/work/merged/lower-id are then removed — it has become an image.
// - the layer has root/ itself (a base layer, or an image applied again): the same,
//   starting from its own root, swapped in with RENAME_EXCHANGE.
// - otherwise (the seed's NaiveDiffDriver fallback, which applied into the mounted
//   layer in place): a hardlink copy of upper/ is mounted over the same lower, the
//   diff applied through that mount (so deletions become whiteouts), and the staged
//   upper swapped with upper/ by RENAME_EXCHANGE. Sharing inodes with the live upper
//   is safe because applying a tar replaces files and never writes into an existing
//   inode.
import { chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../../native.js';
import { applyTar, type ApplyTarOptions } from '../../archive/apply.js';
import { AbortError, LayerNotFoundError } from '../../errors.js';
import type { IdPair } from '../../idmap.js';
import type { ApplyDiffOptions, DiffSource, IDMap } from '../../types.js';
import { lstatOrUndefined } from '../lstat.js';
import { unmountQuietly } from '../overlayfs.js';
import { copyInto } from '../staging.js';
import { layerDirs, readLowerId, type LayerDirs } from './layout.js';
import { mountOverlay } from './mount-data.js';

export interface ApplyContext {
  home: string;
  uidMaps: readonly IDMap[];
  gidMaps: readonly IDMap[];
  owner: IdPair;
  /** A staging dir in the layer's dir, and its removal (../staging.ts). */
  newStaging(id: string): Promise<string>;
  dropStaging(staging: string): Promise<void>;
}

export type ApplyPlan =
  | { kind: 'from-parent-root'; source: string }
  | { kind: 'own-root'; source: string }
  | { kind: 'through-mount'; lowerRoot: string };

/** Decides how `id` gets its diff; throws LayerNotFound for a missing parent or lower. */
export async function planApply(ctx: ApplyContext, id: string, parent: string | undefined): Promise<ApplyPlan> {
  const dirs = layerDirs(ctx.home, id);
  if (parent !== undefined) {
    const parentDirs = layerDirs(ctx.home, parent);
    if (!(await lstatOrUndefined(parentDirs.dir))?.isDirectory()) throw new LayerNotFoundError(parent);
    if (!(await lstatOrUndefined(dirs.root))?.isDirectory() && (await lstatOrUndefined(parentDirs.root))?.isDirectory()) {
      return { kind: 'from-parent-root', source: parentDirs.root };
    }
  }
  if ((await lstatOrUndefined(dirs.root))?.isDirectory()) return { kind: 'own-root', source: dirs.root };
  const lowerId = await readLowerId(dirs);
  const lowerRoot = layerDirs(ctx.home, lowerId).root;
  if (!(await lstatOrUndefined(lowerRoot))?.isDirectory()) throw new LayerNotFoundError(lowerId);
  return { kind: 'through-mount', lowerRoot };
}

/** Carries out `plan` for layer `id`; returns the bytes of content applied. */
export async function applyStaged(ctx: ApplyContext, id: string, plan: ApplyPlan, diff: DiffSource, opts: ApplyDiffOptions): Promise<number> {
  if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
  const dirs = layerDirs(ctx.home, id);
  const staging = await ctx.newStaging(id);
  try {
    if (plan.kind === 'through-mount') return await applyThroughMount(ctx, dirs, plan.lowerRoot, staging, diff, opts);
    await copyInto(plan.source, staging, 'hardlink', opts.signal);
    const bytes = await applyTar(staging, diff, applyOptions(ctx, opts));
    if (plan.kind === 'own-root') {
      await native.rename2(staging, dirs.root, native.constants.RENAME_EXCHANGE);
      // The old root now sits at the staging path; removed below.
    } else {
      await native.rename2(staging, dirs.root, native.constants.RENAME_NOREPLACE);
      await Promise.all([dirs.upper, dirs.work, dirs.merged, dirs.lowerIdFile].map((p) => rm(p, { recursive: true, force: true })));
    }
    return bytes;
  } finally {
    // May hold a whole layer (a failed copy, or the old root after an exchange).
    await ctx.dropStaging(staging);
  }
}

async function applyThroughMount(ctx: ApplyContext, dirs: LayerDirs, lowerRoot: string, staging: string, diff: DiffSource, opts: ApplyDiffOptions): Promise<number> {
  const upper = join(staging, 'upper');
  const work = join(staging, 'work');
  const merged = join(staging, 'merged');
  await mkdir(upper);
  await copyInto(dirs.upper, upper, 'hardlink', opts.signal);
  for (const d of [work, merged]) {
    await mkdir(d, { mode: 0o700 });
    await chown(d, ctx.owner.uid, ctx.owner.gid);
  }
  await mountOverlay(ctx.home, { lower: lowerRoot, upper, work }, merged, undefined);
  let bytes: number;
  try {
    await chown(join(work, 'work'), ctx.owner.uid, ctx.owner.gid);
    bytes = await applyTar(merged, diff, applyOptions(ctx, opts));
  } finally {
    await unmountQuietly(merged);
  }
  await native.rename2(upper, dirs.upper, native.constants.RENAME_EXCHANGE);
  return bytes;
}

// Every apply option passes through (ApplyTarOptions extends them); the tar's ids map as the home's.
function applyOptions(ctx: ApplyContext, opts: ApplyDiffOptions): ApplyTarOptions {
  return { ...opts, uidMaps: ctx.uidMaps, gidMaps: ctx.gidMaps };
}
