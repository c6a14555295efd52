// At scale: the operations on a child image whose cost must follow its entry count
// linearly, in bounded memory (issue 9): changes, diff (streamed to /dev/null),
// writeDiff to /dev/null, diffSize and remove, on stores of 100k, 300k and 1M
// entries. Each run is a fresh process that reports the operation's own time, its
// peak RSS (getrusage maxrss, the whole process) and the worst event-loop delay
// while it ran. No peer: the figures are read against each other (linear in the
// entry count?) and against the limits (RSS < 200 MB, event loop < 20 ms).
//   node dist/bench/scale.js [--runs N] [--sizes 100000,300000]
// The stores are made once and kept under /var/cache/ogd/bench-scale-N (the parent
// image: copies of a 10,000-entry template of empty and 64-byte files, 100 per
// directory, made by copyTree; the child: the driver's hardlink copy of it plus a
// layer changing about 1% of it). remove is measured last and once; the next run
// makes the child again. This file is also the worker the timed processes run.
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { spawn } from 'node:child_process';
import { pipeline } from 'node:stream/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import tar from 'tar-stream';
import { createDriver } from '../lib/index.js';
import * as native from '../lib/native.js';
import { median } from './lib.js';

const self = fileURLToPath(import.meta.url);
const cache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
const templateEntries = 10_000;
const dirsPerTemplate = 100;
const defaultSizes = [100_000, 300_000, 1_000_000];
/** Bumped when the generated stores change, so old ones are made again. */
const storeVersion = '1';

const ops = ['changes', 'diff', 'writeDiff', 'diffSize', 'remove'] as const;
type Op = (typeof ops)[number];

export interface ScaleOptions {
  runs?: number;
  sizes?: number[];
  log?: (line: string) => void;
}

/** One operation at one size: medians of fresh processes, the worst RSS and delay seen. */
export interface ScaleRow {
  comparison: string;
  contender: string;
  entries: number;
  runs: number;
  medianMs: number;
  maxRssMB: number;
  maxDelayMs: number;
  /** The idle control's worst delay over the same windows. */
  controlDelayMs: number;
  /** Median CPU time of the JS thread during the operation. */
  jsCpuMs: number;
  /** This row's time per 1,000 entries, to read linearity off. */
  msPer1kEntries: number;
}

interface WorkerReport {
  ms: number;
  maxRssMB: number;
  maxDelayMs: number;
  /** The worst delay an idle Node process saw over the same window: what the machine's load alone causes. */
  controlDelayMs: number;
  jsCpuMs: number;
  result: number;
}

/** An idle Node process measuring its own event loop until stop(): the control for the worker's delay. */
async function startControl(): Promise<{ stop(): Promise<number> }> {
  const code = `import { monitorEventLoopDelay } from 'node:perf_hooks';
const h = monitorEventLoopDelay({ resolution: 5 }); h.enable();
process.stdout.write('ready\\n');
process.stdin.resume();
process.stdin.on('end', () => { h.disable(); process.stdout.write(String(h.max / 1e6)); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready\n')) resolve();
    });
  });
  return {
    async stop(): Promise<number> {
      const closed = new Promise((resolve) => child.on('close', resolve));
      child.stdin.end();
      await closed;
      return Number(out.split('ready\n')[1]);
    },
  };
}

// ---- worker: one operation, in a fresh process ----

/**
 * CPU time the JS thread itself used (utime + stime of the main thread, in ms): on a
 * loaded machine the worst event-loop delay mostly measures how long the thread waited
 * for a core, this measures what it did.
 */
function jsThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of proc(5) (utime, stime), counted from the state, field 3.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

async function worker(op: Op, home: string): Promise<void> {
  const d = await createDriver('overlay', home);
  // The driver loads its export code on first use; loaded here, untimed, so the delay
  // measured is the operation's own, not a one-time module compile (50-150 ms here).
  await Promise.all([import('../lib/drivers/naive-diff.js'), import('../lib/archive/export.js')]);
  const delay = monitorEventLoopDelay({ resolution: 5 });
  let result = 0;
  const control = await startControl();
  delay.enable();
  const cpu0 = jsThreadCpuMs();
  const t0 = performance.now();
  switch (op) {
    case 'changes':
      result = (await d.changes('child', 'parent')).length;
      break;
    case 'diff': {
      const stream = await d.diff('child', 'parent');
      stream.on('data', (c: Buffer) => (result += c.length));
      await pipeline(stream, createWriteStream('/dev/null'));
      break;
    }
    case 'writeDiff': {
      const out = await open('/dev/null', 'w');
      try {
        result = await d.writeDiff('child', 'parent', out.fd);
      } finally {
        await out.close();
      }
      break;
    }
    case 'diffSize':
      result = await d.diffSize('child', 'parent');
      break;
    case 'remove':
      await d.remove('child');
      break;
  }
  const ms = performance.now() - t0;
  const jsCpuMs = jsThreadCpuMs() - cpu0;
  delay.disable();
  const controlDelayMs = await control.stop();
  await d.cleanup();
  const report: WorkerReport = { ms, maxRssMB: process.resourceUsage().maxRSS / 1024, maxDelayMs: delay.max / 1e6, controlDelayMs, jsCpuMs, result };
  process.stdout.write(JSON.stringify(report) + '\n');
}

function runWorker(op: Op, home: string): Promise<WorkerReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [self, '--worker', op, home], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`scale worker ${op} failed (${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as WorkerReport);
    });
  });
}

