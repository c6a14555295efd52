// Disk accounting and reclaiming space (issue 22 §2), against `du -sx` and a real
// registry: five images sharing a base pulled from docker-registry on 127.0.0.1 (pushed
// there by skopeo from a layout written by hand); `rmi` of four and `prune` leave what
// a fresh store holding only the fifth takes (du, within 5%); `ogd df --json` totals
// agree with du (within 2%); rmi/tag/untag as podman has them; blob policies; and a
// prune racing pulls, creates and mounts in other processes breaks nothing (`check`
// after each round; 20 rounds with OGD_STRESS=1).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { openStore, type Store, type StoreDf } from '../lib/index.js';
import { libraryChild, ogd, ogdOk } from './helpers/ogd-cli.js';
import { startRegistry, skipWithout, type TestRegistry } from './helpers/registry.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { writeSharedBaseImages } from './helpers/shared-base-images.js';

const run = promisify(execFile);
const APPS = 5;

interface Fixture {
  dir: string;
  registry: TestRegistry;
  layout: string;
  ref: (tag: string) => string;
}

async function fixture(t: TestContext): Promise<Fixture | undefined> {
  if (skipUnlessRoot(t) || skipWithout(t, 'skopeo', 'docker-registry', 'du')) return undefined;
  const dir = await tempDir(t, 'ogd-space-');
  const layout = join(dir, 'oci');
  const tags = await writeSharedBaseImages(layout, APPS);
  const registry = await startRegistry(t);
  await Promise.all(tags.map((tag) => run('skopeo', ['--insecure-policy', 'copy', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${registry.host}/space/${tag}:v1`])));
  return { dir, registry, layout, ref: (tag) => `docker://${registry.host}/space/${tag}:v1` };
}

/** `du -sx` in bytes: allocated blocks, each inode once, this filesystem only. */
async function du(path: string): Promise<number> {
  const { stdout } = await run('du', ['-sxB1', path]);
  return Number(stdout.split('\t')[0]);
}

function within(actual: number, expected: number, fraction: number, what: string): void {
  const off = Math.abs(actual - expected) / expected;
  assert.ok(off <= fraction, `${what}: ${actual} against ${expected} is ${(off * 100).toFixed(2)}% off (at most ${fraction * 100}%)`);
}

async function opened(t: TestContext, home: string, opts: Parameters<typeof openStore>[1] = {}): Promise<Store> {
  const s = await openStore(home, opts);
  t.after(() => s.cleanup());
  return s;
}

const pullOpts = { tlsVerify: false } as const;

test('disk accounting and reclaiming space', async (t) => {
  const f = await fixture(t);
  if (f === undefined) return;
  await t.test('5 images on one base: rmi 4 + prune leave what a fresh store of the fifth takes (du, 5%); df --json agrees with du (2%)', (t) => reclaim(t, f));
  await t.test('rmi of a name untags, tag/untag, rmi by id with several names, rmi --force, rmi of several at once', (t) => names(t, f));
  await t.test("blob policies: 'none' keeps no blob and a push says it recompressed; 'all' keeps them past rmi until prune", (t) => blobPolicies(t, f));
  await t.test('a record without a size (an older store) is measured once, and df says so', (t) => oldRecords(t, f));
  await t.test(`prune --all racing pull + create + mount in other processes: nothing broken (${process.env['OGD_STRESS'] === '1' ? 20 : 2} rounds)`, (t) => race(t, f));
});

async function reclaim(t: TestContext, f: Fixture): Promise<void> {
  const home = join(f.dir, 'reclaim');
  const s = await opened(t, home);
  for (let i = 1; i <= APPS; i++) await s.pull(f.ref(`app${i}`), pullOpts);
  // The overlay driver's children hardlink their parent's files: du counts them once, and so must df.
  const full = JSON.parse(await ogdOk(['--home', home, '--json', 'df'])) as StoreDf;
  within(full.total, await du(home), 0.02, 'df of 5 images against du');
  assert.equal(full.images.count, APPS);
  assert.equal(full.layers.count, APPS + 1);
  assert.ok(full.images.shared > 0 && full.images.shared < full.images.size, 'the base is shared');
  const { removed } = JSON.parse(await ogdOk(['--home', home, '--json', 'rmi', ...[1, 2, 3].map((i) => `space/app${i}:v1`)])) as { removed: Array<{ removed: boolean }> };
  assert.deepEqual(removed.map((r) => r.removed), [true, true, true]);
  // The fourth loses its name and so is dangling: prune's to take.
  await ogdOk(['--home', home, 'untag', 'space/app4:v1']);
  const before = await s.df();
  const pruned = JSON.parse(await ogdOk(['--home', home, '--json', 'prune'])) as { images: string[]; layers: string[]; reclaimed: number };
  assert.equal(pruned.images.length, 1);
  assert.equal(pruned.layers.length, 1, "the dangling image's own layer, not the base");
  assert.ok(pruned.reclaimed > 256 * 1024, `reclaimed ${pruned.reclaimed}`);
  const after = await s.df();
  assert.ok(after.total < before.total - 256 * 1024);
  const kept = await du(home);
  within(after.total, kept, 0.02, 'df after prune against du');
  assert.equal(after.images.count, 1);
  assert.deepEqual((await s.check()).problems, []);

  const fresh = join(f.dir, 'fresh');
  const s2 = await opened(t, fresh);
  await s2.pull(f.ref(`app${APPS}`), pullOpts);
  within(kept, await du(fresh), 0.05, 'du after rmi + prune against a fresh store of the kept image');
  const exact = await s.df({ exact: true });
  within(exact.total, kept, 0.02, 'df --exact against du');
  t.diagnostic(`du: 5 images ${full.total}, after rmi 3 + untag 1 + prune ${kept}, fresh store of the fifth ${await du(fresh)}`);
}

async function names(t: TestContext, f: Fixture): Promise<void> {
  const home = join(f.dir, 'names');
  const cli = (...args: string[]) => ogd(['--home', home, ...args]);
  const s = await opened(t, home);
  const img = await s.pull(f.ref('app1'), pullOpts);
  await ogdOk(['--home', home, 'tag', 'space/app1:v1', 'mine:one', 'mine:two']);
  assert.deepEqual((await s.image(img.id)).names.sort(), [f.ref('app1').slice('docker://'.length), 'mine:one', 'mine:two'].sort());
  // rmi of one name of several: an untag; the image and its layers stay.
  assert.deepEqual(await s.removeImage('mine:one'), { id: img.id, untagged: ['mine:one'], removed: false, containers: [] });
  assert.equal((await s.images()).length, 1);
  assert.ok(await s.exists(img.topLayer!));
  // By id, with two names left: refused, unless forced.
  await assert.rejects(s.removeImage(img.id.slice(0, 12)), (err: Error & { code?: string }) => err.code === 'ERR_OGD_IMAGE_IN_USE' && /2 names/.test(err.message));
  // A name moves: tagging another image with mine:two takes it from this one.
  const other = await s.pull(f.ref('app2'), pullOpts);
  await s.tag(other.id, 'mine:two');
  assert.ok(!(await s.image(img.id)).names.includes('mine:two'));
  assert.deepEqual((await s.image('mine:two')).id, other.id);
  // untag of a name the image does not have: refused, nothing changed.
  await assert.rejects(s.untag(img.id, ['mine:nope']), { code: 'ERR_OGD_IMAGE_NOT_FOUND' });
  // A container on the image: rmi refused; --force removes the (unmounted) container and the image.
  await s.create('c1', { kind: 'container', parent: img.topLayer! });
  await assert.rejects(s.removeImage(f.ref('app1').slice('docker://'.length)), (err: Error & { code?: string }) => err.code === 'ERR_OGD_IMAGE_IN_USE' && /container "c1"/.test(err.message));
  assert.ok(await s.exists('c1'));
  const forced = (JSON.parse(await ogdOk(['--home', home, '--json', 'rmi', '--force', img.id])) as { removed: Array<{ removed: boolean; containers: string[] }> }).removed;
  assert.deepEqual([forced[0]!.removed, forced[0]!.containers], [true, ['c1']]);
  assert.equal(await s.exists('c1'), false);
  assert.equal(await s.exists(img.topLayer!), false);
  // The shared base stays for the other image.
  assert.ok(await s.exists(other.layers[0]!));
  // Several at once: one missing name fails the command (non-zero) after the others ran.
  await s.tag(other.id, 'mine:four');
  const several = await cli('rmi', 'mine:four', 'no-such:image', 'mine:two');
  assert.equal(several.code, 1, 'podman-rmi: 1 when one did not exist and nothing else failed');
  assert.match(several.stderr, /ERR_OGD_IMAGE_NOT_FOUND/);
  assert.deepEqual((await s.image(other.id)).names, [f.ref('app2').slice('docker://'.length)]);
  // untag of every name: dangling, and a plain prune takes it.
  await ogdOk(['--home', home, 'untag', other.id]);
  assert.deepEqual((await s.image(other.id)).names, []);
  const pruned = await s.prune();
  assert.deepEqual(pruned.images, [other.id]);
  assert.deepEqual(await s.images(), []);
  assert.deepEqual(await s.list(), []);
  assert.deepEqual(await readdir(join(home, 'blobs', 'sha256')), []);
  assert.deepEqual((await s.check()).problems, []);
}

async function blobPolicies(t: TestContext, f: Fixture): Promise<void> {
  const home = join(f.dir, 'blobs-none');
  const none = await opened(t, home, { keepBlobs: 'none' });
  const img = await none.pull(f.ref('app1'), pullOpts);
  // Only the manifest and the config stay (what repair rebuilds a record from).
  const metaBlobs = [img.digest.slice(7), img.id].sort();
  assert.deepEqual((await readdir(join(home, 'blobs', 'sha256'))).sort(), metaBlobs, "'none' keeps no layer blob once the image is recorded");
  const pushed = await none.push(img.id, `oci:${join(f.dir, 'pushed')}:app1`);
  assert.deepEqual(pushed.layers.map((l) => l.recompressed), [true, true]);
  assert.deepEqual((await readdir(join(home, 'blobs', 'sha256'))).sort(), metaBlobs, 'nor what push compressed again');
  // The same layer content came back: its diff_ids (the config) are the pulled image's.
  const pushedIndex = JSON.parse(await readFile(join(f.dir, 'pushed', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await readFile(join(f.dir, 'pushed', 'blobs', 'sha256', pushedIndex.manifests[0]!.digest.slice(7)), 'utf8')) as { config: { digest: string } };
  assert.notEqual(pushed.digest, img.digest, 'a recompressed push is another manifest');
  t.diagnostic(`'none' push: config ${manifest.config.digest === `sha256:${img.id}` ? 'unchanged' : 'changed'} (diff_ids ${manifest.config.digest === `sha256:${img.id}` ? 'equal' : 'differ'})`);

  const allHome = join(f.dir, 'blobs-all');
  const all = await opened(t, allHome, { keepBlobs: 'all' });
  const a = await all.pull(f.ref('app1'), pullOpts);
  const kept = (await readdir(join(allHome, 'blobs', 'sha256'))).length;
  assert.equal(kept, 4, 'two layer blobs, the manifest and the config');
  const kept2 = await all.push(a.id, `oci:${join(f.dir, 'pushed-all')}:app1`);
  assert.equal(kept2.digest, a.digest, 'with its blobs kept, a push sends the pulled bytes');
  assert.deepEqual(kept2.layers.map((l) => l.recompressed), [false, false]);
  await all.removeImage(a.id);
  assert.equal((await readdir(join(allHome, 'blobs', 'sha256'))).length, 4, "'all' keeps the blobs of a removed image");
  const again = await all.pull(f.ref('app1'), pullOpts);
  assert.deepEqual(again.fetched, [0, 0], 'so pulling it again fetches nothing');
  await all.removeImage(a.id);
  const df = await all.df();
  assert.equal(df.blobs.reclaimable, df.blobs.size);
  const pruned = await all.prune();
  assert.equal(pruned.blobs.length, 4);
  assert.deepEqual(await readdir(join(allHome, 'blobs', 'sha256')), []);
}

async function oldRecords(t: TestContext, f: Fixture): Promise<void> {
  const home = join(f.dir, 'old');
  const s = await opened(t, home);
  const img = await s.pull(f.ref('app3'), pullOpts);
  const file = join(home, 'layers', img.topLayer!);
  const rec = JSON.parse(await readFile(file, 'utf8')) as { diskSize?: number };
  const recorded = rec.diskSize!;
  assert.ok(recorded > 256 * 1024);
  delete rec.diskSize;
  await writeFile(file, JSON.stringify(rec));
  const first = await s.df();
  assert.equal(first.measured, 1);
  const text = await ogdOk(['--home', home, 'df']);
  assert.doesNotMatch(text, /measured now/, 'the size was written back: measured once');
  assert.equal((JSON.parse(await readFile(file, 'utf8')) as { diskSize?: number }).diskSize, recorded);
}

const CHILD = `
const [home, op, arg, id] = process.argv.slice(1);
const s = await ogd.openStore(home);
try {
  if (op === 'pull') await s.pull(arg, { tlsVerify: false });
  if (op === 'container') {
    const img = await s.image(arg);
    await s.create(id, { kind: 'container', parent: img.topLayer });
    await s.mount(id);
    await s.unmount(id);
  }
  console.log(JSON.stringify({ ok: true }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code, message: err.message }));
} finally {
  await s.cleanup();
}
`;

function child(args: string[]): Promise<{ ok: boolean; code?: string; message?: string }> {
  const p = libraryChild(CHILD, args);
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    p.on('error', reject);
    p.on('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as { ok: boolean });
      } catch {
        reject(new Error(`child ${args.join(' ')}: ${out} ${err}`));
      }
    });
  });
}

async function race(t: TestContext, f: Fixture): Promise<void> {
  const rounds = process.env['OGD_STRESS'] === '1' ? 20 : 2;
  const home = join(f.dir, 'race');
  const s = await opened(t, home);
  await s.pull(f.ref('app1'), pullOpts);
  let pulls = 0;
  let containers = 0;
  let prunedImages = 0;
  for (let round = 0; round < rounds; round++) {
    const app = `app${(round % (APPS - 1)) + 2}`;
    // Before the round: an image whose container is made and mounted while a prune --all runs.
    const target = `space/app1:v1`;
    if ((await s.images()).length === 0 || !(await s.images()).some((i) => i.names.includes(`${f.registry.host}/${target}`))) await s.pull(f.ref('app1'), pullOpts);
    const [pulled, made, pruned] = await Promise.all([
      child([home, 'pull', f.ref(app)]),
      child([home, 'container', target, `c${round}`]),
      ogd(['--home', home, '--json', 'prune', '--all', '--containers']),
    ]);
    // A pull never fails for a prune: the layers it found or made are held until its image is recorded.
    assert.deepEqual(pulled, { ok: true }, `round ${round}: pull of ${app}`);
    // A create may find its image pruned before it began (a clean not-found), never half a layer.
    if (!made.ok) assert.match(made.code ?? '', /ERR_OGD_(IMAGE|LAYER)_NOT_FOUND/, `round ${round}: ${made.message}`);
    assert.equal(pruned.code, 0, pruned.stderr);
    pulls++;
    if (made.ok) containers++;
    prunedImages += (JSON.parse(pruned.stdout) as { images: string[] }).images.length;
    const report = await s.check();
    assert.deepEqual(report.problems, [], `round ${round}`);
    // Every image listed can still be used: its layers are all there.
    for (const img of await s.images()) for (const l of img.layers) assert.ok(await s.exists(l), `round ${round}: image ${img.names[0]} lost layer ${l}`);
    for (const l of await s.list()) if (l.parent !== undefined) assert.ok(await s.exists(l.parent), `round ${round}: ${l.id} lost its parent`);
  }
  t.diagnostic(`${rounds} rounds: ${pulls} pulls ok, ${containers} containers made and mounted, ${prunedImages} images pruned meanwhile, check clean after each`);
}
