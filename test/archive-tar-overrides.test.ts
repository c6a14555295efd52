// A tar header's own fields are only a fallback: GNU long names ('L', 'K') and PAX
// records (path, linkpath, size, uid, gid, mtime) replace them, and everything the
// reader decides (an entry's type included) must look at the final values. Two real
// defects came from deciding too early:
// - a name cut at 100 bytes that ends in '/' made a regular file a directory, so a
//   hardlink to a file at a long path was refused ("it hardlinks a directory");
// - Go's archive/tar (umoci, containers-storage, buildah, docker) writes a non-ASCII
//   name in a PAX `path` record and only its ASCII remainder in the header
//   ("srv/fixture/names/" for "srv/fixture/names/éé…"): the file became a directory.
// Crafted tars pin each rule; tars written by Python, GNU tar and Go (umoci,
// containers-storage) of one source tree must apply to that tree, entry by entry.
import assert from 'node:assert/strict';
import { chown, link, lstat, mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { applyTar } from '../lib/archive/apply.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, base256, chunked, header, padding, paxRecords } from './helpers/tar-builder.js';
import { compareManifests, manifest } from './helpers/tree.js';
import { missing, packWith, peerWriters } from './helpers/peer-tars.js';
import { openStore } from './helpers/driver-suite.js';
import { createDriver } from '../lib/index.js';

const run = promisify(execFile);

interface Applied {
  type: 'file' | 'dir' | 'symlink' | 'other';
  linkname?: string;
  size: number;
  uid: number;
  gid: number;
  mtime: { sec: number; nsec: number };
  body: string;
}

/**
 * Applies `tar` (in small chunks: headers split across reads) to a fresh root and
 * returns what each of `names` became there: the parser is judged by the tree it makes.
 */
async function applyAndLook(t: TestContext, tar: Buffer, names: readonly string[]): Promise<Applied[]> {
  const root = join(await tempDir(t), 'root');
  await mkdir(root);
  await applyTar(root, chunked(tar, 100));
  const out: Applied[] = [];
  for (const name of names) {
    const path = join(root, name);
    const st = await lstat(path, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    const sec = st.mtimeNs / 1_000_000_000n - (st.mtimeNs % 1_000_000_000n < 0n ? 1n : 0n);
    out.push({
      type,
      ...(type === 'symlink' ? { linkname: await readlink(path) } : {}),
      size: Number(st.size),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: { sec: Number(sec), nsec: Number(st.mtimeNs - sec * 1_000_000_000n) },
      body: type === 'file' ? await readFile(path, 'latin1') : '',
    });
  }
  return out;
}

/** 250 bytes of directories whose first 100 bytes end in '/': what a 100-byte name field keeps of it. */
const longDir = Array.from({ length: 5 }, () => 'd'.repeat(49)).join('/');
const longFile = `${longDir}/${'f'.repeat(200)}`;

/** A file entry with a PAX header holding `records`, and `ustarName` in the header itself (as Go writes it). */
function paxFile(ustarName: string, records: Record<string, string>, content: string, flag = '0', size = content.length): Buffer {
  const pax = paxRecords(records);
  const data = Buffer.from(content);
  return Buffer.concat([
    header({ name: 'PaxHeaders/x', typeflag: 'x', size: pax.length }),
    pax,
    padding(pax.length),
    header({ name: ustarName, typeflag: flag, size }),
    data,
    padding(data.length),
  ]);
}

const end = Buffer.alloc(1024);

test("Go's non-ASCII names: the PAX path wins over the header's ASCII remainder, which ends in a slash", async (t) => {
  if (skipUnlessRoot(t)) return;
  const name = `srv/fixture/names/${'é'.repeat(127)}`;
  const tar = Buffer.concat([paxFile('srv/fixture/names/', { path: name }, 'accent'), new TarBuilder().file('after', 'next').end()]);
  const got = await applyAndLook(t, tar, [name, 'after']);
  assert.deepEqual(
    got.map((r) => [r.type, r.body]),
    [
      ['file', 'accent'],
      ['file', 'next'],
    ],
  );
});

for (const longNames of ['pax', 'gnu'] as const) {
  test(`${longNames} long names: a name cut at 100 bytes that ends in a slash is still a file, and a hardlink to it reads its full target`, async (t) => {
    if (skipUnlessRoot(t)) return;
    assert.ok(longFile.slice(0, 100).endsWith('/'), 'the header keeps a name ending in a slash');
    const tar = new TarBuilder().file(longFile, 'hello', { longNames }).hardlink('short-hl', longFile, { longNames }).symlink('sym', longFile, { longNames }).end();
    const got = await applyAndLook(t, tar, [longFile, 'short-hl', 'sym']);
    assert.deepEqual(
      got.map((r) => [r.type, r.linkname, r.body]),
      [
        ['file', undefined, 'hello'],
        ['file', undefined, 'hello'],
        ['symlink', longFile, ''],
      ],
    );
  });
}

test('the trailing-slash directory rule: only on the final name, only for pre-POSIX headers (NUL flag or V7)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const tar = Buffer.concat([
    header({ name: 'nul-dir/', typeflag: '\0', mode: 0o755 }),
    header({ name: 'v7-dir/', typeflag: '0', format: 'v7', mode: 0o755 }),
    // POSIX ustar, flag '0': a file, whatever its name (Go reads it so; the name cleans to "posix-file").
    header({ name: 'posix-file/', typeflag: '0' }),
    header({ name: 'gnu-file/', typeflag: '0', format: 'gnu' }),
    // NUL flag: the PAX path decides, not the header's name.
    paxFile('nul/', { path: 'nul/file' }, 'x', '\0'),
    paxFile('nul-x', { path: 'nul-pax-dir/' }, '', '\0'),
    end,
  ]);
  const got = await applyAndLook(t, tar, ['nul-dir', 'v7-dir', 'posix-file', 'gnu-file', 'nul/file', 'nul-pax-dir']);
  assert.deepEqual(
    got.map((r) => r.type),
    ['dir', 'dir', 'file', 'file', 'file', 'dir'],
  );
});

