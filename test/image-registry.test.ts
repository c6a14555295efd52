// The image transport against real peers: images made by umoci, pushed by skopeo into
// a real distribution registry (Debian's docker-registry) on 127.0.0.1, pulled by
// lib/image into a raw overlay driver, and compared entry by entry with umoci's own
// unpack of the same image; the same from the OCI layout; shared base layers not
// fetched twice (counted in the registry's access log); corrupt blobs and configs
// refused with ERR_OGD_DIGEST_MISMATCH leaving the driver home as it was; and a
// commit pushed back, copied out by skopeo and unpacked by umoci.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { cp, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { createDriver } from '../lib/index.js';
import type { Driver } from '../lib/types.js';
import { commitImage } from '../lib/image/commit.js';
import type { Image } from '../lib/image/image.js';
import { pullImage, type PullOptions } from '../lib/image/pull.js';
import { pushImage } from '../lib/image/push.js';
import { driverTarget } from './helpers/driver-target.js';
import { sha256Of } from '../lib/image/digest.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { compareManifests, manifest, type Manifest } from './helpers/tree.js';
import { startRegistry, skipWithout, type TestRegistry } from './helpers/registry.js';
import { addDebianImage, buildTestImages, umoci, umociUnpack } from './helpers/oci-images.js';
import { debianRootfs } from './helpers/rootfs.js';
import { startTokenServer } from './helpers/token-server.js';

const run = promisify(execFile);

async function skopeo(...args: string[]): Promise<void> {
  await run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 1 << 26 });
}

/** A raw driver in its own temp dir, cleaned up (unmounted) before the dir is removed. */
async function newDriver(t: TestContext): Promise<Driver> {
  let driver: Driver | undefined;
  t.after(() => driver?.cleanup()); // after hooks run in order: this one before tempDir's
  driver = await createDriver('overlay', join(await tempDir(t, 'ogd-image-home-'), 'home'));
  return driver;
}

/** What a container on `top` shows, through a real overlay mount. */
async function containerTree(driver: Driver, top: string, name: string): Promise<Manifest> {
  await driver.createReadWrite(name, top);
  const path = await driver.get(name);
  try {
    return await manifest(path);
  } finally {
    await driver.put(name);
  }
}

const sameTree = (want: Manifest, got: Manifest) => compareManifests(want, got, { rootFields: ['mtime', 'mode'] });

