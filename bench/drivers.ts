// The three drivers side by side, and containers-storage's overlay driver (issue 11):
//   child image + container on the Debian big rootfs (71k entries): import a small
//     layer as a child image of the rootfs, create a container layer on it, mount it —
//     three CLI commands, the same three for ogd (--driver overlay|overlay2|vfs) and
//     containers-storage (import-layer --parent, create-layer, mount), fresh processes,
//     interleaved, median;
//   inodes used by that child image: the inodes under its directory that the parent
//     does not also have (hardlinks to the parent's are free), counted with find;
//   mount time of a container on a 100- and a 500-layer stack: get+put in one process
//     for the ogd drivers (median of 20), `containers-storage mount`+`unmount`
//     processes for c/s (median of 5, so it includes Go's start-up: shown apart).
//   node dist/bench/drivers.js [--runs N]
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { createDriver } from '../lib/index.js';
import type { DriverName } from '../lib/drivers/create-driver.js';
import { compare, defaultRuns, formatTable, median, timeProcess, type Contender, type ResultRow } from './lib.js';

const sh = promisify(execFile);
const cache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
const scratch = join(cache, 'bench-drivers');
const cli = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'lib', 'cli', 'main.js');
const OGD_DRIVERS: DriverName[] = ['overlay', 'overlay2', 'vfs'];

export interface DriversBenchOptions {
  runs?: number;
  log?: (line: string) => void;
}

export interface CountRow {
  comparison: string;
  contender: string;
  value: number;
  unit: string;
}

const onPath = async (cmd: string): Promise<boolean> => sh('sh', ['-c', `command -v ${cmd}`]).then(() => true, () => false);

