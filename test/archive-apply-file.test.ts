// A LayerFile: the apply job reads the file itself (native/layer_file_reader.h), and
// inflates gzip there. Judged against the same tar applied as a stream (the tree,
// by manifest.py), against node:zlib's gzip (the bytes) and sha256sum (the digest):
// gzip members and padding as gzip -d takes them, a truncated or corrupt gzip named
// as such, an empty file, a FIFO and zstd streamed instead, an abort within
// milliseconds, and the store recording the digest of what it read.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { applyTar } from '../lib/archive/apply.js';
import { LayerFile } from '../lib/archive/layer-file.js';
import { openStore } from '../lib/index.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, chunked } from './helpers/tar-builder.js';
import { compareManifests, manifest } from './helpers/tree.js';

const run = promisify(execFile);
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Bytes gzip cannot shrink much (a seeded LCG), so a cut or a scribble lands inside the deflate data. */
function noise(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let x = seed + 1;
  for (let i = 0; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return out;
}

function sample(): Buffer {
  const b = new TarBuilder().dir('./', { mtime: 1_600_000_000 }).dir('d/', { mode: 0o2755, uid: 10, gid: 20 });
  for (let i = 0; i < 60; i++) b.file(`d/f${i}`, noise(i * 131, i), { mode: i % 2 ? 0o4755 : 0o640, uid: i });
  b.symlink('d/l', 'f1').hardlink('d/h', 'd/f2');
  // Several of the reader's 1 MiB blocks, the last one partial: blocks are reused
  // without being cleared, so a wrong length would show in the tree or the digest.
  b.file('d/big', noise((3 << 20) + 777, 99), { mode: 0o644 });
  return b.end();
}

async function applyRead(root: string, source: Parameters<typeof applyTar>[1]): Promise<{ bytes: number; size: number; digest: string }> {
  await mkdir(root);
  let read: { size: number; digest: string } | undefined;
  const bytes = await applyTar(root, source, { onTarDigest: (r) => (read = r) });
  assert.ok(read !== undefined);
  return { bytes, ...read };
}

test('a LayerFile (plain, gzip in members with padding) gives the tree, bytes and digest of the same tar as a stream', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  // Bytes after the end of the archive are read and hashed too: they were given.
  const tar = Buffer.concat([sample(), Buffer.from('trailing')]);
  const streamed = await applyRead(join(dir, 'stream'), chunked(tar, 10_000));
  assert.deepEqual({ size: streamed.size, digest: streamed.digest }, { size: tar.length, digest: sha(tar) });
  const want = await manifest(join(dir, 'stream'));

  const cut = 12_345;
  const files: Array<[string, Buffer]> = [
    ['plain.tar', tar],
    ['one.tar.gz', gzipSync(tar)],
    // Two members, then zero padding: gzip -d (and node:zlib) read this as the concatenation.
    ['members.tar.gz', Buffer.concat([gzipSync(tar.subarray(0, cut)), gzipSync(tar.subarray(cut)), Buffer.alloc(512)])],
  ];
  for (const [name, bytes] of files) {
    await writeFile(join(dir, name), bytes);
    const got = await applyRead(join(dir, `t-${name}`), new LayerFile(join(dir, name)));
    assert.deepEqual(got, streamed, name);
    assert.deepEqual(compareManifests(want, await manifest(join(dir, `t-${name}`))), [], name);
  }
  const sum = (await run('sha256sum', [join(dir, 'plain.tar')])).stdout.split(' ')[0];
  assert.equal(streamed.digest, `sha256:${sum}`);
});

