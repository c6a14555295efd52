// The option string of an overlay mount, and the mount itself.
//
// - Container layers are mounted with redirect_dir=off, metacopy=off and index=off
//   where the kernel knows them, so that upper/ stays a plain, faithful diff (no
//   redirect or metacopy xattrs, no index) that the export code can walk. Which of
//   them the kernel accepts is probed once per process, on the first mount.
// - mount(2) copies at most one page of option data. When the absolute paths do not
//   fit (a long home and 255-byte ids), the paths are given relative to an open fd of
//   home, through /proc/self/fd/N — the same effect as overlay2's chdir+relative
//   paths, without changing the process's cwd under other code.
// - ',' separates options and ':' separates lower dirs; overlayfs unescapes '\' in
//   paths, so those three characters are escaped.
import { open } from 'node:fs/promises';
import { relative } from 'node:path';
import * as native from '../../native.js';
import type { FileChange } from '../../native.js';
import { InvalidOptionError, isSystemError } from '../../errors.js';
import { formatMountLabel } from '../../mount-label.js';

/** mount(2) reads at most one page of data, including the terminating NUL (4096 on x86-64 and most arm64 kernels). */
const MAX_MOUNT_DATA = 4096 - 1;

/** Tried longest first; the first list the kernel accepts is used for the life of the process. */
const OPTIONAL_OPTIONS = ['redirect_dir=off', 'metacopy=off', 'index=off'] as const;
let acceptedOptionCount: number | undefined;

export interface OverlayDirs {
  lower: string;
  upper: string;
  work: string;
}

export function escapeOverlayPath(path: string): string {
  return path.replace(/[\\,:]/g, (c) => `\\${c}`);
}

export function overlayMountData(dirs: OverlayDirs, extra: readonly string[], mountLabel: string | undefined, base = ''): string {
  const at = (p: string): string => escapeOverlayPath(base === '' ? p : `${base}/${p}`);
  const options = [`lowerdir=${at(dirs.lower)}`, `upperdir=${at(dirs.upper)}`, `workdir=${at(dirs.work)}`, ...extra].join(',');
  return formatMountLabel(options, mountLabel);
}

/** The optional options this process has found the kernel accepts (all of them until a mount says otherwise). */
export function acceptedOptionalOptions(): readonly string[] {
  return OPTIONAL_OPTIONS.slice(0, acceptedOptionCount ?? OPTIONAL_OPTIONS.length);
}

/**
 * Mounts an overlay of `dirs` (absolute paths under `home`) on `target`. Options the
 * kernel rejects with EINVAL are dropped one by one, once per process; any other
 * failure, or EINVAL without them, is thrown unchanged.
 */
export async function mountOverlay(home: string, dirs: OverlayDirs, target: string, mountLabel: string | undefined, after?: FileChange): Promise<void> {
  const start = acceptedOptionCount ?? OPTIONAL_OPTIONS.length;
  const last = acceptedOptionCount === undefined ? 0 : start;
  let firstError: unknown;
  for (let n = start; n >= last; n--) {
    try {
      await mountWithData(home, dirs, target, OPTIONAL_OPTIONS.slice(0, n), mountLabel, after);
      acceptedOptionCount = n;
      return;
    } catch (err) {
      firstError ??= err;
      // Only the kernel's refusal of the options is retried (not a failure of `after`).
      if (!isSystemError(err, 'EINVAL') || (err as NodeJS.ErrnoException).syscall !== 'mount') throw err;
    }
  }
  if (isSystemError(firstError, 'EINVAL')) {
    // As containers/storage does: say which options the kernel refused (the fewest we
    // tried), keeping the system error's code, errno, syscall and path.
    const data = overlayMountData(dirs, OPTIONAL_OPTIONS.slice(0, last), mountLabel);
    const hint = mountLabel === undefined ? '' : ' (is SELinux enabled? a mount label needs it)';
    firstError.message = `${firstError.message}: the kernel refused the overlay mount options '${data}'${hint}`;
  }
  throw firstError;
}

async function mountWithData(home: string, dirs: OverlayDirs, target: string, extra: readonly string[], mountLabel: string | undefined, after: FileChange | undefined): Promise<void> {
  const absolute = overlayMountData(dirs, extra, mountLabel);
  if (Buffer.byteLength(absolute) <= MAX_MOUNT_DATA) return native.mount('overlay', target, 'overlay', 0, absolute, after);
  const handle = await open(home, 'r');
  try {
    const rel = (p: string): string => relative(home, p);
    const data = overlayMountData({ lower: rel(dirs.lower), upper: rel(dirs.upper), work: rel(dirs.work) }, extra, mountLabel, `/proc/self/fd/${handle.fd}`);
    if (Buffer.byteLength(data) > MAX_MOUNT_DATA) {
      throw new InvalidOptionError(`overlay mount options for ${target} are ${Buffer.byteLength(data)} bytes, more than the kernel's ${MAX_MOUNT_DATA} (is the mount label that long?)`);
    }
    await native.mount('overlay', target, 'overlay', 0, data, after);
  } finally {
    await handle.close();
  }
}
