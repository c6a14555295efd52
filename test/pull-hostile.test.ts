// A pull against a registry that misbehaves (issue 23, items 2 and 9), through the
// store as a user's program runs it, against a small node:http registry on 127.0.0.1
// (test/helpers/hostile-registry.ts): a blob that never ends, one that runs past its
// declared size, a 1 TB declaration, a stall, a connection closed early, a disk that
// fills before or during the pull, a damaged record, an rmi that takes the base away.
// Each pull fails promptly with a stable code and a message naming the blob, the
// registry or the file; afterwards nothing of it is left on disk (no partial blob, no
// layer), and the server's counters show what was (not) fetched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, statfs, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openStore, type Store, type StorePullOptions } from '../lib/index.js';
import { sha256, startHostileRegistry, type HostileRegistry } from './helpers/hostile-registry.js';
import { removeTree, skipUnlessRoot, unmountUnder } from './helpers/sandbox.js';
import { pack } from './helpers/tar-builder.js';

interface Failure extends Error {
  code?: string;
}

/**
 * A store (vfs: a pull needs no mounts) in a temp dir, on a tmpfs of `diskBytes` when
 * given; cleaned up, unmounted and removed when the test ends.
 */
async function newStore(t: TestContext, diskBytes?: number): Promise<Store> {
  const base = await mkdtemp(join(tmpdir(), 'ogd-pull-hostile-'));
  let store: Store | undefined;
  t.after(async () => {
    await store?.cleanup();
    await unmountUnder(base);
    await removeTree(base);
  });
  if (diskBytes !== undefined) execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${diskBytes},mode=0700`, 'ogd-test-disk', base]);
  store = await openStore(join(base, 'home'), { driver: 'vfs' });
  return store;
}

/** Fills the filesystem of `dir` (with dir/filler) until `leave` bytes are free. */
async function fillDisk(dir: string, leave: number): Promise<string> {
  const fs = await statfs(dir);
  const filler = join(dir, 'filler');
  await writeFile(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - leave)));
  return filler;
}

/** A layer tar with one file of `bytes` random bytes (incompressible). */
function layerTar(name: string, bytes: number): Promise<Buffer> {
  return pack([{ name, content: randomBytes(bytes) }]);
}

/** Files under the store's blob cache (partials included). */
async function blobFiles(store: Store): Promise<string[]> {
  return readdir(join(store.home, 'blobs', 'sha256')).catch(() => []);
}

/** The pull's error, after at most `withinMs`. */
async function pullFails(store: Store, registry: HostileRegistry, opts: StorePullOptions, withinMs: number): Promise<{ err: Failure; ms: number }> {
  const start = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the pull did not fail within ${withinMs} ms`)), withinMs);
  });
  try {
    await Promise.race([store.pull(registry.ref, { tlsVerify: false, ...opts }), deadline]);
  } catch (err) {
    if ((err as Error).message.startsWith('the pull did not fail')) throw err;
    return { err: err as Failure, ms: Date.now() - start };
  } finally {
    clearTimeout(timer);
  }
  assert.fail('the pull succeeded');
}

/** Nothing of a failed pull is left: no layer, no image, no blob or partial, and the registry's connections are closed. */
async function assertNothingLeft(store: Store, registry: HostileRegistry): Promise<void> {
  await registry.idle();
  assert.deepEqual(await store.list(), [], 'no layer');
  assert.deepEqual(await store.images(), [], 'no image');
  assert.deepEqual(await blobFiles(store), [], 'no blob, no partial download');
}

function blobRequests(registry: HostileRegistry, digest: string) {
  return registry.requests.filter((r) => r.url.endsWith(`/blobs/${digest}`));
}

