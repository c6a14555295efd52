// Images in the store (issue 12), through `ogd` as a user runs it, against real peers:
// images made by umoci, pushed by skopeo into a real distribution registry on
// 127.0.0.1; `ogd pull` gives containers whose tree is umoci's unpack of the same
// image (from the registry and from the OCI layout); a second image sharing the base
// fetches only its new layer (the registry's access log); a pull killed with SIGKILL
// and re-run downloads no byte twice, `ogd check` passing in between; corrupt blobs
// and a wrong diff_id leave the store exactly as it was; commit + push come back
// through skopeo and umoci as base + the new file; rmi, check of image records.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { sha256Of } from '../lib/image/digest.js';
import { openStore, type Store } from '../lib/index.js';
import { ogd, ogdOk } from './helpers/ogd-cli.js';
import { buildTestImages, umociUnpack } from './helpers/oci-images.js';
import { startRegistry, skipWithout, type TestRegistry } from './helpers/registry.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { compareManifests, manifest, type Manifest } from './helpers/tree.js';

const run = promisify(execFile);
const skopeo = (...args: string[]) => run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 1 << 26 });

interface Fixture {
  dir: string;
  layout: string;
  registry: TestRegistry;
  oracle: { base: Manifest; app: Manifest };
}

interface PullJson {
  id: string;
  names: string[];
  topLayer: string;
  digest: string;
  layers: string[];
  fetched: number[];
  applied: boolean[];
}

const sameTree = (want: Manifest, got: Manifest) => compareManifests(want, got, { rootFields: ['mtime', 'mode'] });

