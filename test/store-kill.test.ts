// SIGKILL in the middle of ogd commands: at random points of import, apply-diff,
// remove, mount and diff -o, and at chosen steps (OGD_TEST_KILL_AT, lib/store/
// kill-point.ts). After each kill, `ogd check` passes (after the automatic cleanup at
// open), no half layer is visible, nothing is leaked, and the same command succeeds
// when run again. OGD_STRESS=1 kills each command 20 times instead of once.
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { prng } from '../bench/lib.js';
import { ogd, ogdOk } from './helpers/ogd-cli.js';
import type { Outcome } from './helpers/ogd-cli.js';
import { mountPoints, skipUnlessRoot, tempDir } from './helpers/sandbox.js';
import { pack } from './helpers/tar-builder.js';

const KILLS = process.env['OGD_STRESS'] === '1' ? 20 : 1;
const FILES = process.env['OGD_STRESS'] === '1' ? 1500 : 600;

interface Scenario {
  name: string;
  /** The command killed and run again. */
  args: (s: Setup) => string[];
  /** Puts the store back where the scenario starts (after a successful re-run). */
  reset: (s: Setup) => Promise<void>;
  /** True when a re-run that fails only because the killed run finished first is fine. */
  finishedFirst?: (r: Outcome) => boolean;
  /** Checks after the kill and the recovery, before the re-run. */
  afterKill?: (s: Setup) => Promise<void>;
}

interface Setup {
  dir: string;
  home: string;
  tarFile: string;
  smallTar: string;
  out: string;
  cli: (...args: string[]) => Promise<Outcome>;
}

async function setup(t: TestContext): Promise<Setup> {
  const dir = await tempDir(t, 'ogd-store-kill-');
  const home = join(dir, 'home');
  const tarFile = join(dir, 'layer.tar');
  await writeFile(tarFile, await pack([{ name: 'd/', type: 'directory' }, ...Array.from({ length: FILES }, (_, i) => ({ name: `d/f${i}`, content: `${i}\n`.repeat(50) }))]));
  const smallTar = join(dir, 'small.tar');
  await writeFile(smallTar, await pack([{ name: 'added', content: 'x\n' }]));
  await ogdOk(['--home', home, 'import', 'base', tarFile]);
  await ogdOk(['--home', home, 'create', 'c', '--parent', 'base', '--rw']);
  await ogdOk(['--home', home, 'import', 'top', '--parent', 'base', smallTar]);
  return { dir, home, tarFile, smallTar, out: join(dir, 'out.tar'), cli: (...args) => ogd(['--home', home, ...args]) };
}

/** After a kill: check passes, nothing half-done is visible, no layer mount without a holder. */
async function assertConsistent(s: Setup, what: string): Promise<void> {
  const r = await s.cli('--json', 'check');
  assert.equal(r.code, 0, `${what}: ogd check after the kill: ${r.stdout}${r.stderr}`);
  const ls = JSON.parse((await s.cli('--json', 'ls')).stdout) as Array<{ id: string; references: number }>;
  const mounted = (await mountPoints()).filter((m) => m.startsWith(join(s.home, 'overlay') + '/'));
  for (const m of mounted) {
    const id = m.slice(join(s.home, 'overlay').length + 1).split('/')[0];
    assert.ok((ls.find((l) => l.id === id)?.references ?? 0) > 0, `${what}: ${m} is mounted with a holder`);
  }
  if (ls.some((l) => l.id === 'k')) {
    // An imported layer that is visible is whole.
    const names = await readdir(join(s.home, 'overlay/k/root/d'));
    assert.equal(names.length, FILES, `${what}: a visible k has all its files`);
  }
}

