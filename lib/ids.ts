// Layer ids become path components under the driver's home, so every id (and every
// lower-id read back from disk) is checked before any path is built from it: a name
// that could climb out of home, be cut by a NUL, or not fit in a directory entry is
// refused with InvalidIdError and nothing is touched.
import { InvalidIdError } from './errors.js';

/** NAME_MAX on Linux filesystems: the longest directory entry name, in bytes. */
export const MAX_ID_BYTES = 255;

/** Throws InvalidIdError unless `id` is a usable single path component. */
export function validateId(id: unknown): asserts id is string {
  if (typeof id !== 'string') throw new InvalidIdError(String(id), 'must be a string');
  if (id === '') throw new InvalidIdError(id, 'must not be empty');
  if (id === '.' || id === '..') throw new InvalidIdError(id, 'must not be "." or ".."');
  if (id.includes('/')) throw new InvalidIdError(id, 'must not contain "/"');
  if (id.includes('\0')) throw new InvalidIdError(id, 'must not contain NUL');
  // A lone surrogate would be written to disk as U+FFFD, so two ids could share a name.
  const bytes = Buffer.from(id, 'utf8');
  if (bytes.toString('utf8') !== id) throw new InvalidIdError(id, 'must be well-formed Unicode');
  if (bytes.length > MAX_ID_BYTES) throw new InvalidIdError(id, `must be at most ${MAX_ID_BYTES} bytes (is ${bytes.length})`);
}

/** `undefined`, '' (and null, from JavaScript callers) mean "no parent"; anything else must be a valid id. */
export function validateParent(parent: unknown): string | undefined {
  if (parent === undefined || parent === null || parent === '') return undefined;
  validateId(parent);
  return parent;
}

/** Decodes an id stored on disk (a lower-id file) and validates it like one given by a caller. */
export function parseStoredId(content: Buffer): string {
  const id = content.toString('utf8');
  if (!Buffer.from(id, 'utf8').equals(content)) throw new InvalidIdError(id, 'stored id is not valid UTF-8');
  validateId(id);
  return id;
}
