// A store whose own files are damaged or planted (issue 23): every id read back from a
// record is a stranger's (a canary outside the home survives ls, check, repair and
// every open), a fifo where a driver file belongs never hangs, records of the wrong
// shape are reported with their file and skipped, repair rebuilds what it can from
// the disk and the blobs and moves the rest to lost+found, leftovers in the blob cache
// are listed with their sizes and removed, and a corrupt kept blob never reaches a push.
// One store (two images, two containers with data) is built once and copied per test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, open, readFile, readdir, truncate, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { openStore, type Store } from '../lib/index.js';
import { buildDamageFixture, copyHome, noise, type DamageFixture } from './helpers/damaged-store.js';
import { ogd } from './helpers/ogd-cli.js';
import { isRoot, removeTree, unmountUnder } from './helpers/sandbox.js';

let fixtureDir: string | undefined;
let fixture: DamageFixture | undefined;

before(async () => {
  if (!isRoot) return;
  fixtureDir = await mkdtemp(join(tmpdir(), 'ogd-damaged-'));
  fixture = await buildDamageFixture(fixtureDir);
});

after(async () => {
  if (fixtureDir === undefined) return;
  await unmountUnder(fixtureDir);
  await removeTree(fixtureDir);
});

interface Copy {
  dir: string;
  home: string;
  f: DamageFixture;
  cli: (...args: string[]) => ReturnType<typeof ogd>;
  /** Runs `fn` on the store opened in this process (a CLI process costs most of a second here); the commands under test go through ogd. */
  lib: <T>(fn: (s: Store) => Promise<T>) => Promise<T>;
}

async function withStore<T>(home: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const s = await openStore(home);
  try {
    return await fn(s);
  } finally {
    await s.cleanup();
  }
}

/** A fresh copy of the fixture's store, closed (and its mounts gone) when the test ends. */
async function copy(t: TestContext, name: string): Promise<Copy | undefined> {
  if (!isRoot || fixture === undefined) {
    t.skip('needs root (mounts, chown)');
    return undefined;
  }
  const dir = join(fixtureDir!, name);
  await mkdir(dir);
  const home = copyHome(fixture, join(dir, 'home'));
  t.after(async () => {
    await (await openStore(home).catch(() => undefined))?.cleanup({ force: true }).catch(() => undefined);
    await unmountUnder(dir);
  });
  const cli = (...args: string[]) => ogd(['--home', home, ...args], { killAfterMs: 20_000 });
  return { dir, home, f: fixture, cli, lib: (fn) => withStore(home, fn) };
}

interface Report {
  ok: boolean;
  problems: Array<{ kind: string; id?: string; path?: string; message: string; size?: number }>;
  reclaimable: Array<{ kind: string; path?: string; message: string; size?: number }>;
  repaired?: Array<{ kind: string; id?: string; path?: string; repair: string; movedTo?: string }>;
}

/** check() (or with 'repair', repair() then what check() still finds), through the library. */
async function checkJson(c: Copy, mode?: 'repair' | 'deep'): Promise<Report> {
  return c.lib(async (s) => {
    if (mode !== 'repair') return s.check({ deep: mode === 'deep' });
    const r = await s.repair();
    return { ok: r.remaining.length === 0, problems: r.remaining, reclaimable: [], repaired: r.repaired };
  });
}

const recordPath = (c: Copy, id: string) => join(c.home, 'layers', id);
const layerIds = async (c: Copy) => (await c.lib((s) => s.list())).map((l) => l.id).sort();

/** The file `c.f.containers[id]` reads through a mount of the container in the store at `home`. */
async function containerFile(home: string, id: string, file: string): Promise<Buffer> {
  const s = await openStore(home);
  try {
    const root = await s.mount(id);
    try {
      return await readFile(join(root, file));
    } finally {
      await s.unmount(id);
    }
  } finally {
    await s.cleanup();
  }
}

