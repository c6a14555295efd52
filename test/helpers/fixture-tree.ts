// A generated tree with everything a layer can hold, for tests that copy, diff or
// apply trees and compare the result with test/helpers/tree.ts: every file type, odd
// modes, several owners, xattrs in each namespace, internal hardlinks, a sparse file,
// 255-byte and non-UTF-8 names, a path deeper than PATH_MAX, and times with ns.
// What needs root (other owners, device nodes, trusted.* and security.* xattrs) is
// left out without it, and listed in `skipped`.
import { chmod, chown, lchown, link, lutimes, mkdir, open, rename, rmdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mknod, setXattr } from '../../lib/native.js';

export interface FixtureTreeOptions {
  /** Make what needs root (owners, devices, trusted.*, security.*). Default: whether we are root. */
  privileged?: boolean;
  /** Include the path deeper than PATH_MAX (4096 bytes). Default true. */
  deep?: boolean;
}

export interface FixtureTree {
  root: string;
  /** Relative path of the sparse file (8 MiB, two 4 KiB data extents). */
  sparseFile: string;
  /** Relative paths of a set of files that are hardlinks of each other (as Buffers: one is deeper than PATH_MAX). */
  hardlinkGroup: Buffer[];
  /** Byte length of the deepest path made (relative to root), when `deep`. */
  deepestPath: number;
  /** What was not made, and why. */
  skipped: string[];
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

// security.capability, VFS_CAP_REVISION_2 with the effective flag: cap_net_bind_service (bit 10) permitted.
const capNetBindService = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

// Fixed times with nanoseconds (Node passes seconds as a double, so the ns digits are
// whatever that double rounds to: not round, which is the point).
const t0 = 1_600_000_000.123456789;
const when = (i: number): number => t0 + i * 3607.000271;

/**
 * Removes trees that may reach deeper than PATH_MAX, which fs.rm cannot (ENAMETOOLONG);
 * GNU rm walks fd-relative. Call it before tempDir's own cleanup runs.
 */
export async function removeDeepTrees(...paths: string[]): Promise<void> {
  await promisify(execFile)('rm', ['-rf', '--one-file-system', '--', ...paths]);
}

/** Builds the fixture under `dir` (which must exist and be empty). */
export async function makeFixtureTree(dir: string, opts: FixtureTreeOptions = {}): Promise<FixtureTree> {
  const privileged = opts.privileged ?? process.getuid?.() === 0;
  const deep = opts.deep ?? true;
  const skipped: string[] = [];
  const p = (...parts: string[]): string => join(dir, ...parts);
  const dirsToStamp: string[] = [];

  // Plain files and directories, a realistic little fan-out.
  for (const d of ['etc', 'usr/bin', 'usr/lib/x86_64', 'usr/share/doc/pkg', 'var/empty', 'tmp']) await mkdir(p(d), { recursive: true });
  await writeFile(p('etc/hostname'), 'fixture\n');
  await writeFile(p('etc/empty'), '');
  await writeFile(p('usr/bin/tool'), Buffer.alloc(70_000, 0x41));
  for (let i = 0; i < 20; i++) await writeFile(p('usr/lib/x86_64', `lib${i}.so`), `library ${i}\n`.repeat(i * 50 + 1));
  await writeFile(p('usr/share/doc/pkg/README'), 'read me\n');

  // Odd modes (set after chown: chown clears setuid/setgid).
  await writeFile(p('etc/shadow-0000'), 'secret\n');
  await writeFile(p('usr/bin/setuid-4755'), '#!/bin/sh\n');
  await writeFile(p('usr/bin/setgid-2755'), '#!/bin/sh\n');
  await mkdir(p('var/setgid-dir-2775'));
  await writeFile(p('var/setgid-dir-2775/file'), 'x');

  // Symlinks: relative, absolute, dangling, to a directory, and a long target.
  await symlink('hostname', p('etc/hostname.link'));
  await symlink('/etc/passwd', p('etc/absolute.link'));
  await symlink('../nowhere/at/all', p('etc/dangling.link'));
  await symlink('../usr/lib', p('var/lib.link'));
  await symlink('x/'.repeat(1000) + 'end', p('var/long-target.link'));

  // Internal hardlinks: three names, two directories.
  await writeFile(p('usr/bin/busybox'), Buffer.alloc(5000, 0x42));
  await link(p('usr/bin/busybox'), p('usr/bin/sh'));
  await link(p('usr/bin/busybox'), p('etc/busybox-too'));
  const hardlinkGroup = [Buffer.from('usr/bin/busybox'), Buffer.from('usr/bin/sh'), Buffer.from('etc/busybox-too')];

  // A sparse file: 8 MiB with data only at 0 and at 4 MiB.
  const sparseFile = 'var/sparse.img';
  const fh = await open(p(sparseFile), 'w');
  await fh.write(Buffer.alloc(4096, 0x53), 0, 4096, 0);
  await fh.write(Buffer.alloc(4096, 0x54), 0, 4096, 4 * 1024 * 1024);
  await fh.truncate(8 * 1024 * 1024);
  await fh.close();

  // Long (255-byte) and non-UTF-8 names.
  const long = 'L'.repeat(251) + '.txt';
  await writeFile(p('tmp', long), 'long name\n');
  await mkdir(p('tmp', 'D'.repeat(255)));
  await writeFile(p('tmp', 'D'.repeat(255), 'inside'), 'in a long-named dir\n');
  const latin1 = Buffer.concat([Buffer.from(p('tmp') + '/'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]); // "café" in Latin-1
  const invalid = Buffer.concat([Buffer.from(p('tmp') + '/'), Buffer.from([0xff, 0xfe, 0x80, 0x2e, 0x62, 0x69, 0x6e])]);
  await writeFile(latin1, 'latin-1 name\n');
  await mkdir(invalid);
  await writeFile(Buffer.concat([invalid, Buffer.from('/\xc0\xaf', 'latin1')]), 'overlong slash encoding\n');

  // Special files: a fifo and a socket need no privilege, device nodes do.
  await mknod(p('tmp/fifo'), S_IFIFO | 0o640);
  await mknod(p('tmp/socket'), S_IFSOCK | 0o755);
  if (privileged) {
    await mkdir(p('dev'));
    await mknod(p('dev/null'), S_IFCHR | 0o666, 1, 3);
    await mknod(p('dev/loop7'), S_IFBLK | 0o660, 7, 7);
    await mknod(p('dev/odd-char'), S_IFCHR | 0o600, 4095, 1048575); // the largest major and minor
    dirsToStamp.push(p('dev'));
  } else {
    skipped.push('device nodes (need root)');
  }

  // Xattrs: user.* on files and dirs; trusted.* (incl. overlay's), security.capability with root.
  await setXattr(p('etc/hostname'), 'user.comment', Buffer.from('hello'));
  await setXattr(p('usr/share/doc'), 'user.dir-note', Buffer.from([0, 1, 2, 255]));
  await setXattr(p('usr/bin/tool'), 'user.big', Buffer.alloc(3000, 0x78));
  if (privileged) {
    await setXattr(p('var/empty'), 'trusted.overlay.opaque', Buffer.from('y'));
    await setXattr(p('etc/dangling.link'), 'trusted.symlink-note', Buffer.from('on a symlink'));
    await setXattr(p('tmp/fifo'), 'trusted.fifo-note', Buffer.from('on a fifo'));
    await setXattr(p('usr/bin/tool'), 'security.capability', capNetBindService);
  } else {
    skipped.push('trusted.* and security.capability xattrs (need root)');
  }

  // Several owners.
  if (privileged) {
    await chown(p('etc/shadow-0000'), 0, 42);
    await chown(p('usr/bin/setuid-4755'), 0, 0);
    await chown(p('usr/bin/setgid-2755'), 1000, 50);
    await chown(p('usr/share/doc/pkg'), 1000, 1000);
    await chown(p('usr/share/doc/pkg/README'), 12345, 54321);
    await chown(p('var/setgid-dir-2775'), 65534, 65534);
    await lchown(p('etc/absolute.link'), 4242, 2424);
    await chown(p('tmp/fifo'), 33, 33);
    await chown(p('dev/loop7'), 0, 6);
  } else {
    skipped.push('owners other than ours (need root)');
  }
  await chmod(p('etc/shadow-0000'), 0o000);
  await chmod(p('usr/bin/setuid-4755'), 0o4755);
  await chmod(p('usr/bin/setgid-2755'), 0o2755);
  await chmod(p('var/setgid-dir-2775'), 0o2775);
  await chmod(p('tmp'), 0o1777);
  await chmod(p('usr/bin/tool'), 0o750);

  // Deeper than PATH_MAX: two chains of 200-byte names, each short enough to make,
  // then one renamed into the bottom of the other.
  let deepestPath = 0;
  if (deep) {
    const seg = (c: string, i: number): string => `${c}${String(i).padStart(3, '0')}`.padEnd(200, c);
    const upper = Array.from({ length: 12 }, (_, i) => seg('u', i));
    const lower = Array.from({ length: 12 }, (_, i) => seg('w', i));
    await mkdir(p('deep', ...upper), { recursive: true });
    await mkdir(p('deep-tmp', ...lower), { recursive: true });
    const bottom = p('deep-tmp', ...lower);
    await writeFile(join(bottom, 'deepest.txt'), 'at the bottom\n');
    await writeFile(join(bottom, 'linked-a'), 'linked deep and shallow\n');
    await link(join(bottom, 'linked-a'), join(bottom, 'linked-b'));
    await link(join(bottom, 'linked-a'), p('etc/linked-shallow'));
    await symlink('../'.repeat(12) + 'etc', join(bottom, 'up.link'));
    await utimes(join(bottom, 'deepest.txt'), when(1), when(2));
    for (let i = lower.length; i > 0; i--) await utimes(p('deep-tmp', ...lower.slice(0, i)), when(i), when(i + 1));
    await rename(p('deep-tmp', lower[0]!), p('deep', ...upper, lower[0]!));
    await utimes(p('deep', ...upper), when(30), when(31)); // rename changed its mtime
    await rmdir(p('deep-tmp'));
    const rel = ['deep', ...upper, ...lower].join('/');
    deepestPath = Buffer.byteLength(rel + '/deepest.txt');
    hardlinkGroup.push(Buffer.from(rel + '/linked-a'), Buffer.from(rel + '/linked-b'), Buffer.from('etc/linked-shallow'));
    for (let i = upper.length - 1; i >= 1; i--) dirsToStamp.push(p('deep', ...upper.slice(0, i)));
    dirsToStamp.push(p('deep'));
  }

  // Times last, children before their directories (adding entries changes a dir's mtime).
  const files = ['etc/hostname', 'etc/empty', 'usr/bin/tool', 'usr/bin/busybox', 'etc/shadow-0000', sparseFile, 'usr/share/doc/pkg/README'];
  for (const [i, f] of files.entries()) await utimes(p(f), when(i + 40), when(i + 50));
  await lutimes(p('etc/absolute.link'), when(60), when(61));
  await lutimes(p('etc/dangling.link'), when(62), when(63));
  await utimes(p('tmp/fifo'), when(64), when(65));
  await utimes(latin1, when(66), when(67));
  for (const d of [
    'usr/share/doc/pkg',
    'usr/share/doc',
    'usr/share',
    'usr/lib/x86_64',
    'usr/lib',
    'usr/bin',
    'usr',
    'var/setgid-dir-2775',
    'var/empty',
    'var',
    'etc',
  ]) {
    dirsToStamp.push(p(d));
  }
  dirsToStamp.push(p('tmp'), dir);
  for (const [i, d] of dirsToStamp.entries()) await utimes(d, when(i + 70), when(i + 100));
  return { root: dir, sparseFile, hardlinkGroup, deepestPath, skipped };
}
