// The overlay driver against the plain tools it replaces:
//   get+put of a container layer (one overlay mount + unmount) — median µs per cycle
//     over 200 cycles in one process, next to a `mount -t overlay`/`umount` shell loop
//     and next to raw native mount/unmount calls (the floor under the driver's
//     refcount, statfs and chown work);
//   applyDiff of a second layer over a real rootfs image (hardlink copy + a small
//     diff), fresh process per run, next to `cp -al` + `tar -x`.
//   node dist/bench/driver.js [--runs N]
// The same file is also the worker that the timed processes run (--worker …).
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import tar from 'tar-stream';
import { createReadStream } from 'node:fs';
import { buffer } from 'node:stream/consumers';
import { createDriver } from '../lib/index.js';
import * as native from '../lib/native.js';
import { readMountInfo } from '../lib/mountinfo.js';
import { compare, defaultRuns, formatTable, median, type ResultRow } from './lib.js';

const sh = promisify(execFile);
const self = fileURLToPath(import.meta.url);
const cache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
// On the rootfs cache's filesystem: the image root is a hardlink copy of the rootfs.
const scratch = join(cache, 'bench-driver');
const CYCLES = 200;

export interface DriverBenchOptions {
  runs?: number;
  log?: (line: string) => void;
}

/** A latency row: µs per mount+unmount cycle. */
export interface LatencyRow {
  comparison: string;
  contender: string;
  runs: number;
  medianUs: number;
  meanUs: number;
  ratioToFirst: number;
}

export async function run(opts: DriverBenchOptions = {}): Promise<Array<ResultRow | LatencyRow>> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? defaultRuns;
  if (process.getuid?.() !== 0) throw new Error('the driver benchmark mounts overlays: run it as root');
  await sh('rm', ['-rf', scratch]);
  await mkdir(scratch, { recursive: true });
  try {
    const rows: Array<ResultRow | LatencyRow> = [];
    rows.push(...(await mountLatency(runs, log)));
    for (const kind of ['minbase', 'big']) {
      const rootfs = join(cache, `debian-${kind}`);
      if (!existsSync(join(rootfs, 'etc', 'debian_version'))) {
        log(`no ${rootfs}: applyDiff over debian ${kind} not measured`);
        continue;
      }
      rows.push(...(await applyOverRootfs(`debian ${kind}`, rootfs, runs, log)));
    }
    return rows;
  } finally {
    // Whatever a failed run left mounted below scratch, deepest first, then the files.
    const below = (await readMountInfo()).map((m) => m.mountPoint).filter((m) => m.startsWith(scratch + '/'));
    for (const m of below.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m]).catch(() => undefined);
    await sh('rm', ['-rf', scratch]);
  }
}

// --- get+put latency -------------------------------------------------------------

async function mountLatency(runs: number, log: (line: string) => void): Promise<LatencyRow[]> {
  const home = join(scratch, 'home');
  const d = await createDriver('overlay', home);
  await d.create('img');
  await writeFile(join(home, 'img', 'root', 'file'), 'x');
  await d.create('ctr', 'img');
  await d.cleanup();
  const meta = { lower: join(home, 'img/root'), upper: join(home, 'ctr/upper'), work: join(home, 'ctr/work'), merged: join(home, 'ctr/merged') };
  // The same options the driver passes (redirect_dir/metacopy/index off), so the kernel does the same work.
  const data = `lowerdir=${meta.lower},upperdir=${meta.upper},workdir=${meta.work},redirect_dir=off,metacopy=off,index=off`;
  const shellLoop = `for i in $(seq ${CYCLES}); do mount -t overlay overlay -o ${data} ${meta.merged} && umount ${meta.merged} || exit 1; done`;

  const contenders: Array<{ name: string; measure: () => Promise<{ medianUs: number; meanUs: number }> }> = [
    { name: 'ogd get+put', measure: () => worker(['cycles', home, 'ctr', String(CYCLES)]) },
    { name: 'native mount+unmount (no driver)', measure: () => worker(['raw', meta.merged, data, String(CYCLES)]) },
    {
      name: 'mount -t overlay + umount (shell loop)',
      measure: async () => {
        const t0 = process.hrtime.bigint();
        await sh('sh', ['-c', shellLoop]);
        const meanUs = Number(process.hrtime.bigint() - t0) / 1e3 / CYCLES;
        return { medianUs: meanUs, meanUs }; // per-cycle times are not observable in the shell loop: its mean stands in
      },
    },
  ];
  const results = contenders.map(() => [] as Array<{ medianUs: number; meanUs: number }>);
  for (let i = 0; i < runs; i++) {
    for (const [j, c] of contenders.entries()) {
      const r = await c.measure();
      results[j]!.push(r);
      log(`  get+put latency · ${c.name} · run ${i + 1}: median ${r.medianUs.toFixed(0)} µs, mean ${r.meanUs.toFixed(0)} µs per cycle`);
    }
  }
  const first = median(results[0]!.map((r) => r.medianUs));
  return contenders.map((c, j) => {
    const medianUs = median(results[j]!.map((r) => r.medianUs));
    return {
      comparison: `get+put of a container layer (µs per mount+unmount, ${CYCLES} cycles)`,
      contender: c.name,
      runs: results[j]!.length,
      medianUs,
      meanUs: median(results[j]!.map((r) => r.meanUs)),
      ratioToFirst: medianUs / first,
    };
  });
}

