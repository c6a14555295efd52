// The on-disk layout of the overlay2 driver: containers/storage's overlay driver
// (drivers/overlay/overlay.go), so people who know that one can read ours.
//
//   home/l/<short> -> ../<id>/diff      one short link per layer (26 characters, as c/s)
//   home/<id>/diff/                     the layer's own changes (overlay whiteouts: char 0/0, trusted.overlay.opaque)
//   home/<id>/link                      <short>
//   home/<id>/lower                     the stack under the layer, top first: "l/<short>:l/<short>…" (absent for a base layer)
//   home/<id>/empty/                    a base layer's stand-in lower (overlay needs one)
//   home/<id>/work/, merged/            overlayfs's work dir and the mount point
//   home/<id>/container                 ours, not c/s's: the layer was made by createReadWrite and mounts
//                                       read-write; an image layer mounts read-only
//
// `link` is written last: a layer dir without it was never finished. Nothing read
// from disk is trusted: short names and ids are checked before a path is built.
import { randomBytes } from 'node:crypto';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseStoredId, validateId } from '../../ids.js';
import { isSystemError } from '../../errors.js';
import { readSmallFile } from '../../native.js';

export const LINK_DIR = 'l';
/** c/s's idLength: ((26 + len("l/") + 1) * 128) fits a page of mount data with room to spare. */
export const LINK_LENGTH = 26;
const SHORT = /^[A-Z0-9]{1,64}$/;

export interface Overlay2Dirs {
  dir: string;
  diff: string;
  work: string;
  merged: string;
  empty: string;
  linkFile: string;
  lowerFile: string;
  containerFile: string;
}

export function dirsOf(home: string, id: string): Overlay2Dirs {
  const dir = join(home, id);
  return {
    dir,
    diff: join(dir, 'diff'),
    work: join(dir, 'work'),
    merged: join(dir, 'merged'),
    empty: join(dir, 'empty'),
    linkFile: join(dir, 'link'),
    lowerFile: join(dir, 'lower'),
    containerFile: join(dir, 'container'),
  };
}

/** A new short name: 26 of [A-Z0-9], as c/s's generateID. */
export function newShortName(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const bytes = randomBytes(LINK_LENGTH);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

export function checkShortName(name: string, where: string): string {
  if (!SHORT.test(name)) throw new Error(`${where}: ${JSON.stringify(name.slice(0, 80))} is not a short link name`);
  return name;
}

/** The layer's short name, or undefined when its link file is missing (a half-made layer). */
export async function readShortName(home: string, id: string): Promise<string | undefined> {
  let content: string;
  try {
    // Non-blocking, a regular file of bounded size: a fifo planted here is an error, not a wait.
    const data = await readSmallFile(dirsOf(home, id).linkFile);
    if (data === undefined) return undefined;
    content = data.toString('latin1');
  } catch (err) {
    if (isSystemError(err, 'ENOTDIR')) return undefined;
    throw err;
  }
  return checkShortName(content.trim(), dirsOf(home, id).linkFile);
}

/** The short names under the layer, top first (the lower file), [] for a base layer. */
export async function readLowerNames(home: string, id: string): Promise<string[]> {
  const data = await readSmallFile(dirsOf(home, id).lowerFile);
  if (data === undefined) return [];
  const content = data.toString('latin1');
  const file = dirsOf(home, id).lowerFile;
  return content
    .trim()
    .split(':')
    .map((entry) => {
      if (!entry.startsWith(`${LINK_DIR}/`)) throw new Error(`${file}: ${JSON.stringify(entry.slice(0, 80))} is not l/<short>`);
      return checkShortName(entry.slice(LINK_DIR.length + 1), file);
    });
}

/** The layer id a short link points to (l/<short> -> ../<id>/diff), or undefined when the link is gone. */
export async function idOfShortName(home: string, short: string): Promise<string | undefined> {
  let target: string;
  try {
    target = await readlink(join(home, LINK_DIR, short));
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return undefined;
    throw err;
  }
  const m = /^\.\.\/(.+)\/diff$/s.exec(target);
  if (m === null) return undefined;
  const id = parseStoredId(Buffer.from(m[1]!));
  validateId(id);
  return id;
}

export function shortPath(home: string, short: string): string {
  return join(home, LINK_DIR, short);
}
