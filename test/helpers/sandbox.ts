// Temp dirs and mount hygiene for tests: everything a test makes lives under one
// temp dir that is unmounted (lazily, deepest first) and removed after the test,
// also when it fails; and each test file can assert that it left no mount behind.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { readMountInfo } from '../../lib/mountinfo.js';

export const isRoot = process.getuid?.() === 0;

/** Mount points currently visible to this process (lib/mountinfo.ts, the one parser of /proc/self/mountinfo). */
export async function mountPoints(): Promise<string[]> {
  return (await readMountInfo()).map((m) => m.mountPoint);
}

/** Unmounts (lazily) every mount at or under `dir`, deepest first. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await mountPoints()).filter((m) => m === dir || m.startsWith(dir + '/'));
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

/** A fresh temp dir removed (after unmounting whatever is under it) when the test ends. */
export async function tempDir(t: TestContext, prefix = 'ogd-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => {
    await unmountUnder(dir);
    await removeTree(dir);
  });
  return dir;
}

/**
 * rm -rf that also removes trees deeper than PATH_MAX (fs.rm walks by full path and
 * fails there; GNU rm walks fd-relative), never crossing into another filesystem.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    execFileSync('rm', ['-rf', '--one-file-system', '--', dir], { stdio: 'ignore' });
  } catch {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** Skips the test (returns true) unless running as root, with the reason. */
export function skipUnlessRoot(t: TestContext): boolean {
  if (isRoot) return false;
  t.skip('needs root (mounts, chown, device nodes)');
  return true;
}