async function fixture(t: TestContext): Promise<Fixture | undefined> {
  if (skipUnlessRoot(t) || skipWithout(t, 'umoci', 'skopeo', 'docker-registry')) return undefined;
  const dir = await tempDir(t, 'ogd-store-images-');
  const layout = await buildTestImages(join(dir, 'oci'), dir);
  const registry = await startRegistry(t);
  for (const tag of ['base', 'app']) await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${registry.host}/test/img:${tag}`);
  const [base, app] = await Promise.all(['base', 'app'].map(async (tag) => manifest(await umociUnpack(`${layout}:${tag}`, join(dir, `unpacked-${tag}`)))));
  return { dir, layout, registry, oracle: { base: base!, app: app! } };
}

/** A fresh home and its CLI. */
async function home(f: Fixture, name: string, t: TestContext) {
  const h = join(f.dir, name);
  // In-process checks go through the library (a CLI process costs ~0.3 s of CPU); the
  // commands under test go through ogd. Closed before the fixture's temp dir goes.
  let opened: Promise<Store> | undefined;
  const lib = () => (opened ??= openStore(h));
  t.after(async () => {
    if (opened) await (await opened).cleanup();
  });
  const cli = (...args: string[]) => ogd(['--home', h, ...args]);
  const cliEnv = (env: Record<string, string>, ...args: string[]) => ogd(['--home', h, ...args], { env });
  const ok = (...args: string[]) => ogdOk(['--home', h, ...args]);
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ok('--json', ...args)) as T;
  return { home: h, cli, cliEnv, ok, json, lib };
}
type Home = Awaited<ReturnType<typeof home>>;

/** What a container on IMAGE (a name, as --parent takes it) shows through its overlay mount. */
async function containerTree(h: Home, container: string, image: string): Promise<Manifest> {
  const s = await h.lib();
  await s.create(container, { kind: 'container', parent: await s.resolveLayer(image) });
  const path = await s.mount(container);
  try {
    return await manifest(path);
  } finally {
    await s.unmount(container);
  }
}

/** Everything a user can see of a store: layers, images, and the files under its home that hold them. */
async function storeState(h: Home): Promise<string> {
  const s = await h.lib();
  const dirs = await Promise.all(['layers', 'images', 'overlay', 'incomplete', 'blobs/sha256'].map(async (d) => `${d}: ${(await readdir(join(h.home, d)).catch(() => [])).sort().join(',')}`));
  return [JSON.stringify(await s.list()), JSON.stringify(await s.images()), ...dirs].join('\n');
}

/** check() through the library: ok, or the problems. */
async function checked(h: Home): Promise<void> {
  assert.deepEqual((await (await h.lib()).check()).problems, []);
}

/** The manifest of an image in the fixture's OCI layout. */
async function layoutManifest(f: Fixture, tag: string): Promise<{ config: { digest: string }; layers: Array<{ digest: string; size: number }> }> {
  const idx = JSON.parse(await readFile(join(f.layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const d = idx.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!.digest;
  return JSON.parse(await readFile(join(f.layout, 'blobs', 'sha256', d.slice(7)), 'utf8')) as never;
}

async function flipByte(file: string, at: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

test('images in the store: ogd pull, images, rmi, commit, push against umoci, skopeo and a real registry', async (t) => {
  const started = Date.now();
  const f = await fixture(t);
  if (f !== undefined) t.diagnostic(`fixture (umoci images, skopeo pushes, umoci unpacks): ${Date.now() - started} ms`);
  if (f === undefined) return;
  await t.test('pull from the registry and from an OCI layout: containers show what umoci unpacks; a shared base is not fetched twice', (t) => pulls(t, f));
  await t.test('a pull killed with SIGKILL resumes without downloading a byte twice; ogd check passes in between', (t) => killed(t, f));
  await t.test('a corrupt blob or a wrong diff_id: ERR_OGD_DIGEST_MISMATCH, the store exactly as it was', (t) => corrupt(t, f));
  await t.test('commit + push: skopeo copies it back, umoci unpacks base + the new file; rmi refused while a container uses it', (t) => commitPush(t, f));
  await t.test('check: an image whose top layer is gone is damage; an interrupted rmi is finished by the next open', (t) => checkImages(t, f));
});

async function pulls(t: TestContext, f: Fixture): Promise<void> {
  const h = await home(f, 'home-pull', t);
  const ref = (tag: string) => `docker://${f.registry.host}/test/img:${tag}`;

  const base = await h.json<PullJson>('pull', ref('base'), '--tls-verify=false');
  assert.deepEqual(base.applied, [true, true]);
  assert.deepEqual(base.names, [`${f.registry.host}/test/img:base`]);
  const listed = await h.json<Array<{ id: string; names: string[]; topLayer: string; digest: string; size: number }>>('images');
  assert.equal(listed.length, 1);
  assert.deepEqual(Object.keys(listed[0]!).sort(), ['digest', 'id', 'names', 'size', 'topLayer']);
  assert.equal(listed[0]!.topLayer, base.layers[1]);
  assert.match(listed[0]!.digest, /^sha256:[0-9a-f]{64}$/);
  assert.ok(listed[0]!.size > 500_000, `size ${listed[0]!.size}`);
  // The image id is its config digest; layer ids are chain ids, so they are plain image layers in ls.
  const layers = await (await h.lib()).list();
  assert.deepEqual(layers.map((l) => [l.id, l.kind, l.parent ?? null]).sort(), [[base.layers[0], 'image', null], [base.layers[1], 'image', base.layers[0]]].sort());

  // --parent takes the image's name, short or whole.
  assert.deepEqual(sameTree(f.oracle.base, await containerTree(h, 'c-base', 'test/img:base')), []);

  // app = base + one layer: only that layer's blob (and the config) cross the wire.
  const mark = f.registry.log().length;
  const app = await h.json<PullJson>('pull', ref('app'), '--tls-verify=false');
  assert.deepEqual(app.applied, [false, false, true]);
  assert.deepEqual(app.layers.slice(0, 2), base.layers);
  const gets = f.registry.log().slice(mark).filter((l) => l.method === 'GET' && l.uri.includes('/blobs/'));
  const appConfig = `sha256:${app.id}`;
  assert.equal(gets.filter((l) => !l.uri.endsWith(appConfig)).length, 1, gets.map((l) => l.uri).join(' '));
  assert.equal(gets.filter((l) => !l.uri.endsWith(appConfig))[0]!.bytes, app.fetched[2]);
  assert.deepEqual(app.fetched.slice(0, 2), [0, 0]);
  assert.deepEqual(sameTree(f.oracle.app, await containerTree(h, 'c-app', `${f.registry.host}/test/img:app`)), []);

  // The same from the OCI layout, into another store.
  const o = await home(f, 'home-oci', t);
  const fromLayout = await o.json<PullJson>('pull', `oci:${f.layout}:app`);
  assert.deepEqual(fromLayout.applied, [true, true, true]);
  assert.deepEqual(fromLayout.names, ['app:latest']);
  assert.deepEqual(fromLayout.layers, app.layers, 'the same chain ids whatever the source');
  assert.deepEqual(sameTree(f.oracle.app, await containerTree(o, 'c', 'app')), []);
  await checked(o);
  await checked(h);

  // A reference that does not parse makes no store.
  const none = await home(f, 'home-none', t);
  const bad = await none.cli('--json', 'pull', 'registry.example/x:1');
  assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, 'ERR_OGD_INVALID_REFERENCE');
  await assert.rejects(stat(none.home), { code: 'ENOENT' });
}