export async function run(opts: DriversBenchOptions = {}): Promise<Array<ResultRow | CountRow>> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? defaultRuns;
  if (process.getuid?.() !== 0) throw new Error('the drivers benchmark mounts overlays: run it as root');
  const rootfs = join(cache, 'debian-big');
  if (!existsSync(join(rootfs, 'etc', 'debian_version'))) throw new Error(`no ${rootfs}: make it with make-debian-rootfs.sh`);
  const haveCs = await onPath('containers-storage');
  await mkdir(scratch, { recursive: true });
  const bigTar = join(scratch, 'debian-big.tar');
  if (!existsSync(bigTar)) {
    log(`making ${bigTar}`);
    await sh('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-C', rootfs, '-cf', bigTar + '.tmp', '.']);
    await sh('mv', [bigTar + '.tmp', bigTar]);
  }
  const smallTar = join(scratch, 'small.tar');
  const small = join(scratch, 'small');
  await rm(small, { recursive: true, force: true });
  await mkdir(join(small, 'etc'), { recursive: true });
  for (let i = 0; i < 20; i++) await writeFile(join(small, 'etc', `app${i}.conf`), `setting ${i}\n`.repeat(50));
  await sh('tar', ['--numeric-owner', '-C', small, '-cf', smallTar, 'etc']);

  const homes = Object.fromEntries(OGD_DRIVERS.map((d) => [d, join(scratch, `home-${d}`)])) as Record<DriverName, string>;
  const csArgs = ['--graph', join(scratch, 'cs-graph'), '--run', join(scratch, 'cs-run'), '--storage-driver', 'overlay'];
  const wipeAll = async () => {
    for (const d of OGD_DRIVERS) await sh(process.execPath, [cli, '--home', homes[d], 'cleanup', '--force']).catch(() => undefined);
    if (haveCs) await sh('containers-storage', [...csArgs, 'shutdown', '--force']).catch(() => undefined);
    // Whatever is still mounted below the scratch dir (deepest first), then the trees.
    await sh('sh', ['-c', `awk '{print $5}' /proc/self/mountinfo | grep '^${scratch}/' | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
    for (const d of OGD_DRIVERS) await rm(homes[d], { recursive: true, force: true });
    await rm(join(scratch, 'cs-graph'), { recursive: true, force: true });
    await rm(join(scratch, 'cs-run'), { recursive: true, force: true });
  };
  // A failing phase is logged and the others still run: a long run is not lost to one error.
  const phase = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      log(`${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  };
  await wipeAll();
  const rows: Array<ResultRow | CountRow> = [];
  try {
    log('importing debian-big into each store (untimed)');
    for (const d of OGD_DRIVERS) await sh(process.execPath, [cli, '--home', homes[d], '--driver', d, 'import', 'base', bigTar], { maxBuffer: 1 << 26 });
    if (haveCs) await sh('containers-storage', [...csArgs, 'import-layer', '-f', bigTar, '--id', 'base'], { maxBuffer: 1 << 26 });

    // --- child image + small layer + container + mount, three commands each
    const ogdSteps = (d: DriverName) =>
      [`import child --parent base ${smallTar}`, 'create ctr --parent child --rw', 'mount ctr'].map((c) => `${process.execPath} ${cli} --home ${homes[d]} ${c} >/dev/null`).join(' && ');
    const contenders: Contender[] = OGD_DRIVERS.map((d) => ({ name: `ogd --driver ${d}`, command: 'sh', args: ['-c', ogdSteps(d)] }));
    if (haveCs) {
      const cs = `containers-storage ${csArgs.join(' ')}`;
      contenders.push({ name: 'containers-storage (overlay)', command: 'sh', args: ['-c', `${cs} import-layer -f ${smallTar} --id child base >/dev/null && ${cs} create-layer --id ctr child >/dev/null && ${cs} mount ctr >/dev/null`] });
    }
    const undo = async () => {
      for (const d of OGD_DRIVERS) {
        for (const c of ['unmount ctr --force', 'remove ctr', 'remove child']) await sh(process.execPath, [cli, '--home', homes[d], ...c.split(' ')]).catch(() => undefined);
      }
      if (haveCs) for (const c of [['unmount', 'ctr'], ['delete-layer', 'ctr'], ['delete-layer', 'child']]) await sh('containers-storage', [...csArgs, ...c]).catch(() => undefined);
    };
    await undo();
    await phase('child image', async () => {
      const r = await compare({ name: 'child image + small layer + container mount, on debian big (71k entries)', contenders, prepare: undo, runs }, log);
      log(formatTable(r));
      rows.push(...r);
    });

    // --- inodes of the child image: made once more (compare's prepare removed the last one)
    await phase('inodes', async () => {
    await undo();
    for (const c of contenders) await timeProcess(c.command, c.args);
    for (const d of OGD_DRIVERS) {
      rows.push({ comparison: 'inodes used by a child image of debian big (20-file layer)', contender: `ogd --driver ${d}`, value: await ownInodes(join(homes[d], d, 'child'), join(homes[d], d, 'base')), unit: 'inodes' });
    }
    if (haveCs) {
      const g = join(scratch, 'cs-graph', 'overlay');
      rows.push({ comparison: 'inodes used by a child image of debian big (20-file layer)', contender: 'containers-storage (overlay)', value: await ownInodes(join(g, 'child'), join(g, 'base')), unit: 'inodes' });
    }
    for (const r of rows) if ('value' in r) log(`${r.comparison} · ${r.contender}: ${r.value} ${r.unit}`);
    });
    await undo();

    // --- mount time of deep stacks
    for (const depth of [100, 500]) {
      for (const d of OGD_DRIVERS) await phase(`${d} ${depth}-layer stack`, async () => void rows.push(await stackMount(d, depth, join(scratch, `stack-${d}-${depth}`), log)));
      if (haveCs) await phase(`containers-storage ${depth}-layer stack`, async () => void rows.push(await csStackMount(depth, log)));
    }
  } finally {
    await wipeAll();
  }
  log(formatTable(rows.filter((r): r is ResultRow => 'medianMs' in r)));
  for (const r of rows) if ('value' in r) log(`${r.comparison} · ${r.contender}: ${r.value} ${r.unit}`);
  return rows;
}

/** Inodes under `dir` that `parent` does not also have (by inode number, one filesystem). */
async function ownInodes(dir: string, parent: string): Promise<number> {
  const list = async (p: string): Promise<Set<string>> => new Set((await sh('find', [p, '-xdev', '-printf', '%i\n'], { maxBuffer: 1 << 28 })).stdout.split('\n').filter(Boolean));
  const [mine, theirs] = await Promise.all([list(dir), list(parent)]);
  let n = 0;
  for (const i of mine) if (!theirs.has(i)) n++;
  return n;
}

/** Median ms of get+put of a container on a `depth`-layer stack of tiny image layers, in one process. */
async function stackMount(name: DriverName, depth: number, home: string, log: (l: string) => void): Promise<ResultRow> {
  const d = await createDriver(name, home);
  try {
    let parent: string | undefined;
    for (let i = 0; i < depth; i++) {
      await d.create(`l${i}`, parent);
      const root = name === 'overlay2' ? (await d.getMetadata(`l${i}`))['UpperDir']! : undefined;
      if (root !== undefined) await writeFile(join(root, `f${i}`), `${i}`);
      parent = `l${i}`;
    }
    await d.createReadWrite('ctr', parent);
    const times: number[] = [];
    for (let i = 0; i < 21; i++) {
      const t0 = process.hrtime.bigint();
      await d.get('ctr');
      await d.put('ctr');
      if (i > 0) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const m = median(times);
    log(`  mount ${depth}-layer stack · ${name}: ${m.toFixed(2)} ms`);
    return { comparison: `container get+put on a ${depth}-layer stack (in process)`, contender: `ogd ${name}`, runs: times.length, medianMs: m, minMs: Math.min(...times), maxMs: Math.max(...times), ratioToFirst: 1 };
  } finally {
    await d.cleanup();
    await rm(home, { recursive: true, force: true });
  }
}

async function csStackMount(depth: number, log: (l: string) => void): Promise<ResultRow> {
  const dir = join(scratch, `cs-stack-${depth}`);
  const args = ['--graph', join(dir, 'graph'), '--run', join(dir, 'run'), '--storage-driver', 'overlay'];
  const name = 'containers-storage mount+unmount (processes)';
  try {
    let parent: string | undefined;
    for (let i = 0; i < depth; i++) {
      await sh('containers-storage', [...args, 'create-layer', '--id', `l${i}`, ...(parent ? [parent] : [])]);
      parent = `l${i}`;
    }
    await sh('containers-storage', [...args, 'create-layer', '--id', 'ctr', parent!]);
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = (await timeProcess('containers-storage', [...args, 'mount', 'ctr'])) + (await timeProcess('containers-storage', [...args, 'unmount', 'ctr']));
      if (i > 0) times.push(t);
    }
    const m = median(times);
    log(`  mount ${depth}-layer stack · containers-storage: ${m.toFixed(1)} ms`);
    return { comparison: `container mount+unmount on a ${depth}-layer stack`, contender: name, runs: times.length, medianMs: m, minMs: Math.min(...times), maxMs: Math.max(...times), ratioToFirst: 1 };
  } catch (err) {
    log(`  mount ${depth}-layer stack · containers-storage failed: ${String(err).slice(0, 300)}`);
    return { comparison: `container mount+unmount on a ${depth}-layer stack`, contender: `${name}: failed`, runs: 0, medianMs: Number.NaN, minMs: Number.NaN, maxMs: Number.NaN, ratioToFirst: Number.NaN };
  } finally {
    await sh('containers-storage', [...args, 'shutdown', '--force']).catch(() => undefined);
    await sh('sh', ['-c', `grep -o ' ${dir}/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--runs');
  const runs = i > 0 ? Number(process.argv[i + 1]) : undefined;
  const rows = await run(runs !== undefined ? { runs } : {});
  process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
}
