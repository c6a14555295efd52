// Mounting a stack of layers. Two methods:
//
// - 'fsconfig' (Linux 6.8+): fsopen("overlay") and one fsconfig("lowerdir+") per
//   lower (native/fs_mount.cc). No page limit on the option data, no escaping. Used
//   whenever the kernel has it: the page limit is what caps c/s near 500 layers and
//   moby at 128 (moby#26380, containers/storage#1375), and short links do not lift it,
//   only push it back.
// - 'mount2' (older kernels): classic mount(2) data, the lowers given as the short
//   links (home/l/<short>), relative to an fd of home when the absolute form does not
//   fit (../overlayfs.ts). A stack whose data still exceeds a page is refused with
//   NotSupported.
//
// overlayfs takes at most 500 lowers in one mount (OVL_MAX_STACK). With 'fsconfig', a
// deeper stack mounts its bottom layers as a nested read-only overlay, the lowest
// lower of the real mount (see native/fs_mount.cc): 499 + 500 layers at most.
import { release } from 'node:os';
import * as native from '../../native.js';
import type { FileChange } from '../../native.js';
import { NotSupportedError } from '../../errors.js';
import { MAX_MOUNT_DATA, mountOverlayData } from '../overlayfs.js';

export type MountMethod = 'fsconfig' | 'mount2';

/** OVL_MAX_STACK in fs/overlayfs/params.h. */
export const OVERLAY_MAX_LOWERS = 500;
/** The deepest stack 'fsconfig' mounts: 499 lowers plus a nested overlay of 500. */
export const MAX_STACK = OVERLAY_MAX_LOWERS - 1 + OVERLAY_MAX_LOWERS;
/** Kept as plain as the overlay driver's upper/: no redirect or metacopy xattrs, no index, so diff/ is a faithful diff. */
const RW_OPTIONS = ['redirect_dir=off', 'index=off', 'metacopy=off'];

/** 'fsconfig' where the kernel has "lowerdir+" (6.8), else 'mount2'. */
export function defaultMountMethod(): MountMethod {
  const [major = 0, minor = 0] = release().split('.').map((n) => Number.parseInt(n, 10));
  return major > 6 || (major === 6 && minor >= 8) ? 'fsconfig' : 'mount2';
}

export interface StackMount {
  /** Lower dirs, top first (at least one). */
  lowers: string[];
  /** With upper and work: a read-write mount; without: read-only. */
  upper?: string;
  work?: string;
  mountLabel?: string;
}

/** Mounts the stack `m` on `target`; `after`: a file change made in the mount's native job (see store-driver.ts MountHandoff). */
export async function mountStack(method: MountMethod, home: string, target: string, m: StackMount, after?: FileChange): Promise<void> {
  const readOnly = m.upper === undefined;
  const extra = [...(readOnly ? [] : RW_OPTIONS), ...(m.mountLabel !== undefined ? [`context=${m.mountLabel}`] : [])];
  if (method === 'fsconfig') {
    let lowers = m.lowers;
    let base: string[] | undefined;
    if (lowers.length > OVERLAY_MAX_LOWERS) {
      if (lowers.length > MAX_STACK) throw new NotSupportedError(`a stack of ${lowers.length} layers is deeper than overlayfs mounts (${MAX_STACK})`);
      base = lowers.slice(OVERLAY_MAX_LOWERS - 1);
      lowers = lowers.slice(0, OVERLAY_MAX_LOWERS - 1);
    }
    await native.mountOverlayFs(target, {
      lowers,
      ...(base ? { base } : {}),
      ...(m.upper !== undefined ? { upper: m.upper, work: m.work! } : {}),
      options: extra,
      readOnly,
    }, after);
    return;
  }
  if (m.lowers.length > OVERLAY_MAX_LOWERS) throw new NotSupportedError(`a stack of ${m.lowers.length} layers is deeper than overlayfs mounts (${OVERLAY_MAX_LOWERS})`);
  const data = (at: (p: string) => string): string =>
    [
      `lowerdir=${m.lowers.map(at).join(':')}`,
      ...(m.upper !== undefined ? [`upperdir=${at(m.upper)}`, `workdir=${at(m.work!)}`] : []),
      ...extra.map((o) => (o.startsWith('context=') ? `context="${o.slice(8)}"` : o)),
    ].join(',');
  const tooLong = (bytes: number) =>
    new NotSupportedError(`the mount data of a ${m.lowers.length}-layer stack is ${bytes} bytes, more than mount(2) takes (${MAX_MOUNT_DATA}); Linux 6.8+ mounts it with fsconfig`);
  await mountOverlayData(home, target, readOnly ? native.constants.MS_RDONLY : 0, data, tooLong, after);
}