/** Layer dirs of a driver home and what is in each: "as it was" means this is unchanged. */
async function homeState(driver: Driver): Promise<string[]> {
  const out: string[] = [];
  for (const id of (await readdir(driver.home)).sort()) out.push(`${id}: ${(await readdir(join(driver.home, id))).sort().join(',')}`);
  return out;
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

interface Fixture {
  dir: string;
  layout: string;
  registry: TestRegistry;
  oracle: { base: Manifest; app: Manifest };
}

async function fixture(t: TestContext): Promise<Fixture | undefined> {
  if (skipUnlessRoot(t) || skipWithout(t, 'umoci', 'skopeo', 'docker-registry')) return undefined;
  const dir = await tempDir(t, 'ogd-image-');
  const layout = await buildTestImages(join(dir, 'oci'), dir);
  const registry = await startRegistry(t);
  for (const tag of ['base', 'app']) await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${registry.host}/test/img:${tag}`);
  const [base, app] = await Promise.all(['base', 'app'].map(async (tag) => manifest(await umociUnpack(`${layout}:${tag}`, join(dir, `unpacked-${tag}`)))));
  return { dir, layout, registry, oracle: { base: base!, app: app! } };
}

test('image transport against umoci, skopeo and a real registry', async (t) => {
  const f = await fixture(t);
  if (f === undefined) return;
  await t.test('pull from a registry and from an OCI layout gives the tree umoci unpacks; shared layers are not fetched again', (t) => pulls(t, f));
  await t.test('corrupt blobs and configs are refused with ERR_OGD_DIGEST_MISMATCH and leave the driver home as it was', (t) => corruption(t, f));
  await t.test('commit a container, push it to the registry and to an OCI layout: skopeo copies it back and umoci unpacks base + the new file', (t) => commitPush(t, f));
  await t.test('an abort removes the half-applied layer and keeps the verified blobs; a partial download resumes with a Range request', (t) => abortResume(t, f));
  await t.test('a registry with htpasswd basic auth: refused without credentials, pulled and pushed with creds or an auth file', (t) => basicAuth(t, f));
  await t.test('a registry with bearer token auth: tokens fetched from the challenge realm for pull and push scopes', (t) => bearerAuth(t, f));
});

async function pulls(t: TestContext, f: Fixture): Promise<void> {
  const opts: PullOptions = { blobCache: join(f.dir, 'cache'), tlsVerify: false };

  await t.test('docker:// pull of base', async () => {
    const driver = await newDriver(t);
    const phases: string[] = [];
    const base = await pullImage(`docker://${f.registry.host}/test/img:base`, driverTarget(driver), { ...opts, onProgress: (p) => phases.push(`${p.layer}:${p.phase}`) });
    assert.equal(base.layers.length, 2);
    assert.deepEqual(base.applied, [true, true]);
    assert.ok(phases.includes('0:done') && phases.includes('1:done'), phases.join(' '));
    // Layer ids: the hex of the OCI chain ids, computed here from the config's diff_ids.
    const config = JSON.parse(base.configBytes.toString()) as { rootfs: { diff_ids: string[] } };
    const [d0, d1] = config.rootfs.diff_ids;
    assert.deepEqual(
      base.layers.map((l) => l.id),
      [d0!.slice(7), sha256Of(`${d0} ${d1}`).slice(7)],
    );
    assert.deepEqual(sameTree(f.oracle.base, await containerTree(driver, base.layers[1]!.id, 'c-base')), []);

    // app = base + one layer: only the new layer's blob (and the config) cross the wire.
    const before = f.registry.log().length;
    const app = await pullImage(`docker://${f.registry.host}/test/img:app`, driverTarget(driver), opts);
    assert.deepEqual(app.applied, [false, false, true]);
    assert.deepEqual(app.fetched.slice(0, 2), [0, 0]);
    const blobGets = f.registry.log().slice(before).filter((l) => l.method === 'GET' && l.uri.includes('/blobs/'));
    assert.deepEqual(blobGets.map((l) => l.uri.split('/blobs/')[1]).sort(), [app.configDigest, app.layers[2]!.blob.digest].sort());
    assert.equal(blobGets.find((l) => l.uri.endsWith(app.layers[2]!.blob.digest))!.bytes, app.layers[2]!.blob.size);
    assert.equal(app.fetched[2], app.layers[2]!.blob.size);
    assert.deepEqual(sameTree(f.oracle.app, await containerTree(driver, app.layers[2]!.id, 'c-app')), []);

    // Pulling again costs no blob at all.
    const again = f.registry.log().length;
    const second = await pullImage(`docker://${f.registry.host}/test/img:app`, driverTarget(driver), opts);
    assert.deepEqual(second.applied, [false, false, false]);
    assert.equal(f.registry.log().slice(again).filter((l) => l.uri.includes('/blobs/') && l.method === 'GET' && !l.uri.endsWith(app.configDigest)).length, 0);
  });

  await t.test('oci: pull of app', async () => {
    const driver = await newDriver(t);
    const app = await pullImage(`oci:${f.layout}:app`, driverTarget(driver), opts);
    assert.deepEqual(app.applied, [true, true, true]);
    assert.deepEqual(sameTree(f.oracle.app, await containerTree(driver, app.layers[2]!.id, 'c-app')), []);
  });

  await t.test('an index resolves to the platform asked for, and says what it has when nothing matches', async () => {
    const driver = await newDriver(t);
    // An index of one amd64 and one arm64 entry, both pointing at app's manifest.
    const idx = JSON.parse(await readFile(join(f.layout, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
    const appDesc = idx.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'app')!;
    const entry = (architecture: string) => ({ ...appDesc, annotations: undefined, platform: { os: 'linux', architecture } });
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [entry('amd64'), entry('arm64')] }));
    const digest = sha256Of(index);
    await writeFile(join(f.layout, 'blobs', 'sha256', digest.slice(7)), index);
    idx.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } } as never);
    await writeFile(join(f.layout, 'index.json'), JSON.stringify(idx));
    const got = await pullImage(`oci:${f.layout}:multi`, driverTarget(driver), { ...opts, platform: 'linux/arm64' });
    assert.equal(got.layers.length, 3);
    await assert.rejects(pullImage(`oci:${f.layout}:multi`, driverTarget(driver), { ...opts, platform: 'linux/s390x' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_OGD_INVALID_IMAGE');
      assert.match(err.message, /linux\/s390x.*available: linux\/amd64, linux\/arm64/);
      return true;
    });
  });
}

