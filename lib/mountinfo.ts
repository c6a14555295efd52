// The one reader of /proc/self/mountinfo (proc(5)): which mounts this process's mount
// namespace has. Fields: mount id, parent id, major:minor, root, mount point, options,
// optional fields up to "-", fs type, source, super options; paths escape space, tab,
// newline and backslash as \ooo.
import { readFile, realpath } from 'node:fs/promises';
import { constants, mount } from './native.js';

export interface MountEntry {
  id: number;
  parentId: number;
  /** "major:minor" of the filesystem. */
  device: string;
  /** The path inside its filesystem that is mounted (not "/" for a bind of a subdirectory). */
  root: string;
  mountPoint: string;
  fsType: string;
  source: string;
  /** A member of a shared peer group ("shared:N" among the optional fields): mounts below it propagate. */
  shared: boolean;
  /** The filesystem's own options (for overlay: lowerdir=…,upperdir=…, and context= when labelled). */
  superOptions: string;
}

function unescapeField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses mountinfo text; lines that do not have the documented shape are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f.length < 7 || dash < 0 || f[dash + 2] === undefined) continue;
    entries.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      device: f[2]!,
      root: unescapeField(f[3]!),
      mountPoint: unescapeField(f[4]!),
      fsType: f[dash + 1]!,
      source: unescapeField(f[dash + 2]!),
      shared: f.slice(6, dash).some((o) => o.startsWith('shared:')),
      superOptions: unescapeField(f[dash + 3] ?? ''),
    });
  }
  return entries;
}

/** This process's mounts, in mount order (a later entry on the same point is on top). */
export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Mount points at or below `dir` (absolute, canonical), deepest first. */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const points = (await readMountInfo()).map((m) => m.mountPoint).filter((m) => m === dir || m.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** True when `dir` is the root of a mount in this process's mount namespace. */
export async function isMountPoint(dir: string): Promise<boolean> {
  const target = await realpath(dir);
  return (await readMountInfo()).some((m) => m.mountPoint === target);
}

/** Bind-mounts a directory onto itself (if it is not a mount point already) and makes it private. */
export async function makePrivateMount(dir: string): Promise<void> {
  if (!(await isMountPoint(dir))) await mount(dir, dir, '', constants.MS_BIND);
  await mount('none', dir, '', constants.MS_PRIVATE);
}
