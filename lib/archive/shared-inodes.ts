// The rule "break a shared inode before changing it", for a layer apply onto a
// hardlink copy of the parent image (copyTree's hardlink mode, or `cp -al`): every
// non-directory there (file, symlink, device, fifo, socket) starts as a second name
// of the parent's inode, so changing its owner, mode, times or xattrs in place would
// change the parent image too.
//
// An apply replaces entries (a new inode each) and never writes into an existing one,
// except for a tar hardlink whose metadata differs from its target's: that changes
// the target's inode. Before it does, the inode must be private to this apply:
//
//   private = made by this apply (an entry's new inode, or a copy-up), or reached by
//             a name this apply linked to a private inode.
//   Before changing an existing non-directory at `path`: if its link count is above 1
//   and it is not private, replace `path` by a copy-up (same type, content or target,
//   owner, mode, xattrs, times; a new inode) and count that inode as private.
//   A tar hardlink that needs no change to a non-private inode adds a name that is not
//   private either (it shares the parent's inode; breaking it later breaks that name).
//
// Tracked by name: `made` is the apply's own set of names it created entries at (it
// includes names made by tar hardlinks); this class remembers the exceptions in both
// directions, which are few (only tar hardlinks and copy-ups make them).
export class SharedInodes {
  /** Names this apply linked to a shared (not private) inode: in `made`, yet not private. */
  private readonly sharedLinks = new Set<string>();
  /** Names a copy-up gave a private inode: not in `made` (still lower content for whiteouts), yet private. */
  private readonly copiedUp = new Set<string>();

  constructor(private readonly made: ReadonlySet<string>) {}

  isPrivate(path: string): boolean {
    return this.copiedUp.has(path) || (this.made.has(path) && !this.sharedLinks.has(path));
  }

  /** Whether the inode at `path` (with `nlink` names) must get a copy-up before it is changed. */
  mustBreak(path: string, nlink: bigint): boolean {
    return nlink > 1n && !this.isPrivate(path);
  }

  /** `path` now has a private inode made by a copy-up. */
  brokeAt(path: string): void {
    this.sharedLinks.delete(path);
    this.copiedUp.add(path);
  }

  /** `path` was just made a name of the inode at `target` (a tar hardlink). */
  linked(path: string, target: string): void {
    if (this.isPrivate(target)) this.sharedLinks.delete(path);
    else this.sharedLinks.add(path);
  }

  /** Whatever was at `path` (and below it, for a directory) is gone or replaced by a new inode. */
  replaced(path: string): void {
    this.sharedLinks.delete(path);
    this.copiedUp.delete(path);
    if (this.sharedLinks.size + this.copiedUp.size === 0) return;
    const below = path + '/';
    for (const set of [this.sharedLinks, this.copiedUp]) for (const p of set) if (p.startsWith(below)) set.delete(p);
  }
}
