// The damaged-store fuzz test (issue 23): a store with images and containers, one of
// its files damaged at random (truncated, garbage, JSON of the wrong shape, a fifo, a
// directory, a symlink out of the home, a huge file, a flipped bit), then what a user
// runs: ogd ls, images, check, check --repair, pull of a known image. Each call must
// answer (within 10 s) without crashing; nothing outside the home may change; every
// container's data must still be there or be reported moved to lost+found; and one
// repair must leave check ok. A few trials in npm test; OGD_STRESS=1 runs many
// (OGD_FUZZ_TRIALS=N to choose, OGD_FUZZ_SEED=S to replay one run).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, open, readFile, readdir, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openStore, type Store } from '../lib/index.js';
import { buildDamageFixture, copyHome, type DamageFixture } from './helpers/damaged-store.js';
import { ogd, type Outcome } from './helpers/ogd-cli.js';
import { isRoot, removeTree, unmountUnder } from './helpers/sandbox.js';

const stress = process.env['OGD_STRESS'] === '1';
const trials = Number(process.env['OGD_FUZZ_TRIALS'] ?? (stress ? 80 : 4));
const seed = Number(process.env['OGD_FUZZ_SEED'] ?? Date.now() % 1_000_000);
/** Each call must answer well within this (the issue's bound). */
const CALL_MS = 10_000;

const DAMAGES = ['truncate', 'garbage', 'wrong-shape', 'fifo', 'directory', 'symlink-out', 'huge', 'bit-flip'] as const;
type Damage = (typeof DAMAGES)[number];

