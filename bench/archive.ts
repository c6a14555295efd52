// Layer import and export against the peers, on a real rootfs tar (Debian minbase,
// ~180 MB) and on a tar of 100k small files:
//   import: `ogd import FILE` (a LayerFile: the job reads and inflates the file itself;
//           durable, the default: one syncfs before its record commits the layer)
//           vs `tar -x && sync` (the same promise from GNU tar: on the disk when it
//           returns) vs `ogd import --no-sync` (what durability costs) vs GNU `tar -x`
//           vs `containers-storage import-layer` (its own temp store, overlay driver;
//           it does not sync); every run into an empty store/dir, after a `sync`
//           (untimed) so no run flushes what the previous one left dirty;
//           also the gzip of the minbase tar (`tar -xz`, gzip in its own process).
//           --durability times only the four that show what a flush costs (ogd
//           import with and without --no-sync, tar -x with and without sync), on the
//           uncompressed tars.
//           --threads-ab adds `ogd import` with OGD_APPLY_THREADS=0 (every file
//           on the parsing thread) to show what the writer threads bring;
//           --strace runs each importer once under `strace -f -c` and reports
//           its syscalls, futex and epoll waits (the JS ⇄ pool crossings).
//   export: `ogd diff` vs `containers-storage diff` of the same imported base layer,
//           written to /dev/null.
// Every timed run is a fresh process (bench/lib.ts), contenders interleaved A B A B,
// medians of `runs` runs. Fairness: each tool reads the same cached tar; tar -x does
// the least work (no layer store, no metadata, no staging), containers-storage the
// most like ours. Peers missing from PATH are left out, with a line saying so.
// Imports run in two states of the filesystem, settled first: 'settled' moves each
// run's tree aside instead of deleting it (nothing is deleted by this part until all
// its settled runs are done), 'deleted' deletes the previous run's tree right before
// the next (what a layer store that has just removed a layer sees; ext4 without a
// journal then skips every recently freed inode one by one at each allocation).
//   node dist/bench/archive.js [--runs N] [--only import|export] [--condition settled|deleted|both]
//                              [--threads-ab] [--strace] [--durability]
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { compare, defaultRuns, ensureSyntheticTree, formatTable, type Contender, type ResultRow } from './lib.js';
import { readMountInfo } from '../lib/mountinfo.js';

const sh = promisify(execFile);
const cache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
// On the rootfs cache's filesystem, which overlayfs can use as upper layer.
// Per process: other benchmark runs may share the cache.
const scratch = join(cache, `bench-archive-${process.pid}`);
const inputs = join(cache, 'bench-archive-inputs');
const cli = fileURLToPath(new URL('../lib/cli/main.js', import.meta.url));

export type ImportCondition = 'settled' | 'deleted';

// Below this much free space a settled run's tree is deleted after all (and the log says so).
const keepFreeBytes = 25 * 2 ** 30;

export interface ArchiveBenchOptions {
  runs?: number;
  /** Measure only this half (the export half still imports each input once, untimed). */
  only?: 'import' | 'export';
  /** Also time ogd import with all files written on the parsing thread (OGD_APPLY_THREADS=0). */
  threadsAb?: boolean;
  /** Count each importer's syscalls once (strace -f -c). */
  strace?: boolean;
  /** The filesystem's state for the imports (default both, settled first). */
  condition?: ImportCondition | 'both';
  /** Only the durability comparison: ogd import with and without --no-sync, tar -x with and without sync (no peer store, no gzip input). */
  durability?: boolean;
  log?: (line: string) => void;
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d !== '' && existsSync(join(d, tool)));
}

/** Unmounts (lazily) whatever is mounted under `dir`, deepest first, then removes it. */
async function wipe(dir: string): Promise<void> {
  await unmountUnder(dir);
  await rm(dir, { recursive: true, force: true });
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readMountInfo())
    .map((m) => m.mountPoint)
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await sh('umount', ['-l', m]).catch(() => undefined);
}

