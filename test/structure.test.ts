// Rules of the layout that no type checker holds (issues 10 and 24; README "Where things
// go"): the parts of lib/ and the imports that must never exist between them; the CLI
// reaches the library only through its public API, like any embedder; one parser of
// /proc/self/mountinfo (lib/mountinfo.ts) for the library, its tests and benches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/structure.test.js -> the repository's root, where the .ts sources are.
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(rel)));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

test('lib/cli imports the library only through its public entry points (package.json exports)', async () => {
  // "./dist/lib/native.js" -> lib/native.js, as the CLI's sources name it.
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { exports: Record<string, string | { default: string }> };
  const entries = Object.values(pkg.exports)
    .map((e) => (typeof e === 'string' ? e : e.default))
    .filter((e) => e.startsWith('./dist/lib/'))
    .map((e) => join('lib', relative('./dist/lib', e)));
  assert.ok(entries.includes(join('lib', 'index.js')), `entry points: ${entries.join(', ')}`);
  const wrong: string[] = [];
  for (const file of await sources('lib/cli')) {
    const text = await readFile(join(root, file), 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\(\s*)'(\.[^']*)'/g)) {
      const target = join(dirname(file), m[1]!);
      const inCli = !relative('lib/cli', target).startsWith('..');
      if (!inCli && !entries.includes(target)) wrong.push(`${file}: ${m[1]}`);
    }
  }
  assert.deepEqual(wrong, [], 'CLI files importing library internals');
});

test('only lib/mountinfo.ts reads /proc/self/mountinfo', async () => {
  const readers: string[] = [];
  for (const file of [...(await sources('lib')), ...(await sources('test')), ...(await sources('bench'))]) {
    if (file === join('lib', 'mountinfo.ts') || file === join('test', 'structure.test.ts')) continue;
    if ((await readFile(join(root, file), 'utf8')).includes("'/proc/self/mountinfo'")) readers.push(file);
  }
  assert.deepEqual(readers, []);
});

/** The part of the library a source file belongs to (README "Where things go"). */
export function partOf(file: string): string | undefined {
  const f = file.split('\\').join('/');
  if (f === 'lib/native.ts' || f.startsWith('lib/native/')) return 'Binding';
  if (['lib/errors.ts', 'lib/ids.ts', 'lib/idmap.ts', 'lib/fs-magic.ts', 'lib/mount-label.ts', 'lib/types.ts'].includes(f)) return 'Base';
  if (['lib/mountinfo.ts', 'lib/locks.ts', 'lib/mount-counter.ts', 'lib/keyed-lock.ts', 'lib/processes.ts'].includes(f)) return 'Kernel';
  if (f === 'lib/index.ts') return 'Api';
  const dir = /^lib\/(archive|drivers|image|store|cli)\//.exec(f)?.[1];
  return dir === undefined ? undefined : { archive: 'Archive', drivers: 'Drivers', image: 'Image', store: 'Store', cli: 'Cli' }[dir];
}

/** Imports that must never exist, part to part (issue 24). The CLI's rule is the test above. */
export const FORBIDDEN: ReadonlyArray<readonly [string, string]> = [
  ['Base', 'Archive'],
  ['Base', 'Drivers'],
  ['Base', 'Store'],
  ['Archive', 'Drivers'],
  ['Archive', 'Store'],
  ['Binding', 'Drivers'],
  ['Binding', 'Archive'],
  ['Kernel', 'Drivers'],
  ['Drivers', 'Store'],
  ['Drivers', 'Image'],
  ['Image', 'Store'],
  ['Image', 'Drivers'],
];

/** The relative imports of every source below `dir` (static, dynamic and type-only), as [importer, imported .ts]. */
async function imports(dir: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const file of await sources(dir)) {
    const text = await readFile(join(root, file), 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\(\s*)'(\.[^']*)'/g)) out.push([file, join(dirname(file), m[1]!).replace(/\.js$/, '.ts')]);
  }
  return out;
}

/** The imports among `edges` that break the rules: a forbidden arrow, a driver folder reaching into a sibling's, a file in no part. */
export function violations(edges: ReadonlyArray<readonly [string, string]>): string[] {
  const wrong: string[] = [];
  for (const [from, to] of edges) {
    const a = partOf(from);
    const b = partOf(to);
    if (a === undefined) wrong.push(`${from}: in no part (README "Where things go" names them)`);
    if (a === undefined || b === undefined || a === b) {
      // One driver's folder never imports from another's: shared code lives at lib/drivers/.
      const driver = (f: string) => /^lib\/drivers\/([^/]+)\//.exec(f)?.[1];
      if (a === 'Drivers' && driver(from) !== undefined && driver(to) !== undefined && driver(from) !== driver(to)) wrong.push(`${from} -> ${to}: one driver's folder imports from another's`);
      continue;
    }
    if (FORBIDDEN.some(([x, y]) => x === a && y === b)) wrong.push(`${from} -> ${to}: ${a} must not import ${b}`);
  }
  return wrong;
}

test('the parts of lib/ import each other only downwards: none of the forbidden arrows, no driver folder into another', async () => {
  const edges = await imports('lib');
  assert.ok(edges.length > 100, `found ${edges.length} imports`);
  assert.deepEqual(violations(edges), []);
});

test('the rule holds against planted violations (the check can fail)', () => {
  const planted: Array<[string, string]> = [
    ['lib/types.ts', 'lib/archive/layer-file.ts'],
    ['lib/drivers/vfs/driver.ts', 'lib/drivers/overlay/layout.ts'],
    ['lib/image/pull.ts', 'lib/store/store.ts'],
    ['lib/drivers/overlay/driver.ts', 'lib/store/types.ts'],
    ['lib/stray.ts', 'lib/errors.ts'],
  ];
  assert.equal(violations(planted).length, planted.length, violations(planted).join('\n'));
  assert.deepEqual(violations([['lib/drivers/vfs/driver.ts', 'lib/drivers/staging.ts'], ['lib/store/store.ts', 'lib/drivers/create-driver.ts']]), []);
});

test('examples/ reach the library only by the package name, as a user would', async () => {
  const wrong: string[] = [];
  for (const file of await sources('examples')) {
    const text = await readFile(join(root, file), 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\(\s*)'([^']*)'/g)) {
      const spec = m[1]!;
      const outside = spec.startsWith('.') && relative('examples', join(dirname(file), spec)).startsWith('..');
      if (outside || (!spec.startsWith('.') && !spec.startsWith('node:') && !/^overlay-graphdriver(\/|$)/.test(spec))) wrong.push(`${file}: ${spec}`);
    }
  }
  assert.deepEqual(wrong, [], 'example files importing past the package exports');
});
