// lstat for the drivers' layout reads, where a missing path is an answer, not an error.
import { lstat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isMissing } from '../errors.js';

/** lstat that answers undefined for a missing path (or a parent that is not a directory). */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** True when `path` is a directory (not a link to one). */
export async function isDirectory(path: string): Promise<boolean> {
  return (await lstatOrUndefined(path))?.isDirectory() ?? false;
}
