// What both overlay drivers (overlay, overlay2) need of overlayfs's mount(2) interface:
// the escaping of paths in its option string and the one page that string may fill.
//
// - ',' separates options and ':' separates lower dirs; overlayfs unescapes '\' in
//   paths, so those three characters are escaped.
// - mount(2) copies at most one page of option data. When the absolute paths do not
//   fit (a long home, 255-byte ids, a deep stack), the paths are given relative to an
//   open fd of home, through /proc/self/fd/N: the effect of containers/storage's
//   chdir + relative paths, without changing the process's cwd under other code.
import { open } from 'node:fs/promises';
import { relative } from 'node:path';
import * as native from '../native.js';
import type { FileChange } from '../native.js';
import { isSystemError } from '../errors.js';

/** mount(2) reads at most one page of data, including the terminating NUL (4096 on x86-64 and most arm64 kernels). */
export const MAX_MOUNT_DATA = 4096 - 1;

export function escapeOverlayPath(path: string): string {
  return path.replace(/[\\,:]/g, (c) => `\\${c}`);
}

/**
 * Mounts an overlay on `target` with the option string `data(at)`, where `at` gives a
 * path under `home` as the string to put in it (escaped): absolute when that fits a
 * page, else relative to an fd of home. `tooLong(bytes)`: the error when even that does
 * not fit. `after`: a file change made in the mount's own native job.
 */
export async function mountOverlayData(home: string, target: string, flags: number, data: (at: (path: string) => string) => string, tooLong: (bytes: number) => Error, after?: FileChange): Promise<void> {
  const absolute = data(escapeOverlayPath);
  if (Buffer.byteLength(absolute) <= MAX_MOUNT_DATA) return native.mount('overlay', target, 'overlay', flags, absolute, after);
  const handle = await open(home, 'r');
  try {
    const short = data((p) => escapeOverlayPath(`/proc/self/fd/${handle.fd}/${relative(home, p)}`));
    if (Buffer.byteLength(short) > MAX_MOUNT_DATA) throw tooLong(Buffer.byteLength(short));
    await native.mount('overlay', target, 'overlay', flags, short, after);
  } finally {
    await handle.close();
  }
}

/** Unmounts `target`, detaching it when a plain unmount fails; not mounted is fine. */
export async function unmountQuietly(target: string): Promise<void> {
  await native.unmount(target, 0).catch(async (err: unknown) => {
    if (isSystemError(err, 'EINVAL') || isSystemError(err, 'ENOENT')) return;
    await native.unmount(target, native.constants.MNT_DETACH).catch(() => undefined);
  });
}
