// The fast path for a read-write layer over an image: its changes are exactly what
// overlayfs wrote to upper/, so only upper/ is walked, and the parent's root/ (the
// lowerdir) is looked up name by name for what upper/ holds; a lower directory is
// listed only when upper/ deletes something in it. The rules follow the kernel:
// a character device 0/0 is a whiteout (deleted), `trusted.overlay.opaque=y` hides
// the whole lower directory under it. Entries copied up but left as they were
// compare equal and are not changes, so this gives the same list as walking the
// merged mount against the parent (changes.ts), which the tests check.
import type { BigIntStats } from 'node:fs';
import type { LongOperationOptions } from '../types.js';
import { ChangeCollector, type ChangeSet } from './change-set.js';
import { entryDiffers, isDir, isWhiteout, readXattrs } from './entry-compare.js';
import { IoGate } from './io-gate.js';
import { lstatRawOrUndefined, lstatRaw, readNames, toRaw } from './raw-path.js';

/** Parallel fs calls during a walk: enough to keep libuv's pool (4 threads) fed. */
const walkConcurrency = 32;

const opaqueXattrs = ['trusted.overlay.opaque', 'user.overlay.opaque'];

/** Changes of an overlay layer from its upper dir against its lowerdir (the parent image's root). */
export async function overlayChanges(upperDir: string, lowerDir: string, opts: LongOperationOptions = {}): Promise<ChangeSet> {
  const walker = new UpperWalker(toRaw(upperDir), toRaw(lowerDir), opts);
  return walker.run();
}

class UpperWalker {
  private readonly gate: IoGate;
  private readonly out: ChangeCollector;

  constructor(
    private readonly upper: string,
    private readonly lower: string,
    opts: LongOperationOptions,
  ) {
    this.gate = new IoGate(walkConcurrency, opts.signal);
    this.out = new ChangeCollector(upper, opts.onProgress);
  }

  async run(): Promise<ChangeSet> {
    const rootOpaque = await this.isOpaque('');
    await this.walk('', true, rootOpaque);
    return this.out.finish();
  }

  private async isOpaque(rel: string): Promise<boolean> {
    const xattrs = await this.gate.run(() => readXattrs(this.upper + rel));
    return xattrs.some(([name, value]) => opaqueXattrs.includes(name) && value.length === 1 && value[0] === 0x79 /* 'y' */);
  }

  /**
   * One directory of upper/. `lowerIsDir`: the lowerdir has a directory here (else
   * everything below is new); `opaque`: this directory or an ancestor is opaque,
   * so lower entries not in upper/ are deleted.
   */
  private async walk(rel: string, lowerIsDir: boolean, opaque: boolean): Promise<boolean> {
    const names = await this.gate.run(() => readNames(this.upper + rel));
    const deleted = new Set<string>();
    const present = new Set<string>();
    let sawWhiteout = false;
    const results = await Promise.all(
      names.map(async (name) => {
        const path = rel + '/' + name;
        const upperSt = await this.gate.run(() => lstatRaw(this.upper + path));
        this.out.visit();
        if (isWhiteout(upperSt)) {
          sawWhiteout = true;
          // A whiteout of something the lower never had hides nothing.
          if (!lowerIsDir || (await this.gate.run(() => lstatRawOrUndefined(this.lower + path))) === undefined) return false;
          deleted.add(name);
          this.out.add(path, 'D');
          return true;
        }
        present.add(name);
        const lowerSt = lowerIsDir ? await this.gate.run(() => lstatRawOrUndefined(this.lower + path)) : undefined;
        return this.entry(path, upperSt, lowerSt, opaque);
      }),
    );
    let changed = results.some(Boolean);
    if (lowerIsDir && (opaque || sawWhiteout)) {
      const lowerNames = await this.gate.run(() => readNames(this.lower + rel));
      if (opaque) {
        for (const name of lowerNames) {
          if (present.has(name) || deleted.has(name)) continue;
          deleted.add(name);
          this.out.add(rel + '/' + name, 'D');
          changed = true;
        }
      }
      if (rel !== '' && lowerNames.length > 0 && deleted.size === lowerNames.length) this.out.markOpaque(rel);
    }
    return changed;
  }

  private async entry(path: string, upperSt: BigIntStats, lowerSt: BigIntStats | undefined, parentOpaque: boolean): Promise<boolean> {
    if (lowerSt === undefined) {
      this.out.add(path, 'A', upperSt);
      if (isDir(upperSt)) await this.walk(path, false, false);
      return true;
    }
    const { changed, newXattrs } = await entryDiffers(this.gate, this.lower + path, lowerSt, this.upper + path, upperSt);
    if (changed) this.out.add(path, 'C', upperSt);
    else if (!isDir(upperSt)) this.out.noteUnchanged(path, upperSt);
    if (!isDir(upperSt)) return changed;
    const opaque =
      parentOpaque ||
      (newXattrs
        ? newXattrs.some(([name, value]) => opaqueXattrs.includes(name) && value.length === 1 && value[0] === 0x79)
        : await this.isOpaque(path));
    const inside = await this.walk(path, isDir(lowerSt), opaque);
    if (inside && !changed) this.out.add(path, 'C', upperSt);
    return changed || inside;
  }
}
