// The store's view of home/blobs/sha256 for check and repair: which entries are blobs
// an image names, which are leftovers (a killed commit's ingest.partial-<pid>-<n>, a
// pull's <hex>.partial-<pid>-<n>, verified blobs no image names, junk), and whether a
// blob's bytes still hash to its name. Names are read as a stranger's (schema.ts
// blobName); an entry that is not a regular file is junk, never followed.
//
// Pulls, commits and pushes write blobs before (or without) an image record naming
// them, so they hold home/locks/blobs for reading while they run; the sweep of blobs
// no image names tries it for writing and leaves them alone while any of them is live.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { processStart } from '../processes.js';
import { blobName } from './schema.js';

/** How long a pull's partial download is kept at open for the next pull to resume (check lists it, repair removes it at once). */
export const PARTIAL_KEEP_MS = 24 * 60 * 60 * 1000;

export type BlobEntry =
  | { kind: 'blob'; name: string; path: string; size: number; digest: string }
  /** A partial download or ingest whose writer (pid) is gone or alive. */
  | { kind: 'partial'; name: string; path: string; size: number; pid: number; writerAlive: boolean; ingest: boolean; ageMs: number }
  | { kind: 'junk'; name: string; path: string; size: number; what: string };

const PARTIAL = /^(?:([0-9a-f]{64})|ingest)\.partial-(\d+)-\d+$/;

/** Every entry of DIR/sha256, classified; `partialsOnly`: only the partial files (an open looks at no more). */
export async function blobEntries(blobsDir: string, partialsOnly = false): Promise<BlobEntry[]> {
  const dir = join(blobsDir, 'sha256');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => !partialsOnly || PARTIAL.test(n));
  const now = Date.now();
  const out = await Promise.all(
    names.map(async (name): Promise<BlobEntry | undefined> => {
      const path = join(dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (st === undefined) return undefined;
      if (!st.isFile()) return { kind: 'junk', name, path, size: 0, what: st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file' };
      const digest = blobName(name);
      if (digest !== undefined) return { kind: 'blob', name, path, size: st.size, digest };
      const m = PARTIAL.exec(name);
      if (m === null) return { kind: 'junk', name, path, size: st.size, what: 'no blob name' };
      const pid = Number(m[2]);
      const writerAlive = pid === process.pid || (Number.isSafeInteger(pid) && pid > 0 && (await processStart(pid)) !== undefined);
      return { kind: 'partial', name, path, size: st.size, pid, writerAlive, ingest: m[1] === undefined, ageMs: now - st.mtimeMs };
    }),
  );
  return out.filter((e): e is BlobEntry => e !== undefined);
}

/** Whether the file's bytes hash to `digest` (sha256). */
export async function blobIntact(path: string, digest: string): Promise<boolean> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return `sha256:${hash.digest('hex')}` === digest;
}
