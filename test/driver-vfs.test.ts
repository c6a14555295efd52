// The vfs driver: the conformance suite, and the promise that it never mounts: the
// whole suite runs again under strace, which must see no mount syscall.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDriver } from '../lib/index.js';
import type { DriverOptions } from '../lib/types.js';
import { assertMountinfoRestoredAtEnd, driverSuite, mountsUnder, openStore, tarStream } from './helpers/driver-suite.js';
import { skipUnlessRoot, tempDir } from './helpers/sandbox.js';

const run = promisify(execFile);
const factory = (home: string, opts?: DriverOptions) => createDriver('vfs', home, opts);

assertMountinfoRestoredAtEnd();

driverSuite('vfs', factory, { sharesInodes: false, imageGetMounts: false, containerGetMounts: false, homeEntries: [] });

test('vfs: a container is a full copy, no mount table entry appears for any get', async (t) => {
  const s = await openStore(t, factory);
  if (!s) return;
  const d = s.driver;
  await d.create('base');
  await d.applyDiff('base', undefined, await tarStream([{ name: 'a', content: 'a' }]));
  await d.createReadWrite('ctr', 'base');
  const before = await mountsUnder(s.dir);
  const root = await d.get('ctr');
  assert.equal(await readFile(join(root, 'a'), 'utf8'), 'a');
  assert.deepEqual(await mountsUnder(s.dir), before);
  assert.deepEqual(await d.changes('ctr', 'base'), []);
  await d.put('ctr');
  await s.done();
});

test('vfs: create, apply, get, diff and remove make no mount syscall (strace)', async (t) => {
  if (skipUnlessRoot(t)) return;
  const strace = await run('strace', ['-V']).then(() => true, () => false);
  if (!strace) return t.skip('strace is not installed');
  const dir = await tempDir(t, 'ogd-driver-vfs-strace-');
  const indexJs = fileURLToPath(new URL('../lib/index.js', import.meta.url));
  const script = `
    import * as ogd from ${JSON.stringify(indexJs)};
    import tar from 'tar-stream';
    import { buffer } from 'node:stream/consumers';
    import { Readable } from 'node:stream';
    const pack = tar.pack(); pack.entry({ name: 'etc/' , type: 'directory' }); pack.entry({ name: 'etc/x' }, 'x'); pack.finalize();
    const bytes = await buffer(pack);
    const store = await ogd.openStore(${JSON.stringify(join(dir, 'store'))}, { driver: 'vfs' });
    await store.importLayer('base', Readable.from([bytes]));
    await store.create('ctr', { parent: 'base', kind: 'container' });
    const p = await store.mount('ctr');
    await store.changes('ctr');
    await buffer(await store.diff('ctr'));
    await store.unmount('ctr');
    await store.remove('ctr');
    await store.cleanup();
    console.log(p);
  `;
  const log = join(dir, 'strace.log');
  await run('strace', ['-f', '-e', 'trace=mount,umount2,fsopen,fsmount,move_mount,mount_setattr,open_tree', '-o', log, process.execPath, '--input-type=module', '-e', script], { timeout: 60_000 });
  const calls = (await readFile(log, 'utf8')).split('\n').filter((l) => /\b(mount|umount2|fsopen|fsmount|move_mount|mount_setattr|open_tree)\(/.test(l));
  assert.deepEqual(calls, [], 'no mount-related syscall');
});
