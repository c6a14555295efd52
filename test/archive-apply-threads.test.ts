// The native apply writes small files on writer threads while it parses on
// (native/file_writers.h). Whatever overlaps, the tree must be the one stream order
// gives: the same as with every file on the parsing thread (threads: 0), on layers
// built to trip a reordering — a file replaced by a later file, a lower directory
// replaced by a file while files go into it, files then a dir on their path, hardlinks
// and whiteouts of files just handed to the writers, names through a symlinked parent
// (an alias of an in-flight path), a file in a dir that a later file replaces.
import assert from 'node:assert/strict';
import { lutimes, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyTar } from '../lib/archive/apply.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, chunked } from './helpers/tar-builder.js';
import { compareManifests, manifest } from './helpers/tree.js';

const T = 1_600_000_000;

async function lower(root: string): Promise<void> {
  await mkdir(join(root, 'dir-becomes-file/sub'), { recursive: true });
  await writeFile(join(root, 'dir-becomes-file/sub/f'), 'lower');
  await mkdir(join(root, 'real'), { recursive: true });
  await symlink('real', join(root, 'alias'));
  await writeFile(join(root, 'file-becomes-dir'), 'lower');
  await writeFile(join(root, 'whited'), 'lower');
  for (const p of ['dir-becomes-file/sub/f', 'alias', 'file-becomes-dir', 'whited']) await lutimes(join(root, p), T, T);
}

// Directories this test does not name get the time of their last change: compared for everything else.
const same = { mtimeTypes: ['file', 'symlink', 'char', 'block', 'fifo'] as const };

function layer(): Buffer {
  const b = new TarBuilder();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 200; i++) b.file(`many/${i % 7}/f${i}`, `round ${round} file ${i}\n`.repeat(1 + (i % 50)), { mtime: T + i, mode: 0o644 | (i % 3 ? 0 : 0o4000) });
    b.file('twice', `round ${round}`, { mtime: T + round });
    b.file('dir-becomes-file/sub/f', `into the lower dir ${round}`);
    b.file('alias/x', `through the alias ${round}`);
    b.file('real/x', `by the real name ${round}`);
  }
  // The same name twice in a row: both would be on the writers at once.
  for (let i = 0; i < 400; i++) b.file(`dup/${i}`, 'first', { mtime: T }).file(`dup/${i}`, 'second', { mtime: T + 1 });
  b.file('dir-becomes-file', 'now a file'); // replaces the lower dir with its in-flight file below it
  b.dir('file-becomes-dir/', { mtime: T }); // replaces a lower file
  b.file('file-becomes-dir/now', 'x');
  return b.end();
}

function layerOrdered(): Buffer {
  const b = new TarBuilder();
  for (let i = 0; i < 300; i++) b.file(`d/f${i}`, `v1 ${i}`);
  b.hardlink('d/link-to-f7', 'd/f7', { mtime: T + 7 });
  b.file('d/f7', 'replaced after its hardlink');
  b.whiteout('whited');
  b.file('whited', 'recreated after the whiteout');
  for (let i = 0; i < 50; i++) b.file(`e/f${i}`, `e ${i}`);
  b.dir('e/f3/', { mode: 0o750 }); // a dir over an in-flight file
  b.file('e/f3/inside', 'inside');
  b.file('e', 'file over a dir of in-flight files');
  b.dir('e/', { mode: 0o700 });
  b.file('e/again', 'again');
  return b.end();
}

async function both(t: Parameters<typeof tempDir>[0], tar: Buffer): Promise<{ one: string; many: string; errors: [unknown, unknown] }> {
  const dir = await tempDir(t);
  const one = join(dir, 'one');
  const many = join(dir, 'many');
  const errors: [unknown, unknown] = [undefined, undefined];
  for (const [i, [root, threads]] of ([[one, 0], [many, 2]] as const).entries()) {
    await mkdir(root);
    await lower(root);
    await applyTar(root, chunked(tar, 4096), { threads }).catch((err: unknown) => (errors[i] = err));
  }
  return { one, many, errors };
}