test('a PAX path or linkpath wins over a GNU long name or link name before the same entry', async (t) => {
  if (skipUnlessRoot(t)) return;
  const b = new TarBuilder();
  b.gnuLong('L', Buffer.from('gnu-name'));
  b.gnuLong('K', Buffer.from('gnu-target'));
  b.paxHeader({ path: 'pax-name', linkpath: 'pax-target' });
  b.raw(header({ name: 'header-name', typeflag: '2', linkname: 'header-target' }));
  const [sym] = await applyAndLook(t, b.end(), ['pax-name']);
  assert.deepEqual([sym!.type, sym!.linkname], ['symlink', 'pax-target']);
});

test('PAX size, uid, gid and mtime override the header; an empty PAX value leaves the header field', async (t) => {
  if (skipUnlessRoot(t)) return;
  const tar = Buffer.concat([
    // Header fields all 0 (as Go writes them when a value does not fit): the PAX records are the truth.
    paxFile('big-ids', { uid: '3000000', gid: '3000001', mtime: '9000000000.5', size: '6' }, 'sixsix', '0', 0),
    // Empty values delete the override (POSIX): the header's name, size and ids stand.
    Buffer.concat([
      (() => {
        const pax = paxRecords({ path: '', linkpath: '', size: '', uid: '', gid: '', mtime: '' });
        return Buffer.concat([header({ name: 'PaxHeaders/x', typeflag: 'x', size: pax.length }), pax, padding(pax.length)]);
      })(),
      header({ name: 'kept', typeflag: '0', size: 3, uid: 7, gid: 8, mtime: 1234 }),
      Buffer.from('abc'),
      padding(3),
    ]),
    end,
  ]);
  const got = await applyAndLook(t, tar, ['big-ids', 'kept']);
  assert.deepEqual(
    got.map((r) => [r.size, r.uid, r.gid, r.mtime, r.body]),
    [
      [6, 3_000_000, 3_000_001, { sec: 9_000_000_000, nsec: 500_000_000 }, 'sixsix'],
      [3, 7, 8, { sec: 1234, nsec: 0 }, 'abc'],
    ],
  );
});

