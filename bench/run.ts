// `npm run bench`: every benchmark part in one go. Each part (bench/copy.ts,
// bench/driver.ts, bench/archive.ts, bench/scale.ts, bench/store.ts, bench/pull.ts) exports `run()`, measures its cases against
// peers and prints its own progress; this file runs the parts that exist, one after
// the other, keeps each part's result as it came, pulls the comparisons out of it,
// and writes:
//   bench/results/latest.json   machine-readable, with the machine and the time
//   bench/results/latest.md     the comparisons as readable tables (also printed)
//   bench/chart.svg             the copy, import and export comparisons as a bar chart
//   README.md                   its benchmark section, after a complete run of every part
// (bench/space.ts: df at 1,000 layers.)
// Usage: npm run bench [-- [--runs N] PART...]   e.g. `npm run bench -- copy` runs the copy part only.
//
// What a part returns: bench/lib.ts's ResultRow[] (rows of { comparison, contender,
// medianMs, … }), one table per comparison. Other shapes are searched for
// { name|tool|contender, median|medianMs|… } records, so a part's own JSON layout
// still shows up in the tables.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderChart, formatValue } from './chart.js';
import type { ChartGroup } from './chart.js';

export interface Measurement {
  tool: string;
  median: number;
}

export interface Comparison {
  part: string;
  case: string;
  unit: string;
  results: Measurement[];
}

interface PartOutcome {
  part: string;
  ok: boolean;
  seconds: number;
  result?: unknown;
  error?: string;
}

export const PARTS = ['copy', 'driver', 'archive', 'scale', 'store', 'pull', 'drivers', 'space'] as const;

const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');

const LABEL_KEYS = ['tool', 'contender', 'name', 'command', 'label', 'impl', 'peer', 'variant'];
const GROUP_KEYS = ['comparison', 'case', 'scenario', 'group'];
const CASE_KEYS = ['case', 'scenario', 'title', 'name', 'tree', 'label', 'id'];
const RESULT_LIST_KEYS = ['results', 'contenders', 'tools', 'runs', 'measurements', 'rows'];
// Median-ish number keys, with the unit their name implies.
const MEDIAN_KEYS: Array<[RegExp, string]> = [
  [/^median(_?ms)?$/i, 'ms'],
  [/^(ms|millis|milliseconds|medianMillis)$/i, 'ms'],
  [/^median_?(us|µs|micros)$/i, 'µs'],
  [/^(us|µs|micros)$/i, 'µs'],
  [/^median_?(s|sec|seconds)$/i, 's'],
  [/^(s|sec|seconds)$/i, 's'],
];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function firstString(o: Record<string, unknown>, keys: string[]): string | undefined {
  for (const k of keys) if (typeof o[k] === 'string' && o[k] !== '') return o[k];
  return undefined;
}

function medianOf(o: Record<string, unknown>, fallbackUnit?: string): { value: number; unit: string } | undefined {
  for (const [pattern, unit] of MEDIAN_KEYS) {
    for (const [k, v] of Object.entries(o)) {
      if (pattern.test(k) && typeof v === 'number' && Number.isFinite(v)) return { value: v, unit: typeof o['unit'] === 'string' ? o['unit'] : (fallbackUnit ?? unit) };
    }
  }
  return undefined;
}

function asMeasurements(items: unknown[], unit?: string): { unit: string; results: Measurement[] } | undefined {
  const results: Measurement[] = [];
  let found: string | undefined;
  for (const item of items) {
    if (!isRecord(item)) return undefined;
    const tool = firstString(item, LABEL_KEYS);
    const median = medianOf(item, unit);
    if (tool === undefined || median === undefined) return undefined;
    results.push({ tool, median: median.value });
    found ??= median.unit;
  }
  return results.length > 0 ? { unit: found!, results } : undefined;
}

