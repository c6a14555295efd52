// A process SIGKILLed in the middle of applyDiff: the layer must be left as it was
// before (no half-written root/ or upper/), and the next createDriver on that home
// must sweep the staging dir, and any mount the dead process left in it, by itself.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, readdir, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createDriver } from '../lib/index.js';
import type { Driver } from '../lib/types.js';
import { assertMountinfoRestoredAtEnd, listTree, mountsUnder, openStore, tarStream } from './helpers/driver-suite.js';

assertMountinfoRestoredAtEnd();

const indexJs = fileURLToPath(new URL('../lib/index.js', import.meta.url));
const repoRoot = join(dirname(indexJs), '..', '..');

// The child applies a 300-file layer but stalls its source after 200 files, so the
// parent can kill it while the staging dir is half-filled.
const childScript = `
import * as ogd from ${JSON.stringify(indexJs)};
import tar from 'tar-stream';
import { buffer } from 'node:stream/consumers';
const [home, id, parent] = JSON.parse(process.argv[1]);
const pack = tar.pack();
for (let i = 0; i < 300; i++) pack.entry({ name: 'f' + i, mode: 0o644 }, 'x'.repeat(4000));
pack.finalize();
const bytes = await buffer(pack);
setInterval(() => {}, 1000); // stay alive while stalled
async function* stalled() {
  yield bytes.subarray(0, 200 * 4608); // 200 entries: 512-byte header + 4000 bytes padded to 4096
  await new Promise(() => {});
}
const d = await ogd.createDriver('overlay', home);
await d.applyDiff(id, parent, stalled());
`;

/** Starts the child, waits until `staged` shows up below the layer's staging dir, SIGKILLs it. */
async function killMidApply(t: TestContext, home: string, id: string, parent: string | undefined, staged: string): Promise<string> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', childScript, JSON.stringify([home, id, parent])], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, signal) => resolve(signal ?? code)));
  t.after(() => void child.kill('SIGKILL'));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = (await readdir(join(home, id))).find((n) => n.startsWith('tmproot'));
    if (found !== undefined && (await access(join(home, id, found, staged)).then(() => true, () => false))) {
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL', `the child was killed mid-apply (stderr: ${stderr})`);
      return found;
    }
    if (child.exitCode !== null || Date.now() > deadline) assert.fail(`the child never reached ${staged} (exit ${child.exitCode}; stderr: ${stderr})`);
    await sleep(20);
  }
}

async function reopen(home: string): Promise<Driver> {
  return createDriver('overlay', home);
}

test('SIGKILL mid-applyDiff of a base layer: root/ stays empty, the next createDriver sweeps the staging dir', async (t) => {
  const s = await openStore(t, (h) => createDriver('overlay', h));
  if (!s) return;
  await s.driver.create('base');
  await s.driver.cleanup();
  const staging = await killMidApply(t, s.home, 'base', undefined, 'f150');
  assert.deepEqual(await readdir(join(s.home, 'base', 'root')), [], 'nothing applied in place');
  const d = await reopen(s.home);
  assert.deepEqual((await readdir(join(s.home, 'base'))).sort(), ['root'], `${staging} was swept`);
  await d.applyDiff('base', undefined, await tarStream([{ name: 'ok', content: 'ok' }]));
  assert.deepEqual(await listTree(await d.get('base')), ['ok = ok']);
  await d.cleanup();
  assert.deepEqual(await mountsUnder(s.dir), [], "the dead child's home mount is gone too");
});

test('SIGKILL mid-applyDiff over a parent image: no root/ appears, the layer keeps its overlay parts', async (t) => {
  const s = await openStore(t, (h) => createDriver('overlay', h));
  if (!s) return;
  await s.driver.create('img');
  await s.driver.applyDiff('img', undefined, await tarStream([{ name: 'etc/', type: 'directory' }, { name: 'etc/os', content: 'img' }]));
  await s.driver.create('layer', 'img');
  await s.driver.cleanup();
  const before = (await readdir(join(s.home, 'layer'))).sort();
  await killMidApply(t, s.home, 'layer', 'img', 'f150');
  const d = await reopen(s.home);
  assert.deepEqual((await readdir(join(s.home, 'layer'))).sort(), before);
  assert.deepEqual(before, ['lower-id', 'merged', 'upper', 'work']);
  await d.applyDiff('layer', 'img', await tarStream([{ name: 'ok', content: 'ok' }]));
  assert.deepEqual(await listTree(await d.get('layer')), ['etc/', 'etc/os = img', 'ok = ok']);
  await d.cleanup();
  assert.deepEqual(await mountsUnder(s.dir), []);
});

test('SIGKILL mid-applyDiff through a staged mount: upper/ unchanged, the dead mount is unmounted and swept', async (t) => {
  const s = await openStore(t, (h) => createDriver('overlay', h));
  if (!s) return;
  const d0 = s.driver;
  await d0.create('img');
  await d0.applyDiff('img', undefined, await tarStream([{ name: 'etc/', type: 'directory' }, { name: 'etc/os', content: 'img' }]));
  await d0.create('init', 'img');
  await writeFile(join(await d0.get('init'), 'init-file'), 'i');
  await d0.put('init');
  await d0.create('ctr', 'init');
  await d0.cleanup();
  const upperBefore = await listTree(join(s.home, 'ctr', 'upper'));
  const staging = await killMidApply(t, s.home, 'ctr', 'init', 'upper/f150');
  assert.ok((await mountsUnder(s.dir)).includes(join(s.home, 'ctr', staging, 'merged')), 'the dead child left its staging mount');
  const d = await reopen(s.home);
  assert.deepEqual(await mountsUnder(s.dir), [s.home], 'the staging mount is gone');
  assert.deepEqual((await readdir(join(s.home, 'ctr'))).sort(), ['lower-id', 'merged', 'upper', 'work']);
  assert.deepEqual(await listTree(join(s.home, 'ctr', 'upper')), upperBefore);
  await d.applyDiff('ctr', 'init', await tarStream([{ name: 'ok', content: 'ok' }]));
  assert.deepEqual(await listTree(await d.get('ctr')), ['etc/', 'etc/os = img', 'init-file = i', 'ok = ok']);
  await d.put('ctr');
  await d.cleanup();
  assert.deepEqual(await mountsUnder(s.dir), []);
});
