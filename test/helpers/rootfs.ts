// A real Debian rootfs for tests, made once by ../shared/scripts/make-debian-rootfs.sh
// and kept in /var/cache/ogd; tests skip with the reason when it cannot be had.
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

const run = promisify(execFile);
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const rootfsCache = process.env.OGD_ROOTFS_CACHE ?? '/var/cache/ogd';
const script = join(repo, '..', 'shared', 'scripts', 'make-debian-rootfs.sh');

/** Path of a Debian rootfs (minbase: ~6.8k entries; big: ~71k), or undefined after t.skip(reason). */
export async function debianRootfs(t: TestContext, kind: 'minbase' | 'big' = 'minbase'): Promise<string | undefined> {
  const dir = join(rootfsCache, `debian-${kind}`);
  if (existsSync(join(dir, 'etc', 'debian_version'))) return dir;
  if (process.getuid?.() !== 0) {
    t.skip('a Debian rootfs needs root to make');
    return undefined;
  }
  if (!existsSync(script)) {
    t.skip(`no Debian rootfs in ${dir} and no ${script} to make one`);
    return undefined;
  }
  try {
    await run('bash', [script, dir, kind], { timeout: 15 * 60_000 });
  } catch (err) {
    t.skip(`could not make a Debian rootfs: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    return undefined;
  }
  return dir;
}
