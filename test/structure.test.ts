// Rules of the layout that no type checker holds (issue 10, item 7): the CLI reaches the
// library only through its public API, like any embedder; one parser of
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
