// The harness for the hostile-layer tests (test/hostile-*.test.ts): applies a crafted
// tar into a root that sits beside sentinel files, and proves that nothing outside
// the root was created, changed or deleted — the sentinels beside the root and in
// /tmp keep their content and mtime, and the rest of the root's parent is unchanged
// entry by entry — and that the apply failed the way the case expects, promptly.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readFile, readlink, stat, writeFile, readdir, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { applyTar, type ApplyTarOptions } from '../../lib/archive/apply.js';
import type { DiffSource } from '../../lib/types.js';
import { tempDir } from './sandbox.js';
import { chunked } from './tar-builder.js';

export type Expect = 'unsafe' | 'invalid' | 'contained';

export interface HostileCase {
  /** What the archive tries. */
  name: string;
  /** The archive, or a function making it (given the sandbox paths, for links that aim at the sentinels). */
  tar: Buffer | ((s: Sandbox) => Buffer | DiffSource);
  /** Lower-layer content already in the root before the apply (symlinks planted by an earlier layer, etc.). */
  lower?: (s: Sandbox) => Promise<void>;
  /**
   * 'unsafe': UnsafeLayerError; 'invalid': InvalidArchiveError; 'contained': the apply
   * may succeed, because what the entry reaches is clamped inside the root (a symlink to
   * "/" is the root itself, as in a real image); `check` then says where it landed.
   */
  expect: Expect;
  check?: (s: Sandbox) => Promise<void>;
  opts?: ApplyTarOptions;
}

export interface Sandbox {
  /** The temp dir holding everything below. */
  base: string;
  /** The layer root the tar is applied to. */
  root: string;
  /** A directory and a file beside the root, which an escape would reach first. */
  outsideDir: string;
  outsideFile: string;
  /** A sentinel in /tmp (absolute-path and symlink-to-/ escapes aim there). */
  tmpFile: string;
  /** A name in /tmp that must never come into existence. */
  tmpVictim: string;
}

const SENTINEL = 'sentinel: must not change\n';
const SENTINEL_TIME = new Date('2001-02-03T04:05:06Z');
/** An apply that has not settled after this is a hang. */
const HANG_MS = 15_000;

export async function runHostileCase(t: TestContext, c: HostileCase): Promise<void> {
  const base = await tempDir(t, 'ogd-hostile-');
  const tag = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const s: Sandbox = {
    base,
    root: join(base, 'root'),
    outsideDir: join(base, 'outside'),
    outsideFile: join(base, 'outside', 'sentinel'),
    tmpFile: join('/tmp', `ogd-hostile-sentinel-${tag}`),
    tmpVictim: join('/tmp', `ogd-hostile-victim-${tag}`),
  };
  t.after(() => Promise.all([rm(s.tmpFile, { force: true }), rm(s.tmpVictim, { recursive: true, force: true })]));
  await mkdir(s.root);
  await mkdir(s.outsideDir);
  for (const f of [s.outsideFile, join(base, 'beside'), s.tmpFile]) {
    await writeFile(f, SENTINEL);
    await utimes(f, SENTINEL_TIME, SENTINEL_TIME);
  }
  await c.lower?.(s);
  const before = await snapshotOutside(base, s.root);
  const tmpBefore = new Set(await readdir('/tmp'));

  const tar = typeof c.tar === 'function' ? c.tar(s) : c.tar;
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`apply did not settle within ${HANG_MS} ms`)), HANG_MS);
  });
  let error: unknown;
  try {
    await Promise.race([applyTar(s.root, Buffer.isBuffer(tar) ? chunked(tar, 65536) : tar, c.opts), hang]);
  } catch (err) {
    error = err;
  } finally {
    clearTimeout(timer);
  }

  // Nothing outside the root changed, whatever the outcome.
  assert.deepEqual(await snapshotOutside(base, s.root), before, 'something outside the root changed');
  for (const f of [s.outsideFile, join(base, 'beside'), s.tmpFile]) {
    assert.equal(await readFile(f, 'utf8'), SENTINEL, `${f} changed`);
    assert.equal((await stat(f)).mtime.getTime(), SENTINEL_TIME.getTime(), `${f} mtime changed`);
  }
  await assert.rejects(stat(s.tmpVictim), { code: 'ENOENT' }, `${s.tmpVictim} was created`);
  const tmpNew = (await readdir('/tmp')).filter((n) => !tmpBefore.has(n) && /pwn|victim|escape/i.test(n));
  assert.deepEqual(tmpNew, [], 'the apply created names in /tmp');

  if (c.expect === 'unsafe') {
    assert.ok(error !== undefined, 'the apply should have been refused as unsafe');
    assert.equal((error as { code?: string }).code, 'ERR_OGD_UNSAFE_LAYER', String(error));
    const entry = (error as { entry?: unknown }).entry;
    assert.ok(typeof entry === 'string' && entry.length > 0, 'UnsafeLayerError names the entry');
  } else if (c.expect === 'invalid') {
    assert.ok(error !== undefined, 'the apply should have been refused as an invalid archive');
    assert.equal((error as { code?: string }).code, 'ERR_OGD_INVALID_ARCHIVE', String(error));
  } else if (error !== undefined) {
    const code = (error as { code?: string }).code;
    assert.ok(code === 'ERR_OGD_UNSAFE_LAYER' || code === 'ERR_OGD_INVALID_ARCHIVE', `unexpected failure: ${String(error)}`);
  }
  if (error === undefined) await c.check?.(s);
}

/**
 * Every entry of the sandbox except the root's subtree: type, mode, owner, size,
 * mtime and ctime in ns (ctime moves on any write, chmod, chown or xattr change),
 * content hash and link target. Plain node:fs, independent of the code under test.
 */
async function snapshotOutside(base: string, root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const p = join(dir, name);
      if (p === root) continue;
      const st = await lstat(p, { bigint: true });
      let extra = '';
      if (st.isFile()) extra = createHash('sha256').update(await readFile(p)).digest('hex');
      if (st.isSymbolicLink()) extra = await readlink(p);
      out[p] = `${st.mode} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.nlink} ${extra}`;
      if (st.isDirectory()) await walk(p);
    }
  };
  const st = await lstat(base, { bigint: true });
  out[base] = `${st.mode} ${st.uid}:${st.gid} ${st.mtimeNs} ${st.ctimeNs} ${st.nlink}`;
  await walk(base);
  return out;
}
