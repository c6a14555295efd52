// Names of filesystems by their statfs(2) f_type, for status() and for refusing
// backing filesystems overlayfs cannot sit on. The table is containers/storage's
// graphdriver.FsNames (drivers/driver_linux.go) plus the other magics that file
// defines, named as the kernel's include/uapi/linux/magic.h does.
import { statfs } from 'node:fs/promises';

export const FsMagic = {
  aufs: 0x61756673,
  btrfs: 0x9123683e,
  cramfs: 0x28cd3d45,
  ecryptfs: 0xf15f,
  extfs: 0x0000ef53,
  f2fs: 0xf2f52010,
  gpfs: 0x47504653,
  jffs2: 0x000072b6,
  jfs: 0x3153464a,
  nfs: 0x00006969,
  overlayfs: 0x794c7630,
  ramfs: 0x858458f6,
  reiserfs: 0x52654973,
  smb: 0x0000517b,
  squashfs: 0x73717368,
  tmpfs: 0x01021994,
  unsupported: 0x00000000,
  vxfs: 0xa501fcf5,
  xfs: 0x58465342,
  zfs: 0x2fc12fc1,
  fuse: 0x65735546,
  acfs: 0x61636673,
  afs: 0x5346414f,
  ceph: 0x00c36400,
  cifs: 0xff534d42,
  fhgfs: 0x19830326,
  ibrix: 0x013111a8,
  kafs: 0x6b414653,
  lustre: 0x0bd00bd0,
  ncp: 0x564c,
  nfsd: 0x6e667364,
  ocfs2: 0x7461636f,
  panfs: 0xaad7aaea,
  prlfs: 0x7c7c6673,
  smb2: 0xfe534d42,
  snfs: 0xbeefdead,
  vboxsf: 0x786f4256,
  bcachefs: 0xca451a4e,
  erofs: 0xe0f5e1e2,
  proc: 0x9fa0,
  sysfs: 0x62656572,
} as const;

export type FsName = keyof typeof FsMagic;

const names = new Map<number, FsName>((Object.entries(FsMagic) as Array<[FsName, number]>).map(([name, magic]) => [magic, name]));

/** The filesystem's name, or "<unknown> (0x…)" for a magic not in the table. */
export function fsName(magic: number): string {
  return names.get(magic >>> 0) ?? `<unknown> (0x${(magic >>> 0).toString(16)})`;
}

/** Filesystems overlayfs cannot use for its upper and work dirs (the seed's list). */
export const incompatibleBackingFs: ReadonlySet<number> = new Set([FsMagic.aufs, FsMagic.btrfs, FsMagic.overlayfs, FsMagic.zfs, FsMagic.ecryptfs]);

/** Filesystems that hold no directories of ours at all: a home under /proc or /sys is a mistake, refused before any mkdir. */
export const pseudoFs: ReadonlySet<number> = new Set([FsMagic.proc, FsMagic.sysfs]);

/** The statfs(2) f_type of the filesystem holding `path` (node:fs's statfs; no native code). */
export async function fsMagic(path: string): Promise<number> {
  const st = await statfs(path, { bigint: true });
  // f_type is a signed long in the kernel ABI; magics above 2^31 arrive negative on some builds.
  return Number(BigInt.asUintN(32, st.type));
}