/** The input tars, made once with GNU tar and kept: numeric owners, xattrs, sorted names. */
async function ensureInputs(log: (l: string) => void): Promise<Array<{ name: string; tar: string; gzip?: boolean }>> {
  await mkdir(inputs, { recursive: true });
  const out: Array<{ name: string; tar: string; gzip?: boolean }> = [];
  const make = async (name: string, tree: string, file: string) => {
    const tar = join(inputs, file);
    if (!existsSync(tar)) {
      log(`making ${tar} from ${tree}`);
      // Exit status 1 is "a file changed as we read it": other benchmarks hardlink these trees, which moves ctimes.
      await sh('sh', ['-c', 'tar --numeric-owner --xattrs --xattrs-include="*" --sort=name --warning=no-file-changed -C "$1" -cf "$2" . || [ $? -eq 1 ]', 'sh', tree, `${tar}.partial-${process.pid}`]);
      await sh('mv', [`${tar}.partial-${process.pid}`, tar]);
    }
    const { size } = await stat(tar);
    out.push({ name: `${name} (${Math.round(size / 1e6)} MB tar)`, tar });
  };
  const minbase = join(cache, 'debian-minbase');
  if (existsSync(join(minbase, 'etc', 'debian_version'))) {
    await make('debian minbase', minbase, 'debian-minbase.tar');
    const gz = join(inputs, 'debian-minbase.tar.gz');
    if (!existsSync(gz)) {
      log(`making ${gz}`);
      await sh('sh', ['-c', 'gzip -c "$1" > "$2.partial-$$" && mv "$2.partial-$$" "$2"', 'sh', join(inputs, 'debian-minbase.tar'), gz]);
    }
    out.push({ name: `debian minbase, gzip (${Math.round((await stat(gz)).size / 1e6)} MB .tar.gz)`, tar: gz, gzip: true });
  } else {
    log(`no ${minbase}: the rootfs case is not measured`);
  }
  await make('100k small files', await ensureSyntheticTree(join(cache, 'bench-synthetic-100k'), { files: 100_000 }), 'synthetic-100k.tar');
  return out;
}

