// The pure-JS reference for bench/copy.ts: what a careful fs.promises tree copy costs
// (link or copyFile per file, symlinks and special files recreated, owner, mode and
// times restored, directories after their children), with up to 64 operations in
// flight on libuv's pool. It cannot copy xattrs or device nodes (no API for them),
// so it does less than the native engine and is still the row to beat.
//   node dist/bench/copy-js.js SRC DST [--hardlink]
import { chmod, copyFile, lchown, link, lstat, lutimes, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stats } from 'node:fs';

const limit = 64;
let active = 0;
const waiting: Array<() => void> = [];

async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
  active++;
  try {
    return await fn();
  } finally {
    active--;
    waiting.shift()?.();
  }
}

async function restore(path: string, st: Stats, isLink: boolean): Promise<void> {
  await lchown(path, st.uid, st.gid);
  if (!isLink) await chmod(path, st.mode & 0o7777);
  await lutimes(path, st.atime, st.mtime);
}

async function copyDir(src: string, dst: string, hardlink: boolean, st: Stats): Promise<void> {
  await slot(() => mkdir(dst, { mode: 0o700 }));
  const entries = await slot(() => readdir(src, { withFileTypes: true }));
  await Promise.all(
    entries.map(async (e) => {
      const from = join(src, e.name);
      const to = join(dst, e.name);
      if (e.isDirectory()) return copyDir(from, to, hardlink, await slot(() => lstat(from)));
      if (e.isFile() && hardlink) return slot(() => link(from, to));
      const est = await slot(() => lstat(from));
      if (est.isFile()) {
        await slot(() => copyFile(from, to));
        return slot(() => restore(to, est, false));
      }
      if (est.isSymbolicLink()) {
        await slot(async () => symlink(await readlink(from), to));
        return slot(() => restore(to, est, true));
      }
      // fifos, sockets and devices need mknod, which node:fs lacks: skipped.
    }),
  );
  await slot(() => restore(dst, st, false));
}

const [src, dst, flag] = process.argv.slice(2);
if (!src || !dst) {
  process.stderr.write('usage: copy-js SRC DST [--hardlink]\n');
  process.exit(2);
}
await copyDir(src, dst, flag === '--hardlink', await lstat(src));
