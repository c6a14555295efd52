// Staging dirs, for every driver: an apply (or a copy, or a view to read) is made in a
// temp dir inside the layer's dir, tmproot<pid>-XXXXXX, and swapped in with one rename,
// so a failure, an abort or a kill leaves the layer as it was. The next init sweeps the
// staging dirs of processes that are gone; this process's are in its HomeState.
import { chmod, chown, lstat, mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as native from '../native.js';
import { isSystemError } from '../errors.js';
import type { IdPair } from '../idmap.js';
import { processAlive } from '../processes.js';
import type { HomeState } from './home-state.js';

export const STAGING_PREFIX = 'tmproot';

/** True when the staging dir `name` belongs to a live process that may still be using it; `ours`: those this process is using (its HomeState's). */
export function stagingInUse(path: string, name: string, ours: ReadonlySet<string>): boolean {
  const pid = Number(/^tmproot(\d+)-/.exec(name)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return ours.has(path);
  return processAlive(pid);
}

/** A new staging dir in the layer dir `dir`, owned by `owner`, noted as in use in `state`. */
export async function newStaging(state: HomeState, dir: string, owner: IdPair): Promise<string> {
  const staging = await mkdtemp(join(dir, `${STAGING_PREFIX}${process.pid}-`));
  state.staging.add(staging);
  await chown(staging, owner.uid, owner.gid);
  return staging;
}

/**
 * Removes a staging dir and whatever it holds (a whole layer, maybe: natively, in
 * bounded memory). Whoever mounted something in it has unmounted it.
 */
export async function dropStaging(state: HomeState, staging: string): Promise<void> {
  await native.removeTree(staging).catch((err: unknown) => {
    if (!isSystemError(err, 'ENOENT')) throw err;
  });
  state.staging.delete(staging);
}

/** How a driver's sweep looks at its home besides the staging dirs. */
export interface Sweep {
  /** Entries of home that are no layer dir. */
  skip?: (name: string) => boolean;
  /** What else the layer dir `dir` (holding `names`) has left over. */
  more?: (id: string, dir: string, names: readonly string[]) => string[];
}

/** The staging dirs under the layer dirs of `home` whose process is gone, and what `sweep.more` adds; each layer dir is read once. */
export async function staleStaging(home: string, ours: ReadonlySet<string>, sweep: Sweep = {}): Promise<string[]> {
  const entries = await readdir(home, { withFileTypes: true });
  const found = await Promise.all(
    entries
      .filter((e) => e.isDirectory() && sweep.skip?.(e.name) !== true)
      .map(async (e) => {
        const dir = join(home, e.name);
        const names = await readdir(dir).catch(() => [] as string[]);
        const stale = names.filter((n) => n.startsWith(STAGING_PREFIX) && !stagingInUse(join(dir, n), n, ours)).map((n) => join(dir, n));
        return sweep.more === undefined ? stale : [...stale, ...sweep.more(e.name, dir, names)];
      }),
  );
  return found.flat();
}

/**
 * `dst` exists (an empty dir we made); it ends up a copy of `src`, its own mode and
 * owner included: hardlinks (what an apply stages on: applying replaces files and never
 * writes into an existing inode) or content (a vfs layer). An empty source needs no
 * copy engine.
 */
export async function copyInto(src: string, dst: string, mode: 'content' | 'hardlink', signal?: AbortSignal): Promise<void> {
  if ((await readdir(src)).length > 0) await native.copyTree(src, dst, { mode, ...(signal ? { signal } : {}) });
  const st = await lstat(src);
  await chown(dst, st.uid, st.gid);
  await chmod(dst, st.mode & 0o7777);
}