async function corruption(t: TestContext, f: Fixture): Promise<void> {
  const cache = join(f.dir, 'cache-corrupt');
  const driver = await newDriver(t);
  // The base is in place; app's third layer is what goes wrong.
  const base = await pullImage(`oci:${f.layout}:base`, driverTarget(driver), { blobCache: cache });
  const app = JSON.parse(await readFile(join(f.layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const appManifestDigest = app.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'app')!.digest;
  const appManifest = JSON.parse(await readFile(join(f.layout, 'blobs', 'sha256', appManifestDigest.slice(7)), 'utf8')) as { layers: Array<{ digest: string; size: number }>; config: { digest: string } };
  const top = appManifest.layers[2]!;
  const state = await homeState(driver);
  const mismatch = { code: 'ERR_OGD_DIGEST_MISMATCH' };

  await t.test('a flipped byte in a layer blob in the registry', async () => {
    await flipByte(f.registry.blobData(top.digest), Math.floor(top.size / 2));
    try {
      await assert.rejects(pullImage(`docker://${f.registry.host}/test/img:app`, driverTarget(driver), { blobCache: cache, tlsVerify: false }), mismatch);
    } finally {
      await flipByte(f.registry.blobData(top.digest), Math.floor(top.size / 2)); // the next tests pull it
    }
    assert.deepEqual(await homeState(driver), state);
    assert.deepEqual((await readdir(join(cache, 'sha256'))).filter((n) => n.startsWith(top.digest.slice(7))), [], 'nothing of the bad blob is cached');
  });

  await t.test('a flipped byte in a layer blob in an OCI layout (gzip header, deflate data, CRC trailer)', async () => {
    const copy = join(f.dir, 'oci-bad-blob');
    await cp(f.layout, copy, { recursive: true });
    const file = join(copy, 'blobs', 'sha256', top.digest.slice(7));
    for (const at of [4, Math.floor(top.size / 2), top.size - 6]) {
      await flipByte(file, at);
      await assert.rejects(pullImage(`oci:${copy}:app`, driverTarget(driver), { blobCache: cache }), mismatch, `byte ${at}`);
      await flipByte(file, at);
      assert.deepEqual(await homeState(driver), state);
    }
  });

  await t.test('a wrong diff_id in the config', async () => {
    const copy = join(f.dir, 'oci-bad-diffid');
    await cp(f.layout, copy, { recursive: true });
    const blob = (d: string) => join(copy, 'blobs', 'sha256', d.slice(7));
    const config = JSON.parse(await readFile(blob(appManifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } };
    config.rootfs.diff_ids[2] = sha256Of('not this layer');
    const configBytes = Buffer.from(JSON.stringify(config));
    const configDigest = sha256Of(configBytes);
    await writeFile(blob(configDigest), configBytes);
    const m = { ...appManifest, config: { ...appManifest.config, digest: configDigest, size: configBytes.length } };
    const mBytes = Buffer.from(JSON.stringify(m));
    await writeFile(blob(sha256Of(mBytes)), mBytes);
    await writeFile(
      join(copy, 'index.json'),
      JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256Of(mBytes), size: mBytes.length, annotations: { 'org.opencontainers.image.ref.name': 'app' } }] }),
    );
    await assert.rejects(pullImage(`oci:${copy}:app`, driverTarget(driver), { blobCache: cache }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_OGD_DIGEST_MISMATCH');
      assert.match(err.message, /diff_id/);
      return true;
    });
    assert.deepEqual(await homeState(driver), state);
  });

  await t.test('a cached blob gone bad is refused and dropped; the next pull fetches it again', async () => {
    const own = join(f.dir, 'cache-gone-bad');
    const ref = `docker://${f.registry.host}/test/img:base`;
    const first = await pullImage(ref, driverTarget(await newDriver(t)), { blobCache: own, tlsVerify: false });
    const blob = first.layers[0]!.blob;
    const file = join(own, 'sha256', blob.digest.slice(7));
    await flipByte(file, 100);
    const other = await newDriver(t);
    await assert.rejects(pullImage(ref, driverTarget(other), { blobCache: own, tlsVerify: false }), { code: 'ERR_OGD_DIGEST_MISMATCH', expected: blob.digest });
    assert.deepEqual(await readdir(other.home), []);
    await assert.rejects(readFile(file), { code: 'ENOENT' });
    const again = await pullImage(ref, driverTarget(other), { blobCache: own, tlsVerify: false });
    assert.equal(again.fetched[0], blob.size);
  });

  await t.test('the intact image still pulls', async () => {
    const good = await pullImage(`oci:${f.layout}:app`, driverTarget(driver), { blobCache: cache });
    assert.deepEqual(good.applied, [false, false, true]);
    assert.equal(good.layers[1]!.id, base.layers[1]!.id);
  });
}

