// Names that climb out of the layer root through "..", absolute paths, ustar
// prefixes, PAX and GNU long names, hardlink targets and whiteouts. Every one is
// refused (UnsafeLayerError) or clamped inside the root; nothing outside changes.
import assert from 'node:assert/strict';
import { readFile, lstat, mkdir } from 'node:fs/promises';
import { applyTar } from '../lib/archive/apply.js';
import { join } from 'node:path';
import { test } from 'node:test';
import { runHostileCase, type HostileCase } from './helpers/hostile.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { TarBuilder, chunked, header, paxRecords, padding } from './helpers/tar-builder.js';

const cases: HostileCase[] = [
  { name: 'dot-dot file name', expect: 'unsafe', tar: new TarBuilder().file('../beside', 'pwned').end() },
  { name: 'dot-dot after a real component', expect: 'unsafe', tar: new TarBuilder().dir('a/').file('a/../../outside/sentinel', 'pwned').end() },
  { name: 'absolute name climbing past /', expect: 'unsafe', tar: new TarBuilder().file('/../outside/sentinel', 'pwned').end() },
  { name: 'dot-dot in a PAX path', expect: 'unsafe', tar: new TarBuilder().file('harmless', 'pwned', { pax: { path: '../../outside/sentinel' } }).end() },
  { name: 'dot-dot in a GNU long name', expect: 'unsafe', tar: new TarBuilder().file('../' + 'x'.repeat(120), 'pwned', { longNames: 'gnu' }).end() },
  {
    name: 'dot-dot in the ustar prefix field',
    expect: 'unsafe',
    tar: new TarBuilder().entry({ name: 'outside/sentinel', prefix: '..', typeflag: '0', size: 5 }, {}, Buffer.from('pwned')).end(),
  },
  { name: 'dot-dot directory entry', expect: 'unsafe', tar: new TarBuilder().dir('../', { mode: 0o777 }).end() },
  { name: 'dot-dot symlink entry', expect: 'unsafe', tar: new TarBuilder().symlink('../escape', '/').end() },
  { name: 'hardlink target climbing out', expect: 'unsafe', tar: new TarBuilder().hardlink('h', '../outside/sentinel').end() },
  { name: 'hardlink target climbing out in a PAX linkpath', expect: 'unsafe', tar: new TarBuilder().hardlink('h', 'x', { pax: { linkpath: '/../../etc/passwd' } }).end() },
  { name: 'whiteout of ".."', expect: 'unsafe', tar: new TarBuilder().dir('a/').file('a/.wh...').end() },
  { name: 'whiteout of "."', expect: 'unsafe', tar: new TarBuilder().file('.wh..').end() },
  { name: 'whiteout climbing out', expect: 'unsafe', tar: new TarBuilder().file('../.wh.outside').end() },
  { name: 'file replacing the root', expect: 'unsafe', tar: new TarBuilder().file('.', 'pwned').end() },
  {
    name: 'absolute path into /tmp lands inside the root',
    expect: 'contained',
    tar: (s) => new TarBuilder().file(s.tmpVictim, 'pwned').end(),
    check: async (s) => assert.equal(await readFile(join(s.root, s.tmpVictim), 'utf8'), 'pwned'),
  },
  {
    name: 'PAX path with a NUL byte',
    expect: 'invalid',
    tar: new TarBuilder().file('ok', 'x', { pax: { path: Buffer.from('ok\0/../../beside') } }).end(),
  },
  {
    name: 'name component over NAME_MAX',
    expect: 'invalid',
    tar: new TarBuilder().file('a'.repeat(300), 'x').end(),
  },
  {
    name: 'dot-dot hidden in a PAX header split across chunks',
    expect: 'unsafe',
    tar: () => {
      const rec = paxRecords({ path: '../'.repeat(40) + 'beside' });
      const data = Buffer.concat([header({ name: 'p', typeflag: 'x', size: rec.length }), rec, padding(rec.length), header({ name: 'x', size: 0 }), Buffer.alloc(1024)]);
      return (async function* () {
        for (let i = 0; i < data.length; i += 7) yield data.subarray(i, i + 7);
      })();
    },
  },
];

for (const c of cases) {
  test(`path traversal: ${c.name}`, async (t) => {
    if (skipUnlessRoot(t)) return;
    await runHostileCase(t, c);
  });
}

test('path traversal: the refused entry is named in the error', async (t) => {
  if (skipUnlessRoot(t)) return;
  const root = await tempDir(t);
  const tar = new TarBuilder().file('fine', 'x').file('a/../../beside', 'pwned').end();
  await mkdir(join(root, 'r'));
  await assert.rejects(applyTar(join(root, 'r'), chunked(tar)), (err: { entry?: string; code?: string }) => {
    assert.equal(err.code, 'ERR_OGD_UNSAFE_LAYER');
    assert.equal(err.entry, 'a/../../beside');
    return true;
  });
  await assert.rejects(lstat(join(root, 'beside')), { code: 'ENOENT' });
});