/** xorshift32: the trials replay from the seed. */
function random(s: number): (n: number) => number {
  let x = s >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

let workDir: string | undefined;
let fixture: DamageFixture | undefined;

before(async () => {
  if (!isRoot) return;
  workDir = await mkdtemp(join(tmpdir(), 'ogd-damage-fuzz-'));
  fixture = await buildDamageFixture(workDir);
});

after(async () => {
  if (workDir === undefined) return;
  await unmountUnder(workDir);
  await removeTree(workDir);
});

/** The files of the store a trial may damage: records, driver files the store reads, blobs. */
async function targets(home: string, containers: string[]): Promise<string[]> {
  const list = async (dir: string) => (await readdir(join(home, dir))).map((n) => join(home, dir, n));
  return [...(await list('layers')), ...(await list('images')), ...(await list('blobs/sha256')), ...containers.map((c) => join(home, 'overlay', c, 'lower-id'))];
}

const WRONG_SHAPES = ['[]', '{}', 'null', '42', '"x"', '{"id":5}', '{"id":"x","kind":["x"],"names":"notalist","created":1}', '{"layers":"nope"}'];

async function damage(path: string, how: Damage, pick: (n: number) => number, canary: string): Promise<void> {
  const st = await lstat(path);
  switch (how) {
    case 'truncate':
      await truncate(path, pick(Math.max(1, st.size)));
      return;
    case 'garbage':
      await writeFile(path, Buffer.from(Array.from({ length: 1 + pick(300) }, () => pick(256))));
      return;
    case 'wrong-shape':
      await writeFile(path, WRONG_SHAPES[pick(WRONG_SHAPES.length)]!);
      return;
    case 'fifo':
      await rm(path, { force: true });
      execFileSync('mkfifo', [path]);
      return;
    case 'directory':
      await rm(path, { force: true });
      await mkdir(path);
      await writeFile(join(path, 'inside'), 'x');
      return;
    case 'symlink-out':
      await rm(path, { force: true });
      await symlink(canary, path);
      return;
    case 'huge': {
      const fh = await open(path, 'r+');
      await fh.truncate(300 * 1024 * 1024); // sparse
      await fh.close();
      return;
    }
    case 'bit-flip': {
      if (st.size === 0) return;
      const at = pick(st.size);
      const fh = await open(path, 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ (1 << pick(8));
      await fh.write(b, 0, 1, at);
      await fh.close();
    }
  }
}

/** Everything under `dir` with its content: what "nothing outside the home touched" compares. */
async function snapshot(dir: string): Promise<string> {
  const names = (await readdir(dir)).sort();
  return JSON.stringify(await Promise.all(names.map(async (n) => [n, (await readFile(join(dir, n))).toString('base64')])));
}

async function withStore<T>(home: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const s = await openStore(home);
  try {
    return await fn(s);
  } finally {
    await s.cleanup();
  }
}

test(`damaged-store fuzz: ${trials} trials (seed ${seed}): no crash, no hang, nothing outside the home touched, no data lost unreported, check ok after one repair`, { timeout: Math.max(120_000, trials * 60_000) }, async (t) => {
  if (!isRoot || fixture === undefined) return t.skip('needs root (mounts, chown)');
  const f = fixture;
  const pick = random(seed);
  const tally = new Map<string, number>();
  for (let trial = 0; trial < trials; trial++) {
    const dir = join(workDir!, `trial-${trial}`);
    const outside = join(dir, 'outside');
    await mkdir(outside, { recursive: true });
    const canary = join(outside, 'canary');
    await writeFile(canary, 'precious\n');
    const home = copyHome(f, join(dir, 'home'));
    const all = await targets(home, Object.keys(f.containers));
    const target = all[pick(all.length)]!;
    const how = DAMAGES[pick(DAMAGES.length)]!;
    const what = `trial ${trial} (seed ${seed}): ${how} of ${target.slice(home.length + 1)}`;
    tally.set(how, (tally.get(how) ?? 0) + 1);
    await damage(target, how, pick, canary);
    const before = await snapshot(outside);
    try {
      const run = async (...args: string[]): Promise<Outcome> => {
        const started = Date.now();
        const r = await ogd(['--home', home, ...args], { killAfterMs: CALL_MS });
        assert.equal(r.signal, null, `${what}: ogd ${args.join(' ')} did not answer within ${CALL_MS} ms`);
        assert.ok(Date.now() - started < CALL_MS, `${what}: ogd ${args.join(' ')} took ${Date.now() - started} ms`);
        assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: ogd ${args.join(' ')} crashed: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /\[ERROR\]|TypeError|RangeError|SyntaxError/, `${what}: ogd ${args.join(' ')}: ${r.stderr}`);
        assert.equal(await snapshot(outside), before, `${what}: ogd ${args.join(' ')} touched a file outside the home`);
        return r;
      };
      for (const args of [['ls'], ['images']]) {
        const r = await run(...args);
        assert.equal(r.code, 0, `${what}: ogd ${args.join(' ')}: ${r.stderr}`);
      }
      await run('check');
      const repair = await run('--json', 'check', '--repair');
      const report = JSON.parse(repair.stdout) as { ok: boolean; repaired: Array<{ id?: string; movedTo?: string; repair: string }>; problems: unknown[] };
      assert.ok(report.ok, `${what}: after one repair: ${JSON.stringify(report.problems)}`);
      // Every container's data is where the store says, or where the report says it was moved.
      await withStore(home, async (s) => {
        assert.ok((await s.check()).ok, `${what}: check after one repair`);
        const listed = new Set((await s.list()).map((l) => l.id));
        for (const [id, { file, content }] of Object.entries(f.containers)) {
          if (listed.has(id)) {
            const root = await s.mount(id);
            try {
              assert.deepEqual(await readFile(join(root, file)), content, `${what}: container ${id}'s data`);
            } finally {
              await s.unmount(id);
            }
            continue;
          }
          const moved = report.repaired.find((p) => p.id === id && p.movedTo !== undefined);
          assert.ok(moved !== undefined, `${what}: container ${id} is gone and the repair report does not say where: ${JSON.stringify(report.repaired)}`);
          assert.deepEqual(await readFile(join(moved.movedTo!, 'upper', file)), content, `${what}: container ${id}'s data in ${moved.movedTo}`);
        }
        for (const id of f.layers) {
          assert.ok(listed.has(id) || report.repaired.some((p) => p.id === id), `${what}: image layer ${id} is gone without a word in the repair report`);
        }
      });
      const pulled = await run('pull', `oci:${f.layout}:two`);
      assert.equal(pulled.code, 0, `${what}: pull of a known image: ${pulled.stderr}`);
      assert.equal(await readFile(canary, 'utf8'), 'precious\n');
    } finally {
      await (await openStore(home).catch(() => undefined))?.cleanup({ force: true }).catch(() => undefined);
      await unmountUnder(dir);
      await removeTree(dir);
    }
  }
  t.diagnostic(`${trials} trials, seed ${seed}: ${[...tally].map(([k, n]) => `${k} ${n}`).join(', ')}`);
});
