// The copy engine against its peers, whole process each run (bench/lib.ts):
//   ogd copy --hardlink SRC DST   vs  cp -al   (and the pure-JS reference)
//   ogd copy SRC DST              vs  cp -a    (and the pure-JS reference)
// on a synthetic tree of 100k small files and on a real Debian rootfs, each on a
// settled filesystem and right after a tree of the same size was deleted.
//   node dist/bench/copy.js [--runs N] [--json FILE] [--threads-sweep] [--only hardlink|content]
//                           [--condition settled|deleted|both] [--tree synthetic|debian] [--quick]
import { existsSync } from 'node:fs';
import { mkdir, rename, statfs, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { compare, defaultRuns, ensureSyntheticTree, formatTable, type Contender, type ResultRow } from './lib.js';

const sh = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const cache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
// Copies land next to the trees: hardlinks need the same filesystem.
const scratch = process.env.OGD_BENCH_SCRATCH ?? join(cache, 'bench-copy-dst');
// Copies are kept (see run()) while this much space stays free.
const keepFreeBytes = 25 * 2 ** 30;

export interface CopyBenchOptions {
  runs?: number;
  /** Also time `ogd copy` at several --threads settings on the synthetic tree (how the default was chosen). */
  threadsSweep?: boolean;
  /** Measure only this mode. */
  only?: 'hardlink' | 'content';
  /** The state of the filesystem each copy starts in (default both, settled first). */
  condition?: Condition | 'both';
  /** Measure only this tree. */
  tree?: 'synthetic' | 'debian';
  /** Only ogd and its peer (no engine-alone script, no pure-JS reference). */
  quick?: boolean;
  log?: (line: string) => void;
}

/**
 * settled: nothing was deleted by the bench before the copy (earlier copies are
 * renamed aside, see run()). deleted: right before each timed copy, a tree with as
 * many inodes as the source (`cp -a --attributes-only`: every entry, no data) is made
 * and removed, as on a layer store that has just removed a layer: a new inode then
 * costs far more on ext4 (see run()).
 */
export type Condition = 'settled' | 'deleted';

/** The trees benchmarked: the synthetic one is made on first use; the real one must exist. */
async function trees(log: (line: string) => void, only?: 'synthetic' | 'debian'): Promise<Array<{ name: string; path: string }>> {
  const out: Array<{ name: string; path: string }> = [];
  const synthetic = join(cache, 'bench-synthetic-100k');
  if (only !== 'debian') {
    if (!existsSync(join(synthetic, '.complete'))) log(`making ${synthetic} (once)…`);
    out.push({ name: 'synthetic 100k', path: await ensureSyntheticTree(synthetic, { files: 100_000 }) });
  }
  if (only === 'synthetic') return out;
  for (const kind of ['big', 'minbase']) {
    const dir = join(cache, `debian-${kind}`);
    if (existsSync(join(dir, 'etc', 'debian_version'))) {
      out.push({ name: `debian ${kind} rootfs`, path: dir });
      break;
    }
  }
  if (out.length === (only === 'debian' ? 0 : 1)) {
    // No rootfs: a copy of part of /usr stands in for a real tree.
    const usr = join(cache, 'bench-usr-share');
    if (!existsSync(join(usr, '.complete'))) {
      log(`copying /usr/share to ${usr} (once)…`);
      await sh('rm', ['-rf', usr]);
      await sh('cp', ['-a', '/usr/share', usr]);
      await writeFile(join(usr, '.complete'), '');
    }
    out.push({ name: '/usr/share copy', path: usr });
  }
  return out;
}

function ogd(src: string, dst: string, hardlink: boolean, threads?: number): Contender {
  const cli = join(repo, 'dist', 'lib', 'cli', 'main.js');
  const args = existsSync(cli) ? [cli, 'copy', src, dst] : [join(here, 'copy-cli.js'), src, dst];
  if (hardlink) args.push('--hardlink');
  if (threads !== undefined) args.push('--threads', String(threads));
  return { name: `ogd copy${hardlink ? ' --hardlink' : ''}${threads !== undefined ? ` --threads ${threads}` : ''}`, command: process.execPath, args };
}

/** The engine without the CLI around it: a bare script calling copyTree (startup cost apart). */
function script(src: string, dst: string, hardlink: boolean): Contender {
  return { name: `copyTree script${hardlink ? ' --hardlink' : ''}`, command: process.execPath, args: [join(here, 'copy-cli.js'), src, dst, ...(hardlink ? ['--hardlink'] : [])] };
}

function pureJs(src: string, dst: string, hardlink: boolean, runs: number): Contender {
  return {
    name: `pure JS (fs.promises ${hardlink ? 'link' : 'copyFile'})`,
    command: process.execPath,
    args: [join(here, 'copy-js.js'), src, dst, ...(hardlink ? ['--hardlink'] : [])],
    runs: Math.min(runs, 3),
  };
}

/**
 * Runs every copy comparison and returns the rows (also printed as a table).
 *
 * Between runs the previous copy is renamed into a trash dir, not removed, and the
 * trash is emptied once at the end: on an ext4 without a journal (this machine's),
 * inodes freed in the last 60 s (360 s while their table block is dirty) are skipped
 * one by one when new ones are allocated (ext4 recently_deleted()), so a run right
 * after removing a 100k-entry tree pays for the removal, and pays more the more new
 * inodes it makes. When free space runs low, copies are removed instead. That cost is
 * what the 'deleted' condition measures on purpose: a layer store removes layers.
 */
export async function run(opts: CopyBenchOptions = {}): Promise<ResultRow[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? defaultRuns;
  await sh('rm', ['-rf', scratch]);
  const trash = join(scratch, 'trash');
  await mkdir(trash, { recursive: true });
  const dst = join(scratch, 'dst');
  let trashed = 0;
  const moveAside = async (): Promise<void> => {
    if (!existsSync(dst)) return;
    const free = await statfs(scratch);
    if (free.bavail * free.bsize > keepFreeBytes) await rename(dst, join(trash, String(trashed++)));
    else await sh('rm', ['-rf', dst]);
  };
  const victim = join(scratch, 'victim');
  // A tree with the source's inodes made and removed right before the copy.
  const deleteTreeLike = async (src: string): Promise<void> => {
    await sh('cp', ['-a', '--attributes-only', src, victim]);
    await sh('rm', ['-rf', victim]);
  };
  const rows: ResultRow[] = [];
  const all = await trees(log, opts.tree);
  const conditions: Condition[] = opts.condition === undefined || opts.condition === 'both' ? ['settled', 'deleted'] : [opts.condition];
  try {
    // Every settled comparison before any deletion the bench makes.
    for (const condition of conditions) {
      for (const hardlink of [true, false].filter((h) => opts.only === undefined || (opts.only === 'hardlink') === h)) {
        for (const tree of all) {
          const mode = hardlink ? 'hardlink' : 'content';
          const peer: Contender = { name: hardlink ? 'cp -al' : 'cp -a', command: 'cp', args: [hardlink ? '-al' : '-a', tree.path, dst] };
          // The references tell the engine from the CLI and native from JS, whatever the filesystem's state: settled only.
          const references = opts.quick || condition === 'deleted' ? [] : [script(tree.path, dst, hardlink), pureJs(tree.path, dst, hardlink, runs)];
          const contenders = [ogd(tree.path, dst, hardlink), peer, ...references];
          const prepare = condition === 'settled' ? moveAside : async () => (await moveAside(), await deleteTreeLike(tree.path));
          const label = condition === 'settled' ? 'settled' : 'right after deleting as many inodes';
          rows.push(...(await compare({ name: `${mode} copy, ${tree.name} (${label})`, runs, prepare, contenders }, log)));
          if (opts.threadsSweep && tree === all[0] && condition === conditions[0]) {
            const sweep = [1, 2, 4, 8].map((n) => ogd(tree.path, dst, hardlink, n));
            rows.push(...(await compare({ name: `threads, ${mode}, ${tree.name} (${label})`, runs, prepare, contenders: sweep }, log)));
          }
        }
      }
    }
  } finally {
    log(`removing ${trashed} copies…`);
    // Two removals at a time: one per core.
    const left = Array.from({ length: trashed }, (_, i) => join(trash, String(i)));
    await Promise.all([0, 1].map(async () => {
      for (let p = left.pop(); p !== undefined; p = left.pop()) await sh('rm', ['-rf', p]);
    }));
    await sh('rm', ['-rf', scratch]);
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const runsAt = args.indexOf('--runs');
  const jsonAt = args.indexOf('--json');
  const value = <T extends string>(flag: string, allowed: readonly T[]): T | undefined => {
    const at = args.indexOf(flag);
    if (at < 0) return undefined;
    const v = args[at + 1] as T;
    if (!allowed.includes(v)) throw new Error(`${flag} takes ${allowed.join(' or ')}`);
    return v;
  };
  const only = value('--only', ['hardlink', 'content'] as const);
  const condition = value('--condition', ['settled', 'deleted', 'both'] as const);
  const tree = value('--tree', ['synthetic', 'debian'] as const);
  const rows = await run({
    runs: runsAt >= 0 ? Number(args[runsAt + 1]) : defaultRuns,
    threadsSweep: args.includes('--threads-sweep'),
    quick: args.includes('--quick'),
    ...(only !== undefined ? { only } : {}),
    ...(condition !== undefined ? { condition } : {}),
    ...(tree !== undefined ? { tree } : {}),
  });
  process.stdout.write(formatTable(rows) + '\n');
  if (jsonAt >= 0) await writeFile(args[jsonAt + 1]!, JSON.stringify(rows, null, 2) + '\n');
}