async function killed(t: TestContext, f: Fixture): Promise<void> {
  const ref = `docker://${f.registry.host}/test/img:app`;
  // Killed at chosen points: while its first layer is applied (its blob complete, the
  // layer not yet committed), and with every layer in but no image record yet.
  for (const point of ['after-rename', 'pull-layers-done']) {
    await t.test(point, async () => {
      const h = await home(f, `home-kill-${point}`, t);
      const blobsDir = join(h.home, 'blobs', 'sha256');
      const r = await h.cliEnv({ OGD_TEST_KILL_AT: point }, 'pull', ref, '--tls-verify=false');
      assert.equal(r.signal, 'SIGKILL', r.stderr);
      // Blob bytes kept for the next pull: whole blobs and partial downloads.
      const kept = new Map<string, number>();
      for (const n of await readdir(blobsDir)) kept.set(n.slice(0, 64), (kept.get(n.slice(0, 64)) ?? 0) + (await stat(join(blobsDir, n))).size);
      const check = await h.cli('check');
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.deepEqual(await (await h.lib()).images(), [], 'no image is listed before its pull finished');
      const mark = f.registry.log().length;
      const again = await h.json<PullJson>('pull', ref, '--tls-verify=false');
      const { layers } = await layoutManifest(f, 'app');
      const gets = f.registry.log().slice(mark).filter((l) => l.method === 'GET' && l.uri.includes('/blobs/') && !l.uri.endsWith(`sha256:${again.id}`));
      // No byte twice: a whole kept blob is not asked for, a partial one only for its rest.
      for (const l of layers) {
        const hex = l.digest.slice(7);
        const asked = gets.filter((g) => g.uri.endsWith(hex));
        const have = kept.get(hex) ?? 0;
        if (have === l.size) assert.equal(asked.length, 0, `blob ${hex.slice(0, 12)} was complete: not fetched again`);
        else assert.deepEqual(asked.map((g) => g.bytes), again.applied[layers.indexOf(l)] ? [l.size - have] : [], `blob ${hex.slice(0, 12)}: only what was missing`);
      }
      assert.ok(kept.size > 0, 'the killed pull had kept blobs');
      if (point === 'pull-layers-done') assert.deepEqual(again.applied, [false, false, false]);
      else assert.equal(again.applied[0], true, 'the killed layer was removed at the next open and applied again');
      await checked(h);
      // The layer applied again after the kill is the one to look at.
      if (point === 'after-rename') assert.deepEqual(sameTree(f.oracle.app, await containerTree(h, 'c', 'test/img:app')), []);
    });
  }
  await t.test('an abort (what Ctrl-C and SIGTERM fire) while a layer is applied', async () => {
    const h = await home(f, 'home-abort', t);
    const s = await h.lib();
    const controller = new AbortController();
    const pulling = s.pull(ref, { tlsVerify: false, signal: controller.signal, onProgress: (p) => p.layer === 1 && p.phase === 'applying' && controller.abort() });
    await assert.rejects(pulling, { code: 'ABORT_ERR' });
    assert.deepEqual(await s.images(), []);
    assert.equal((await s.list()).length, 1, 'the base layer stays, the one being applied is gone');
    await checked(h);
    const again = await s.pull(ref, { tlsVerify: false });
    assert.deepEqual(again.applied, [false, true, true]);
  });
}