export async function run(opts: ArchiveBenchOptions = {}): Promise<ResultRow[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? defaultRuns;
  if (process.getuid?.() !== 0) throw new Error('the archive benchmark mounts and chowns: run it as root');
  if (!existsSync(cli)) throw new Error(`no ${cli}: build first (npm run build)`);
  const haveCs = onPath('containers-storage');
  if (!haveCs) log('containers-storage is not installed: its import and diff are not measured');
  const rows: ResultRow[] = [];
  await wipe(scratch);
  await mkdir(scratch, { recursive: true });
  const trash = join(scratch, 'trash');
  await mkdir(trash);
  let trashed = 0;
  // A settled run's tree goes aside, unmounted, to be deleted when the part ends.
  const moveAside = async (dir: string): Promise<void> => {
    if (!existsSync(dir)) return;
    const free = await statfs(scratch);
    if (free.bavail * free.bsize < keepFreeBytes) {
      log(`  (low on space: ${dir} deleted, so this run is not settled)`);
      return wipe(dir);
    }
    await unmountUnder(dir);
    await rename(dir, join(trash, String(trashed++)));
  };
  const conditions: ImportCondition[] = opts.only === 'export' ? ['deleted'] : opts.condition === undefined || opts.condition === 'both' ? ['settled', 'deleted'] : [opts.condition];
  const all = (await ensureInputs(log)).filter((input) => !(opts.durability === true && input.gzip === true));
  try {
    for (const condition of conditions) {
      for (const input of all) {
        // --- import into an empty store (or dir) every run
        const home = join(scratch, 'ogd-home');
        const tarDir = join(scratch, 'tar-x');
        const csGraph = join(scratch, 'cs-graph');
        const csRun = join(scratch, 'cs-run');
        const csArgs = ['--graph', csGraph, '--run', csRun, '--storage-driver', 'overlay'];
        const tarArgs = ['-x', ...(input.gzip ? ['-z'] : []), '-p', '--numeric-owner', '--xattrs', '--xattrs-include=*', '-f', input.tar, '-C', tarDir];
        const tarName = input.gzip ? 'tar -xz' : 'tar -x';
        const importers: Contender[] = [
          { name: 'ogd import', command: process.execPath, args: [cli, '--home', home, 'import', 'layer', input.tar] },
          { name: `${tarName} && sync`, command: 'sh', args: ['-c', 'tar "$@" && sync', 'sh', ...tarArgs] },
          { name: 'ogd import --no-sync', command: process.execPath, args: [cli, '--home', home, '--no-sync', 'import', 'layer', input.tar] },
          { name: `${tarName} (GNU)`, command: 'tar', args: tarArgs },
        ];
        if (haveCs && opts.durability !== true) importers.push({ name: 'containers-storage import-layer', command: 'containers-storage', args: [...csArgs, 'import-layer', '-f', input.tar, '--id', 'layer'] });
        if (opts.threadsAb) {
          importers.push({ name: 'ogd import, no writer threads', command: 'env', args: ['OGD_APPLY_THREADS=0', process.execPath, cli, '--home', home, 'import', 'layer', input.tar] });
        }
        const clear = (): Promise<unknown> => Promise.all([home, tarDir, csGraph, csRun].map((d) => (condition === 'settled' ? moveAside(d) : wipe(d))));
        const prepareImport = async () => {
          await clear();
          await mkdir(tarDir);
          // Nothing left dirty by the previous run (or its removal): a flush times only its own writes.
          await sh('sync');
        };
        if (opts.strace && opts.only !== 'export' && condition === conditions[0] && onPath('strace')) {
          for (const k of importers) {
            await prepareImport();
            const out = join(scratch, 'strace.txt');
            await sh('strace', ['-f', '-c', '-o', out, k.command, ...k.args], { maxBuffer: 64 << 20 });
            log(`  strace · ${input.name} · ${k.name}: ${summarizeStrace(await readFile(out, 'utf8'))}`);
          }
        }
        if (opts.only !== 'export') rows.push(
          ...(await compare(
            {
              name: `import · ${input.name} · ${condition === 'settled' ? 'settled' : "right after deleting the previous run's tree"}`,
              contenders: importers,
              runs,
              prepare: prepareImport,
            },
            log,
          )),
        );

        // --- export the same base layer, once imported by each store (in the last pass)
        if (opts.only === 'import' || opts.durability === true || input.gzip || condition !== conditions.at(-1)) {
          await clear();
          continue;
        }
        await Promise.all([wipe(home), wipe(csGraph), wipe(csRun)]);
        await sh(process.execPath, [cli, '--home', home, 'import', 'layer', input.tar]);
        const exporters: Contender[] = [{ name: 'ogd diff', command: process.execPath, args: [cli, '--home', home, 'diff', 'layer', '-o', '/dev/null'] }];
        if (haveCs) {
          await sh('containers-storage', [...csArgs, 'import-layer', '-f', input.tar, '--id', 'layer']);
          exporters.push({ name: 'containers-storage diff', command: 'containers-storage', args: [...csArgs, 'diff', '-u', '-f', '/dev/null', 'layer'] });
        }
        rows.push(...(await compare({ name: `export · ${input.name}`, contenders: exporters, runs }, log)));
        await Promise.all([wipe(home), wipe(tarDir), wipe(csGraph), wipe(csRun)]);
      }
    }
  } finally {
    await wipe(scratch);
  }
  log(formatTable(rows));
  return rows;
}

/** "N syscalls, F futex, E epoll_pwait" from a `strace -c` table. */
function summarizeStrace(table: string): string {
  const calls = (name: string): number => {
    const line = table.split('\n').find((l) => l.trim().split(/\s+/).at(-1) === name);
    if (line === undefined) return 0;
    const cols = line.trim().split(/\s+/);
    return Number(cols[3]);
  };
  return `${calls('total')} syscalls, ${calls('futex')} futex, ${calls('epoll_pwait') + calls('epoll_wait')} epoll waits, ${calls('openat')} openat`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string): string | undefined => {
    const at = process.argv.indexOf(name);
    return at >= 0 ? process.argv[at + 1] : undefined;
  };
  const runs = arg('--runs');
  const only = arg('--only');
  if (only !== undefined && only !== 'import' && only !== 'export') throw new Error('--only takes import or export');
  const condition = arg('--condition');
  if (condition !== undefined && condition !== 'settled' && condition !== 'deleted' && condition !== 'both') throw new Error('--condition takes settled, deleted or both');
  await run({
    ...(condition !== undefined ? { condition } : {}),
    ...(runs !== undefined ? { runs: Number(runs) } : {}),
    ...(only !== undefined ? { only } : {}),
    threadsAb: process.argv.includes('--threads-ab'),
    durability: process.argv.includes('--durability'),
    strace: process.argv.includes('--strace'),
  });
}