test('writer threads give the tree of stream order: replacements, aliases, a lower dir replaced under in-flight files', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { one, many, errors } = await both(t, layer());
  assert.deepEqual(errors, [undefined, undefined]);
  assert.deepEqual(compareManifests(await manifest(one), await manifest(many), { mtimeTypes: [...same.mtimeTypes] }), []);
  assert.equal(await readFile(join(many, 'twice'), 'utf8'), 'round 2');
  for (let i = 0; i < 400; i++) assert.equal(await readFile(join(many, `dup/${i}`), 'utf8'), 'second', `dup/${i}`);
  assert.equal(await readFile(join(many, 'real/x'), 'utf8'), 'by the real name 2');
  assert.equal(await readFile(join(many, 'dir-becomes-file'), 'utf8'), 'now a file');
});

test('writer threads give the tree of stream order: hardlinks, whiteouts and directories after in-flight files', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { one, many, errors } = await both(t, layerOrdered());
  assert.deepEqual(errors, [undefined, undefined]);
  assert.deepEqual(compareManifests(await manifest(one), await manifest(many), { mtimeTypes: [...same.mtimeTypes] }), []);
  assert.equal(await readFile(join(many, 'd/link-to-f7'), 'utf8'), 'v1 7');
  assert.equal(await readFile(join(many, 'd/f7'), 'utf8'), 'replaced after its hardlink');
  assert.equal(await readFile(join(many, 'whited'), 'utf8'), 'recreated after the whiteout');
  assert.equal(await readFile(join(many, 'e/again'), 'utf8'), 'again');
});

// Directories and symlinks no longer wait for every file in flight, only for one on their path.
function layerSymlinksAndDirs(): Buffer {
  const b = new TarBuilder();
  for (let d = 0; d < 40; d++) {
    b.dir(`t/${d}/`, { mtime: T + d, mode: 0o755 });
    for (let i = 0; i < 12; i++) b.file(`t/${d}/f${i}`, `dir ${d} file ${i}\n`.repeat(1 + i), { mtime: T + i });
    b.symlink(`t/${d}/f3`, 'f0', { mtime: T }); // over a file just handed to the writers
    b.symlink(`t/${d}/to-f1`, 'f1', { mtime: T }); // beside them
    b.dir(`t/${d}/f5/`, { mtime: T }); // a directory over an in-flight file
    b.file(`t/${d}/f5/in`, 'inside');
    b.file(`t/${d}/via-link/x`, 'a parent the stream never named');
    b.symlink(`t/${d}/via-link`, '../0', { mtime: T }); // replaces the directory just made implicitly
    b.file(`t/${d}/via-link/y`, 'through the symlink to t/0');
  }
  return b.end();
}

test('writer threads give the tree of stream order: symlinks and directories beside and over in-flight files', async (t) => {
  if (skipUnlessRoot(t)) return;
  const { one, many, errors } = await both(t, layerSymlinksAndDirs());
  assert.deepEqual(errors, [undefined, undefined]);
  assert.deepEqual(compareManifests(await manifest(one), await manifest(many), { mtimeTypes: [...same.mtimeTypes] }), []);
  assert.equal(await readFile(join(many, 't/7/to-f1'), 'utf8'), 'dir 7 file 1\n'.repeat(2));
  assert.equal(await readFile(join(many, 't/7/f3'), 'utf8'), 'dir 7 file 0\n');
  assert.equal(await readFile(join(many, 't/7/f5/in'), 'utf8'), 'inside');
  assert.equal(await readFile(join(many, 't/0/y'), 'utf8'), 'through the symlink to t/0');
});

test('writer threads refuse a file under an in-flight file as stream order does', async (t) => {
  if (skipUnlessRoot(t)) return;
  // A lone file in flight waits for a batch before its writer wakes: its name is not there yet when the next entry's parent is walked.
  const b = new TarBuilder();
  b.dir('p/');
  b.file('p/q', 'a file');
  b.file('p/q/r', 'under a file');
  const { errors } = await both(t, b.end());
  const codes = errors.map((e) => (e as { code?: string } | undefined)?.code);
  assert.ok(codes[0] !== undefined, 'one thread refuses it');
  assert.deepEqual(codes, [codes[0], codes[0]]);
});
