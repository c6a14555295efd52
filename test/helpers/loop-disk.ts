// A power-cut harness: an ext4 filesystem on a loop file, mounted so that nothing
// reaches the file unless someone flushes (commit=300: no journal commit by timer
// during a test; noauto_da_alloc: no writeback started by a rename over a file), and
// copies of that file taken right after a call returns. A copy is what a power cut at
// that moment would leave on the device; mounting it (another loop device) replays the
// journal, as the next boot would.
//
// The page cache's own writeback is what remains: dirty data older than
// vm.dirty_expire_centisecs (30 s by default) is written by the flusher on its own.
// cutWindowOk() tells whether a call and its copy fitted in that window, so a test
// knows whether "nothing reached the disk" can be asserted.
import { execFile } from 'node:child_process';
import { access, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';
import { isRoot, mountPoints } from './sandbox.js';

const run = promisify(execFile);

/** Why the harness cannot run here, or undefined when it can. */
export async function loopDiskUnavailable(): Promise<string | undefined> {
  if (!isRoot) return 'needs root (loop devices, mounts)';
  if (!(await access('/dev/loop-control').then(() => true, () => false))) return 'no /dev/loop-control: loop devices are unavailable here';
  if (!/\bext4\b/.test(await readFile('/proc/filesystems', 'utf8'))) {
    await run('modprobe', ['ext4']).catch(() => undefined);
    if (!/\bext4\b/.test(await readFile('/proc/filesystems', 'utf8'))) return 'the kernel has no ext4';
  }
  for (const tool of ['mkfs.ext4', 'losetup', 'mount', 'umount', 'cp']) {
    if (!(await run('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false))) return `${tool} is not installed (e2fsprogs, util-linux)`;
  }
  return undefined;
}

/** vm.dirty_expire_centisecs in ms: how long a dirty page may wait before the flusher writes it on its own. */
export async function dirtyExpireMs(): Promise<number> {
  return Number((await readFile('/proc/sys/vm/dirty_expire_centisecs', 'utf8')).trim()) * 10;
}

/** The options that keep an ext4 from writing anything on its own during a test. */
const NO_WRITEBACK = 'commit=300,noauto_da_alloc';

async function mountLoop(image: string, mountPoint: string, options: string): Promise<void> {
  await mkdir(mountPoint, { recursive: true });
  // -o loop: the loop device is set up with autoclear, so the unmount also frees it.
  await run('mount', ['-t', 'ext4', '-o', `loop,${options}`, image, mountPoint]);
}

async function unmountLoop(image: string, mountPoint: string): Promise<void> {
  const under = (await mountPoints()).filter((m) => m === mountPoint || m.startsWith(mountPoint + '/'));
  for (const m of under.sort((a, b) => b.length - a.length)) await run('umount', [m]).catch(() => run('umount', ['-l', m]));
  // autoclear frees the device at the unmount; detach whatever a failure left attached to this file.
  const { stdout } = await run('losetup', ['-j', image]).catch(() => ({ stdout: '' }));
  for (const line of stdout.split('\n')) {
    const dev = /^(\/dev\/loop\d+):/.exec(line)?.[1];
    if (dev !== undefined) await run('losetup', ['-d', dev]).catch(() => undefined);
  }
}

export class LoopDisk {
  readonly image: string;
  readonly mountPoint: string;
  readonly #dir: string;
  #copies = 0;
  readonly #open = new Map<string, string>();

  private constructor(dir: string) {
    this.#dir = dir;
    this.image = join(dir, 'disk.img');
    this.mountPoint = join(dir, 'disk');
  }

  /** A fresh ext4 of `mib` MiB in `dir`, mounted at dir/disk; released when the test ends, also when it fails. */
  static async make(t: TestContext, dir: string, mib: number): Promise<LoopDisk> {
    const disk = new LoopDisk(dir);
    t.after(() => disk.release());
    await run('truncate', ['-s', `${mib}M`, disk.image]);
    // 4 KiB blocks and a 16 MiB journal: a small filesystem would otherwise get 1 KiB
    // blocks and a journal small enough to force commits. Inode tables and the journal
    // initialised now, not by a background thread writing during the test.
    await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-J', 'size=16', '-E', 'lazy_itable_init=0,lazy_journal_init=0', disk.image]);
    await mountLoop(disk.image, disk.mountPoint, NO_WRITEBACK);
    disk.#open.set(disk.mountPoint, disk.image);
    return disk;
  }

  /**
   * What a power cut now would leave: a copy of the loop file, mounted at its own
   * path (the journal replayed). Pass it to `release` when done.
   */
  async powerCut(): Promise<string> {
    const n = ++this.#copies;
    const image = join(this.#dir, `cut-${n}.img`);
    const mountPoint = join(this.#dir, `cut-${n}`);
    await run('cp', ['--sparse=always', this.image, image]);
    this.#open.set(mountPoint, image);
    await mountLoop(image, mountPoint, 'commit=5');
    return mountPoint;
  }

  /** Unmounts a copy (with whatever was mounted under it) and deletes it. */
  async releaseCopy(mountPoint: string): Promise<void> {
    const image = this.#open.get(mountPoint);
    if (image === undefined) return;
    await unmountLoop(image, mountPoint);
    this.#open.delete(mountPoint);
    await rm(image, { force: true });
  }

  /** syncfs of the disk: makes everything before it reach the device (what a durable call would do). */
  async flush(): Promise<void> {
    await run('sync', ['-f', this.mountPoint]);
  }

  async release(): Promise<void> {
    for (const [mountPoint, image] of [...this.#open].reverse()) {
      await unmountLoop(image, mountPoint);
      this.#open.delete(mountPoint);
    }
  }
}
