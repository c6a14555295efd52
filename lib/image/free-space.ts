// The free-space check a pull makes before it fetches a byte: what its layers declare
// (compressed blobs to download, and an estimate of their unpacked size) against the
// free bytes of the filesystems they go to, so a pull that cannot fit fails at once
// with ENOSPC instead of filling the disk and failing half-way.
import { stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NoSpaceError } from '../errors.js';

/** Bytes a pull will write under `dir`, and what they are (for the message). */
export interface SpaceNeed {
  dir: string;
  bytes: number;
  what: string;
}

/**
 * Unpacked bytes per compressed byte assumed for a gzip or zstd layer. File trees
 * usually compress 2-4 fold; 2 is on the low side on purpose, so the check does not
 * refuse a pull that would fit (one that fits only by a hair may still meet ENOSPC on
 * the way, which is then reported as such).
 */
export const UNPACKED_PER_COMPRESSED = 2;

/** The estimated unpacked size of a layer blob of `size` bytes and `mediaType`. */
export function unpackedEstimate(size: number, mediaType: string): number {
  return /gzip|zstd/.test(mediaType) ? size * UNPACKED_PER_COMPRESSED : size;
}

/** The path itself, or its nearest ancestor that exists (a blob cache not made yet). */
async function existing(path: string): Promise<{ path: string; dev: number }> {
  for (let p = path; ; p = dirname(p)) {
    try {
      return { path: p, dev: (await stat(p)).dev };
    } catch (err) {
      if (p === dirname(p)) throw err;
    }
  }
}

/** Throws NoSpaceError (code ENOSPC) when the needs of one filesystem add up to more than it has free. */
export async function assertFreeSpace(action: string, needs: readonly SpaceNeed[]): Promise<void> {
  const byDevice = new Map<number, { path: string; needs: SpaceNeed[] }>();
  for (const need of needs) {
    if (need.bytes <= 0) continue;
    const at = await existing(need.dir);
    const entry = byDevice.get(at.dev) ?? { path: at.path, needs: [] };
    entry.needs.push(need);
    byDevice.set(at.dev, entry);
  }
  for (const { path, needs: here } of byDevice.values()) {
    const fs = await statfs(path);
    const free = fs.bavail * fs.bsize;
    const total = here.reduce((sum, n) => sum + n.bytes, 0);
    if (total > free) {
      const parts = here.map((n) => `${mb(n.bytes)} ${n.what}`).join(' and ');
      throw new NoSpaceError(`not enough space to ${action}: it needs about ${mb(total)} (${parts}) on ${path}, which has ${mb(free)} free`, path);
    }
  }
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}
