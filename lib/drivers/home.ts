// A driver's home (the directory a driver keeps its layers in: <store home>/<driver>),
// for every driver: the checks the seed's Init makes before using it (overlay support,
// the privilege to mount, the backing filesystem), creating it owned by the mapped
// root, and the private bind mount of a driver that mounts (one per home per process,
// never stacked). What this process knows of a home lives in home-state.ts.
import { execFile } from 'node:child_process';
import { chown, lstat, mkdir, readFile, realpath, rmdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import * as native from '../native.js';
import { IncompatibleFsError, NotSupportedError, isSystemError } from '../errors.js';
import { fsMagic, fsName, incompatibleBackingFs, pseudoFs } from '../fs-magic.js';
import type { IdPair } from '../idmap.js';
import { isMountPoint, readMountInfo } from '../mountinfo.js';
import type { HomeState } from './home-state.js';

// A fact about the kernel, the same for every home: asked once per process (a failed
// answer is not kept, so a later modprobe may still succeed).
let overlaySupport: Promise<void> | undefined;

const overlayListed = async (): Promise<boolean> => (await readFile('/proc/filesystems', 'utf8')).split('\n').includes('nodev\toverlay');

/**
 * Requires "nodev\toverlay" in /proc/filesystems, trying `modprobe overlay` first when
 * it is not there (a missing modprobe or module is not an error). Once per process.
 */
export function supportsOverlay(): Promise<void> {
  overlaySupport ??= (async () => {
    if (await overlayListed()) return;
    await new Promise<void>((resolve) => execFile('modprobe', ['overlay'], { timeout: 10_000 }, () => resolve()));
    if (!(await overlayListed())) {
      overlaySupport = undefined; // a later modprobe may still succeed
      throw new NotSupportedError("'overlay' is not a filesystem this kernel supports (not in /proc/filesystems, and modprobe overlay did not load it)");
    }
  })();
  return overlaySupport;
}

/** The backing filesystem's name; throws IncompatibleFsError for the ones overlay cannot sit on (or no store can: /proc, /sys). */
export async function checkBackingFs(home: string): Promise<string> {
  const existing = await nearestExisting(home);
  const magic = await fsMagic(existing);
  const name = fsName(magic);
  if (incompatibleBackingFs.has(magic) || pseudoFs.has(magic)) throw new IncompatibleFsError(name, home);
  return name;
}

/** Capabilities by bit number (linux/capability.h): the one every mount needs, and those applying layers needs. */
const CAPABILITIES = { CAP_SYS_ADMIN: 21, CAP_CHOWN: 0, CAP_FOWNER: 3, CAP_MKNOD: 27 } as const;

/**
 * Refuses, before anything is created, a process that cannot mount: mount(2) needs
 * CAP_SYS_ADMIN (in the user namespace that owns the mount namespace), and the
 * driver's home is a bind mount of itself. Read from /proc/self/status; when that
 * cannot be read, the mount itself will tell.
 */
export async function checkMountPrivilege(): Promise<void> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (hex === undefined) return;
  const effective = BigInt(`0x${hex}`);
  const missing = (Object.entries(CAPABILITIES) as Array<[string, number]>).filter(([, bit]) => ((effective >> BigInt(bit)) & 1n) === 0n).map(([name]) => name);
  if (!missing.includes('CAP_SYS_ADMIN')) return;
  const uid = process.getuid?.();
  throw new NotSupportedError(
    `the overlay driver needs root, or CAP_SYS_ADMIN to mount (and CAP_CHOWN, CAP_FOWNER, CAP_MKNOD to apply layers); this process (uid ${uid ?? '?'}) lacks ${missing.join(', ')}`,
  );
}

async function nearestExisting(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    try {
      await lstat(p);
      return p;
    } catch (err) {
      if (!isSystemError(err, 'ENOENT') || p === dirname(p)) throw err;
    }
  }
}

/**
 * Creates `dir` and its missing parents with `mode`, owned by `owner` (only what it
 * creates, as idtools.MkdirAllAs). Resolves to the directories it created, outermost
 * first, so a failed init can take them away again. One mkdir per missing level, not
 * Node's recursive mkdir: that one retries forever where mkdir(2) says ENOENT under
 * a parent that exists (/proc/x), at 100% CPU.
 */