const scenarios: Scenario[] = [
  {
    name: 'import',
    args: (s) => ['import', 'k', '--parent', 'base', s.tarFile],
    finishedFirst: (r) => /ERR_OGD_LAYER_EXISTS/.test(r.stderr),
    reset: async (s) => void (await ogdOk(['--home', s.home, 'remove', 'k'])),
  },
  {
    name: 'apply-diff',
    args: (s) => ['apply-diff', 'top', s.tarFile],
    reset: async () => {},
  },
  {
    name: 'remove',
    args: () => ['remove', 'k'],
    finishedFirst: (r) => /ERR_OGD_LAYER_NOT_FOUND/.test(r.stderr),
    reset: async (s) => void (await ogdOk(['--home', s.home, 'import', 'k', '--parent', 'base', s.tarFile])),
  },
  {
    name: 'mount',
    args: () => ['mount', 'c'],
    reset: async (s) => void (await ogdOk(['--home', s.home, 'unmount', 'c', '--force'])),
  },
  {
    name: 'diff -o',
    args: (s) => ['diff', 'base', '-o', s.out],
    reset: async () => {},
  },
];

async function killAndRerun(s: Setup, sc: Scenario, what: string, run: () => Promise<Outcome>): Promise<void> {
  await run();
  await assertConsistent(s, what);
  const again = await s.cli(...sc.args(s));
  assert.ok(again.code === 0 || (sc.finishedFirst?.(again) ?? false), `${what}: the same command again: ${again.stderr}`);
  assert.deepEqual((await readdir(s.dir)).filter((n) => n.includes('.ogd-')), [], `${what}: no diff temp file left after the re-run`);
  await sc.reset(s);
}

test(`SIGKILL at random points of import, apply-diff, remove, mount and diff -o (${KILLS} each)`, async (t) => {
  if (skipUnlessRoot(t)) return;
  const s = await setup(t);
  const random = prng(7);
  for (const sc of scenarios) {
    if (sc.name === 'remove') await ogdOk(['--home', s.home, 'import', 'k', '--parent', 'base', s.tarFile]);
    // How long the command takes here, to spread the kills over its run.
    const t0 = performance.now();
    const first = await s.cli(...sc.args(s));
    assert.equal(first.code, 0, first.stderr);
    const span = performance.now() - t0;
    await sc.reset(s);
    for (let i = 0; i < KILLS; i++) {
      const at = Math.round(random() * span);
      await killAndRerun(s, sc, `${sc.name} killed after ${at} ms`, () => ogd(['--home', s.home, ...sc.args(s)], { killAfterMs: at }));
    }
    if (sc.name === 'remove') await s.cli('remove', 'k');
  }
  await ogdOk(['--home', s.home, 'cleanup']);
});

test('SIGKILL at chosen steps: record written, after the rename, during the record write, after the mount, after remove marks', async (t) => {
  if (skipUnlessRoot(t)) return;
  const s = await setup(t);
  const points: Array<[string, Scenario]> = [
    ['after-create', scenarios[0]!],
    ['record-write', scenarios[0]!],
    ['after-rename', scenarios[0]!],
    ['after-rename', scenarios[1]!],
    ['after-mount', scenarios[3]!],
    ['remove-marked', scenarios[2]!],
  ];
  for (const [point, sc] of points) {
    if (sc.name === 'remove') await ogdOk(['--home', s.home, 'import', 'k', '--parent', 'base', s.tarFile]);
    await killAndRerun(s, sc, `${sc.name} killed at ${point}`, async () => {
      const r = await ogd(['--home', s.home, ...sc.args(s)], { env: { OGD_TEST_KILL_AT: point } });
      assert.equal(r.signal, 'SIGKILL', `${sc.name} reached ${point}`);
      if (point === 'after-rename' && sc.name === 'import') {
        // The layer was in place on disk: it must not be visible, and its parent link not lost.
        assert.equal((await s.cli('exists', 'k')).code, 1, 'an import killed before its commit leaves no layer');
      }
      return r;
    });
    if (sc.name === 'remove') await s.cli('remove', 'k');
  }
  await ogdOk(['--home', s.home, 'cleanup']);
});
