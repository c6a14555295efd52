// The exported tar itself: headers read back by an independent parser (tar-stream's
// extract) and by GNU tar, determinism, id maps, streaming with a bounded memory,
// backpressure, abort, and mounts released however the stream ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, link, mkdir, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import tarStream from 'tar-stream';
import * as native from '../lib/native.js';
import { createDriver } from '../lib/index.js';
import { changesDirs } from '../lib/archive/changes.js';
import { exportChanges, writeChanges } from '../lib/archive/export.js';
import { tempDir, skipUnlessRoot, mountPoints } from './helpers/sandbox.js';
import { randomTree } from './helpers/random-layers.js';
import { throughPipe, toFile } from './helpers/fd-sinks.js';

const run = promisify(execFile);

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Entry {
  header: tarStream.Header;
  body: Buffer;
}

async function entriesOf(tar: Buffer): Promise<Entry[]> {
  const out: Entry[] = [];
  const extract = tarStream.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tarStream.extract>[0]);
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    stream.on('end', () => {
      out.push({ header, body: Buffer.concat(chunks) });
      next();
    });
  });
  await pipeline(Readable.from([tar]), extract);
  return out;
}

test('headers: types, full modes, owners, devices, hardlinks, long names, PAX xattrs and nanosecond mtimes, whiteouts', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const a = join(dir, 'A');
  const b = join(dir, 'B');
  await mkdir(join(a, 'gone'), { recursive: true });
  await writeFile(join(a, 'gone', 'f'), 'f');
  await writeFile(join(a, 'old'), 'old');
  await native.copyTree(a, b, { mode: 'hardlink' });
  await execFileSync('rm', ['-r', join(b, 'old')]);
  await writeFile(join(b, 'suid'), 'x');
  await chown(join(b, 'suid'), 1005, 1006);
  await chmod(join(b, 'suid'), 0o6755);
  execFileSync('touch', ['-m', '-d', '@1600000000.123456789', join(b, 'suid')]);
  await native.setXattr(join(b, 'suid'), 'user.bin', Buffer.from([0, 0xff, 0x0a, 0x3d]));
  await native.setXattr(join(b, 'suid'), 'trusted.overlay.origin', Buffer.from('x'));
  await link(join(b, 'suid'), join(b, 'suid-link'));
  await native.mknod(join(b, 'tty'), 0o020000 | 0o620, 4, 300);
  await chmod(join(b, 'tty'), 0o620); // mknod's mode went through the umask
  await mkdir(join(b, 'sticky'));
  await chmod(join(b, 'sticky'), 0o1777);
  await symlink('/usr/lib/' + 'l'.repeat(120), join(b, 'longlink'));
  const longName = 'd'.repeat(90) + '/' + 'e'.repeat(120);
  await mkdir(join(b, 'd'.repeat(90)));
  await writeFile(join(b, longName), 'long');
  const rawName = Buffer.concat([Buffer.from(b + '/raw'), Buffer.from([0xff, 0xfe])]);
  await writeFile(rawName, 'raw');
  await utimes(rawName, 1000, 1000);

  const set = await changesDirs(b, a);
  const tar = await bytesOf(exportChanges(set, {
      uidMaps: [{ containerId: 0, hostId: 0, size: 1 }, { containerId: 1, hostId: 1001, size: 100 }],
      gidMaps: [{ containerId: 0, hostId: 0, size: 1 }, { containerId: 1, hostId: 1001, size: 100 }],
    }),);
  const entries = await entriesOf(tar);
  const byName = new Map(entries.map((e) => [e.header.name, e]));
  // Sorted by path, a whiteout where its name was; a name that is not UTF-8 goes raw into a PAX record,
  // which tar-stream decodes as UTF-8 (GNU tar, below, reads the bytes).
  assert.deepEqual(
    entries.map((e) => e.header.name),
    ['d'.repeat(90) + '/', Buffer.from(longName).toString('latin1'), 'longlink', '.wh.old', 'raw\ufffd\ufffd', 'sticky/', 'suid', 'suid-link', 'tty'],
  );
  const suid = byName.get('suid')!;
  assert.equal(suid.header.mode, 0o6755);
  assert.equal(suid.header.uid, 5, 'host uid 1005 maps to container uid 5');
  assert.equal(suid.header.gid, 6);
  assert.equal(suid.body.toString(), 'x');
  const pax = suid.header.pax as Record<string, string>;
  assert.equal(pax.mtime, '1600000000.123456789');
  assert.ok('SCHILY.xattr.user.bin' in pax, 'user xattr as PAX');
  assert.ok(!Object.keys(pax).some((k) => k.includes('trusted.overlay')), 'overlay xattrs dropped');
  assert.ok(!('atime' in pax) && !('ctime' in pax));
  assert.equal(byName.get('suid-link')!.header.type, 'link');
  assert.equal(byName.get('suid-link')!.header.linkname, 'suid');
  const tty = byName.get('tty')!.header;
  assert.equal(tty.type, 'character-device');
  assert.deepEqual([tty.devmajor, tty.devminor, tty.mode], [4, 300, 0o620]);
  assert.equal(byName.get('sticky/')!.header.mode, 0o1777);
  assert.equal(byName.get('longlink')!.header.linkname, '/usr/lib/' + 'l'.repeat(120));
  assert.equal(byName.get('raw\ufffd\ufffd')!.body.toString(), 'raw');
  const wh = byName.get('.wh.old')!.header;
  assert.deepEqual([wh.type, wh.mode, wh.uid, wh.gid, wh.size, wh.mtime?.getTime()], ['file', 0, 0, 0, 0, 0]);
  // The xattr value is raw bytes, which GNU tar reads back (tar-stream decodes PAX as UTF-8).
  const out = execFileSync('tar', ['--quoting-style=literal', '--xattrs', '--xattrs-include=*', '-tvvf', '-'], { input: tar }).toString('latin1');
  assert.match(out, /user\.bin/);
  assert.ok(out.includes('raw\xff\xfe'), 'GNU tar reads the raw name');
  // An owner with no container id is an error, not a silent fallback.
  await assert.rejects(bytesOf(exportChanges(set, { uidMaps: [{ containerId: 0, hostId: 50000, size: 10 }] })), /has no container id/);
});

