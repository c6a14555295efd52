// Streams that stop early — inside a header, a PAX header, a file's data, its
// padding, before the end-of-archive blocks — and a source that never ends. A cut
// archive is an InvalidArchiveError, never a hang or a silently short layer; an
// apply waiting on a stalled source stops when aborted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyTar } from '../lib/archive/apply.js';
import { runHostileCase } from './helpers/hostile.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder } from './helpers/tar-builder.js';

// 0: PAX header block, 512: PAX body, 1024: file header, 1536: 700 bytes of data, padding to 2560, then a dir.
const archive = new TarBuilder()
  .file('long-' + 'n'.repeat(120), 'a'.repeat(700), { xattrs: { 'user.k': 'v' } })
  .dir('d/')
  .end();

const cuts: Array<[string, number]> = [
  ['inside the first header', 100],
  ['inside the PAX body', 520],
  ['inside the file header', 1100],
  ['right after the file header', 1536],
  ['inside the file data', 1900],
  ['inside the padding', 2300],
  ['inside the directory header', 2600],
];

for (const [where, at] of cuts) {
  test(`truncated stream: cut ${where} (offset ${at})`, async (t) => {
    if (skipUnlessRoot(t)) return;
    assert.ok(at < archive.length);
    await runHostileCase(t, { name: where, expect: 'invalid', tar: archive.subarray(0, at) });
  });
}

test('truncated stream: a source that stalls is stopped by abort', async (t) => {
  const root = await tempDir(t);
  const controller = new AbortController();
  const stalled = (async function* () {
    yield archive.subarray(0, 1900);
    await new Promise(() => undefined); // never resolves
  })();
  setTimeout(() => controller.abort(), 200);
  await assert.rejects(applyTar(root, stalled, { signal: controller.signal }), { code: 'ABORT_ERR' });
});

test('truncated stream: a source that fails passes its error through', async (t) => {
  const root = await tempDir(t);
  const failing = (async function* () {
    yield archive.subarray(0, 1600);
    throw Object.assign(new Error('unexpected end of file'), { code: 'Z_BUF_ERROR' });
  })();
  await assert.rejects(applyTar(root, failing), { code: 'Z_BUF_ERROR' });
});
