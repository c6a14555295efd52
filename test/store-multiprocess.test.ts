// Three processes (two through the library, one through the ogd binary) each run 30+
// random operations on one home: same and different ids, imports, container creates,
// mount/write/unmount, removes, exports, apply-diffs, racing one another. Afterwards
// check() finds nothing wrong, the kernel's mount table and the store's references
// agree, and no process saw its mount taken away while it held it. OGD_STRESS=1 runs
// 120 operations per process, three times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../lib/index.js';
import { ogdOk } from './helpers/ogd-cli.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';

const worker = fileURLToPath(new URL('./helpers/store-worker.js', import.meta.url));
const OPS = process.env['OGD_STRESS'] === '1' ? 120 : 30;

interface Summary {
  name: string;
  ops: number;
  ok: number;
  refused: number;
  unexpected: string[];
  damaged: string[];
}

async function runWorker(home: string, seed: number, mode: 'lib' | 'cli', name: string): Promise<Summary> {
  const child = spawn(process.execPath, [worker, home, String(seed), String(OPS), mode, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, `worker ${name} exited ${code}`);
  return JSON.parse(out) as Summary;
}

for (const seed of process.env['OGD_STRESS'] === '1' ? [1, 2, 3] : [1]) {
  test(`3 processes x ${OPS} random operations on one home (seed ${seed}) leave a consistent store`, async (t) => {
    if (skipUnlessRoot(t)) return;
    const dir = await tempDir(t, 'ogd-store-mp-');
    const home = join(dir, 'home');
    await ogdOk(['--home', home, 'ls']); // nothing yet: creates nothing
    const results = await Promise.all([runWorker(home, seed * 10 + 1, 'lib', 'a'), runWorker(home, seed * 10 + 2, 'lib', 'b'), runWorker(home, seed * 10 + 3, 'cli', 'c')]);
    for (const r of results) {
      assert.ok(r.ops >= OPS, `${r.name} ran ${r.ops} operations`);
      assert.deepEqual(r.unexpected, [], `${r.name}: only the store's refusals (exists, not found, in use)`);
      assert.deepEqual(r.damaged, [], `${r.name}: no mount taken away while held`);
    }
    const done = results.reduce((n, r) => n + r.ok, 0);
    assert.ok(done >= OPS / 2, `enough operations went through (${done} of ${OPS * 3}; the rest refused)`);
    t.diagnostic(JSON.stringify(results.map(({ name, ops, ok, refused }) => ({ name, ops, ok, refused }))));

    const s = await openStore(home);
    try {
      const report = await s.check();
      assert.deepEqual(report.problems, [], 'check() finds nothing wrong');
      // Every mount below the driver's home has a live holder and every live holder a mount: all released now.
      const layerMounts = (await mountPoints()).filter((m) => m.startsWith(join(home, 'overlay') + '/'));
      const held = (await s.list()).filter((l) => l.mountCount > 0).map((l) => l.id);
      assert.deepEqual(layerMounts, []);
      assert.deepEqual(held, []);
      assert.deepEqual(await readdir(join(home, 'tmp')), [], 'no temp file left');
    } finally {
      await s.cleanup();
    }
  });
}
