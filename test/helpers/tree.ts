// Compares trees entry by entry through test/helpers/manifest.py, an oracle that
// shares no code with the addon or the archive layer.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

const run = promisify(execFile);
const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'helpers', 'manifest.py');

export interface ManifestEntry {
  /** Hex of the raw bytes of the path relative to the root ('' for the root). */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  atime: string;
  ino: number;
  nlink: number;
  xattrs: Record<string, string>;
  size?: number;
  sha256?: string;
  blocks?: number;
  target?: string;
  rdev?: [number, number];
}

export type Manifest = Map<string, ManifestEntry>;

export async function manifest(root: string): Promise<Manifest> {
  const { stdout } = await run('python3', [script, root], { maxBuffer: 1 << 30 });
  const out: Manifest = new Map();
  for (const line of stdout.split('\n')) {
    if (line === '') continue;
    const e = JSON.parse(line) as ManifestEntry;
    out.set(e.path, e);
  }
  return out;
}

/** A readable form of a manifest path (non-UTF-8 bytes shown as \xNN). */
export function showPath(hexPath: string): string {
  const bytes = Buffer.from(hexPath, 'hex');
  let s = '';
  for (const b of bytes) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return '/' + s;
}

export type Field = 'type' | 'mode' | 'uid' | 'gid' | 'size' | 'sha256' | 'target' | 'rdev' | 'xattrs' | 'mtime' | 'atime' | 'blocks';

export interface CompareOptions {
  /** Fields compared (default: everything but atime and blocks). */
  fields?: Field[];
  /** Skip these fields on the root entry (a copy's root is often made by the caller). */
  rootFields?: Field[];
  /** mtime only for these types (directories' mtimes change when entries are added later, for example). */
  mtimeTypes?: ManifestEntry['type'][];
  /** Compare which entries share an inode (hardlink groups). Default true. */
  hardlinkGroups?: boolean;
  /** xattr names to leave out of the comparison (e.g. security.selinux set by the host). */
  ignoreXattrs?: (name: string) => boolean;
}

const defaultFields: Field[] = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'xattrs', 'mtime'];

/** Lists every difference between two manifests, as readable lines; [] when equal. */
export function compareManifests(a: Manifest, b: Manifest, opts: CompareOptions = {}): string[] {
  const fields = opts.fields ?? defaultFields;
  const diffs: string[] = [];
  for (const [path, ea] of a) {
    const eb = b.get(path);
    if (eb === undefined) {
      diffs.push(`${showPath(path)}: only in first`);
      continue;
    }
    for (const f of fields) {
      if (path === '' && opts.rootFields?.includes(f)) continue;
      if (f === 'mtime' && opts.mtimeTypes && !opts.mtimeTypes.includes(ea.type)) continue;
      let va: unknown = ea[f];
      let vb: unknown = eb[f];
      if (f === 'xattrs' && opts.ignoreXattrs) {
        const keep = (x: Record<string, string>) => Object.fromEntries(Object.entries(x).filter(([k]) => !opts.ignoreXattrs!(k)));
        va = keep(ea.xattrs);
        vb = keep(eb.xattrs);
      }
      if (JSON.stringify(va) !== JSON.stringify(vb)) diffs.push(`${showPath(path)}: ${f} ${JSON.stringify(va)} != ${JSON.stringify(vb)}`);
    }
  }
  for (const path of b.keys()) if (!a.has(path)) diffs.push(`${showPath(path)}: only in second`);
  if (opts.hardlinkGroups ?? true) {
    const ga = hardlinkGroups(a);
    const gb = hardlinkGroups(b);
    if (JSON.stringify(ga) !== JSON.stringify(gb)) diffs.push(`hardlink groups differ: ${JSON.stringify(ga.map((g) => g.map(showPath)))} != ${JSON.stringify(gb.map((g) => g.map(showPath)))}`);
  }
  return diffs;
}

/** Sets of paths of non-directories that share an inode, sorted, groups of two or more only. */
export function hardlinkGroups(m: Manifest): string[][] {
  const byIno = new Map<number, string[]>();
  for (const e of m.values()) {
    if (e.type === 'dir') continue;
    const g = byIno.get(e.ino) ?? [];
    g.push(e.path);
    byIno.set(e.ino, g);
  }
  return [...byIno.values()].filter((g) => g.length > 1).map((g) => g.sort()).sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
}