test('deterministic: the same layer, and a copy of it made later, export byte-identical tars', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await mkdir(tree);
  await randomTree(tree, 4242, 30);
  const one = await bytesOf(exportChanges(await changesDirs(tree, undefined)));
  const two = await bytesOf(exportChanges(await changesDirs(tree, undefined)));
  await new Promise((r) => setTimeout(r, 1100));
  await native.copyTree(tree, join(dir, 'copy'), { mode: 'content' });
  const three = await bytesOf(exportChanges(await changesDirs(join(dir, 'copy'), undefined)));
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(one), sha(two));
  assert.equal(sha(one), sha(three));
  assert.ok(one.length > 1024);
});

test('many entries: hardlinks across packing groups and big files; the scanned and the walked export are byte-identical', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  const empty = join(dir, 'empty');
  await mkdir(join(tree, 'm'), { recursive: true });
  await mkdir(empty);
  // More entries than one packing group, a big file (streamed) before and after small ones,
  // and inodes whose names fall in different groups.
  const big = Buffer.alloc(5 * 1024 * 1024 + 3, 0x62);
  big.write('start', 0);
  await writeFile(join(tree, 'a-big'), big);
  await writeFile(join(tree, 'b-small'), 'small');
  const files = 2200;
  for (let i = 0; i < files; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, k) => writeFile(join(tree, 'm', `f${String(i + k).padStart(5, '0')}`), `file ${i + k}\n`.repeat((i + k) % 7))));
  }
  await link(join(tree, 'a-big'), join(tree, 'm', 'f02100-big'));
  await link(join(tree, 'b-small'), join(tree, 'z-small'));
  await link(join(tree, 'm', 'f00010'), join(tree, 'z-f10'));

  const scanned = await changesDirs(tree, undefined);
  // Against an empty tree (compareTrees, scanned too), then without what the walks
  // read ahead, as the overlay walk gives it: each entry read by packOne.
  const compared = await changesDirs(tree, empty);
  const walked = { ...compared, changes: compared.changes.map(({ scanned: _, ...c }) => c) };
  assert.ok(scanned.changes.every((c) => c.scanned !== undefined) && compared.changes.every((c) => c.scanned !== undefined));
  assert.ok((await bytesOf(exportChanges(compared))).equals(await bytesOf(exportChanges(scanned))), 'compared to an empty tree: the same tar as the whole tree');
  const one = await bytesOf(exportChanges(scanned));
  const two = await bytesOf(exportChanges(walked));
  assert.ok(one.equals(two), 'both packers write the same bytes');
  // Written to a descriptor natively: the same bytes, to a file, to an O_APPEND file (where
  // sendfile(2) refuses with EINVAL and content goes by read/write) and through a non-blocking pipe.
  for (const [sink, write] of [
    ['a file', () => toFile(join(dir, 'out.tar'), 'w', (fd) => writeChanges(scanned, fd))],
    ['a file opened for appending', () => toFile(join(dir, 'appended.tar'), 'a', (fd) => writeChanges(scanned, fd))],
    ['a non-blocking pipe', () => throughPipe((fd) => writeChanges(walked, fd))],
  ] as const) {
    const [written, count] = await write();
    assert.equal(count, one.length, `writeChanges to ${sink}: the byte count`);
    assert.ok(written.equals(one), `writeChanges to ${sink}: the bytes`);
  }
  const entries = await entriesOf(one);
  const byName = new Map(entries.map((e) => [e.header.name, e]));
  assert.equal(entries.length, files + 6);
  assert.ok(byName.get('a-big')!.body.equals(big), 'the big file is whole');
  for (const [name, target] of [['m/f02100-big', 'a-big'], ['z-small', 'b-small'], ['z-f10', 'm/f00010']] as const) {
    assert.equal(byName.get(name)!.header.type, 'link', `${name} is a tar hardlink`);
    assert.equal(byName.get(name)!.header.linkname, target);
    assert.equal(byName.get(name)!.body.length, 0);
  }
  assert.equal(byName.get('m/f02199')!.body.toString(), 'file 2199\n'.repeat(2199 % 7));
  // GNU tar reads it through to the end-of-archive blocks, hardlinks included.
  const list = execFileSync('tar', ['-tvf', '-'], { input: one, maxBuffer: 64 << 20 }).toString();
  assert.match(list, /z-small link to b-small/);
});

