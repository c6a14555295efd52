// home/run: the store's volatile state (mount references and their temp files), on a
// tmpfs of its own for a driver that mounts. The first process that opens the store
// mounts it (under the store lock, so two opens never stack two), and it goes with the
// home's other mounts when cleanup() finds no other process with the store open. Like
// containers/storage's runroot, but under the home, so every process finds it.
//
// Why not the disk: a reference changes on every mount and unmount, is worth nothing
// after a reboot (nothing is mounted then), and on the home's filesystem each change
// was written back by the next overlay unmount, which syncs its upper filesystem:
// about a tenth of a mount+unmount cycle spent waiting for the disk.
import { mkdir, stat } from 'node:fs/promises';
import { isSystemError } from '../errors.js';
import { FsMagic, fsMagic } from '../fs-magic.js';
import { withLock } from '../locks.js';
import { constants, mount, unmount } from '../native.js';
import type { StoreFiles } from './files.js';

/** Makes home/run (a tmpfs when `onTmpfs`) and its directories. */
export async function prepareRunDir(files: StoreFiles, onTmpfs: boolean): Promise<void> {
  await mkdir(files.run, { recursive: true, mode: 0o700 });
  if (onTmpfs && !(await runMounted(files))) {
    await withLock(files.storeLock(), 'write', async () => {
      if (await runMounted(files)) return; // another process was first
      await mount('tmpfs', files.run, 'tmpfs', constants.MS_NOSUID | constants.MS_NODEV | constants.MS_NOEXEC, 'mode=0700');
      try {
        // Private, like the driver's home: no copy of it in other mount namespaces keeps it alive.
        await mount('none', files.run, '', constants.MS_PRIVATE);
      } catch (err) {
        await unmount(files.run, constants.MNT_DETACH).catch(() => undefined);
        throw err;
      }
    });
  }
  await Promise.all([files.mounts, files.runTmp].map((d) => mkdir(d, { recursive: true, mode: 0o700 })));
}

/** Unmounts home/run's tmpfs (its references go with it); for cleanup() once no other process has the store open. */
export async function releaseRunDir(files: StoreFiles): Promise<void> {
  if (!(await runMounted(files))) return;
  await unmount(files.run, 0).catch((err: unknown) => {
    // Busy (someone's cwd is in it): detached, it goes when they leave.
    if (isSystemError(err, 'EBUSY')) return unmount(files.run, constants.MNT_DETACH);
    throw err;
  });
}

// A tmpfs on another device than the home's: no read of the mount table, which every
// open would pay for (it is long on a host with many containers).
async function runMounted(files: StoreFiles): Promise<boolean> {
  const [magic, run, home] = await Promise.all([fsMagic(files.run), stat(files.run), stat(files.home)]);
  return magic === FsMagic.tmpfs && run.dev !== home.dev;
}