// ---- the stores ----

/** 10,000 entries: 100 directories of 99 files, every tenth file 64 bytes, the others empty. */
async function ensureTemplate(): Promise<string> {
  const dir = join(cache, 'bench-scale-template');
  if (existsSync(join(dir, '.ready'))) return join(dir, 't');
  await native.removeTree(dir);
  const t = join(dir, 't');
  const perDir = templateEntries / dirsPerTemplate - 1;
  for (let j = 0; j < dirsPerTemplate; j++) {
    const sub = join(t, `b${String(j).padStart(2, '0')}`);
    await mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: perDir }, (_, k) => writeFile(join(sub, `f${String(k).padStart(2, '0')}`), k % 10 === 0 ? 'x'.repeat(63) + '\n' : '')));
  }
  await writeFile(join(dir, '.ready'), '');
  return t;
}

/** The child's layer: in each template copy a file changed, one added, one deleted, a directory made opaque. */
async function childLayer(copies: number): Promise<Buffer> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const ended = new Promise<void>((resolve, reject) => {
    p.on('end', resolve);
    p.on('error', reject);
  });
  const mtime = new Date(1_700_000_000_000);
  const add = (name: string, content: string) =>
    new Promise<void>((resolve, reject) => p.entry({ name, mode: 0o644, mtime }, content, (e) => (e ? reject(e) : resolve())));
  for (let i = 0; i < copies; i++) {
    const a = `a${String(i).padStart(3, '0')}`;
    await add(`${a}/b00/f01`, 'changed\n');
    await add(`${a}/b01/new`, 'added\n');
    await add(`${a}/b02/.wh.f02`, '');
    await add(`${a}/b03/.wh..wh..opq`, '');
    await add(`${a}/b03/only`, 'only\n');
  }
  p.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** The store of `entries` entries (a multiple of 10,000): its home, with the parent and child images. */
