// ChangesDirs: the changes of a layer against its parent found by walking both
// trees side by side (containers/storage pkg/archive/changes.go, changes_linux.go).
// Used for image layers (root/ against the parent's root/) and as the naive path
// for anything else; also with no parent, where everything is an addition.
// A pair of names sharing an inode is unchanged without a look inside: an image's
// root/ is a hardlink copy of its parent's and applying a layer never writes into
// an existing inode. The walks are native (scanTree, compareTrees): one pool job,
// nothing per entry on the JS thread.
import type { LongOperationOptions } from '../types.js';
import type { ChangeRecord, ChangeSet } from './change-set.js';
import { inodeKey } from './entry-compare.js';
import { rawBytes, toRaw } from './raw-path.js';
import { compareTrees, scanTree } from '../native.js';
import { AbortError } from '../errors.js';

/**
 * Compares the tree at `newDir` with the one at `oldDir` (undefined: no parent, all
 * additions). Paths are normal strings; the result carries raw paths.
 */
export async function changesDirs(newDir: string, oldDir: string | undefined, opts: LongOperationOptions = {}): Promise<ChangeSet> {
  const newRoot = toRaw(newDir);
  if (oldDir === undefined) return wholeTree(newRoot, opts);
  return bothTrees(newRoot, toRaw(oldDir), opts);
}

/**
 * No parent: every entry is an addition. One native scan reads what the export
 * needs of each (lstat, xattrs, symlink target) in the order a change set is kept.
 */
async function wholeTree(newRoot: string, opts: LongOperationOptions): Promise<ChangeSet> {
  const checkAborted = () => {
    if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason });
  };
  checkAborted();
  const entries = await scanTree(rawBytes(newRoot));
  checkAborted();
  const changes: ChangeRecord[] = entries.map((e) => ({ path: '/' + e.path, kind: 'A', stat: e, scanned: e }));
  opts.onProgress?.({ entries: changes.length, bytes: 0 });
  return { changes, newRoot, opaqueDirs: new Set(), unchangedNames: new Map() };
}

/**
 * Both trees merge-walked by the addon (native/compare_trees.cc), which keeps only
 * the changes: a child image's compare costs memory for what changed, not for the
 * whole tree. The entries come scanned (xattrs and link targets read), sorted.
 */
async function bothTrees(newRoot: string, oldRoot: string, opts: LongOperationOptions): Promise<ChangeSet> {
  const found = await compareTrees(rawBytes(newRoot), rawBytes(oldRoot), { signal: opts.signal, onProgress: opts.onProgress });
  const changes: ChangeRecord[] = found.changes.map((c) => (c.entry ? { path: '/' + c.path, kind: c.kind, stat: c.entry, scanned: c.entry } : { path: '/' + c.path, kind: c.kind }));
  // The other names of a changed hardlink group: those that are not changes themselves.
  const unchangedNames = new Map<string, string[]>();
  if (found.linkNames.length > 0) {
    const changed = new Set(changes.map((c) => c.path));
    for (const { dev, ino, path } of found.linkNames) {
      if (changed.has('/' + path)) continue;
      const key = inodeKey({ dev, ino });
      const known = unchangedNames.get(key);
      if (known === undefined) unchangedNames.set(key, ['/' + path]);
      else known.push('/' + path);
    }
  }
  opts.onProgress?.({ entries: found.entries, bytes: 0 });
  return { changes, newRoot, opaqueDirs: new Set(found.opaque.map((d) => '/' + d)), unchangedNames };
}
