// The result of comparing a layer with its parent, shared by the two ways of
// computing it (changes.ts walks both trees; changes-overlay.ts reads only upper/)
// and by what consumes it (the public change list, export.ts, size.ts).
import type { Change, ChangeKind, LongOperationOptions, Progress } from '../types.js';
import { comparePaths, fromRaw } from './raw-path.js';
import { inodeKey, type EntryStat } from './entry-compare.js';
import type { ScannedEntry } from '../native.js';

export interface ChangeRecord {
  /** Raw (latin1) layer path, "/etc/passwd". */
  path: string;
  kind: ChangeKind;
  /** lstat of the entry in the new tree, for A and C. */
  stat?: EntryStat;
  /** The entry's xattrs and symlink target, when the walk already read them (native scan). */
  scanned?: ScannedEntry;
}

export interface ChangeSet {
  /** Sorted by comparePaths: a directory before its subtree. */
  readonly changes: readonly ChangeRecord[];
  /** Raw directory holding the new tree's entries (a layer root, a merged mount or upper/). */
  readonly newRoot: string;
  /** Directories all of whose entries in the parent were deleted: exported as one opaque whiteout. */
  readonly opaqueDirs: ReadonlySet<string>;
  /** Inode → the unchanged names of the new tree holding it (only inodes with several names). */
  readonly unchangedNames: ReadonlyMap<string, readonly string[]>;
}

/** Gathers changes from concurrent walkers, then sorts them once. */
export class ChangeCollector {
  private readonly records: ChangeRecord[] = [];
  private readonly opaque = new Set<string>();
  private readonly links = new Map<string, string[]>();
  private visited = 0;
  private lastReport = 0;

  constructor(
    private readonly newRoot: string,
    private readonly onProgress?: LongOperationOptions['onProgress'],
  ) {}

  add(path: string, kind: ChangeKind, stat?: EntryStat): void {
    this.records.push(stat ? { path, kind, stat } : { path, kind });
  }

  markOpaque(dir: string): void {
    this.opaque.add(dir);
  }

  /** A non-directory the new tree has unchanged; remembered when other names may link to it. */
  noteUnchanged(path: string, stat: EntryStat): void {
    if (stat.nlink < 2n) return;
    const key = inodeKey(stat);
    const known = this.links.get(key);
    if (known === undefined) this.links.set(key, [path]);
    else known.push(path);
  }

  /** Counts a visited entry and reports progress at most every 100 ms. */
  visit(): void {
    this.visited++;
    if (this.onProgress) {
      const now = Date.now();
      if (now - this.lastReport >= 100) {
        this.lastReport = now;
        const p: Progress = { entries: this.visited, bytes: 0 };
        this.onProgress(p);
      }
    }
  }

  finish(): ChangeSet {
    this.records.sort((a, b) => comparePaths(a.path, b.path));
    return { changes: this.records, newRoot: this.newRoot, opaqueDirs: this.opaque, unchangedNames: this.links };
  }
}

/** The public form: { path, kind } with paths as strings. */
export function toPublicChanges(set: ChangeSet): Change[] {
  return set.changes.map((c) => ({ path: fromRaw(c.path), kind: c.kind }));
}