async function corrupt(t: TestContext, f: Fixture): Promise<void> {
  const h = await home(f, 'home-corrupt', t);
  await h.ok('pull', `docker://${f.registry.host}/test/img:base`, '--tls-verify=false');
  const { layers, config } = await layoutManifest(f, 'app');
  const top = layers[2]!;
  const state = () => storeState(h);
  const before = await state();
  const refused = (r: { code: number | null; stdout: string; stderr: string }) => {
    assert.equal(r.code, 125, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'ERR_OGD_DIGEST_MISMATCH', r.stderr);
  };

  await t.test('a flipped byte in a layer blob in the registry', async () => {
    const at = Math.floor(top.size / 2);
    await flipByte(f.registry.blobData(top.digest), at);
    try {
      refused(await h.cli('--json', 'pull', `docker://${f.registry.host}/test/img:app`, '--tls-verify=false'));
    } finally {
      await flipByte(f.registry.blobData(top.digest), at);
    }
    assert.equal(await state(), before);
    await checked(h);
  });

  await t.test("a wrong diff_id in the config (an OCI layout whose blobs are all intact)", async () => {
    const copy = join(f.dir, 'oci-bad-diffid');
    await cp(f.layout, copy, { recursive: true });
    const blob = (d: string) => join(copy, 'blobs', 'sha256', d.slice(7));
    const cfg = JSON.parse(await readFile(blob(config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } };
    cfg.rootfs.diff_ids[2] = sha256Of('not this layer');
    const cfgBytes = Buffer.from(JSON.stringify(cfg));
    await writeFile(blob(sha256Of(cfgBytes)), cfgBytes);
    const m = { ...(await layoutManifest(f, 'app')), config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256Of(cfgBytes), size: cfgBytes.length } };
    const mBytes = Buffer.from(JSON.stringify(m));
    await writeFile(blob(sha256Of(mBytes)), mBytes);
    const desc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Of(mBytes), size: mBytes.length, annotations: { 'org.opencontainers.image.ref.name': 'app' } };
    await writeFile(join(copy, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [desc] }));
    const r = await h.cli('--json', 'pull', `oci:${copy}:app`);
    refused(r);
    assert.match(r.stderr, /diff_id/);
    assert.equal(await state(), before);
  });
}