async function commitPush(t: TestContext, f: Fixture): Promise<void> {
  const cache = join(f.dir, 'cache-commit');
  const driver = await newDriver(t);
  const base: Image = await pullImage(`docker://${f.registry.host}/test/img:base`, driverTarget(driver), { blobCache: cache, tlsVerify: false });
  const top = base.layers[base.layers.length - 1]!.id;
  await driver.createReadWrite('work', top);
  const rootfs = await driver.get('work');
  await writeFile(join(rootfs, 'hello.txt'), 'hello from a container\n');
  await rm(join(rootfs, 'etc/conf.d/a'));
  await driver.put('work');

  const committed = await commitImage(await driver.diff('work', top), base, driverTarget(driver), { blobCache: cache, createdBy: 'test: write hello.txt' });
  assert.equal(committed.layers.length, 3);
  assert.ok(await driver.exists(committed.layers[2]!.id));
  assert.deepEqual(committed.config.rootfs.diff_ids.slice(0, 2), base.config.rootfs.diff_ids);
  assert.equal(committed.config.history?.at(-1)?.created_by, 'test: write hello.txt');

  const expected = new Map(f.oracle.base);
  const hello = [...(await manifest(join(driver.home, committed.layers[2]!.id, 'root'))).values()].find((e) => Buffer.from(e.path, 'hex').toString() === 'hello.txt')!;
  for (const [k] of expected) if (Buffer.from(k, 'hex').toString() === 'etc/conf.d/a') expected.delete(k);
  expected.set(hello.path, hello);
  const compare = (got: Manifest) => compareManifests(expected, got, { rootFields: ['mtime', 'mode'], mtimeTypes: ['file', 'symlink', 'fifo'] });

  await t.test('docker:// (chunked upload), copied back by skopeo, unpacked by umoci', async () => {
    const before = f.registry.log().length;
    const pushed = await pushImage(committed, `docker://${f.registry.host}/test/committed:v1`, driver, { blobCache: cache, tlsVerify: false, chunkSize: 64 << 10 });
    // A new repository has no blob linked yet (the registry answers HEAD per repository),
    // so every blob is sent, the bigger ones in several PATCHes.
    const patches = f.registry.log().slice(before).filter((l) => l.method === 'PATCH');
    assert.ok(patches.length >= 1, 'chunked upload used PATCH');
    assert.deepEqual(pushed.layers.map((l) => l.blob.digest), committed.layers.map((l) => l.blob.digest));
    const out = join(f.dir, 'copied');
    await skopeo('copy', '--src-tls-verify=false', `docker://${f.registry.host}/test/committed:v1`, `oci:${out}:v1`);
    assert.deepEqual(compare(await manifest(await umociUnpack(`${out}:v1`, join(f.dir, 'unpacked-committed')))), []);

    // Pushed again: every blob is there (HEAD), nothing is uploaded.
    const again = await pushImage(committed, `docker://${f.registry.host}/test/committed:v2`, driver, { blobCache: cache, tlsVerify: false });
    assert.deepEqual(again.layers.map((l) => l.sent), [false, false, false]);
    assert.equal(again.manifestDigest, pushed.manifestDigest);
  });

  await t.test('oci: layout, layers made again from the driver (no cached blobs), read by umoci', async () => {
    const out = join(f.dir, 'pushed-oci');
    const emptyCache = join(f.dir, 'no-cache');
    await mkdir(emptyCache);
    const pushed = await pushImage(committed, `oci:${out}:v1`, driver, { blobCache: emptyCache, compression: 'gzip' });
    assert.ok(pushed.layers.every((l) => l.sent));
    const idx = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
    assert.equal(idx.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'], 'v1');
    assert.equal(idx.manifests[0]!.digest, pushed.manifestDigest);
    assert.deepEqual(JSON.parse(await readFile(join(out, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    assert.deepEqual(compare(await manifest(await umociUnpack(`${out}:v1`, join(f.dir, 'unpacked-oci')))), []);
    // And what we pushed, we pull: the layers exist already under the pushed diff_ids' chain ids or are applied anew.
    const back = await pullImage(`oci:${out}:v1`, driverTarget(await newDriver(t)), { blobCache: emptyCache });
    assert.equal(back.layers.length, 3);
  });

  await t.test('zstd layers: pushed as tar+zstd, read by skopeo, pulled back by us to the same tree', async () => {
    if (skipWithout(t, 'zstd')) return;
    const out = join(f.dir, 'pushed-zstd');
    const pushed = await pushImage(committed, `oci:${out}:z`, driver, { blobCache: join(f.dir, 'cache-zstd'), compression: 'zstd' });
    const m = JSON.parse(await readFile(join(out, 'blobs', 'sha256', pushed.manifestDigest.slice(7)), 'utf8')) as { layers: Array<{ mediaType: string }> };
    assert.deepEqual(m.layers.map((l) => l.mediaType), Array(3).fill('application/vnd.oci.image.layer.v1.tar+zstd'));
    // umoci 0.4.7 reads no zstd: skopeo recompresses (checking each blob) and umoci unpacks that.
    await skopeo('copy', '--dest-compress-format', 'gzip', `oci:${out}:z`, `oci:${out}-gzip:z`);
    const theirs = await manifest(await umociUnpack(`${out}-gzip:z`, join(f.dir, 'unpacked-zstd')));
    assert.deepEqual(compare(theirs), []);
    const other = await newDriver(t);
    const back = await pullImage(`oci:${out}:z`, driverTarget(other), { blobCache: join(f.dir, 'cache-zstd-pull') });
    assert.deepEqual(sameTree(theirs, await containerTree(other, back.layers[2]!.id, 'c-zstd')), []);
  });
}

async function abortResume(t: TestContext, f: Fixture): Promise<void> {
  const cache = join(f.dir, 'cache-abort');
  const driver = await newDriver(t);
  const ref = `docker://${f.registry.host}/test/img:app`;
  const controller = new AbortController();
  // Stopped while layer 1 is applied and after its download has begun (its bytes are in the
  // cache): a faster apply of layer 0 can reach layer 1 before its first byte arrives.
  let applying = false;
  let downloaded = false;
  await assert.rejects(
    pullImage(ref, driverTarget(driver), {
      blobCache: cache,
      tlsVerify: false,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.layer !== 1) return;
        if (p.phase === 'applying') applying = true;
        if ((p.phase === 'downloading' && p.bytes > 0) || p.phase === 'downloaded') downloaded = true;
        if (applying && downloaded) controller.abort();
      },
    }),
    { code: 'ABORT_ERR' },
  );
  const resolved = await pullImage(`oci:${f.layout}:app`, driverTarget(await newDriver(t)), { blobCache: join(f.dir, 'cache-abort-oci') });
  const ids = resolved.layers.map((l) => l.id);
  assert.deepEqual(await Promise.all(ids.map((id) => driver.exists(id))), [true, false, false], 'the layer below stays, the one being applied is removed');
  assert.deepEqual((await readdir(driver.home)).filter((n) => n !== ids[0]), [], 'nothing else is left in the home');
  // The aborted layer's blob stays: whole and verified, or (stopped mid-download) as a partial file.
  const hex1 = resolved.layers[1]!.blob.digest.slice(7);
  const kept = (await readdir(join(cache, 'sha256'))).filter((n) => n.startsWith(hex1));
  assert.equal(kept.length, 1, kept.join(' '));
  const keptBytes = (await readFile(join(cache, 'sha256', kept[0]!))).length;

  // The rest of the pull fetches only what it does not have.
  const done = await pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false });
  assert.deepEqual(done.applied, [false, true, true]);
  assert.equal(done.fetched[1], done.layers[1]!.blob.size - keptBytes);

  // A partial download left by a process that is gone is adopted and resumed.
  const top = done.layers[2]!.blob;
  const cache2 = join(f.dir, 'cache-resume');
  await mkdir(join(cache2, 'sha256'), { recursive: true });
  const whole = await readFile(join(cache, 'sha256', top.digest.slice(7)));
  const gone = spawnSync('true').pid!;
  const half = Math.floor(whole.length / 2);
  await writeFile(join(cache2, 'sha256', `${top.digest.slice(7)}.partial-${gone}-0`), whole.subarray(0, half));
  const mark = f.registry.log().length;
  const resumed = await pullImage(ref, driverTarget(await newDriver(t)), { blobCache: cache2, tlsVerify: false });
  assert.equal(resumed.fetched[2], whole.length - half);
  const ranged = f.registry.log().slice(mark).filter((l) => l.uri.endsWith(top.digest) && l.method === 'GET');
  assert.deepEqual(ranged.map((l) => [l.status, l.bytes]), [[206, whole.length - half]]);
  assert.deepEqual((await readdir(join(cache2, 'sha256'))).filter((n) => n.includes('.partial-')), []);
}

async function basicAuth(t: TestContext, f: Fixture): Promise<void> {
  const user = 'ogd';
  const password = 'pa:ss w0rd';
  const registry = await startRegistry(t, { htpasswd: { user, password } });
  const creds = `${user}:${password}`;
  await skopeo('copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${f.layout}:base`, `docker://${registry.host}/private/img:base`);
  const ref = `docker://${registry.host}/private/img:base`;
  const noFiles = { authFiles: [join(f.dir, 'no-such-auth.json')] };
  const cache = join(f.dir, 'cache-auth');
  const driver = await newDriver(t);

  await assert.rejects(pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false, ...noFiles }), (err: Error & { code?: string; status?: number }) => {
    assert.equal(err.code, 'ERR_OGD_REGISTRY');
    assert.equal(err.status, 401);
    assert.match(err.message, /credentials/);
    return true;
  });
  await assert.rejects(pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false, creds: `${user}:wrong` }), { code: 'ERR_OGD_REGISTRY', status: 401 });
  assert.deepEqual(await readdir(driver.home), []);

  const pulled = await pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false, creds });
  assert.deepEqual(pulled.applied, [true, true]);

  // An auth.json as podman login writes it, found through $REGISTRY_AUTH_FILE.
  const authFile = join(f.dir, 'auth.json');
  await writeFile(authFile, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(creds).toString('base64') } } }));
  const saved = process.env.REGISTRY_AUTH_FILE;
  process.env.REGISTRY_AUTH_FILE = authFile;
  try {
    const again = await pullImage(ref, driverTarget(await newDriver(t)), { blobCache: join(f.dir, 'cache-auth-2'), tlsVerify: false });
    assert.deepEqual(again.applied, [true, true]);
    const pushed = await pushImage(pulled, `docker://${registry.host}/private/copy:v1`, driver, { blobCache: cache, tlsVerify: false });
    assert.equal(pushed.manifestDigest, pulled.manifestDigest, 'an image pushed as pulled keeps its digest');
  } finally {
    if (saved === undefined) delete process.env.REGISTRY_AUTH_FILE;
    else process.env.REGISTRY_AUTH_FILE = saved;
  }
  await skopeo('inspect', '--tls-verify=false', '--creds', creds, `docker://${registry.host}/private/copy:v1`);
}

