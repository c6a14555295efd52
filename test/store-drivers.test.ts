// The store over each driver (issue 11): openStore(home, { driver }) and ogd --driver
// run the same life of a layer on overlay2 and vfs (import, child, container, mount,
// write, changes, check, remove), and a store keeps the driver it was made with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openStore } from '../lib/index.js';
import { ogd, ogdOk } from './helpers/ogd-cli.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { pack } from './helpers/tar-builder.js';

for (const driver of ['overlay2', 'vfs'] as const) {
  test(`store on ${driver}: import, child, container mount and write, changes, check clean, remove`, async (t) => {
    if (skipUnlessRoot(t)) return;
    const dir = await tempDir(t, 'ogd-store-');
    const home = join(dir, 'home');
    const store = await openStore(home, { driver });
    try {
      await store.importLayer('base', Readable.from([await pack([{ name: 'etc/', type: 'directory', mode: 0o755 }, { name: 'etc/a', content: 'a\n' }, { name: 'etc/b', content: 'b\n' }])]));
      await store.importLayer('app', Readable.from([await pack([{ name: 'etc/.wh.b', content: '' }, { name: 'etc/c', content: 'c\n' }])]), { parent: 'base' });
      assert.deepEqual(await store.changes('app'), [
        { path: '/etc', kind: 'C' },
        { path: '/etc/b', kind: 'D' },
        { path: '/etc/c', kind: 'A' },
      ]);
      await store.create('web', { parent: 'app', kind: 'container' });
      const root = await store.mount('web');
      assert.equal(await readFile(join(root, 'etc/a'), 'utf8'), 'a\n');
      await writeFile(join(root, 'hello'), 'hi');
      assert.deepEqual(await store.changes('web'), [{ path: '/hello', kind: 'A' }]);
      assert.equal((await mountPoints()).includes(root), driver === 'overlay2', driver === 'vfs' ? 'vfs mounts nothing' : 'overlay2 mounts the container');
      const check = await store.check();
      assert.deepEqual(check.problems, [], 'check is clean');
      await store.unmount('web');
      await store.remove('web');
      await assert.rejects(store.remove('base'), { code: 'ERR_OGD_LAYER_IN_USE' });
      assert.deepEqual((await store.list()).map((l) => l.id).sort(), ['app', 'base']);
    } finally {
      await store.cleanup();
    }
    assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(dir)), []);
  });
}

test('ogd --driver vfs makes a vfs store; a later --driver overlay is refused naming vfs; no --driver uses the store\'s own', async (t) => {
  if (skipUnlessRoot(t)) return;
  const dir = await tempDir(t, 'ogd-store-');
  const home = join(dir, 'home');
  const tar = join(dir, 'l.tar');
  await writeFile(tar, await pack([{ name: 'x', content: 'x' }]));
  await ogdOk(['--home', home, '--driver', 'vfs', 'import', 'base', tar]);
  const wrong = await ogd(['--home', home, '--driver', 'overlay', 'ls']);
  assert.equal(wrong.code, 125);
  assert.match(wrong.stderr, /uses the vfs driver, not overlay/);
  const status = await ogdOk(['--home', home, '--json', 'status']);
  assert.equal(JSON.parse(status).driver, 'vfs');
  await ogdOk(['--home', home, 'cleanup']);
});