async function commitPush(t: TestContext, f: Fixture): Promise<void> {
  const h = await home(f, 'home-commit', t);
  await h.ok('pull', `docker://${f.registry.host}/test/img:base`, '--tls-verify=false');
  await h.ok('create', 'c1', '--rw', '--parent', 'test/img:base');
  const s = await h.lib();
  const rootfs = await s.mount('c1');
  await writeFile(join(rootfs, 'hello.txt'), 'hello from a container\n');
  await rm(join(rootfs, 'etc/conf.d/a'));
  await s.unmount('c1');

  const committed = await h.json<{ id: string; names: string[]; topLayer: string; layers: string[] }>('commit', 'c1', 'mine:v1');
  assert.deepEqual(committed.names, ['mine:v1']);
  assert.equal(committed.layers.length, 3);
  const pushed = await h.json<{ digest: string; layers: Array<{ sent: boolean }> }>('push', 'mine:v1', `docker://${f.registry.host}/test/mine:v1`, '--tls-verify=false');
  assert.equal(pushed.layers.length, 3);

  const out = join(f.dir, 'copied');
  await skopeo('copy', '--src-tls-verify=false', `docker://${f.registry.host}/test/mine:v1`, `oci:${out}:v1`);
  const theirs = await manifest(await umociUnpack(`${out}:v1`, join(f.dir, 'unpacked-committed')));
  const expected = new Map(f.oracle.base);
  const name = (k: string) => Buffer.from(k, 'hex').toString();
  for (const k of [...expected.keys()]) if (name(k) === 'etc/conf.d/a') expected.delete(k);
  const hello = [...theirs.values()].find((e) => name(e.path) === 'hello.txt');
  assert.ok(hello !== undefined, 'hello.txt is in the pushed image');
  assert.equal(await readFile(join(f.dir, 'unpacked-committed', 'rootfs', 'hello.txt'), 'utf8'), 'hello from a container\n');
  expected.set(hello.path, hello);
  assert.deepEqual(compareManifests(expected, theirs, { rootFields: ['mtime', 'mode'], mtimeTypes: ['file', 'symlink', 'fifo'] }), []);

  // The container stays usable; its image cannot be removed while it stands on it.
  assert.equal(await readFile(join(await s.mount('c1'), 'hello.txt'), 'utf8'), 'hello from a container\n');
  await s.unmount('c1');
  const inUse = await h.cli('--json', 'rmi', 'test/img:base');
  assert.notEqual(inUse.code, 0);
  assert.equal((JSON.parse(inUse.stdout) as { error: { code: string } }).error.code, 'ERR_OGD_IMAGE_IN_USE');
  const layerOfImage = await h.cli('--json', 'remove', committed.topLayer);
  assert.equal((JSON.parse(layerOfImage.stdout) as { error: { code: string } }).error.code, 'ERR_OGD_LAYER_IN_USE');

  // mine:v1 goes with its own layer; base's layers stay for base.
  await h.ok('rmi', 'mine:v1');
  assert.deepEqual((await s.images()).map((i) => i.names), [[`${f.registry.host}/test/img:base`]]);
  assert.deepEqual((await s.list()).map((l) => l.id).sort(), [...committed.layers.slice(0, 2), 'c1'].sort());
  await checked(h);
}

async function checkImages(t: TestContext, f: Fixture): Promise<void> {
  await t.test('an image whose top layer is gone', async () => {
    const h = await home(f, 'home-check', t);
    const img = await h.json<PullJson>('pull', `oci:${f.layout}:base`);
    await rm(join(h.home, 'layers', img.topLayer));
    await rm(join(h.home, 'overlay', img.topLayer), { recursive: true });
    const r = await h.cli('--json', 'check');
    assert.equal(r.code, 1);
    const problems = (JSON.parse(r.stdout) as { problems: Array<{ kind: string; id?: string }> }).problems;
    assert.deepEqual(problems.map((p) => [p.kind, p.id]), [['image-layer-missing', img.id]]);
    await h.ok('check', '--repair');
    assert.deepEqual(await (await h.lib()).images(), []);
    await checked(h);
  });

  await t.test('an rmi killed after marking its record', async () => {
    const h = await home(f, 'home-rmi-kill', t);
    await h.ok('pull', `oci:${f.layout}:app`);
    const r = await h.cliEnv({ OGD_TEST_KILL_AT: 'rmi-marked' }, 'rmi', 'app');
    assert.equal(r.signal, 'SIGKILL');
    // The next command's open finishes the removal.
    const s = await h.lib();
    assert.deepEqual(await s.images(), []);
    assert.deepEqual(await s.list(), []);
    await checked(h);
  });
}
