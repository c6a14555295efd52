// The store's own costs, next to the raw driver:
//   openStore + list() on a store of 1,000 layers — fresh process per run, ms;
//   a mount+unmount cycle through the store (layer lock, holder-tagged reference file,
//   mount table check) against the raw driver's get+put of the same kind of layer —
//   median µs per cycle over 200 cycles, both in one fresh process each, interleaved
//   run by run. Target: the store within 1.3x of the raw driver.
//   node dist/bench/store.js [--runs N]
// The same file is also the worker the timed processes run (--worker …).
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createDriver, openStore } from '../lib/index.js';
import { defaultRuns, median } from './lib.js';

const sh = promisify(execFile);
const self = fileURLToPath(import.meta.url);
const scratch = join(process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd', 'bench-store');
const LAYERS = 1000;
const CYCLES = 200;

export interface StoreRow {
  comparison: string;
  contender: string;
  runs: number;
  /** ms for openStore + list; µs per cycle for mount+unmount. */
  medianMs?: number;
  medianUs?: number;
  /** CPU time (user+sys) per cycle, µs. */
  cpuUs?: number;
  ratioToFirst: number;
}

export async function run(opts: { runs?: number; log?: (line: string) => void } = {}): Promise<StoreRow[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const runs = opts.runs ?? defaultRuns;
  if (process.getuid?.() !== 0) throw new Error('the store benchmark mounts overlays: run it as root');
  await cleanupScratch();
  await mkdir(scratch, { recursive: true });
  try {
    const big = join(scratch, 'big');
    log(`store: creating ${LAYERS} layers…`);
    await worker(['fill', big, String(LAYERS)]);
    const openList: number[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await worker(['open-list', big]);
      openList.push(r.ms!);
      log(`  openStore + list (${LAYERS} layers) · run ${i + 1}: ${r.ms!.toFixed(1)} ms`);
    }

    const storeHome = join(scratch, 'cycle-store');
    const driverHome = join(scratch, 'cycle-driver');
    await worker(['prepare', storeHome, driverHome]);
    const storeUs: number[] = [];
    const driverUs: number[] = [];
    const storeCpu: number[] = [];
    const driverCpu: number[] = [];
    for (let i = 0; i < runs; i++) {
      const d = await worker(['driver-cycles', driverHome, String(CYCLES)]);
      const s = await worker(['store-cycles', storeHome, String(CYCLES)]);
      driverUs.push(d.medianUs!);
      storeUs.push(s.medianUs!);
      driverCpu.push(d.cpuUs!);
      storeCpu.push(s.cpuUs!);
      log(
        `  mount+unmount · run ${i + 1}: raw driver get+put ${d.medianUs!.toFixed(0)} µs (cpu ${d.cpuUs!.toFixed(0)} µs), ` +
          `store mount+unmount ${s.medianUs!.toFixed(0)} µs (cpu ${s.cpuUs!.toFixed(0)} µs), ratio ${(s.medianUs! / d.medianUs!).toFixed(2)}`,
      );
    }
    const dMed = median(driverUs);
    const sMed = median(storeUs);
    log(`  medians: wall ${(sMed / dMed).toFixed(2)}x the raw driver's, cpu ${(median(storeCpu) / median(driverCpu)).toFixed(2)}x`);
    return [
      { comparison: `openStore + list, ${LAYERS} layers (ms, fresh process)`, contender: 'ogd store', runs, medianMs: median(openList), ratioToFirst: 1 },
      { comparison: `mount+unmount of a container layer (µs per cycle, ${CYCLES} cycles)`, contender: 'ogd store mount+unmount', runs, medianUs: sMed, cpuUs: median(storeCpu), ratioToFirst: 1 },
      { comparison: `mount+unmount of a container layer (µs per cycle, ${CYCLES} cycles)`, contender: 'raw driver get+put', runs, medianUs: dMed, cpuUs: median(driverCpu), ratioToFirst: dMed / sMed },
    ];
  } finally {
    await cleanupScratch();
  }
}

async function cleanupScratch(): Promise<void> {
  const { readMountInfo } = await import('../lib/mountinfo.js');
  const below = (await readMountInfo()).map((m) => m.mountPoint).filter((m) => m.startsWith(scratch + '/'));
  for (const m of below.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m]).catch(() => undefined);
  await sh('rm', ['-rf', scratch]);
}

async function worker(args: string[]): Promise<{ ms?: number; medianUs?: number; cpuUs?: number }> {
  const { stdout } = await sh(process.execPath, [self, '--worker', ...args], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as { ms?: number; medianUs?: number; cpuUs?: number };
}

// Wall time per cycle (median), and this process's CPU time (user+sys, all threads)
// per cycle: on a loaded machine the CPU figure moves far less than the wall one.
async function cycles(n: number, cycle: () => Promise<void>): Promise<{ medianUs: number; cpuUs: number }> {
  await cycle(); // warm-up: the mount-option probe happens on the first mount
  const us: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await cycle();
    us.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  const cpu = process.cpuUsage(cpu0);
  return { medianUs: median(us), cpuUs: (cpu.user + cpu.system) / n };
}

async function workerMain([mode, ...rest]: string[]): Promise<void> {
  if (mode === 'fill') {
    const [home, n] = rest as [string, string];
    const s = await openStore(home);
    for (let i = 0; i < Number(n); i++) await s.create(`layer-${i}`, i % 10 === 0 ? {} : { parent: `layer-${i - (i % 10)}`, kind: 'container' });
    await s.cleanup({ force: true });
    process.stdout.write('{}');
  } else if (mode === 'open-list') {
    const t0 = process.hrtime.bigint();
    const s = await openStore(rest[0]!);
    const layers = await s.list();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (layers.length !== LAYERS) throw new Error(`listed ${layers.length} layers`);
    await s.cleanup({ force: true });
    process.stdout.write(JSON.stringify({ ms }));
  } else if (mode === 'prepare') {
    const [storeHome, driverHome] = rest as [string, string];
    const s = await openStore(storeHome);
    await s.create('img');
    await s.create('ctr', { parent: 'img', kind: 'container' });
    await s.cleanup({ force: true });
    const d = await createDriver('overlay', driverHome);
    await d.create('img');
    await writeFile(join(driverHome, 'img/root/file'), 'x');
    await d.create('ctr', 'img');
    await d.cleanup();
    process.stdout.write('{}');
  } else if (mode === 'store-cycles') {
    const s = await openStore(rest[0]!);
    const r = await cycles(Number(rest[1]), async () => {
      await s.mount('ctr');
      await s.unmount('ctr');
    });
    await s.cleanup({ force: true });
    process.stdout.write(JSON.stringify(r));
  } else if (mode === 'driver-cycles') {
    const d = await createDriver('overlay', rest[0]!);
    const r = await cycles(Number(rest[1]), async () => {
      await d.get('ctr');
      await d.put('ctr');
    });
    await d.cleanup();
    process.stdout.write(JSON.stringify(r));
  } else {
    throw new Error(`unknown worker mode ${String(mode)}`);
  }
}

if (process.argv[1] === self) {
  const args = process.argv.slice(2);
  if (args[0] === '--worker') await workerMain(args.slice(1));
  else {
    const runsAt = args.indexOf('--runs');
    for (const r of await run({ runs: runsAt >= 0 ? Number(args[runsAt + 1]) : defaultRuns })) process.stdout.write(JSON.stringify(r) + '\n');
  }
}
