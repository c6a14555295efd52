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
