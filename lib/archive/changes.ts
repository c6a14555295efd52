// ChangesDirs: the changes of a layer against its parent found by walking both
// trees side by side (containers/storage pkg/archive/changes.go, changes_linux.go).
// Used for image layers (root/ against the parent's root/) and as the naive path
// for anything else; also with no parent, where everything is an addition.
// A pair of names sharing an inode is unchanged without a look inside: an image's
// root/ is a hardlink copy of its parent's and applying a layer never writes into
// an existing inode.
import type { BigIntStats } from 'node:fs';
import type { LongOperationOptions } from '../types.js';
import { ChangeCollector, type ChangeRecord, type ChangeSet } from './change-set.js';
import { entryDiffers, isDir } from './entry-compare.js';
import { IoGate } from './io-gate.js';
import { lstatMaybe, lstatRaw, readNames, rawBytes, toRaw } from './raw-path.js';
import { scanTree } from '../native.js';
import { AbortError } from '../errors.js';

/** Parallel fs calls during a walk: enough to keep libuv's pool (4 threads) fed. */
export const walkConcurrency = 32;

/**
 * Compares the tree at `newDir` with the one at `oldDir` (undefined: no parent, all
 * additions). Paths are normal strings; the result carries raw paths.
 */
export async function changesDirs(newDir: string, oldDir: string | undefined, opts: LongOperationOptions = {}): Promise<ChangeSet> {
  if (oldDir === undefined) return wholeTree(toRaw(newDir), opts);
  const walker = new DirsWalker(toRaw(newDir), oldDir === undefined ? undefined : toRaw(oldDir), opts);
  return walker.run();
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

class DirsWalker {
  private readonly gate: IoGate;
  private readonly out: ChangeCollector;

  constructor(
    private readonly newRoot: string,
    private readonly oldRoot: string | undefined,
    opts: LongOperationOptions,
  ) {
    this.gate = new IoGate(walkConcurrency, opts.signal);
    this.out = new ChangeCollector(newRoot, opts.onProgress);
  }

  async run(): Promise<ChangeSet> {
    await this.gate.run(() => lstatRaw(this.newRoot));
    await this.walk('', true, this.oldRoot !== undefined);
    return this.out.finish();
  }

  /** Walks one directory present in the new tree; true when anything inside it changed. */
  private async walk(rel: string, newIsDir: boolean, oldIsDir: boolean): Promise<boolean> {
    const [newNames, oldNames] = await Promise.all([
      newIsDir ? this.gate.run(() => readNames(this.newRoot + rel)) : [],
      oldIsDir && this.oldRoot !== undefined ? this.gate.run(() => readNames(this.oldRoot + rel)) : [],
    ]);
    const oldSet = new Set(oldNames);
    const results = await Promise.all(newNames.map((name) => this.child(rel + '/' + name, oldSet.has(name) && oldIsDir)));
    let changed = results.some(Boolean);
    const newSet = new Set(newNames);
    let deleted = 0;
    for (const name of oldNames) {
      if (newSet.has(name)) continue;
      this.out.add(rel + '/' + name, 'D');
      deleted++;
    }
    if (deleted > 0) changed = true;
    if (rel !== '' && oldNames.length > 0 && deleted === oldNames.length) this.out.markOpaque(rel);
    return changed;
  }

  /** One entry of the new tree; true when it or anything under it changed. */
  private async child(path: string, mayExistInOld: boolean): Promise<boolean> {
    const newSt = await this.gate.run(() => lstatRaw(this.newRoot + path));
    this.out.visit();
    const oldSt: BigIntStats | undefined = mayExistInOld ? await this.gate.run(() => lstatMaybe(this.oldRoot! + path)) : undefined;
    if (oldSt === undefined) {
      this.out.add(path, 'A', newSt);
      if (isDir(newSt)) await this.walk(path, true, false);
      return true;
    }
    if (oldSt.ino === newSt.ino && oldSt.dev === newSt.dev) {
      if (!isDir(newSt)) this.out.noteUnchanged(path, newSt);
      return false;
    }
    const { changed } = await entryDiffers(this.gate, this.oldRoot! + path, oldSt, this.newRoot + path, newSt);
    if (changed) this.out.add(path, 'C', newSt);
    else if (!isDir(newSt)) this.out.noteUnchanged(path, newSt);
    if (!isDir(newSt)) return changed;
    const inside = await this.walk(path, true, isDir(oldSt));
    // A directory holding changes is listed, so its metadata travels with them.
    if (inside && !changed) this.out.add(path, 'C', newSt);
    return changed || inside;
  }
}