async function bearerAuth(t: TestContext, f: Fixture): Promise<void> {
  if (skipWithout(t, 'openssl')) return;
  const user = 'bearer';
  const password = 'token-pass';
  const creds = `${user}:${password}`;
  const token = await startTokenServer(t, await tempDir(t, 'ogd-token-'), user, password);
  const registry = await startRegistry(t, { token });
  await skopeo('copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${f.layout}:base`, `docker://${registry.host}/tok/img:base`);
  const ref = `docker://${registry.host}/tok/img:base`;
  const driver = await newDriver(t);
  const cache = join(f.dir, 'cache-bearer');
  const noFiles = [join(f.dir, 'no-such-auth.json')];

  await assert.rejects(pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false, authFiles: noFiles }), { code: 'ERR_OGD_REGISTRY', status: 401 });
  token.requests.length = 0;
  const pulled = await pullImage(ref, driverTarget(driver), { blobCache: cache, tlsVerify: false, creds });
  assert.deepEqual(pulled.applied, [true, true]);
  assert.deepEqual(token.requests, ['repository:tok/img:pull'], 'one token for the whole pull');
  const pushed = await pushImage(pulled, `docker://${registry.host}/tok/copy:v1`, driver, { blobCache: cache, tlsVerify: false, creds });
  assert.ok(token.requests.includes('repository:tok/copy:pull,push'));
  assert.equal(pushed.manifestDigest, pulled.manifestDigest);
  await skopeo('inspect', '--tls-verify=false', '--creds', creds, `docker://${registry.host}/tok/copy:v1`);
}