test('a GNU base-256 mtime before 1970 (GNU tar, Python) reads as negative; a negative size is still refused', async (t) => {
  if (skipUnlessRoot(t)) return;
  const tar = Buffer.concat([header({ name: 'old', typeflag: '0', format: 'gnu', rawFields: { mtime: base256(-86_400n, 12) } }), end]);
  const [old] = await applyAndLook(t, tar, ['old']);
  assert.deepEqual(old!.mtime, { sec: -86_400, nsec: 0 });
  const negSize = Buffer.concat([header({ name: 'x', typeflag: '0', format: 'gnu', rawFields: { size: base256(-512n, 12) } }), end]);
  await assert.rejects(applyAndLook(t, negSize, []), { code: 'ERR_OGD_INVALID_ARCHIVE' });
});

for (const longNames of ['pax', 'gnu'] as const) {
  test(`${longNames}: a hardlink to a file at a long path applies (the issue's repro)`, async (t) => {
    if (skipUnlessRoot(t)) return;
    const dir = await tempDir(t);
    const root = join(dir, 'root');
    await mkdir(root);
    const tar = new TarBuilder().file(longFile, 'hello', { longNames }).hardlink('short-hl', longFile, { longNames }).end();
    await applyTar(root, chunked(tar));
    const m = await manifest(root);
    const file = m.get(Buffer.from(longFile).toString('hex'));
    const hl = m.get(Buffer.from('short-hl').toString('hex'));
    assert.equal(file?.type, 'file');
    assert.equal(hl?.type, 'file');
    assert.equal(hl.ino, file.ino, 'short-hl is a hardlink of the long-named file');
  });
}

/**
 * The corpus tree: a file at a 450-byte path (its first 100 bytes end in '/'), a
 * hardlink and a symlink to it, non-ASCII names short and long (a file, a directory,
 * a hardlink to a non-ASCII target), ids too big for the header's octal field, and
 * mtimes before 1970 and after 2242 (beyond 11 octal digits). Whole-second mtimes,
 * set last: every writer keeps them exactly.
 */
async function corpusTree(src: string): Promise<void> {
  const e = (s: string): Buffer => Buffer.from(s, 'utf8');
  await mkdir(join(src, longDir), { recursive: true });
  await writeFile(join(src, longFile), 'hello\n');
  await link(join(src, longFile), join(src, 'short-hl'));
  await symlink(longFile, join(src, 'long-sym'));
  const names = join(src, 'names');
  await mkdir(names);
  await writeFile(e(`${names}/é`), 'one accent\n');
  await writeFile(e(`${names}/${'é'.repeat(127)}`), 'many accents\n');
  await link(e(`${names}/${'é'.repeat(127)}`), e(`${names}/ü-hl`));
  await mkdir(e(`${names}/${'ü'.repeat(100)}`));
  await writeFile(e(`${names}/${'ü'.repeat(100)}/x`), 'in a non-ASCII dir\n');
  await writeFile(join(src, 'big-ids'), 'owned high\n');
  await chown(join(src, 'big-ids'), 3_000_000, 3_000_001);
  await writeFile(join(src, 'old'), 'from 1969\n');
  await writeFile(join(src, 'future'), 'from 2255\n');
  // Times last, children before parents (touch -h: symlinks themselves).
  await run('sh', ['-c', 'find . -depth -exec touch -h -d @1600000000 {} +', '--'], { cwd: src });
  await run('touch', ['-d', '@-86400', 'old'], { cwd: src });
  await run('touch', ['-d', '@9000000000', 'future'], { cwd: src });
}

for (const writer of peerWriters) {
  test(`a tar of the corpus tree written by ${writer}, imported as a layer, is that tree`, async (t) => {
    const reason = missing(writer);
    if (reason !== undefined) {
      t.skip(reason);
      return;
    }
    // Through the driver's applyDiff: whichever apply path it takes is the one tested.
    const s = await openStore(t, (home) => createDriver('overlay', home));
    if (!s) return;
    const src = join(s.dir, 'src');
    const work = join(s.dir, 'work');
    await Promise.all([mkdir(src), mkdir(work)]);
    await corpusTree(src);
    const tar = join(work, 'layer.tar');
    await packWith(t, writer, src, tar, work);
    await s.driver.create('layer');
    await s.driver.applyDiff('layer', undefined, createReadStream(tar));
    const root = await s.driver.get('layer');
    const diffs = compareManifests(await manifest(src), await manifest(root), { rootFields: ['mode', 'uid', 'gid', 'mtime', 'xattrs'] });
    await s.driver.put('layer');
    assert.deepEqual(diffs, []);
    await s.done();
  });
}
