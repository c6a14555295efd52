// Layer entry names made safe before they touch the disk. A name is cleaned
// lexically, as containers/storage does with filepath.Clean: "." and empty
// components vanish, ".." removes the component before it, a leading "/" means the
// layer root. A name whose ".." climbs above the root is refused outright (the
// caller fails the whole apply with UnsafeLayerError); symlinks met on the way are
// the resolver's business (native.resolveInRoot), not this file's.
//
// Names are binary strings (one char per byte, see tar-reader.ts), so this works on
// names that are not UTF-8 without ever re-encoding them.

/** The components of `name` under the root, or null when it climbs above the root. */
export function cleanName(name: string): string[] | null {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return null;
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

/** Names in messages are cut here: no real path is longer (PATH_MAX), a hostile one may be megabytes. */
const DISPLAY_MAX = 4096;

/** A name for messages: the bytes as UTF-8 where they are, replacement chars where not; cut when absurdly long. */
export function displayName(name: string): string {
  const text = Buffer.from(name.length > DISPLAY_MAX ? name.slice(0, DISPLAY_MAX) : name, 'latin1').toString('utf8');
  return name.length > DISPLAY_MAX ? `${text}… (${name.length} bytes)` : text;
}

/** The bytes of a binary-string path, for node:fs and the addon. */
export function bytes(path: string): Buffer {
  return Buffer.from(path, 'latin1');
}
