// What an interrupted operation left in an overlay driver home: staging dirs of
// processes that are gone (../staging.ts) and, in a layer that already has its root/,
// the upper/work/merged/lower-id a finished applyDiff did not get to remove (unless
// merged/ is mounted: then it belongs to its user).
import { rm } from 'node:fs/promises';
import * as native from '../../native.js';
import { mountPointsUnder } from '../../mountinfo.js';
import { staleStaging } from '../staging.js';
import { layerDirs } from './layout.js';

export async function findLeftovers(home: string, staging: ReadonlySet<string>): Promise<string[]> {
  const mountsBelow = (await mountPointsUnder(home)).filter((m) => m !== home);
  return staleStaging(home, staging, {
    more: (id, dir, names) => {
      if (!names.includes('root')) return [];
      const paths = layerDirs(home, id);
      if (mountsBelow.includes(paths.merged)) return [];
      return [paths.upper, paths.work, paths.merged, paths.lowerIdFile].filter((p) => names.includes(p.slice(dir.length + 1)));
    },
  });
}

/** Removes what findLeftovers finds, first unmounting any mount a killed process left in a staging dir. */
export async function removeLeftovers(home: string, staging: ReadonlySet<string>): Promise<void> {
  const leftovers = await findLeftovers(home, staging);
  if (leftovers.length === 0) return;
  const mountsBelow = await mountPointsUnder(home);
  for (const path of leftovers) {
    for (const m of mountsBelow.filter((m) => m === path || m.startsWith(path + '/')).reverse()) {
      await native.unmount(m, native.constants.MNT_DETACH).catch(() => undefined);
    }
    await rm(path, { recursive: true, force: true });
  }
}
