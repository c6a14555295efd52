// The OCI / AUFS whiteout names of a layer tar (containers/storage pkg/archive
// whiteouts.go): ".wh.NAME" deletes NAME of the lower layers, ".wh..wh..opq" makes
// its directory opaque (lower content hidden), and other ".wh..wh." names are AUFS
// bookkeeping (hardlink dirs, metadata) that a layer apply skips.
export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_OPAQUE_DIR = '.wh..wh..opq';

export type WhiteoutKind =
  | { kind: 'none' }
  | { kind: 'opaque' }
  | { kind: 'aufs-meta' }
  /** Delete `target` (a single component) from the entry's directory. */
  | { kind: 'remove'; target: string }
  /** ".wh..", ".wh..." and ".wh." name no real sibling: refused as unsafe. */
  | { kind: 'invalid' };

/** What a cleaned entry name (its components) means as a whiteout. */
export function classifyWhiteout(components: readonly string[]): WhiteoutKind {
  const base = components[components.length - 1];
  if (base === WHITEOUT_OPAQUE_DIR) return { kind: 'opaque' };
  // Anything under an AUFS metadata dir (.wh..wh.plnk/…) is bookkeeping too.
  if (components.some((c) => c.startsWith(WHITEOUT_META_PREFIX))) return { kind: 'aufs-meta' };
  if (base === undefined || !base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') return { kind: 'invalid' };
  return { kind: 'remove', target };
}