// A real Debian rootfs (minbase, ~180 MB) as a two-layer image: slow (umoci gzips it,
// skopeo pushes it, umoci unpacks it), so behind OGD_STRESS=1. It also times our pull
// against skopeo's copy of the same image into a containers-storage overlay store.
test('a Debian image pulled from the registry gives the tree umoci unpacks (OGD_STRESS=1)', async (t) => {
  if (process.env.OGD_STRESS !== '1') {
    t.skip('slow: set OGD_STRESS=1');
    return;
  }
  if (skipUnlessRoot(t) || skipWithout(t, 'umoci', 'skopeo', 'docker-registry')) return;
  const debian = await debianRootfs(t);
  if (debian === undefined) return;
  const dir = await tempDir(t, 'ogd-image-debian-');
  const layout = join(dir, 'oci');
  await umoci('init', '--layout', layout);
  await addDebianImage(layout, dir, debian);
  const registry = await startRegistry(t);
  await skopeo('copy', '--dest-tls-verify=false', `oci:${layout}:debian`, `docker://${registry.host}/debian/minbase:1`);
  const want = await manifest(await umociUnpack(`${layout}:debian`, join(dir, 'unpacked')));
  const driver = await newDriver(t);
  const started = process.hrtime.bigint();
  const pulled = await pullImage(`docker://${registry.host}/debian/minbase:1`, driverTarget(driver), { blobCache: join(dir, 'cache'), tlsVerify: false });
  const ours = Number(process.hrtime.bigint() - started) / 1e9;
  assert.deepEqual(sameTree(want, await containerTree(driver, pulled.layers[1]!.id, 'c')), []);
  if (skipWithout(t, 'containers-storage')) return;
  const cs = join(dir, 'cs');
  const csStarted = process.hrtime.bigint();
  await skopeo('copy', '--src-tls-verify=false', `docker://${registry.host}/debian/minbase:1`, `containers-storage:[overlay@${cs}/root+${cs}/run]debian:1`);
  const theirs = Number(process.hrtime.bigint() - csStarted) / 1e9;
  t.diagnostic(`pull ${(pulled.layers.reduce((n, l) => n + l.blob.size, 0) / 1e6).toFixed(1)} MB compressed: ogd ${ours.toFixed(2)} s, skopeo copy to containers-storage overlay ${theirs.toFixed(2)} s`);
  await run('containers-storage', ['--graph', `${cs}/root`, '--run', `${cs}/run`, '--storage-driver', 'overlay', 'shutdown']).catch(() => {});
});