/** Finds every comparison inside a part's result, whatever its layout. */
export function extractComparisons(part: string, value: unknown, path: string[] = []): Comparison[] {
  const here = path.join(' / ') || part;
  if (Array.isArray(value)) {
    // Flat rows tagged with their comparison (bench/lib.ts ResultRow): one table per tag.
    const groupKey = GROUP_KEYS.find((k) => value.length > 0 && value.every((item) => isRecord(item) && typeof item[k] === 'string'));
    if (groupKey !== undefined) {
      const groups = new Map<string, unknown[]>();
      for (const item of value as Array<Record<string, unknown>>) {
        const name = item[groupKey] as string;
        groups.set(name, [...(groups.get(name) ?? []), item]);
      }
      const found: Comparison[] = [];
      for (const [name, items] of groups) {
        const m = asMeasurements(items);
        if (m) found.push({ part, case: name, ...m });
      }
      if (found.length > 0) return found;
    }
    const direct = asMeasurements(value);
    if (direct) return [{ part, case: here, ...direct }];
    return value.flatMap((item, i) => extractComparisons(part, item, [...path, isRecord(item) ? (firstString(item, CASE_KEYS) ?? String(i)) : String(i)]));
  }
  if (!isRecord(value)) return [];
  const unit = typeof value['unit'] === 'string' ? value['unit'] : undefined;
  for (const key of RESULT_LIST_KEYS) {
    const list = value[key];
    if (Array.isArray(list)) {
      const m = asMeasurements(list, unit);
      if (m) return [{ part, case: firstString(value, CASE_KEYS) ?? here, ...m }];
    }
  }
  return Object.entries(value).flatMap(([k, v]) => (typeof v === 'object' && v !== null ? extractComparisons(part, v, [...path, k]) : []));
}

const OURS = /\bogd\b|overlay-graphdriver/i;

/** Our contender in a comparison: the one named ogd, else the first (bench/lib.ts puts ours first). */
function oursIn(c: Comparison): Measurement {
  return c.results.find((r) => OURS.test(r.tool)) ?? c.results[0]!;
}

function table(c: Comparison): string[] {
  const ours = oursIn(c);
  const rows = c.results.map((r) => [r.tool, formatValue(r.median, c.unit), r === ours ? '—' : (ours.median / r.median).toFixed(2)]);
  return [`#### ${c.part}: ${c.case}`, '', '| contender | median | ogd ÷ this |', '|---|---:|---:|', ...rows.map((r) => `| ${r.join(' | ')} |`), ''];
}

/** One line per comparison, for the README: ours, then each peer with the ratio. */
function summaryTable(comparisons: Comparison[]): string[] {
  const rows = comparisons.map((c) => {
    const ours = oursIn(c);
    const peers = c.results.filter((r) => r !== ours).map((r) => `${r.tool}: ${formatValue(r.median, c.unit)} (${(ours.median / r.median).toFixed(2)})`);
    return `| ${c.part}: ${c.case} | ${ours.tool}: ${formatValue(ours.median, c.unit)} | ${peers.join(' · ')} |`;
  });
  return ['| comparison | ogd (median) | peers: median (ogd ÷ peer; below 1 = ogd faster) |', '|---|---|---|', ...rows];
}

/** " — ogd 2.1× faster than cp -al": ours against the first peer (bench/lib.ts orders the main peer second). */
function versus(c: Comparison): string {
  const ours = oursIn(c);
  const peer = c.results.find((r) => r !== ours);
  if (peer === undefined || ours.median <= 0) return '';
  const ratio = peer.median / ours.median;
  return ratio >= 1 ? ` — ogd ${ratio.toFixed(2)}× faster than ${peer.tool}` : ` — ogd ${(1 / ratio).toFixed(2)}× slower than ${peer.tool}`;
}

function chartGroups(comparisons: Comparison[]): ChartGroup[] {
  const wanted = comparisons.filter((c) => c.part === 'copy' || c.part === 'archive');
  return wanted.map((c) => ({
    title: `${c.case}${versus(c)}`,
    unit: c.unit,
    bars: c.results.map((r) => ({ label: r.tool, value: r.median, ours: r === oursIn(c) })),
  }));
}

async function loadPart(part: string): Promise<((opts?: unknown) => Promise<unknown>) | undefined> {
  try {
    const mod = (await import(`./${part}.js`)) as { run?: (opts?: unknown) => Promise<unknown> };
    if (typeof mod.run !== 'function') throw new Error(`bench/${part}.ts does not export run()`);
    return mod.run;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`${part}.js`)) return undefined;
    throw err;
  }
}

