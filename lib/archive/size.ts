// DiffSize as containers/storage computes it (pkg/archive/changes.go ChangesSize):
// the sizes of the added and changed non-directories, an inode with several names
// counted once.
import type { ChangeSet } from './change-set.js';
import { inodeKey, isDir } from './entry-compare.js';

export function changesSize(set: ChangeSet): number {
  let size = 0n;
  const counted = new Set<string>();
  for (const c of set.changes) {
    if (c.kind === 'D' || c.stat === undefined || isDir(c.stat)) continue;
    if (c.stat.nlink > 1n) {
      const key = inodeKey(c.stat);
      if (counted.has(key)) continue;
      counted.add(key);
    }
    size += c.stat.size;
  }
  return Number(size);
}
