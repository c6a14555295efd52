// Shared machinery of the benchmarks (bench/copy.ts and the parts that follow it):
// every timed run is a fresh process (startup included, as a user would pay it),
// contenders alternate A B A B so drift in machine load hits all of them alike,
// each is summarized by its median, and results come back as rows for JSON.
// Caches are not dropped: every contender reads the same warm tree, after one
// untimed warm-up run each.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Contender {
  /** Short label, e.g. 'ogd copy --hardlink' or 'cp -al'. */
  name: string;
  command: string;
  args: string[];
  /** Fewer runs for slow reference contenders (default: the comparison's runs). */
  runs?: number;
}

export interface Comparison {
  /** What is measured, e.g. 'hardlink copy, synthetic 100k'. */
  name: string;
  /** The first contender is ours; ratios are everyone else's median over its median. */
  contenders: Contender[];
  /** Untimed, before every run (e.g. remove the previous destination). */
  prepare?: () => Promise<void>;
  runs?: number;
}

export interface ResultRow {
  comparison: string;
  contender: string;
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** This contender's median over the first contender's (>1: the first is faster). */
  ratioToFirst: number;
}

export const defaultRuns = 5;

/** Runs a command to completion; rejects if it fails. Returns wall time in ms. */
export function timeProcess(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Times every contender `runs` times, interleaved A B A B, after one warm-up each. */
export async function compare(c: Comparison, log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<ResultRow[]> {
  const runs = c.runs ?? defaultRuns;
  const times = c.contenders.map(() => [] as number[]);
  for (const k of c.contenders) {
    await c.prepare?.();
    await timeProcess(k.command, k.args);
  }
  for (let i = 0; i < runs; i++) {
    for (const [j, k] of c.contenders.entries()) {
      if (i >= (k.runs ?? runs)) continue;
      await c.prepare?.();
      const ms = await timeProcess(k.command, k.args);
      times[j]!.push(ms);
      log(`  ${c.name} · ${k.name} · run ${i + 1}: ${ms.toFixed(0)} ms`);
    }
  }
  await c.prepare?.();
  const first = median(times[0]!);
  return c.contenders.map((k, j) => ({
    comparison: c.name,
    contender: k.name,
    runs: times[j]!.length,
    medianMs: median(times[j]!),
    minMs: Math.min(...times[j]!),
    maxMs: Math.max(...times[j]!),
    ratioToFirst: median(times[j]!) / first,
  }));
}

/** A plain-text table, one line per contender, grouped by comparison. */
export function formatTable(rows: ResultRow[]): string {
  const header = ['comparison', 'contender', 'median', 'min', 'max', 'runs', 'vs first'];
  const lines = rows.map((r) => [
    r.comparison,
    r.contender,
    `${(r.medianMs / 1000).toFixed(3)} s`,
    `${(r.minMs / 1000).toFixed(3)} s`,
    `${(r.maxMs / 1000).toFixed(3)} s`,
    String(r.runs),
    r.ratioToFirst === 1 ? '1.00x' : r.ratioToFirst > 1 ? `${r.ratioToFirst.toFixed(2)}x slower` : `${(1 / r.ratioToFirst).toFixed(2)}x faster`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [fmt(header), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(fmt)].join('\n');
}

// --- a synthetic tree of small files -------------------------------------------

/** Deterministic PRNG (mulberry32), so every machine builds the same tree. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SyntheticTreeSpec {
  files: number;
  seed?: number;
}

/**
 * Makes (once) a tree of `files` small files shaped like a package tree (node_modules,
 * /usr/share): a few wide top directories, nesting 2-6 deep, 5-40 files per directory,
 * sizes mostly under 8 KiB with a tail to 24 KiB, and ~3% symlinks. Built in a
 * temp dir and renamed into place, so a half-made tree is never mistaken for one.
 */
export async function ensureSyntheticTree(dir: string, spec: SyntheticTreeSpec): Promise<string> {
  if (existsSync(join(dir, '.complete'))) return dir;
  const tmp = `${dir}.partial-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const rand = prng(spec.seed ?? 0x6f6764);
  const pick = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const pattern = Buffer.alloc(24 * 1024);
  for (let i = 0; i < pattern.length; i++) pattern[i] = 32 + ((i * 7 + (i >> 5)) % 95);
  let made = 0;
  const pending: Promise<unknown>[] = [];
  const flush = async (): Promise<void> => {
    await Promise.all(pending.splice(0));
  };

  async function fill(path: string, depth: number): Promise<void> {
    await mkdir(path, { recursive: true });
    const files = pick(5, 40);
    let previous = '';
    for (let i = 0; i < files && made < spec.files; i++) {
      const r = rand();
      const size = r < 0.5 ? pick(0, 1024) : r < 0.9 ? pick(1024, 8192) : pick(8192, 24 * 1024);
      const base = `f${i}-${made.toString(36)}.${['js', 'json', 'md', 'txt', 'h', 'py'][i % 6]}`;
      const name = join(path, base);
      const body = Buffer.concat([Buffer.from(`${made}\n`), pattern.subarray(made % 97, (made % 97) + size)]).subarray(0, size);
      made++;
      pending.push(rand() < 0.03 && previous !== '' ? symlink(previous, name) : writeFile(name, body));
      previous = base;
      if (pending.length >= 64) await flush();
    }
    const maxSub = depth === 0 ? 24 : depth < 3 ? 8 : depth < 6 ? 3 : 0;
    const subs = depth === 0 ? maxSub : pick(0, maxSub);
    for (let s = 0; s < subs && made < spec.files; s++) await fill(join(path, `d${depth}-${s}`), depth + 1);
  }

  // Top level: keep adding wide subtrees until the file count is reached.
  for (let top = 0; made < spec.files; top++) await fill(join(tmp, `pkg${top}`), 0);
  await flush();
  const marker = await open(join(tmp, '.complete'), 'w');
  await marker.close();
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return dir;
}
