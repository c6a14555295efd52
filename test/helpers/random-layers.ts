// Seeded random layer pairs for export and round-trip tests: a tree A with every
// entry type (files, dirs, symlinks, hardlinks, char and block devices, fifos),
// odd modes, owners, xattrs (binary user.* values, security.capability),
// nanosecond mtimes and awkward names (long, UTF-8, not UTF-8, '-' that sorts
// before '/'); and B, a hardlink copy of A (as the driver makes an image's root)
// changed at random: deletions, rewrites (also same size and mtime with other bytes,
// and same bytes in a new inode), metadata changes, additions, new hardlinks to
// unchanged files, type changes, directories emptied or recreated.
// The mutations never write into an inode B shares with A: like a layer apply,
// they replace. They also work on an overlay merged mount.
import { chmod, lchown, link, lutimes, mkdir, readdir, lstat, readFile, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import * as native from '../../lib/native.js';

// mulberry32, the benchmarks' generator: small, fast, seeded.
import { prng as rng } from '../../bench/lib.js';
export { rng };

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const chance = (r: Rand, p: number): boolean => r() < p;

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

const fileModes = [0o644, 0o755, 0o600, 0o4755, 0o2755, 0o6711, 0o1755, 0o000, 0o444, 0o7777];
const dirModes = [0o755, 0o700, 0o1777, 0o2775, 0o555, 0o711];
const ids = [0, 0, 0, 1, 1000, 65534, 100000];

/** A v2 file capability (cap_net_bind_service, effective): a binary value with bytes ≥ 0x80 and NULs. */
const capability = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

function name(r: Rand, n: number): Buffer {
  const base = `n${n}`;
  switch (Math.floor(r() * 12)) {
    case 0:
      return Buffer.from(base + '-' + 'x'.repeat(110 + Math.floor(r() * 40)));
    case 1:
      return Buffer.from(`é-${base}-ü`);
    case 2:
      return Buffer.concat([Buffer.from(base), Buffer.from([0xff, 0xfe, 0x80])]);
    case 3:
      return Buffer.from(`.${base}`);
    case 4:
      return Buffer.from(`${base}-a`); // sorts between n<k> and n<k>/...
    case 5:
      return Buffer.from(`${base} with space`);
    default:
      return Buffer.from(base);
  }
}

const p = (dir: Buffer, n: Buffer): Buffer => Buffer.concat([dir, Buffer.from('/'), n]);

function randomBytes(r: Rand, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(r() * 256);
  return b;
}

function randomSize(r: Rand): number {
  return pick(r, [0, 1, 7, 100, 511, 512, 513, 1500, 5000, 70_000]);
}

function randomTime(r: Rand): [number, number] {
  const sec = 1_000_000_000 + Math.floor(r() * 800_000_000);
  // Binary fractions of a second survive Node's utimes (a double) exactly.
  return [sec, pick(r, [0, 0, 0, 500_000_000, 250_000_000, 125_000_000, 7_812_500, 999_999_999])];
}

async function setMeta(r: Rand, path: Buffer, kind: 'file' | 'dir' | 'symlink' | 'other', skipTime = false): Promise<void> {
  // chown drops setuid bits and file capabilities, so it goes first.
  const uid = pick(r, ids);
  const gid = pick(r, ids);
  await lchown(path, uid, gid);
  if (kind !== 'symlink') {
    await chmod(path, kind === 'dir' ? pick(r, dirModes) : pick(r, fileModes));
    // user.* xattrs exist only on files and directories.
    if (kind !== 'other' && chance(r, 0.3)) await native.setXattr(path, 'user.k' + Math.floor(r() * 3), randomBytes(r, Math.floor(r() * 40)));
    if (kind === 'file' && chance(r, 0.08)) await native.setXattr(path, 'security.capability', capability);
  }
  if (!skipTime) await setTime(r, path, kind === 'symlink');
}

async function setTime(r: Rand, path: Buffer, isLink: boolean): Promise<void> {
  const [sec, nsec] = randomTime(r);
  const t = sec + nsec / 1e9;
  if (isLink) await lutimes(path, t, t);
  else await utimes(path, t, t);
}

interface Ctx {
  r: Rand;
  counter: number;
  files: Buffer[];
}

async function addEntry(c: Ctx, dir: Buffer, depth: number): Promise<void> {
  const r = c.r;
  const path = p(dir, name(r, c.counter++));
  const roll = r();
  if (roll < 0.35) {
    await writeFile(path, randomBytes(r, randomSize(r)));
    await setMeta(r, path, 'file');
    c.files.push(path);
  } else if (roll < 0.55 && depth < 3) {
    await mkdir(path);
    const n = Math.floor(r() * 5);
    for (let i = 0; i < n; i++) await addEntry(c, path, depth + 1);
    await setMeta(r, path, 'dir');
  } else if (roll < 0.67) {
    await symlink(pick(r, ['target', '../up', '/abs/olute', 'é', 'x'.repeat(150), 'n1']), path);
    await setMeta(r, path, 'symlink');
  } else if (roll < 0.77 && c.files.length > 0) {
    const target = pick(r, c.files);
    try {
      await link(target, path);
    } catch {
      return; // target deleted meanwhile
    }
  } else if (roll < 0.85) {
    await native.mknod(path, S_IFIFO | 0o644);
    await setMeta(r, path, 'other');
  } else if (roll < 0.93) {
    await native.mknod(path, S_IFCHR | 0o644, pick(r, [1, 4, 136, 300]), pick(r, [3, 5, 0, 70000]));
    await setMeta(r, path, 'other');
  } else {
    await native.mknod(path, S_IFBLK | 0o660, pick(r, [7, 8, 259]), pick(r, [0, 1, 16]));
    await setMeta(r, path, 'other');
  }
}

/** Fills `root` (an existing directory) with a random tree. */
export async function randomTree(root: string, seed: number, entries = 12): Promise<void> {
  const c: Ctx = { r: rng(seed), counter: 0, files: [] };
  const dir = Buffer.from(root);
  for (let i = 0; i < entries; i++) await addEntry(c, dir, 0);
}

/** Every path under `root` (raw), parents first. */
async function listAll(root: Buffer): Promise<Array<{ path: Buffer; dir: boolean; file: boolean; link: boolean }>> {
  const out: Array<{ path: Buffer; dir: boolean; file: boolean; link: boolean }> = [];
  const walk = async (dir: Buffer) => {
    for (const n of await readdir(dir, { encoding: 'buffer', withFileTypes: true })) {
      const path = p(dir, n.name as unknown as Buffer);
      out.push({ path, dir: n.isDirectory(), file: n.isFile(), link: n.isSymbolicLink() });
      if (n.isDirectory()) await walk(path);
    }
  };
  await walk(root);
  return out;
}

/** Replaces a non-directory by a copy in a new inode (so its metadata can change without touching A). */
async function unshare(path: Buffer): Promise<void> {
  const st = await lstat(path, { bigint: true });
  const xattrs: Array<[string, Buffer]> = [];
  for (const n of await native.listXattr(path)) xattrs.push([n, await native.getXattr(path, n)]);
  const data = await readFile(path);
  await unlink(path);
  await writeFile(path, data);
  await lchown(path, Number(st.uid), Number(st.gid));
  await chmod(path, Number(st.mode & 0o7777n));
  for (const [n, v] of xattrs) await native.setXattr(path, n, v);
  await copyTimes(path, st.mtimeNs);
}

/** Changes the tree at `root` (B, or an overlay merged mount) at random; `count` mutations. */
export async function mutateTree(root: string, seed: number, count = 6): Promise<void> {
  const r = rng(seed ^ 0x5bd1e995);
  const c: Ctx = { r, counter: 1000, files: [] };
  const rootB = Buffer.from(root);
  for (let i = 0; i < count; i++) {
    const all = await listAll(rootB);
    c.files = all.filter((e) => e.file).map((e) => e.path);
    const dirs = [rootB, ...all.filter((e) => e.dir).map((e) => e.path)];
    const any = all.length > 0 ? pick(r, all) : undefined;
    const file = c.files.length > 0 ? pick(r, c.files) : undefined;
    const op = Math.floor(r() * 12);
    if (op === 0 && any) {
      await rm(any.path, { recursive: true, force: true });
    } else if (op === 1 && file) {
      await unlink(file);
      await writeFile(file, randomBytes(r, randomSize(r)));
      await setMeta(r, file, 'file');
    } else if (op === 2 && file) {
      // Same size and mtime, other bytes, new inode: only a content comparison sees it.
      const st = await lstat(file, { bigint: true });
      const data = await readFile(file);
      if (data.length === 0) continue;
      const at = Math.floor(r() * data.length);
      data[at] = data[at]! ^ 0x5a;
      const xattrs: Array<[string, Buffer]> = [];
      for (const n of await native.listXattr(file)) xattrs.push([n, await native.getXattr(file, n)]);
      await unlink(file);
      await writeFile(file, data);
      await lchown(file, Number(st.uid), Number(st.gid));
      await chmod(file, Number(st.mode & 0o7777n));
      for (const [n, v] of xattrs) await native.setXattr(file, n, v);
      await copyTimes(file, st.mtimeNs);
    } else if (op === 3 && file) {
      // Same bytes and metadata in a new inode: not a change.
      const st = await lstat(file, { bigint: true });
      await unshare(file);
      await copyTimes(file, st.mtimeNs);
    } else if (op === 4 && file) {
      await unshare(file);
      await setMeta(r, file, 'file', chance(r, 0.5));
    } else if (op === 5) {
      const dir = pick(r, dirs);
      if (dir === rootB) continue;
      if (chance(r, 0.5)) await chmod(dir, pick(r, dirModes));
      else await native.setXattr(dir, 'user.dir', randomBytes(r, 5));
    } else if (op === 6 || op === 7) {
      await addEntry(c, pick(r, dirs), 1);
    } else if (op === 8 && file) {
      const dir = pick(r, dirs);
      await link(file, p(dir, name(r, c.counter++))).catch(() => undefined);
    } else if (op === 9 && any) {
      // Type change: something else under the same name.
      await rm(any.path, { recursive: true, force: true });
      if (any.dir) await writeFile(any.path, randomBytes(r, 10));
      else {
        await mkdir(any.path);
        await addEntry(c, any.path, 2);
      }
    } else if (op === 10) {
      // A directory emptied, or deleted and made again with some of the same names.
      const dir = pick(r, dirs);
      if (dir === rootB) continue;
      const names = await readdir(dir, { encoding: 'buffer' });
      for (const n of names) await rm(p(dir, n), { recursive: true, force: true });
      if (chance(r, 0.5) && names.length > 0) await writeFile(p(dir, names[0]!), randomBytes(r, 3));
    } else if (op === 11 && any?.link) {
      // Same length target and same mtime: only the target differs.
      const st = await lstat(any.path, { bigint: true });
      const target = await readlinkBuf(any.path);
      const next = Buffer.from(target);
      next[0] = next[0] === 0x7a ? 0x79 : 0x7a;
      await unlink(any.path);
      await symlink(next, any.path);
      await lchown(any.path, Number(st.uid), Number(st.gid));
      await copyTimes(any.path, st.mtimeNs, true);
    }
  }
}

async function readlinkBuf(path: Buffer): Promise<Buffer> {
  const { readlink } = await import('node:fs/promises');
  return readlink(path, { encoding: 'buffer' });
}

/** Gives `path` the mtime `mtimeNs` (exact for the binary fractions randomTime makes). */
async function copyTimes(path: Buffer, mtimeNs: bigint, isLink = false): Promise<void> {
  const t = Number(mtimeNs / 1_000_000_000n) + Number(mtimeNs % 1_000_000_000n) / 1e9;
  if (isLink) await lutimes(path, t, t);
  else await utimes(path, t, t);
}