async function writeAtomically(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

const README_START = /<!-- bench:start[^>]*-->/;
const README_END = '<!-- bench:end -->';

async function updateReadme(summary: string[], machine: { cpus: number; cpuModel: string; kernel: string; node: string }, when: string, chart: boolean): Promise<void> {
  const readme = join(benchDir, '..', 'README.md');
  const text = await readFile(readme, 'utf8');
  const start = README_START.exec(text);
  const end = text.indexOf(README_END);
  if (start === null || end < start.index) return;
  const body = [
    '',
    `Measured ${when.slice(0, 10)} on ${machine.cpus} × ${machine.cpuModel}, Linux ${machine.kernel}, Node ${machine.node}; median of several fresh processes each (\`npm run bench\`).`,
    '',
    ...summary,
    '',
    ...(chart ? ['![copy, import and export: ogd against its peers](bench/chart.svg)', ''] : []),
  ].join('\n');
  await writeAtomically(readme, text.slice(0, start.index + start[0].length) + body + text.slice(end));
}

export async function main(argv: string[]): Promise<number> {
  // `--runs N` is handed to every part (fewer runs for a quick look; parts default to 5).
  const runsAt = argv.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : undefined;
  if (runs !== undefined && !(Number.isInteger(runs) && runs > 0)) {
    process.stderr.write('bench: --runs needs a positive integer\n');
    return 2;
  }
  const args = runsAt >= 0 ? argv.filter((_, i) => i !== runsAt && i !== runsAt + 1) : argv;
  const unknown = args.filter((a) => !(PARTS as readonly string[]).includes(a));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown part ${unknown.join(', ')} (parts: ${PARTS.join(', ')})\n`);
    return 2;
  }
  const selected = args.length > 0 ? args : [...PARTS];
  const outcomes: PartOutcome[] = [];
  for (const part of selected) {
    const run = await loadPart(part);
    if (run === undefined) {
      process.stdout.write(`\n== ${part}: not present (bench/${part}.ts), skipped\n`);
      continue;
    }
    process.stdout.write(`\n== ${part}\n`);
    const t0 = performance.now();
    try {
      const result = await run(runs !== undefined ? { runs } : {});
      outcomes.push({ part, ok: true, seconds: (performance.now() - t0) / 1000, result });
    } catch (err) {
      // One broken part must not cost the others' results.
      const message = err instanceof Error ? err.message : String(err);
      process.stderr.write(`bench ${part} failed: ${message}\n`);
      outcomes.push({ part, ok: false, seconds: (performance.now() - t0) / 1000, error: message });
    }
  }

  const comparisons = outcomes.flatMap((o) => (o.ok ? extractComparisons(o.part, o.result) : []));
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version };
  const when = new Date().toISOString();
  const markdown = [
    `### Benchmark results (${when})`,
    '',
    `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGB} GB RAM, Linux ${machine.kernel}, Node ${machine.node}. Medians; "ogd ÷ this" below 1 means ogd is faster.`,
    '',
    ...comparisons.flatMap(table),
    ...outcomes.filter((o) => !o.ok).map((o) => `- part **${o.part}** failed: ${o.error}`),
  ].join('\n');
  process.stdout.write(`\n${markdown}\n`);

  const resultsDir = join(benchDir, 'results');
  await mkdir(resultsDir, { recursive: true });
  const json = JSON.stringify({ when, machine, parts: outcomes, comparisons }, null, 2) + '\n';
  await writeAtomically(join(resultsDir, 'latest.json'), json);
  await writeAtomically(join(resultsDir, `${when.replace(/[:.]/g, '-')}.json`), json);
  await writeAtomically(join(resultsDir, 'latest.md'), markdown + '\n');
  const groups = chartGroups(comparisons);
  if (groups.length > 0) {
    const svg = renderChart('overlay-graphdriver vs peers', `median time, shorter is faster; ${machine.cpus} CPUs, Linux ${machine.kernel}, ${when.slice(0, 10)}`, groups);
    await writeAtomically(join(benchDir, 'chart.svg'), svg);
  }
  // A complete, clean run also refreshes the README's benchmark section.
  const complete = selected.length === PARTS.length && outcomes.length === PARTS.length && outcomes.every((o) => o.ok);
  if (complete) await updateReadme(summaryTable(comparisons), machine, when, groups.length > 0);
  process.stdout.write(`\nwrote bench/results/latest.json, bench/results/latest.md${groups.length > 0 ? ', bench/chart.svg' : ''}${complete ? ', README.md' : ''}\n`);
  return outcomes.some((o) => !o.ok) ? 1 : 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
