// OFD read/write locks (lib/locks.ts): they exclude across processes and inside one
// process, a blocking wait does not block the event loop, and the kernel drops the
// lock of a process killed with SIGKILL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { lock, tryLock } from '../lib/locks.js';
import { tempDir } from './helpers/sandbox.js';

const locksJs = fileURLToPath(new URL('../lib/locks.js', import.meta.url));

/** A child that takes `kind` on `path`, says "locked" and waits to be killed. */
async function holder(path: string, kind: 'read' | 'write') {
  const script = `import { lock } from ${JSON.stringify(locksJs)}; await lock(process.argv[1], process.argv[2]); process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, path, kind], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  assert.equal(chunk.toString(), 'locked\n');
  return child;
}

test('a write lock excludes other processes until its holder is SIGKILLed', async (t) => {
  const path = join(await tempDir(t), 'store.lock');
  const child = await holder(path, 'write');
  t.after(() => child.kill('SIGKILL'));
  assert.equal(await tryLock(path, 'read'), undefined);
  assert.equal(await tryLock(path, 'write'), undefined);
  let got = false;
  const waiting = lock(path, 'write').then((h) => ((got = true), h));
  // The event loop keeps running while the wait lasts.
  await sleep(100);
  assert.equal(got, false);
  child.kill('SIGKILL');
  const held = await waiting;
  assert.equal(held.kind, 'write');
  await held.release();
});

test('read locks share across processes, and exclude a writer', async (t) => {
  const path = join(await tempDir(t), 'store.lock');
  const child = await holder(path, 'read');
  t.after(() => child.kill('SIGKILL'));
  const mine = await tryLock(path, 'read');
  assert.ok(mine, 'a second reader gets the lock');
  assert.equal(await tryLock(path, 'write'), undefined);
  await mine.release();
  child.kill('SIGKILL');
  await once(child, 'exit');
  const w = await tryLock(path, 'write');
  assert.ok(w);
  await w.release();
});

test('two acquisitions in one process exclude each other (one file description each)', async (t) => {
  const path = join(await tempDir(t), 'x.lock');
  const a = await lock(path, 'write');
  assert.equal(await tryLock(path, 'write'), undefined);
  const order: string[] = [];
  const b = lock(path, 'write').then(async (h) => {
    order.push('b');
    await h.release();
  });
  await sleep(50);
  order.push('a released');
  await a.release();
  await b;
  assert.deepEqual(order, ['a released', 'b']);
});

test('a waiter on a lock file that its holder deletes starts over on the new file', async (t) => {
  const path = join(await tempDir(t), 'layer.lock');
  const a = await lock(path, 'write');
  const b = lock(path, 'write');
  await sleep(50);
  await a.removeAndRelease();
  const hb = await b;
  // The lock b holds is the one at `path` now: a third taker must not get it.
  assert.equal(await tryLock(path, 'write'), undefined);
  await hb.release();
});

test("a waiter's probes see what the holder wrote before it released the lock", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'layer.lock');
  const record = join(dir, 'record');
  await writeFile(record, 'before');
  const a = await lock(path, 'write', [['read', record]]);
  assert.deepEqual(a.probed, [Buffer.from('before')], 'an uncontended lock probes in its own trip');
  const b = lock(path, 'write', [['read', record]]);
  await sleep(50);
  await writeFile(record, 'after');
  await a.release();
  const hb = await b;
  assert.deepEqual(hb.probed, [Buffer.from('after')]);
  await hb.release();
});
