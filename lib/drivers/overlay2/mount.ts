// Mounting a stack of layers. Two methods:
//
// - 'fsconfig' (Linux 6.8+): fsopen("overlay") and one fsconfig("lowerdir+") per
//   lower (native/fs_mount.cc). No page limit on the option data, no escaping. Used
//   whenever the kernel has it: the page limit is what caps c/s near 500 layers and
//   moby at 128 (moby#26380, containers/storage#1375), and short links do not lift it,
//   only push it back.
// - 'mount2' (older kernels): classic mount(2) data, the lowers given as the short
//   links (home/l/<short>), and relative to an open fd of home (/proc/self/fd/N/…)
//   when the absolute form does not fit: the effect of c/s's chdir, without changing
//   the process's cwd under other threads. A stack whose data still exceeds a page is
//   refused with NotSupported.
//
// overlayfs takes at most 500 lowers in one mount (OVL_MAX_STACK). With 'fsconfig', a
// deeper stack mounts its bottom layers as a nested read-only overlay, the lowest
// lower of the real mount (see native/fs_mount.cc): 499 + 500 layers at most.
import { release } from 'node:os';
import { open } from 'node:fs/promises';
import { relative } from 'node:path';
import * as native from '../../native.js';
import { NotSupportedError, isSystemError } from '../../errors.js';
import { escapeOverlayPath } from '../overlay/mount-data.js';

export type MountMethod = 'fsconfig' | 'mount2';

/** OVL_MAX_STACK in fs/overlayfs/params.h. */
export const OVERLAY_MAX_LOWERS = 500;
/** The deepest stack 'fsconfig' mounts: 499 lowers plus a nested overlay of 500. */
export const MAX_STACK = OVERLAY_MAX_LOWERS - 1 + OVERLAY_MAX_LOWERS;
/** mount(2) reads one page of data, its NUL included. */
const MAX_MOUNT_DATA = 4096 - 1;
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

export async function mountStack(method: MountMethod, home: string, target: string, m: StackMount): Promise<void> {
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
    });
    return;
  }
  if (m.lowers.length > OVERLAY_MAX_LOWERS) throw new NotSupportedError(`a stack of ${m.lowers.length} layers is deeper than overlayfs mounts (${OVERLAY_MAX_LOWERS})`);
  const data = (at: (p: string) => string): string =>
    [
      `lowerdir=${m.lowers.map((l) => escapeOverlayPath(at(l))).join(':')}`,
      ...(m.upper !== undefined ? [`upperdir=${escapeOverlayPath(at(m.upper))}`, `workdir=${escapeOverlayPath(at(m.work!))}`] : []),
      ...extra.map((o) => (o.startsWith('context=') ? `context="${o.slice(8)}"` : o)),
    ].join(',');
  const flags = readOnly ? native.constants.MS_RDONLY : 0;
  const absolute = data((p) => p);
  if (Buffer.byteLength(absolute) <= MAX_MOUNT_DATA) return native.mount('overlay', target, 'overlay', flags, absolute);
  const handle = await open(home, 'r');
  try {
    const short = data((p) => `/proc/self/fd/${handle.fd}/${relative(home, p)}`);
    if (Buffer.byteLength(short) > MAX_MOUNT_DATA) {
      throw new NotSupportedError(`the mount data of a ${m.lowers.length}-layer stack is ${Buffer.byteLength(short)} bytes, more than mount(2) takes (${MAX_MOUNT_DATA}); Linux 6.8+ mounts it with fsconfig`);
    }
    await native.mount('overlay', target, 'overlay', flags, short);
  } finally {
    await handle.close();
  }
}

/** Unmounts `target`, detaching it when a plain unmount fails. */
export async function unmountQuietly(target: string): Promise<void> {
  await native.unmount(target, 0).catch(async (err: unknown) => {
    if (isSystemError(err, 'EINVAL') || isSystemError(err, 'ENOENT')) return;
    await native.unmount(target, native.constants.MNT_DETACH).catch(() => undefined);
  });
}
