// User-namespace id maps (the containers/storage idtools semantics): a store made for
// a user namespace owns its files as the host ids that the namespace's ids map to.
// Everything the driver creates belongs to the "root pair", the host uid/gid that
// container id 0 maps to.
import { InvalidOptionError } from './errors.js';
import type { IDMap } from './types.js';

/** Highest id the kernel accepts (uid_t is 32 bits; 2^32-1 is the "no id" value). */
const MAX_ID = 0xfffffffe;

/** Throws InvalidOptionError unless `maps` is a list of non-overlapping, in-range ranges. */
export function validateIdMaps(maps: readonly IDMap[] | undefined, what: string): readonly IDMap[] {
  if (maps === undefined) return [];
  if (!Array.isArray(maps)) throw new InvalidOptionError(`${what} must be an array of { containerId, hostId, size }`);
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_ID;
  for (const m of maps) {
    if (m === null || typeof m !== 'object' || !ok(m.containerId) || !ok(m.hostId) || !ok(m.size) || m.size === 0) {
      throw new InvalidOptionError(`${what}: invalid range ${JSON.stringify(m)}`);
    }
    if (m.containerId + m.size - 1 > MAX_ID || m.hostId + m.size - 1 > MAX_ID) {
      throw new InvalidOptionError(`${what}: range ${JSON.stringify(m)} goes past the largest id`);
    }
  }
  const overlaps = (key: 'containerId' | 'hostId'): boolean => {
    const sorted = [...maps].sort((a, b) => a[key] - b[key]);
    return sorted.some((m, i) => i > 0 && sorted[i - 1]![key] + sorted[i - 1]!.size > m[key]);
  };
  if (overlaps('containerId') || overlaps('hostId')) throw new InvalidOptionError(`${what}: ranges overlap`);
  return maps.map((m) => ({ containerId: m.containerId, hostId: m.hostId, size: m.size }));
}

/** The host id of container id `id`; identity when there are no maps; undefined when unmapped. */
export function toHost(maps: readonly IDMap[], id: number): number | undefined {
  if (maps.length === 0) return id;
  for (const m of maps) if (id >= m.containerId && id < m.containerId + m.size) return m.hostId + (id - m.containerId);
  return undefined;
}

/** The container id of host id `id`; identity when there are no maps; undefined when unmapped. */
export function toContainer(maps: readonly IDMap[], id: number): number | undefined {
  if (maps.length === 0) return id;
  for (const m of maps) if (id >= m.hostId && id < m.hostId + m.size) return m.containerId + (id - m.hostId);
  return undefined;
}

export interface IdPair {
  uid: number;
  gid: number;
}

/**
 * The host uid/gid of container root. Without maps that is the process's own ids
 * (root for a real store), so a non-root caller still owns what it creates.
 */
export function rootPair(uidMaps: readonly IDMap[], gidMaps: readonly IDMap[]): IdPair {
  const uid = uidMaps.length === 0 ? (process.geteuid?.() ?? 0) : toHost(uidMaps, 0);
  const gid = gidMaps.length === 0 ? (process.getegid?.() ?? 0) : toHost(gidMaps, 0);
  if (uid === undefined) throw new InvalidOptionError('uidMaps do not map container uid 0');
  if (gid === undefined) throw new InvalidOptionError('gidMaps do not map container gid 0');
  return { uid, gid };
}
