// Disk accounting at scale (issue 22 §2): `df` of a store of 1,000 image layers (20
// chains of 50, each layer adding a 4 KiB file and a 64 KiB one on its parent, the
// overlay driver's hardlink copies below) plus 20 containers. df reads the sizes the
// records hold (measured when each layer was written) and measures only the containers;
// `df --exact` and `du -sx` walk every tree. Target: df under 0.5 s.
//   store.df()        in-process, after an open (the figure a library user sees)
//   ogd df --json     a fresh process (node start-up, open, df)
//   ogd df --exact    a fresh process walking every layer
//   du -sx            GNU du over the same home (the peer df agrees with)
// Also: the walk that measures one layer when it is written, on the Debian minbase
// tree (6,680 entries) when it is there: what an import pays for its size.
//   node dist/bench/space.js [--runs N]
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { openStore } from '../lib/index.js';
import { diskUsage } from '../lib/native.js';
import { defaultRuns, median } from './lib.js';

const sh = promisify(execFile);
const scratch = join(process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd', 'bench-space');
const ogdMain = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'lib', 'cli', 'main.js');
const CHAINS = 20;
const DEPTH = 50;
const CONTAINERS = 20;

export interface SpaceRow {
  comparison: string;
  contender: string;
  runs: number;
  medianMs: number;
  ratioToFirst: number;
  note?: string;
}

function layerTar(i: number): Readable {
  const p = tar.pack();
  p.entry({ name: `l${i}/`, type: 'directory', mode: 0o755 });
  p.entry({ name: `l${i}/small`, mode: 0o644 }, Buffer.alloc(4096, i & 0xff));
  p.entry({ name: `l${i}/big`, mode: 0o644 }, Buffer.alloc(65536, (i + 1) & 0xff));
  p.finalize();
  return p as unknown as Readable;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function run(opts: { runs?: number } = {}, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<SpaceRow[]> {
  const runs = opts.runs ?? defaultRuns;
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  const home = join(scratch, 'store');
  try {
    log(`space: making ${CHAINS * DEPTH} image layers and ${CONTAINERS} containers…`);
    const s = await openStore(home);
    const made = await timed(async () => {
      for (let c = 0; c < CHAINS; c++) {
        for (let d = 0; d < DEPTH; d++) {
          const i = c * DEPTH + d;
          await s.importLayer(`layer-${i}`, layerTar(i), d === 0 ? {} : { parent: `layer-${i - 1}` });
        }
        await s.create(`ctr-${c}`, { kind: 'container', parent: `layer-${c * DEPTH + DEPTH - 1}` });
      }
    });
    log(`  made in ${(made / 1000).toFixed(1)} s (${(made / (CHAINS * DEPTH)).toFixed(1)} ms per import, its size measured)`);
    const inProcess: number[] = [];
    const cli: number[] = [];
    const exact: number[] = [];
    const duMs: number[] = [];
    let agreement = '';
    for (let r = 0; r < runs; r++) {
      let total = 0;
      inProcess.push(await timed(async () => (total = (await s.df()).total)));
      cli.push(await timed(() => sh(process.execPath, [ogdMain, '--home', home, '--json', 'df'])));
      exact.push(await timed(() => sh(process.execPath, [ogdMain, '--home', home, '--json', 'df', '--exact'])));
      let du = 0;
      duMs.push(await timed(async () => (du = Number((await sh('du', ['-sxB1', home])).stdout.split('\t')[0]))));
      agreement = `df ${total} B, du ${du} B (${((Math.abs(total - du) / du) * 100).toFixed(2)}% apart)`;
      log(`  run ${r + 1}: store.df() ${inProcess.at(-1)!.toFixed(0)} ms · ogd df ${cli.at(-1)!.toFixed(0)} ms · ogd df --exact ${exact.at(-1)!.toFixed(0)} ms · du -sx ${duMs.at(-1)!.toFixed(0)} ms · ${agreement}`);
    }
    await s.cleanup({ force: true });
    const first = median(inProcess);
    const comparison = `df of ${CHAINS * DEPTH} image layers + ${CONTAINERS} containers (ms)`;
    const rows: SpaceRow[] = [
      { comparison, contender: 'store.df() (records)', runs, medianMs: first, ratioToFirst: 1, note: agreement },
      { comparison, contender: 'ogd df --json (fresh process)', runs, medianMs: median(cli), ratioToFirst: median(cli) / first },
      { comparison, contender: 'ogd df --exact (walks every tree)', runs, medianMs: median(exact), ratioToFirst: median(exact) / first },
      { comparison, contender: 'du -sx', runs, medianMs: median(duMs), ratioToFirst: median(duMs) / first },
    ];
    const minbase = join(process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd', 'debian-minbase');
    const walk: number[] = [];
    try {
      for (let r = 0; r < runs; r++) walk.push(await timed(() => diskUsage([minbase])));
      rows.push({ comparison: 'measuring one layer at commit: the Debian minbase tree (ms)', contender: 'diskUsage walk', runs, medianMs: median(walk), ratioToFirst: 1 });
      log(`  size walk of ${minbase}: ${median(walk).toFixed(1)} ms`);
    } catch {
      log(`  (no ${minbase}: the per-layer walk is not measured)`);
    }
    return rows;
  } finally {
    const { readMountInfo } = await import('../lib/mountinfo.js');
    const below = (await readMountInfo()).map((m) => m.mountPoint).filter((m) => m.startsWith(scratch + '/'));
    for (const m of below.sort((a, b) => b.length - a.length)) await sh('umount', ['-l', m]).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--runs');
  const rows = await run(i > 0 ? { runs: Number(process.argv[i + 1]) } : {});
  process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
}
