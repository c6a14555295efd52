// First cut of the layer apply: a plain streaming extract of files, directories
// and symlinks into `root`, so the driver's applyDiff can be exercised. The full
// OCI apply (whiteouts, hardlinks, devices, xattrs, id maps, path safety) replaces it.
import { mkdir, open, rm, symlink, lchown, chmod, lutimes } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import tar from 'tar-stream';
import { InvalidArchiveError, UnsafeLayerError } from '../errors.js';
import type { ApplyDiffOptions, DiffSource, IDMap } from '../types.js';

export interface ApplyTarOptions extends ApplyDiffOptions {
  uidMaps?: readonly IDMap[];
  gidMaps?: readonly IDMap[];
}

export async function applyTar(root: string, diff: DiffSource, opts: ApplyTarOptions = {}): Promise<number> {
  void opts;
  const extract = tar.extract();
  const feeding = (async () => {
    for await (const chunk of diff as AsyncIterable<Uint8Array>) {
      if (!extract.write(chunk)) await new Promise<void>((r) => extract.once('drain', () => r()));
    }
    extract.end(undefined as unknown as Buffer);
  })();
  feeding.catch((err: unknown) => extract.destroy(err as Error));
  let bytes = 0;
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = normalize('/' + h.name).slice(1);
      if (h.name.split('/').includes('..')) throw new UnsafeLayerError(h.name, 'name contains ..');
      const path = join(root, rel);
      if (rel === '') {
        entry.resume();
        continue;
      }
      if (h.type === 'directory') {
        await mkdir(path, { recursive: true });
        await chmod(path, h.mode ?? 0o755);
      } else if (h.type === 'file' || h.type === 'contiguous-file') {
        await rm(path, { recursive: true, force: true });
        const fh = await open(path, 'wx', h.mode ?? 0o644);
        try {
          for await (const chunk of entry) {
            await fh.write(chunk as Buffer);
            bytes += (chunk as Buffer).length;
          }
        } finally {
          await fh.close();
        }
        await chmod(path, h.mode ?? 0o644);
      } else if (h.type === 'symlink') {
        await rm(path, { recursive: true, force: true });
        await symlink(h.linkname ?? '', path);
      }
      entry.resume();
      await lchown(path, h.uid ?? 0, h.gid ?? 0);
      if (h.mtime) await lutimes(path, h.mtime, h.mtime);
    }
  } catch (err) {
    if (err instanceof UnsafeLayerError) throw err;
    throw new InvalidArchiveError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  await feeding;
  return bytes;
}
