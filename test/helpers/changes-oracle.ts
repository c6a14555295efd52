// The expected changes between two trees, computed from manifests (manifest.py's
// view of the files, not our walker's) by containers/storage's rules as we apply
// them: shared inode → unchanged; otherwise type, mode, owner, rdev, xattrs (but
// overlay's) and, for non-directories, size, mtime, hardlink-group membership
// (a new inode with another nlink), content and link target.
// Take the manifests when the compared trees are as the walker saw them: nlink counts
// every name of an inode, also in other trees.
import type { Manifest, ManifestEntry } from './tree.js';

/** The entries of `m` under `prefix` (a path relative to the manifest's root), re-rooted there. */
export function subManifest(m: Manifest, prefix: string): Manifest {
  const hex = Buffer.from(prefix).toString('hex');
  const out: Manifest = new Map();
  for (const [path, e] of m) {
    if (path === hex) out.set('', { ...e, path: '' });
    else if (path.startsWith(hex + '2f')) {
      const rel = path.slice(hex.length + 2);
      out.set(rel, { ...e, path: rel });
    }
  }
  return out;
}

const parentHex = (hex: string): string => {
  const i = Buffer.from(hex, 'hex').lastIndexOf(0x2f);
  return i < 0 ? '' : Buffer.from(hex, 'hex').subarray(0, i).toString('hex');
};

function contentXattrs(e: ManifestEntry): string {
  return JSON.stringify(Object.entries(e.xattrs).filter(([k]) => !k.startsWith('trusted.overlay.') && !k.startsWith('user.overlay.')));
}

function modified(a: ManifestEntry, b: ManifestEntry): boolean {
  if (a.type !== b.type || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return true;
  if (JSON.stringify(a.rdev) !== JSON.stringify(b.rdev)) return true;
  if (contentXattrs(a) !== contentXattrs(b)) return true;
  if (a.type === 'dir') return false;
  if (a.mtime !== b.mtime || a.size !== b.size) return true;
  // A new inode where either side has other names changes a hardlink group.
  if (a.ino !== b.ino && a.nlink !== b.nlink) return true;
  return a.sha256 !== b.sha256 || a.target !== b.target;
}

/** "A 6162", "C …", "D …" lines (hex of the path without the leading '/'), sorted. */
export function expectedChanges(oldM: Manifest | undefined, newM: Manifest, sharedInodes = true): string[] {
  const kinds = new Map<string, string>();
  for (const [path, e] of newM) {
    if (path === '') continue;
    const old = oldM?.get(path);
    if (old === undefined) kinds.set(path, 'A');
    else if (sharedInodes && old.ino === e.ino && e.type !== 'dir') continue;
    else if (modified(old, e)) kinds.set(path, 'C');
  }
  for (const [path, old] of oldM ?? []) {
    if (path === '' || newM.has(path)) continue;
    const parent = parentHex(path);
    if (newM.get(parent)?.type === 'dir' && oldM!.get(parent)?.type === 'dir') kinds.set(path, 'D');
    void old;
  }
  for (const path of [...kinds.keys()]) {
    for (let p = parentHex(path); p !== ''; p = parentHex(p)) if (!kinds.has(p)) kinds.set(p, 'C');
  }
  return [...kinds].map(([path, kind]) => `${kind} ${path}`).sort();
}

/** DiffSize by the same rules: sizes of added and changed non-directories, each inode once. */
export function expectedSize(oldM: Manifest | undefined, newM: Manifest, sharedInodes = true): number {
  const seen = new Set<number>();
  let size = 0;
  for (const line of expectedChanges(oldM, newM, sharedInodes)) {
    if (line.startsWith('D')) continue;
    const e = newM.get(line.slice(2))!;
    if (e.type === 'dir') continue;
    if (e.nlink > 1) {
      if (seen.has(e.ino)) continue;
      seen.add(e.ino);
    }
    size += e.type === 'file' ? e.size! : e.type === 'symlink' ? e.target!.length / 2 : 0;
  }
  return size;
}

/** Our change set's records in the same form. */
export function changeLines(changes: ReadonlyArray<{ path: string; kind: string }>): string[] {
  return changes.map((c) => `${c.kind} ${Buffer.from(c.path.slice(1), 'latin1').toString('hex')}`).sort();
}
