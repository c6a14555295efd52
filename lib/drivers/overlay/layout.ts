// Where a layer's parts live under home (DESIGN.md section 2, the seed's layout), and
// reading which kind of layer an id is. Paths are only ever built from validated ids.
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { LayerNotFoundError, isMissing } from '../../errors.js';
import { parseStoredId, validateId } from '../../ids.js';
import { isDirectory, lstatOrUndefined } from '../lstat.js';
import type { LayerPaths } from './internals.js';
import { readSmallFile } from '../../native.js';

export interface LayerDirs {
  dir: string;
  root: string;
  upper: string;
  work: string;
  merged: string;
  lowerIdFile: string;
}

export function layerDirs(home: string, id: string): LayerDirs {
  const dir = join(home, id);
  return {
    dir,
    root: join(dir, 'root'),
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
    merged: join(dir, 'merged'),
    lowerIdFile: join(dir, 'lower-id'),
  };
}

/** True when the layer `id` exists (its dir is there). */
export function layerExists(home: string, id: string): Promise<boolean> {
  return isDirectory(layerDirs(home, id).dir);
}

/**
 * The content of a small file of the driver's (lower-id), read non-blocking: a fifo,
 * a directory, a symlink or a huge file planted there is an error, never a wait.
 */
async function readDriverFile(file: string): Promise<Buffer> {
  const data = await readSmallFile(file);
  if (data === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${file}'`), { code: 'ENOENT', errno: -2, syscall: 'open', path: file });
  return data;
}

/** The id in a layer's lower-id file, validated like any id. */
export async function readLowerId(dirs: LayerDirs): Promise<string> {
  return parseStoredId(await readDriverFile(dirs.lowerIdFile));
}

// A cache, module-level so that every driver object on every home shares it: lower-id
// files are written once (O_EXCL) and never rewritten, so their content is
// remembered per file identity (inode, change time in ns, size): get() then costs one
// lstat instead of an open/read/close. A removed and re-created layer has a new file.
const lowerIdCache = new Map<string, { key: string; id: string }>();
const LOWER_ID_CACHE_MAX = 4096;

/** The id in the lower-id file `file`, undefined when there is none (remembered per file identity). */
export async function lowerIdOf(file: string): Promise<string | undefined> {
  let st;
  try {
    st = await lstat(file, { bigint: true });
  } catch (err) {
    return missingAsUndefined(err);
  }
  const key = `${st.dev}:${st.ino}:${st.ctimeNs}:${st.size}`;
  const cached = lowerIdCache.get(file);
  if (cached?.key === key) return cached.id;
  const data = await readSmallFile(file);
  if (data === undefined) return undefined;
  const id = parseStoredId(data);
  if (lowerIdCache.size >= LOWER_ID_CACHE_MAX) lowerIdCache.clear();
  lowerIdCache.set(file, { key, id });
  return id;
}

/** Validates `id` and reads its layout: an image (root/) or a layer over an image (upper/work/merged + lower-id). */
export async function readLayerPaths(home: string, id: string): Promise<LayerPaths> {
  validateId(id);
  const dirs = layerDirs(home, id);
  // Both looked up at once: get() is on the hot path of every container start.
  const [root, lowerId] = await Promise.all([lstatOrUndefined(dirs.root), lowerIdOf(dirs.lowerIdFile)]);
  if (root?.isDirectory()) return { dir: dirs.dir, root: dirs.root };
  if (lowerId === undefined) {
    if (!(await layerExists(home, id))) throw new LayerNotFoundError(id);
    throw new LayerNotFoundError(id, { cause: new Error(`layer ${JSON.stringify(id)} has neither root/ nor lower-id (half-made?)`) });
  }
  return containerPaths(home, id, lowerId);
}

/** The paths of a container layer whose lower-id is `lowerId`. */
export function containerPaths(home: string, id: string, lowerId: string): LayerPaths {
  const dirs = layerDirs(home, id);
  return { dir: dirs.dir, upper: dirs.upper, work: dirs.work, merged: dirs.merged, lowerId, lowerRoot: layerDirs(home, lowerId).root };
}

/** The id last read from the lower-id file `file`, unchecked (a guess to start a lookup early; lowerIdOf says whether it still holds). */
export function lastLowerId(file: string): string | undefined {
  return lowerIdCache.get(file)?.id;
}

/** Notes `id` as read from `file` without its identity: a guess for lastLowerId, which lowerIdOf reads again before trusting. */
export function rememberLowerId(file: string, id: string): void {
  if (lowerIdCache.get(file)?.id === id) return;
  if (lowerIdCache.size >= LOWER_ID_CACHE_MAX) lowerIdCache.clear();
  lowerIdCache.set(file, { key: '', id });
}

function missingAsUndefined(err: unknown): undefined {
  if (isMissing(err)) return undefined;
  throw err;
}