test('a pull from a hostile registry is bounded and leaves nothing behind', async (t) => {
  if (skipUnlessRoot(t)) return;

  await t.test('an endless blob: the failed apply stops the download at once', async (t) => {
    const store = await newStore(t);
    // Declared 256 MB (under every limit, and the disk has room for it): random bytes that are no tar.
    const registry = await startHostileRegistry(t, [{ bytes: Buffer.from('never sent'), declaredSize: 256 << 20, behaviour: { kind: 'endless' } }]);
    const { err, ms } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ERR_OGD_INVALID_ARCHIVE', err.message);
    assert.match(err.message, /invalid tar header/);
    await assertNothingLeft(store, registry);
    const [blob] = blobRequests(registry, registry.layerDigests[0]!);
    assert.ok(blob!.sent < 32 << 20, `the server sent ${blob!.sent} bytes after the apply failed at byte 0 (${ms} ms)`);
  });

  await t.test('a blob that runs past its declared size is cut off there and refused', async (t) => {
    const store = await newStore(t);
    const tar = await layerTar('f', 1 << 20);
    const registry = await startHostileRegistry(t, [{ bytes: tar, behaviour: { kind: 'overrun' } }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ERR_OGD_DIGEST_MISMATCH', err.message);
    assert.match(err.message, new RegExp(`blob ${registry.layerDigests[0]}: more than the ${tar.length} bytes its descriptor says`));
    await assertNothingLeft(store, registry);
    const [blob] = blobRequests(registry, registry.layerDigests[0]!);
    assert.ok(blob!.sent < tar.length + (16 << 20), `the server sent ${blob!.sent} bytes for a blob of ${tar.length}`);
  });

  await t.test('a 1 TB declaration is refused before a byte is fetched, as is one above maxBlobSize', async (t) => {
    const store = await newStore(t);
    const registry = await startHostileRegistry(t, [{ bytes: Buffer.from('never sent'), declaredSize: 1e12, behaviour: { kind: 'endless' } }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ERR_OGD_BLOB_TOO_LARGE', err.message);
    assert.match(err.message, new RegExp(`layer 0 \\(blob ${registry.layerDigests[0]}\\) declares 1000000000000 bytes, more than the \\d+ a pull accepts \\(maxBlobSize\\)`));
    assert.deepEqual(blobRequests(registry, registry.layerDigests[0]!), [], 'the blob was never asked for');
    await assertNothingLeft(store, registry);

    const tar = await layerTar('f', 256 << 10);
    const small = await startHostileRegistry(t, [{ bytes: tar }]);
    const refused = await pullFails(store, small, { maxBlobSize: 128 << 10 }, 5000);
    assert.equal(refused.err.code, 'ERR_OGD_BLOB_TOO_LARGE', refused.err.message);
    assert.deepEqual(blobRequests(small, small.layerDigests[0]!), []);
    const pulled = await store.pull(small.ref, { tlsVerify: false, maxBlobSize: tar.length });
    assert.deepEqual(pulled.applied, [true], 'a limit the blob fits is no obstacle');
  });

  await t.test('a registry that stalls mid-blob: the idle timeout, the registry and the blob are named', async (t) => {
    const store = await newStore(t);
    const tar = await layerTar('f', 1 << 20);
    const registry = await startHostileRegistry(t, [{ bytes: tar, behaviour: { kind: 'stall', after: 64 << 10 } }]);
    const { err, ms } = await pullFails(store, registry, { idleTimeout: 400 }, 5000);
    assert.equal(err.code, 'ERR_OGD_REGISTRY', err.message);
    const digest = registry.layerDigests[0]!;
    assert.match(err.message, new RegExp(`^blob ${digest} from ${registry.host}/test/img: the registry sent nothing for 0.4 s \\(the idle timeout\\) after 65536 of ${tar.length} bytes$`));
    assert.ok(ms >= 400 && ms < 4000, `${ms} ms`);
    await assertNothingLeft(store, registry);
  });

  await t.test('a connection closed early is named as such, not as an abort', async (t) => {
    const store = await newStore(t);
    const tar = await layerTar('f', 1 << 20);
    const registry = await startHostileRegistry(t, [{ bytes: tar, behaviour: { kind: 'close', after: 64 << 10 } }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ERR_OGD_REGISTRY', err.message);
    const digest = registry.layerDigests[0]!;
    const m = new RegExp(`^blob ${digest} from ${registry.host}/test/img: the registry closed the connection after (\\d+) of ${tar.length} bytes$`).exec(err.message);
    assert.ok(m !== null, err.message);
    // Node drops what it had buffered but not delivered when the connection goes: at most what was sent arrived.
    assert.ok(Number(m[1]) <= 65536, err.message);
    await assertNothingLeft(store, registry);
  });

  await t.test('a pull that cannot fit fails before fetching a byte, with ENOSPC', async (t) => {
    const store = await newStore(t, 8 << 20);
    const registry = await startHostileRegistry(t, [{ bytes: Buffer.from('never sent'), declaredSize: 5 << 20, behaviour: { kind: 'endless' } }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ENOSPC', err.message);
    assert.match(
      err.message,
      new RegExp(`^not enough space to pull ${registry.ref.replace(/[/.]/g, '\\$&')}: it needs about 10.5 MB \\(5.2 MB of layer blobs to fetch and 5.2 MB of layers unpacked \\(estimated\\)\\) on ${store.home}, which has \\d.\\d MB free$`),
    );
    assert.deepEqual(blobRequests(registry, registry.layerDigests[0]!), [], 'the blob was never asked for');
    await assertNothingLeft(store, registry);
  });

  await t.test('a disk that fills during the download: ENOSPC, the blob named, nothing left', async (t) => {
    const store = await newStore(t, 8 << 20);
    let filler = '';
    const tar = await layerTar('f', 2 << 20);
    const registry = await startHostileRegistry(t, [{ bytes: tar, onRequest: async () => void (filler = await fillDisk(dirname(store.home), 512 << 10)) }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    await rm(filler);
    assert.equal(err.code, 'ENOSPC', err.message);
    assert.match(err.message, new RegExp(`layer 0 \\(blob ${registry.layerDigests[0]}\\)`));
    assert.match(err.message, /no space left/);
    await assertNothingLeft(store, registry);
  });

  await t.test('a layer that unpacks to more than the disk holds: ENOSPC, the layer named, nothing left', async (t) => {
    const store = await newStore(t, 8 << 20);
    const tar = await pack([{ name: 'zeros', content: Buffer.alloc(10 << 20) }]);
    const registry = await startHostileRegistry(t, [{ bytes: gzipSync(tar), diffId: sha256(tar), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }]);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ENOSPC', err.message);
    assert.match(err.message, new RegExp(`layer 0 \\(blob ${registry.layerDigests[0]}\\)`));
    assert.match(err.message, /no space left/);
    await assertNothingLeft(store, registry);
  });

  await t.test('an rmi of the base of a pull in flight is refused, naming the layer; the pull completes', async (t) => {
    // A pull holds a read lease on every layer it found (lib/store/images.ts), so an rmi
    // cannot take its base away: it is refused, and the pull goes on.
    const store = await newStore(t);
    const base = await layerTar('base', 4096);
    const first = await startHostileRegistry(t, [{ bytes: base }]);
    const pulledFirst = await store.pull(first.ref, { tlsVerify: false });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const second = await startHostileRegistry(t, [{ bytes: base }, { bytes: await layerTar('top', 4096), behaviour: { kind: 'gated', gate } }]);
    let removal: Promise<unknown> | undefined;
    const pulled = await store.pull(second.ref, {
      tlsVerify: false,
      onProgress: (p) => {
        if (p.layer === 1 && p.phase === 'downloading' && removal === undefined) {
          removal = store.removeImage(pulledFirst.id).then(
            () => undefined,
            (err: unknown) => err,
          );
          void removal.finally(open);
        }
      },
    });
    const err = (await removal) as NodeJS.ErrnoException | undefined;
    assert.ok(err instanceof Error, 'the rmi racing the pull is refused');
    assert.equal(err.code, 'ERR_OGD_IMAGE_IN_USE', err.message);
    assert.match(err.message, new RegExp(pulledFirst.layers[0]!));
    assert.equal(pulled.layers[0], pulledFirst.layers[0]);
    assert.ok((await store.images()).some((i) => i.id === pulledFirst.id), 'the first image is still there');
    assert.equal((await store.check()).ok, true);
  });

  await t.test('a partial download left by a dead pull is resumed while young, removed once older than 24 h', async (t) => {
    const store = await newStore(t);
    const tar = await layerTar('f', 256 << 10);
    const registry = await startHostileRegistry(t, [{ bytes: tar }]);
    const hex = registry.layerDigests[0]!.slice('sha256:'.length);
    const dir = join(store.home, 'blobs', 'sha256');
    await mkdir(dir, { recursive: true });
    const dead = spawnSync('true').pid!;
    const half = tar.length >> 1;
    const stale = join(dir, `${hex}.partial-${dead}-0`);
    await writeFile(stale, tar.subarray(0, half));
    const dayAgo = new Date(Date.now() - 25 * 3600_000);
    await utimes(stale, dayAgo, dayAgo);
    const first = await store.pull(registry.ref, { tlsVerify: false });
    assert.deepEqual(
      blobRequests(registry, registry.layerDigests[0]!).map((r) => [r.range, r.sent]),
      [[0, tar.length]],
      'the old partial was not resumed',
    );
    assert.deepEqual((await blobFiles(store)).filter((n) => n.includes('.partial-')), [], 'and is gone');

    // A young one (another store, the same blob) is taken over and finished with a Range request.
    const other = await newStore(t);
    const otherDir = join(other.home, 'blobs', 'sha256');
    await mkdir(otherDir, { recursive: true });
    await writeFile(join(otherDir, `${hex}.partial-${dead}-0`), tar.subarray(0, half));
    const second = await other.pull(registry.ref, { tlsVerify: false });
    assert.deepEqual(second.fetched, [tar.length - half]);
    assert.deepEqual(blobRequests(registry, registry.layerDigests[0]!).map((r) => [r.range, r.sent]).slice(1), [[half, tar.length - half]]);
    assert.deepEqual((await blobFiles(other)).filter((n) => n.includes('.partial-')), []);
    assert.deepEqual(first.layers, second.layers);
  });

  await t.test('a damaged layer record read by a pull is named, with its code', async (t) => {
    const store = await newStore(t);
    const tar = await layerTar('f', 4096);
    const registry = await startHostileRegistry(t, [{ bytes: tar }]);
    const pulled = await store.pull(registry.ref, { tlsVerify: false });
    const record = join(store.home, 'layers', pulled.layers[0]!);
    await truncate(record, 10);
    const { err } = await pullFails(store, registry, {}, 5000);
    assert.equal(err.code, 'ERR_OGD_DAMAGED_RECORD', err.message);
    assert.match(err.message, new RegExp(`^${record} is damaged: `));
    assert.equal((await stat(record)).size, 10, 'the record is left for check and repair');
  });
});