test('ids planted in records never reach a path outside the home: the canaries survive ls, images, check, repair and every open', async (t) => {
  const c = await copy(t, 'traversal');
  if (c === undefined) return;
  const canary = join(c.dir, 'victim');
  const victimDir = join(c.dir, 'victim-dir');
  await writeFile(canary, 'precious\n');
  await mkdir(victimDir);
  const up = (from: string) => relative(from, canary);
  // The reproduction: an interrupted image removal whose id climbs out of home/images.
  await writeFile(join(c.home, 'images', 'evil'), JSON.stringify({ id: up(join(c.home, 'images')), names: ['x:latest'], layers: [], digest: 'x', manifest: '', config: '', created: 'x', incomplete: true }));
  // An image whose layer id climbs out (the open used to make a lock file there), under a valid image id.
  const hex = 'e'.repeat(64);
  const layer = { id: relative(join(c.home, 'locks', 'layer'), join(victimDir, 'rec')), diffId: `sha256:${'1'.repeat(64)}`, blob: { mediaType: 'x', digest: `sha256:${'2'.repeat(64)}`, size: 1 } };
  await writeFile(join(c.home, 'images', hex), JSON.stringify({ id: hex, names: ['y:latest'], layers: [layer], topLayer: layer.id, digest: `sha256:${'3'.repeat(64)}`, manifest: '', config: '', created: 'x', incomplete: true }));
  // A layer record (marked incomplete, with its marker) whose id and parent climb out.
  await writeFile(join(c.home, 'layers', 'evil'), JSON.stringify({ id: up(join(c.home, 'overlay')), parent: up(join(c.home, 'overlay')), kind: 'image', names: [], created: 'x', incomplete: true }));
  await writeFile(join(c.home, 'incomplete', 'evil'), '');
  // A v1 index (converted at open) naming a layer outside.
  await writeFile(join(c.home, 'layers.json'), JSON.stringify({ layers: { [up(join(c.home, 'layers'))]: { kind: 'image' }, fine: { kind: 'image' } } }));

  for (const args of [['ls'], ['images'], ['check'], ['check', '--repair']]) {
    const r = await c.cli(...args);
    assert.equal(r.signal, null, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(await readFile(canary, 'utf8'), 'precious\n', `the canary survives ogd ${args.join(' ')}`);
    assert.deepEqual(await readdir(victimDir), [], `nothing appears in victim-dir after ogd ${args.join(' ')}`);
  }
  const s = await openStore(c.home);
  await s.cleanup();
  assert.equal(await readFile(canary, 'utf8'), 'precious\n');
  assert.deepEqual(await readdir(victimDir), []);
  assert.deepEqual(await readdir(c.dir), ['home', 'victim', 'victim-dir'], 'nothing was written beside the home');
  assert.ok((await checkJson(c)).ok, 'one repair leaves the store ok');
});

test('an incomplete flag set by hand on a layer that a container and two images stand on is cleared, not grounds for deletion', async (t) => {
  const c = await copy(t, 'flag');
  if (c === undefined) return;
  const base = c.f.layers[0]!;
  const rec = JSON.parse(await readFile(recordPath(c, base), 'utf8')) as Record<string, unknown>;
  await writeFile(recordPath(c, base), JSON.stringify({ ...rec, incomplete: true }));
  const found = await checkJson(c);
  assert.ok(found.problems.some((p) => p.kind === 'incomplete-layer' && p.id === base), JSON.stringify(found));
  for (let i = 0; i < 2; i++) assert.equal((await c.cli('check', '--repair')).code, 0, 'ogd check --repair, twice');
  assert.deepEqual(await layerIds(c), [...c.f.layers, 'db', 'web'].sort(), 'every layer is still there');
  assert.equal((await c.lib((s) => s.images())).length, 2, 'both images are still there');
  assert.deepEqual(await containerFile(c.home, 'db', c.f.containers['db']!.file), c.f.containers['db']!.content, "db's data is intact");
  assert.ok((await checkJson(c)).ok);
});

test('a fifo as a container\'s lower-id: ls answers within 2 s; a lower-id that climbs out is no lower; repair writes both again from the records', async (t) => {
  const c = await copy(t, 'lower-id');
  if (c === undefined) return;
  const webLower = join(c.home, 'overlay', 'web', 'lower-id');
  await rm(webLower);
  execFileSync('mkfifo', [webLower]);
  await writeFile(join(c.home, 'overlay', 'db', 'lower-id'), '../../../../etc');
  const started = Date.now();
  const ls = await ogd(['--home', c.home, 'ls'], { killAfterMs: 10_000 });
  assert.equal(ls.signal, null, 'ls did not hang');
  assert.ok(Date.now() - started < 2000, `ls answered in ${Date.now() - started} ms`);
  assert.equal(ls.code, 0, ls.stderr);
  const found = await checkJson(c);
  assert.deepEqual(found.problems.map((p) => `${p.kind} ${p.id}`).sort(), ['record-without-layer db', 'record-without-layer web']);
  const repaired = await checkJson(c, 'repair');
  assert.ok(repaired.ok, JSON.stringify(repaired));
  // Nothing deleted: each container's link to its lower layer is written again from its record, its data in place.
  assert.deepEqual(repaired.repaired!.map((p) => `${p.id}: ${p.repair}`).sort(), [
    `db: wrote its link to its lower layer again from its parent ${JSON.stringify(c.f.layers[0])}`,
    `web: wrote its link to its lower layer again from its parent ${JSON.stringify(c.f.layers[1])}`,
  ]);
  for (const id of ['web', 'db']) {
    const kept: { file: string; content: Buffer } = c.f.containers[id]!;
    assert.deepEqual(await containerFile(c.home, id, kept.file), kept.content, `${id}'s data`);
  }
  assert.ok((await checkJson(c)).ok);
});

test('records of the wrong shape, truncated, a fifo, a directory or huge: ls and images skip them, check names each file, repair rebuilds or moves aside', async (t) => {
  const c = await copy(t, 'shapes');
  if (c === undefined) return;
  const [base, top] = c.f.layers as [string, string];
  await truncate(recordPath(c, top), 20);
  await writeFile(recordPath(c, 'web'), '[]');
  await writeFile(recordPath(c, 'db'), JSON.stringify({ id: 'db', kind: ['x'], names: 'notalist', created: 'x' }));
  execFileSync('mkfifo', [recordPath(c, 'fifo')]);
  await mkdir(recordPath(c, 'dir'));
  const huge = await open(recordPath(c, 'huge'), 'w');
  await huge.truncate(300 * 1024 * 1024); // sparse: 300 MB to read, no space taken
  await huge.close();

  const ls = await c.cli('--json', 'ls');
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual((JSON.parse(ls.stdout) as Array<{ id: string }>).map((l) => l.id), [base]);
  const images = await c.cli('images');
  assert.equal(images.code, 0, images.stderr);
  const found = await checkJson(c);
  const damaged = new Map(found.problems.filter((p) => p.kind === 'damaged-record').map((p) => [p.path!.slice(c.home.length + 1), p.message.replace(/^.*is not a layer record: /, '')]));
  assert.deepEqual([...damaged.keys()].sort(), ['layers/db', 'layers/dir', 'layers/fifo', 'layers/huge', `layers/${top}`, 'layers/web'].sort());
  assert.equal(damaged.get('layers/db'), 'record.kind must be "image" or "container", not a list');
  assert.equal(damaged.get('layers/web'), 'the record must be an object, not a list');
  assert.equal(damaged.get('layers/dir'), 'it is a directory');
  assert.equal(damaged.get('layers/fifo'), 'it is not a regular file (a fifo, socket or device)');
  assert.equal(damaged.get('layers/huge'), 'it is far too big for a record');
  assert.match(damaged.get(`layers/${top}`)!, /^it is not JSON \(/);
  const repaired = await c.cli('check', '--repair');
  assert.equal(repaired.code, 0, repaired.stdout + repaired.stderr);
  assert.deepEqual(await layerIds(c), [base, top, 'db', 'web'].sort(), 'the three damaged records were rebuilt from the disk');
  const rebuilt = JSON.parse(await readFile(recordPath(c, top), 'utf8')) as { kind: string; parent: string; uncompressedDigest: string };
  assert.equal(rebuilt.kind, 'image');
  assert.equal(rebuilt.parent, base, "the image layer's parent comes from its image");
  const web = JSON.parse(await readFile(recordPath(c, 'web'), 'utf8')) as { kind: string; parent: string };
  assert.deepEqual([web.kind, web.parent], ['container', top], "the container's parent comes from its lower-id");
  const lost = await readdir(join(c.home, 'lost+found'));
  for (const what of ['record-fifo', 'record-dir', 'record-huge']) assert.ok(lost.some((n) => n.endsWith(what)), `${what} in lost+found: ${lost.join(', ')}`);
  assert.ok((await checkJson(c)).ok);
  await c.lib((s) => s.pull(`oci:${c.f.layout}:two`));
  assert.deepEqual(await containerFile(c.home, 'web', c.f.containers['web']!.file), c.f.containers['web']!.content);
});

test('damaged image records are reported, their layers stay owned meanwhile, and repair rebuilds them from the manifest and config blobs', async (t) => {
  const c = await copy(t, 'images');
  if (c === undefined) return;
  const { one, two } = c.f.images;
  await truncate(join(c.home, 'images', two), 30);
  const oneRec = JSON.parse(await readFile(join(c.home, 'images', one), 'utf8')) as Record<string, unknown>;
  await writeFile(join(c.home, 'images', one), JSON.stringify({ ...oneRec, layers: 'nope' }));
  const images = await c.cli('--json', 'images');
  assert.equal(images.code, 0, images.stderr);
  assert.deepEqual(JSON.parse(images.stdout), [], 'neither lists');
  const found = await checkJson(c);
  assert.deepEqual(found.problems.map((p) => `${p.kind} ${p.id}`).sort(), [`damaged-image ${one}`, `damaged-image ${two}`].sort());
  // Meanwhile no image layer counts as unowned.
  await c.lib(async (s) => {
    await s.remove('web');
    await assert.rejects(s.remove(c.f.layers[1]!), (err: Error & { code?: string }) => err.code === 'ERR_OGD_LAYER_IN_USE' && /damaged/.test(err.message));
  });
  const repaired = await checkJson(c, 'repair');
  assert.ok(repaired.ok, JSON.stringify(repaired));
  const listed = await c.lib((s) => s.images());
  assert.deepEqual(listed.map((i) => i.id).sort(), [one, two].sort());
  assert.deepEqual(listed.find((i) => i.id === two)!.layers, c.f.layers);
  await c.lib((s) => s.push(two, `oci:${join(c.dir, 'out')}:again`));
});

test('leftovers in the blob cache are listed with their sizes; repair and the next open (once the writer is dead) remove them', async (t) => {
  const c = await copy(t, 'leftovers');
  if (c === undefined) return;
  const blobs = join(c.home, 'blobs', 'sha256');
  const dead = deadPid();
  const unreferenced = noise(70_000, 9);
  const unreferencedHex = createHash('sha256').update(unreferenced).digest('hex');
  await writeFile(join(blobs, `ingest.partial-${dead}-0`), noise(120_000, 7));
  await writeFile(join(blobs, `${'a'.repeat(64)}.partial-${dead}-3`), noise(50_000, 8));
  await writeFile(join(blobs, unreferencedHex), unreferenced);
  const found = await checkJson(c);
  assert.ok(found.ok, 'leftovers are space, not problems');
  const sizes = found.reclaimable.map((p) => [p.path!.slice(blobs.length + 1), p.size]);
  // The killed commit's ingest went at the open of check itself; what a pull may still use is listed.
  assert.deepEqual(sizes.sort(), [[`${'a'.repeat(64)}.partial-${dead}-3`, 50_000], [unreferencedHex, 70_000]].sort());
  assert.ok(found.reclaimable.every((p) => /KiB\)$/.test(p.message)), 'the message says the size');
  assert.ok(!(await readdir(blobs)).includes(`ingest.partial-${dead}-0`), 'the open removed the dead ingest');
  assert.ok((await checkJson(c, 'repair')).ok);
  assert.deepEqual((await checkJson(c)).reclaimable, []);
  const kept = await readdir(blobs);
  assert.ok(!kept.some((n) => n.includes('partial') || n === unreferencedHex), kept.join(', '));
  // A killed commit's ingest is gone at the next open.
  await writeFile(join(blobs, `ingest.partial-${dead}-1`), noise(1000, 1));
  await c.lib(async () => undefined);
  assert.ok(!(await readdir(blobs)).includes(`ingest.partial-${dead}-1`));
});

test('a flipped bit in a kept blob: check --deep finds it, push never sends it (the layer is made again), the pushed image pulls', async (t) => {
  const c = await copy(t, 'corrupt');
  if (c === undefined) return;
  const rec = JSON.parse(await readFile(join(c.home, 'images', c.f.images.two), 'utf8')) as { layers: Array<{ blob: { digest: string; size: number } }> };
  const blob = rec.layers[1]!.blob;
  const file = join(c.home, 'blobs', 'sha256', blob.digest.slice(7));
  const fh = await open(file, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 100);
  b[0] = b[0]! ^ 0x10;
  await fh.write(b, 0, 1, 100);
  await fh.close();
  assert.ok((await checkJson(c)).ok, 'a plain check does not read blobs');
  const deep = await checkJson(c, 'deep');
  assert.deepEqual(deep.problems.map((p) => `${p.kind} ${p.path}`), [`corrupt-blob ${file}`]);
  const out = join(c.dir, 'out');
  const pushed = await c.cli('push', 'two', `oci:${out}:two`);
  assert.equal(pushed.code, 0, pushed.stderr);
  const fresh = join(c.dir, 'fresh');
  await withStore(fresh, async (s) => {
    const img = await s.pull(`oci:${out}:two`);
    await s.create('w', { kind: 'container', parent: img.topLayer! });
  });
  assert.equal((await containerFile(fresh, 'w', 'etc/os')).toString(), 'two\n');
  // The layer was made again (commit's gzip is deterministic here: the same bytes, whole this time).
  assert.equal(createHash('sha256').update(await readFile(file)).digest('hex'), blob.digest.slice(7), 'the cached blob is whole again');
});

function deadPid(): number {
  return Number(execFileSync('sh', ['-c', 'echo $$']).toString().trim());
}