export async function mkdirAllAs(dir: string, mode: number, owner: IdPair): Promise<string[]> {
  const missing: string[] = [];
  for (let p = dir; ; p = dirname(p)) {
    try {
      if (!(await stat(p)).isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path: p });
      break;
    } catch (err) {
      if (!isSystemError(err, 'ENOENT') || p === dirname(p)) throw err;
      missing.unshift(p);
    }
  }
  const created: string[] = [];
  try {
    for (const p of missing) {
      try {
        await mkdir(p, { mode });
      } catch (err) {
        if (isSystemError(err, 'EEXIST') && (await stat(p)).isDirectory()) continue; // another process made it meanwhile: not ours
        throw err;
      }
      created.push(p);
      await chown(p, owner.uid, owner.gid);
    }
  } catch (err) {
    await removeCreated(created);
    throw err;
  }
  return created;
}

/** Removes directories mkdirAllAs created (innermost first), if they are still empty. */
export async function removeCreated(created: readonly string[]): Promise<void> {
  for (const p of [...created].reverse()) await rmdir(p).catch(() => undefined);
}

/**
 * Makes the home a private mount of itself, binding it only when it is not a mount point
 * already: in this process or another one, a second driver on the same home adds no
 * mount. Two processes binding a fresh home at the very same moment could still stack
 * two (there is no cross-process lock here); either unmount leaves a working home.
 */
export function acquireHomeMount(state: HomeState): Promise<void> {
  const home = state.path;
  return state.bindLock.run(home, async () => {
    const wasMountPoint = await isMountPoint(home);
    // The kernel's table wins over what this process remembers: a store closed here while
    // another process had it open kept its use of the home, and the other process, the
    // last to close the store, unmounted the home since. Then the uses counted here are
    // stale ones: a store still open here would have kept the other from unmounting it.
    if (state.bind !== undefined && wasMountPoint) {
      state.bind.users++;
      return;
    }
    if (!wasMountPoint) await native.mount(home, home, '', native.constants.MS_BIND);
    try {
      await native.mount('none', home, '', native.constants.MS_PRIVATE);
    } catch (err) {
      if (!wasMountPoint) await native.unmount(home, native.constants.MNT_DETACH).catch(() => undefined);
      throw err;
    }
    state.bind = { users: 1, unmountAtEnd: !wasMountPoint || (await isSelfBind(home)) };
  });
}

/** Drops one driver's use of the home mount; the last user in the process unmounts it, unless it is busy (others' mounts below it). */
export function releaseHomeMount(state: HomeState): Promise<void> {
  const home = state.path;
  return state.bindLock.run(home, async () => {
    const known = state.bind;
    if (known === undefined) return;
    if (--known.users > 0) return;
    state.bind = undefined;
    if (!known.unmountAtEnd) return;
    try {
      await native.unmount(home, 0);
    } catch (err) {
      if (!isSystemError(err, 'EBUSY') && !isSystemError(err, 'EINVAL')) throw err;
    }
  });
}

// A bind of a directory onto itself (left by an earlier driver process) sits on the
// same device as the mount below it; a filesystem mounted on home (a tmpfs, a loop
// device) does not, and is not ours to unmount.
async function isSelfBind(home: string): Promise<boolean> {
  const mounts = await readMountInfo();
  const top = mounts.filter((m) => m.mountPoint === home).at(-1);
  const parent = top === undefined ? undefined : mounts.find((m) => m.id === top.parentId);
  return top !== undefined && parent !== undefined && top.device === parent.device && top.root !== '/';
}

/** realpath of a home that exists. */
export function canonicalHome(home: string): Promise<string> {
  return realpath(home);
}

/**
 * Whether an overlay driver (overlay, overlay2) can live at `home` (which need not
 * exist yet): overlay support, the privilege to mount, the backing filesystem. Creates
 * nothing, so a refused home leaves no trace (a Store runs it before making its own
 * directories). Resolves to the backing filesystem's name.
 */
export async function checkOverlayHome(home: string): Promise<string> {
  // Checked side by side, reported in the seed's order (no overlay before a wrong
  // filesystem), missing privileges before the filesystem (whose check may itself be
  // refused EACCES without them).
  const [overlay, privilege, fs] = await Promise.allSettled([supportsOverlay(), checkMountPrivilege(), checkBackingFs(resolve(home))]);
  if (overlay.status === 'rejected') throw overlay.reason;
  if (privilege.status === 'rejected') throw privilege.reason;
  if (fs.status === 'rejected') throw fs.reason;
  return fs.value;
}

/** Whether a vfs driver can live at `home`: any real filesystem (not /proc or /sys); creates nothing. */
export async function checkVfsHome(home: string): Promise<string> {
  return checkBackingFs(resolve(home)).catch((err: unknown) => {
    // Only pseudo filesystems are refused: vfs needs no overlay, so btrfs, zfs or an overlay are fine.
    if (err instanceof IncompatibleFsError && !['proc', 'sysfs'].includes(err.filesystem)) return err.filesystem;
    throw err;
  });
}