test('backpressure: a paused consumer stops the reading of file data', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  await writeFile(join(dir, 'big'), '');
  await truncate(join(dir, 'big'), 512 * 1024 * 1024);
  const stream = exportChanges(await changesDirs(dir, undefined));
  await new Promise((r) => stream.once('readable', r));
  stream.read(512);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(stream.readableLength <= 1024 * 1024, `buffered ${stream.readableLength} bytes while paused`);
  stream.destroy();
  await new Promise((r) => stream.once('close', r));
});

test('streaming: exporting a 1 GiB layer keeps peak RSS under 200 MB (fresh process)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const layer = join(dir, 'layer');
  await mkdir(layer);
  for (let i = 0; i < 4; i++) {
    await writeFile(join(layer, `part${i}`), '');
    await truncate(join(layer, `part${i}`), 256 * 1024 * 1024);
  }
  for (let i = 0; i < 300; i++) await writeFile(join(layer, `small${i}`), 'x'.repeat(i));
  const script = `
    import { changesDirs } from ${JSON.stringify(fileURLToPath(new URL('../lib/archive/changes.js', import.meta.url)))};
    import { exportChanges } from ${JSON.stringify(fileURLToPath(new URL('../lib/archive/export.js', import.meta.url)))};
    import { Writable } from 'node:stream';
    import { pipeline } from 'node:stream/promises';
    let bytes = 0, n = 0;
    const sink = new Writable({ write(chunk, _e, cb) { bytes += chunk.length; if (++n % 256 === 0) setTimeout(cb, 1); else cb(); } });
    await pipeline(exportChanges(await changesDirs(process.argv[1], undefined)), sink);
    console.log(JSON.stringify({ bytes, maxRssKiB: process.resourceUsage().maxRSS }));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, layer], { maxBuffer: 1 << 20 });
  const { bytes, maxRssKiB } = JSON.parse(stdout) as { bytes: number; maxRssKiB: number };
  assert.ok(bytes > 1024 * 1024 * 1024, `exported ${bytes} bytes`);
  t.diagnostic(`peak RSS ${Math.round(maxRssKiB / 1024)} MB for ${Math.round(bytes / 1048576)} MiB of tar`);
  assert.ok(maxRssKiB < 200 * 1024, `peak RSS ${maxRssKiB} KiB`);
  void Writable;
});

test('abort: an aborted signal stops changes and export with ABORT_ERR', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  await randomTree(dir, 9, 20);
  await assert.rejects(changesDirs(dir, undefined, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
  const ac = new AbortController();
  const set = await changesDirs(dir, undefined);
  const stream = exportChanges(set, { signal: ac.signal });
  ac.abort();
  await assert.rejects(bytesOf(stream), { code: 'ABORT_ERR' });
  const progress: number[] = [];
  await bytesOf(exportChanges(set, { onProgress: (p) => progress.push(p.entries) }));
  assert.equal(progress.at(-1), set.changes.length, 'the last progress report counts every entry');
});

test('diff releases the mount it took when its stream ends, fails or is destroyed early', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t);
  const d = await createDriver('overlay', join(dir, 'home'));
  try {
    await d.create('img');
    const { RootDir: root } = await d.getMetadata('img');
    await writeFile(join(root!, 'big'), Buffer.alloc(4 * 1024 * 1024, 1));
    await d.createReadWrite('ctr', 'img');
    const { MergedDir: merged } = await d.getMetadata('ctr');
    const isMounted = async () => (await mountPoints()).includes(merged!);
    const settle = () => new Promise((r) => setTimeout(r, 100));

    // No parent: the whole merged tree, through a mount.
    const ended = await d.diff('ctr');
    assert.ok(await isMounted(), 'mounted while the stream is open');
    const tar = await bytesOf(ended);
    assert.ok(tar.includes(Buffer.from('big')));
    await settle();
    assert.ok(!(await isMounted()), 'released after the end');

    const destroyed = await d.diff('ctr');
    await new Promise((r) => destroyed.once('readable', r));
    destroyed.destroy();
    await settle();
    assert.ok(!(await isMounted()), 'released after destroy');

    const ac = new AbortController();
    const failed = await d.diff('ctr', undefined, { signal: ac.signal });
    ac.abort();
    await assert.rejects(bytesOf(failed), { code: 'ABORT_ERR' });
    await settle();
    assert.ok(!(await isMounted()), 'released after an error');

    // writeDiff: the same tar to a descriptor; the mount released when it resolves or fails.
    const [written, count] = await toFile(join(dir, 'ctr.tar'), 'w', (fd) => d.writeDiff('ctr', undefined, fd));
    assert.equal(count, tar.length);
    assert.ok(written.equals(tar), 'writeDiff writes what diff streams');
    assert.ok(!(await isMounted()), 'released after writeDiff');
    await assert.rejects(d.writeDiff('ctr', undefined, 999_999), { code: 'EBADF' }); // no such descriptor
    assert.ok(!(await isMounted()), 'released after a failed writeDiff');
    assert.throws(() => d.writeDiff('ctr', undefined, -1), { code: 'ERR_OGD_INVALID_OPTION' });

    // A mount the caller holds stays.
    await d.get('ctr');
    await bytesOf(await d.diff('ctr'));
    await settle();
    assert.ok(await isMounted(), "the caller's own reference is kept");
    await d.put('ctr');
  } finally {
    await d.cleanup();
  }
  assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir + '/')), []);
});
