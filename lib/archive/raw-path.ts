// Paths inside a layer are raw bytes (Linux names need not be UTF-8). The archive
// code carries them as latin1 strings: one char per byte, so they compare, sort and
// concatenate like strings, and turn back into the exact bytes for syscalls and tar
// headers with Buffer.from(p, 'latin1').
import { lstat, readdir, readlink } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { isMissing } from '../errors.js';

/** A latin1 ("raw") form of a path given as a normal (UTF-8) string. */
export function toRaw(path: string): string {
  return Buffer.from(path, 'utf8').toString('latin1');
}

/** The bytes a raw path stands for, for syscalls and tar headers. */
export function rawBytes(rawPath: string): Buffer {
  return Buffer.from(rawPath, 'latin1');
}

/** A raw path shown as a normal string (invalid UTF-8 becomes U+FFFD), for the public API. */
export function fromRaw(rawPath: string): string {
  return rawBytes(rawPath).toString('utf8');
}

/**
 * Compares two layer paths component by component ("/a" < "/a/x" < "/a-b"), so a
 * sorted list visits a directory's whole subtree right after the directory itself.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // '/' sorts before every byte a name can hold.
    if (ca === 0x2f) ca = -1;
    if (cb === 0x2f) cb = -1;
    return ca - cb;
  }
  return a.length - b.length;
}

export async function readNames(rawDir: string): Promise<string[]> {
  const names = await readdir(rawBytes(rawDir), { encoding: 'buffer' });
  return names.map((n) => n.toString('latin1'));
}

export function lstatRaw(rawPath: string): Promise<BigIntStats> {
  return lstat(rawBytes(rawPath), { bigint: true });
}

/** lstatRaw, or undefined when the path (or a parent) is missing or not a directory (as lstatOrUndefined, for raw paths). */
export async function lstatRawOrUndefined(rawPath: string): Promise<BigIntStats | undefined> {
  try {
    return await lstatRaw(rawPath);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

export function readlinkRaw(rawPath: string): Promise<Buffer> {
  return readlink(rawBytes(rawPath), { encoding: 'buffer' });
}

/** Parent of a layer path ("/a/b" → "/a", "/a" → ""). */
export function parentOf(rawPath: string): string {
  return rawPath.slice(0, rawPath.lastIndexOf('/'));
}

export function baseOf(rawPath: string): string {
  return rawPath.slice(rawPath.lastIndexOf('/') + 1);
}