test('a truncated or corrupt gzip LayerFile is named as such; a tar error inside a good gzip stays a tar error', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const gz = gzipSync(sample());
  await writeFile(join(dir, 'cut.tar.gz'), gz.subarray(0, gz.length >> 1));
  await mkdir(join(dir, 'a'));
  await assert.rejects(applyTar(join(dir, 'a'), new LayerFile(join(dir, 'cut.tar.gz'))), { code: 'ERR_OGD_INVALID_ARCHIVE', message: /gzip stream ends early/ });
  const bad = Buffer.from(gz);
  for (let i = gz.length >> 2; i < (gz.length >> 2) + 600; i++) bad[i] = 0xff;
  await writeFile(join(dir, 'bad.tar.gz'), bad);
  await mkdir(join(dir, 'b'));
  await assert.rejects(applyTar(join(dir, 'b'), new LayerFile(join(dir, 'bad.tar.gz'))), { code: 'ERR_OGD_INVALID_ARCHIVE', message: /gzip stream is corrupt/ });
  const garbage = Buffer.concat([sample().subarray(0, 1024), Buffer.alloc(1024, 0x41)]);
  await writeFile(join(dir, 'garbage.tar.gz'), gzipSync(garbage));
  await mkdir(join(dir, 'c'));
  await assert.rejects(applyTar(join(dir, 'c'), new LayerFile(join(dir, 'garbage.tar.gz'))), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_OGD_INVALID_ARCHIVE');
    assert.doesNotMatch(err.message, /gzip/);
    return true;
  });
});

test('an empty LayerFile is refused unless allowEmpty; a FIFO and a zstd file are streamed', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  await writeFile(join(dir, 'empty'), '');
  await mkdir(join(dir, 'e'));
  await assert.rejects(applyTar(join(dir, 'e'), new LayerFile(join(dir, 'empty'))), { code: 'ERR_OGD_INVALID_ARCHIVE', message: /empty/ });
  assert.equal(await applyTar(join(dir, 'e'), new LayerFile(join(dir, 'empty')), { allowEmpty: true }), 0);

  const tar = sample();
  await run('mkfifo', [join(dir, 'fifo')]);
  const applying = applyRead(join(dir, 'f'), new LayerFile(join(dir, 'fifo')));
  await pipeline(Readable.from([tar]), createWriteStream(join(dir, 'fifo')));
  const viaFifo = await applying;
  assert.deepEqual({ size: viaFifo.size, digest: viaFifo.digest }, { size: tar.length, digest: sha(tar) });

  const zstd = await run('zstd', ['--version']).then(
    () => true,
    () => false,
  );
  if (!zstd) return t.diagnostic('no zstd program: the zstd case is not run');
  await writeFile(join(dir, 'x.tar'), tar);
  await run('zstd', ['-q', join(dir, 'x.tar'), '-o', join(dir, 'x.tar.zst')]);
  assert.deepEqual(await applyRead(join(dir, 'z'), new LayerFile(join(dir, 'x.tar.zst'))), viaFifo);
});

test('an abort stops a LayerFile apply within milliseconds', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const b = new TarBuilder();
  for (let i = 0; i < 20_000; i++) b.file(`d${i % 100}/f${i}`, 'y'.repeat(2048));
  await writeFile(join(dir, 'big.tar'), b.end());
  await mkdir(join(dir, 'root'));
  const controller = new AbortController();
  let abortedAt = 0n;
  const applying = applyTar(join(dir, 'root'), new LayerFile(join(dir, 'big.tar')), {
    signal: controller.signal,
    onProgress: (p) => {
      if (p.entries > 0 && abortedAt === 0n) {
        abortedAt = process.hrtime.bigint();
        controller.abort();
      }
    },
  });
  await assert.rejects(applying, { code: 'ABORT_ERR' });
  const ms = Number(process.hrtime.bigint() - abortedAt) / 1e6;
  assert.ok(ms < 1000, `settled ${ms.toFixed(0)} ms after the abort`);
  let made = 0;
  for (const d of await readdir(join(dir, 'root'))) made += (await readdir(join(dir, 'root', d))).length;
  assert.ok(made < 20_000, `stopped before the end (${made} files)`);
});

test('a store imports a LayerFile and records the digest and size of the tar it read', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const tar = sample();
  await writeFile(join(dir, 'l.tar.gz'), gzipSync(tar));
  const store = await openStore(join(dir, 'home'));
  try {
    const rec = await store.importLayer('base', new LayerFile(join(dir, 'l.tar.gz')));
    assert.equal(rec.uncompressedDigest, sha(tar));
    assert.equal(rec.uncompressedSize, tar.length);
    const again = await store.importLayer('again', chunked(tar, 999));
    assert.equal(again.uncompressedDigest, sha(tar));
  } finally {
    await store.cleanup();
  }
});