export async function ensureStore(entries: number, log: (line: string) => void): Promise<string> {
  const base = join(cache, `bench-scale-${entries}`);
  const home = join(base, 'home');
  const copies = Math.round(entries / templateEntries);
  const ready = join(base, `.ready-${storeVersion}`);
  const d0 = existsSync(ready) ? await createDriver('overlay', home) : undefined;
  if (d0 === undefined) {
    log(`scale: making the parent image of ${copies * (templateEntries + 1)} entries under ${base}`);
    if (existsSync(base)) {
      // The home is a bind mount of itself while a driver holds it.
      await createDriver('overlay', home)
        .then((d) => d.cleanup())
        .catch(() => undefined);
      await native.removeTree(base);
    }
    const template = await ensureTemplate();
    await mkdir(base, { recursive: true });
    const d = await createDriver('overlay', home);
    await d.create('parent');
    const root = (await d.getMetadata('parent')).RootDir!;
    const t0 = performance.now();
    for (let i = 0; i < copies; i++) await native.copyTree(template, join(root, `a${String(i).padStart(3, '0')}`), { mode: 'content' });
    log(`scale: parent made in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    await d.cleanup();
    await writeFile(ready, '');
  }
  const d = d0 ?? (await createDriver('overlay', home));
  try {
    if (!(await d.exists('child'))) {
      const t0 = performance.now();
      await d.create('child', 'parent');
      const layer = await childLayer(copies);
      await d.applyDiff('child', 'parent', (async function* () {
        yield layer;
      })());
      log(`scale: child made (hardlink copy + apply) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await d.cleanup();
  }
  return home;
}

// ---- the part ----

export async function run(opts: ScaleOptions = {}): Promise<ScaleRow[]> {
  const runs = opts.runs ?? 3;
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const rows: ScaleRow[] = [];
  for (const size of opts.sizes ?? defaultSizes) {
    const home = await ensureStore(size, log);
    const entries = Math.round(size / templateEntries) * (templateEntries + 1);
    const label = `child image, ${size >= 1e6 ? `${size / 1e6}M` : `${size / 1e3}k`} entries`;
    // Interleaved: changes diff writeDiff diffSize, changes diff …; remove once, at the end.
    const reports = new Map<Op, WorkerReport[]>(ops.map((op) => [op, []]));
    for (let r = 0; r < runs; r++) {
      for (const op of ops) {
        if (op === 'remove') continue;
        const rep = await runWorker(op, home);
        reports.get(op)!.push(rep);
        log(`  ${label}: ${op} ${rep.ms.toFixed(0)} ms, maxRSS ${rep.maxRssMB.toFixed(0)} MB, worst event-loop delay ${rep.maxDelayMs.toFixed(1)} ms (idle control ${rep.controlDelayMs.toFixed(1)} ms), JS thread CPU ${rep.jsCpuMs.toFixed(0)} ms (result ${rep.result})`);
      }
    }
    const rm = await runWorker('remove', home);
    reports.get('remove')!.push(rm);
    log(`  ${label}: remove ${rm.ms.toFixed(0)} ms, maxRSS ${rm.maxRssMB.toFixed(0)} MB, worst event-loop delay ${rm.maxDelayMs.toFixed(1)} ms (idle control ${rm.controlDelayMs.toFixed(1)} ms), JS thread CPU ${rm.jsCpuMs.toFixed(0)} ms`);
    for (const op of ops) {
      const reps = reports.get(op)!;
      const ms = median(reps.map((x) => x.ms));
      rows.push({
        comparison: label,
        contender: op,
        entries,
        runs: reps.length,
        medianMs: ms,
        maxRssMB: Math.max(...reps.map((x) => x.maxRssMB)),
        maxDelayMs: Math.max(...reps.map((x) => x.maxDelayMs)),
        controlDelayMs: Math.max(...reps.map((x) => x.controlDelayMs)),
        jsCpuMs: median(reps.map((x) => x.jsCpuMs)),
        msPer1kEntries: ms / (entries / 1000),
      });
    }
  }
  return rows;
}

export function formatScale(rows: readonly ScaleRow[]): string {
  const lines = ['| entries | operation | runs | median time | per 1k entries | peak RSS | JS thread CPU | worst event-loop delay (idle control) |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.entries} | ${r.contender} | ${r.runs} | ${(r.medianMs / 1000).toFixed(2)} s | ${r.msPer1kEntries.toFixed(2)} ms | ${r.maxRssMB.toFixed(0)} MB | ${r.jsCpuMs.toFixed(0)} ms | ${r.maxDelayMs.toFixed(1)} ms (${r.controlDelayMs.toFixed(1)} ms) |`);
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--worker') return worker(argv[1] as Op, argv[2]!);
  const runsAt = argv.indexOf('--runs');
  const sizesAt = argv.indexOf('--sizes');
  const rows = await run({
    runs: runsAt >= 0 ? Number(argv[runsAt + 1]) : undefined,
    sizes: sizesAt >= 0 ? argv[sizesAt + 1]!.split(',').map(Number) : undefined,
  });
  process.stdout.write(formatScale(rows) + '\n');
}

if (process.argv[1] === self) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
