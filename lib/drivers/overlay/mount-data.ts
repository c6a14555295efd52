// The option string of an overlay driver mount, and the mount itself (the page limit
// and escaping: ../overlayfs.ts).
//
// Container layers are mounted with redirect_dir=off, metacopy=off and index=off where
// the kernel knows them, so that upper/ stays a plain, faithful diff (no redirect or
// metacopy xattrs, no index) that the export code can walk. Which of them the kernel
// accepts is probed once per process, on the first mount.
import type { FileChange } from '../../native.js';
import { InvalidOptionError, isSystemError } from '../../errors.js';
import { formatMountLabel } from '../../mount-label.js';
import { MAX_MOUNT_DATA, escapeOverlayPath, mountOverlayData } from '../overlayfs.js';

/** Tried longest first; the first list the kernel accepts is used for the life of the process. */
const OPTIONAL_OPTIONS = ['redirect_dir=off', 'metacopy=off', 'index=off'] as const;
// A fact about the kernel, the same for every mount: learnt on the first one.
let acceptedOptionCount: number | undefined;

export interface OverlayDirs {
  lower: string;
  upper: string;
  work: string;
}

export function overlayMountData(dirs: OverlayDirs, extra: readonly string[], mountLabel: string | undefined, at: (path: string) => string = escapeOverlayPath): string {
  const options = [`lowerdir=${at(dirs.lower)}`, `upperdir=${at(dirs.upper)}`, `workdir=${at(dirs.work)}`, ...extra].join(',');
  return formatMountLabel(options, mountLabel);
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
    const extra = OPTIONAL_OPTIONS.slice(0, n);
    try {
      const tooLong = (bytes: number) =>
        new InvalidOptionError(`overlay mount options for ${target} are ${bytes} bytes, more than the kernel's ${MAX_MOUNT_DATA} (is the mount label that long?)`);
      await mountOverlayData(home, target, 0, (at) => overlayMountData(dirs, extra, mountLabel, at), tooLong, after);
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