async function worker(args: string[]): Promise<{ medianUs: number; meanUs: number }> {
  const { stdout } = await sh(process.execPath, [self, '--worker', ...args], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as { medianUs: number; meanUs: number };
}

function summarize(cyclesNs: bigint[]): { medianUs: number; meanUs: number } {
  const us = cyclesNs.map((n) => Number(n) / 1e3);
  return { medianUs: median(us), meanUs: us.reduce((a, b) => a + b, 0) / us.length };
}

// --- applyDiff over a real rootfs ------------------------------------------------

/** A small layer: a changed /etc file, a new directory of 100 files of 4 KiB. */
async function smallLayer(path: string): Promise<void> {
  const pack = tar.pack();
  const mtime = new Date(1_700_000_000_000);
  pack.entry({ name: 'etc/', type: 'directory', mode: 0o755, mtime });
  pack.entry({ name: 'etc/hostname', mode: 0o644, mtime }, 'bench\n');
  pack.entry({ name: 'opt/', type: 'directory', mode: 0o755, mtime });
  pack.entry({ name: 'opt/app/', type: 'directory', mode: 0o755, mtime });
  for (let i = 0; i < 100; i++) pack.entry({ name: `opt/app/file-${i}`, mode: 0o644, mtime }, Buffer.alloc(4096, i));
  pack.finalize();
  await writeFile(path, await buffer(pack));
}

async function applyOverRootfs(name: string, rootfs: string, runs: number, log: (line: string) => void): Promise<ResultRow[]> {
  const home = join(scratch, `home-${name.replace(/\W+/g, '-')}`);
  const layerTar = join(scratch, 'small-layer.tar');
  await smallLayer(layerTar);
  const d = await createDriver('overlay', home);
  await d.create('base');
  await d.cleanup();
  // The image: its root a hardlink copy of the rootfs (same tree, made fast).
  await rm(join(home, 'base', 'root'), { recursive: true });
  await sh('cp', ['-al', rootfs, join(home, 'base', 'root')]);
  const peerDst = join(scratch, 'peer-dst');
  const prepare = async (): Promise<void> => {
    await sh('rm', ['-rf', join(home, 'second'), peerDst]);
  };
  const rows = await compare(
    {
      name: `applyDiff of a second layer over ${name} (hardlink copy + 102-file diff)`,
      runs,
      prepare,
      contenders: [
        { name: 'ogd applyDiff', command: process.execPath, args: [self, '--worker', 'apply', home, 'base', 'second', layerTar] },
        { name: 'cp -al + tar -x', command: 'sh', args: ['-c', `cp -al ${join(home, 'base', 'root')} ${peerDst} && tar -x -C ${peerDst} -f ${layerTar}`] },
      ],
    },
    log,
  );
  await sh('umount', [home]).catch(() => undefined);
  return rows;
}

// --- workers (one fresh process each) ----------------------------------------------

async function workerMain(args: string[]): Promise<void> {
  const [mode, ...rest] = args;
  if (mode === 'cycles') {
    const [home, id, n] = rest as [string, string, string];
    const d = await createDriver('overlay', home);
    await d.get(id); // warm-up: the mount-option probe happens on the first mount
    await d.put(id);
    const times: bigint[] = [];
    for (let i = 0; i < Number(n); i++) {
      const t0 = process.hrtime.bigint();
      await d.get(id);
      await d.put(id);
      times.push(process.hrtime.bigint() - t0);
    }
    await d.cleanup();
    process.stdout.write(JSON.stringify(summarize(times)));
  } else if (mode === 'raw') {
    const [merged, data, n] = rest as [string, string, string];
    const times: bigint[] = [];
    for (let i = 0; i < Number(n); i++) {
      const t0 = process.hrtime.bigint();
      await native.mount('overlay', merged, 'overlay', 0, data);
      await native.unmount(merged, 0);
      times.push(process.hrtime.bigint() - t0);
    }
    process.stdout.write(JSON.stringify(summarize(times)));
  } else if (mode === 'apply') {
    const [home, parent, id, layer] = rest as [string, string, string, string];
    const d = await createDriver('overlay', home);
    await d.create(id, parent);
    await d.applyDiff(id, parent, createReadStream(layer));
    await d.cleanup();
  } else {
    throw new Error(`unknown worker mode ${String(mode)}`);
  }
}

if (process.argv[1] === self) {
  const args = process.argv.slice(2);
  if (args[0] === '--worker') {
    await workerMain(args.slice(1));
  } else {
    const runsAt = args.indexOf('--runs');
    const rows = await run({ runs: runsAt >= 0 ? Number(args[runsAt + 1]) : defaultRuns });
    const timed = rows.filter((r): r is ResultRow => 'medianMs' in r);
    for (const r of rows) if ('medianUs' in r) process.stdout.write(`${r.comparison} · ${r.contender}: median ${r.medianUs.toFixed(0)} µs, mean ${r.meanUs.toFixed(0)} µs (${r.ratioToFirst.toFixed(2)}× ours)\n`);
    process.stdout.write(formatTable(timed) + '\n');
  }
}
