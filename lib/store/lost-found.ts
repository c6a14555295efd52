// home/lost+found/: where repair puts what it cannot rebuild (a damaged record, the
// directory of a layer that can never be mounted again) instead of deleting it, so a
// person can still look at the data. Each entry is named <time>-<what>; repair's
// report says where each went. `force` deletes instead.
//
// A layer's directory lives under the driver's home, which is a bind mount of its own:
// rename(2) across it fails with EXDEV, so such a directory is copied (natively, every
// file type, owners and xattrs kept) and then removed.
import { copyFile, lstat, mkdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isSystemError } from '../errors.js';
import { copyTree, removeTree, unmount, constants } from '../native.js';
import { mountPointsUnder } from '../mountinfo.js';

export const LOST_FOUND = 'lost+found';

/** A name for `label` in lost+found: the time first (entries sort by when they were put there), then what it was. */
function entryName(label: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return `${stamp}-${label.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 160)}`;
}

/**
 * Moves `path` (a file, a directory, a symlink: never followed) to home/lost+found,
 * unmounting anything mounted below it first; resolves to where it went. With `force`
 * it is deleted instead (resolves to undefined). A path that is already gone is no failure.
 */
export async function moveAside(home: string, path: string, label: string, force: boolean): Promise<string | undefined> {
  const st = await lstat(path).catch((err: unknown) => {
    if (isSystemError(err, 'ENOENT')) return undefined;
    throw err;
  });
  if (st === undefined) return undefined;
  if (st.isDirectory()) for (const m of (await mountPointsUnder(path)).sort((a, b) => b.length - a.length)) await unmount(m, constants.MNT_DETACH).catch(() => undefined);
  if (force) {
    if (st.isDirectory()) await removeTree(path);
    else await rm(path, { force: true });
    return undefined;
  }
  const dir = join(home, LOST_FOUND);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let dest = join(dir, entryName(label));
  for (let n = 1; await lstat(dest).then(() => true, () => false); n++) dest = join(dir, `${entryName(label)}-${n}`);
  try {
    await rename(path, dest);
    return dest;
  } catch (err) {
    if (!isSystemError(err, 'EXDEV')) throw err;
  }
  // Another mount: copied, then removed (a failed copy leaves the original where it was).
  try {
    if (st.isDirectory()) await copyTree(path, dest);
    else if (st.isSymbolicLink()) await symlink(await readlink(path), dest);
    else if (st.isFile()) await copyFile(path, dest);
  } catch (err) {
    await rm(dest, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
  if (st.isDirectory()) await removeTree(path);
  else await unlink(path);
  return dest;
}
